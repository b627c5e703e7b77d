#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Run the target_core_user selftests inside the guest (as root) and report
# TAP on stdout and in $TCMU_OUT/tap.txt.
#
#   run_tests.sh [TEST...]     TEST: a tcmu_*.sh name, with or without .sh
#
# Every test runs in its own bash process under a time limit, taken from a
# "# timeout: N" comment in the test (default $TCMU_TEST_TIMEOUT or 300 s).
# A "# kernels: stock" comment limits a test to the stock kernel; on the
# debug kernel it is then reported as skipped with that reason.
# Its output goes to $TCMU_OUT/logs/<name>.log.  Exit codes: 0 pass, 4 skip
# (the last "SKIP: ..." line is the reason), anything else fail.
#
# Kernel reports: before each test a unique marker line is written to
# /dev/kmsg; afterwards the kernel log after that marker is appended to the
# test's log, and the test fails when those lines hold a kernel report or
# when the kernel picked up a new "something went wrong" taint flag.
# (If the log ring wrapped past the marker, every line still in the ring is
# newer than the marker, so all of it is checked.)
#
# Final pseudo-tests:
#   kmemleak_clean  only when /sys/kernel/debug/kmemleak exists.  After two
#                   scans (5 s apart, after the 5 s kmemleak needs before
#                   it reports an object), the run FAILS on any unreferenced
#                   object allocated after the run started (its age is
#                   below the run's duration), and on any object whose
#                   backtrace has a frame from the code under test
#                   (target modules, uio, tcmu_/configfs_/uio_ functions,
#                   or an address that no longer resolves because its
#                   module was unloaded) whatever its age.  Older objects
#                   without such a frame are boot-time noise (the rig's
#                   guest-init also clears those before the run) and are
#                   not held against the tests.  This is as strict as the
#                   kernel itself: every scan that finds a new leak logs
#                   "kmemleak: N new suspected memory leaks", which the
#                   dmesg checks here and the rig's console scan already
#                   treat as a kernel report.  The log names each object as
#                   "code under test" or "other" to help find the culprit.
#   dmesg_clean     the whole kernel log since boot has no kernel report and
#                   no bad taint flag is set.
#
# Exit status: 0 when every reported test passed or skipped, 1 otherwise,
# 2 on a usage error.

set -u

TCMU_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TCMU_OUT=${TCMU_OUT:-/tmp/tcmu-out}
export TCMU_OUT
DEFAULT_TIMEOUT=${TCMU_TEST_TIMEOUT:-300}
LOGDIR=$TCMU_OUT/logs
TAP=$TCMU_OUT/tap.txt

# shellcheck source=lib.sh
. "$TCMU_DIR/lib.sh"

# Kernel log lines that mean the kernel found a problem.  WARNING and the
# sanitizer names only count at the start of a message, so benign boot
# lines such as "RETBleed: WARNING: Spectre v2 mitigation ..." or
# "kasan: KernelAddressSanitizer initialized" do not match; neither do
# "kmemleak: Kernel memory leak detector initialized" and friends.  The
# die() header ("divide error: 0000 [#1] ...") is matched by its shape.
SPLAT_RE='(^|\] )Oops|: [0-9a-f]{4} \[#[0-9]+\]|(^|\] |: )BUG: |(^|\] )BUG [^ ]+ \(.*\): |kernel BUG at |(^|\] )WARNING: |(^|\] )(KASAN|UBSAN|KMSAN|KCSAN): |general protection fault|Call Trace|possible (recursive|circular) locking|possible [a-z -]*lock[a-z]* (dependency )?detected|inconsistent lock state|lock held when returning to user space|kmemleak: [0-9]+ new suspected memory leak|blocked for more than [0-9]+ seconds|soft lockup - CPU#|[Hh]ard LOCKUP|rcu.*detected stalls? on CPU|Kernel panic|list_(add|del) corruption|refcount_t: |DEBUG_LOCKS_WARN_ON'

# Taint flags that only a kernel problem sets: B bad page (32), D died (128),
# W warning (512), L soft lockup (16384).  Loading out-of-tree or unsigned
# modules (O, E) is expected here and ignored.
BAD_TAINT=$((32 | 128 | 512 | 16384))

usage()
{
	echo "usage: $0 [TEST...]" >&2
	echo "tests: ${ALL_TESTS[*]}" >&2
	exit 2
}

# ---------------------------------------------------------------------------
# Test list

ALL_TESTS=()
for t in "$TCMU_DIR"/tcmu_*.sh; do
	[ -f "$t" ] || continue
	t=${t##*/}
	ALL_TESTS+=("${t%.sh}")
done
mapfile -t ALL_TESTS < <(printf '%s\n' "${ALL_TESTS[@]}" | LC_ALL=C sort)

TESTS=()
if [ $# -gt 0 ]; then
	for arg in "$@"; do
		case "$arg" in
		-h|--help) usage ;;
		esac
		want=${arg##*/}
		want=${want%.sh}
		found=
		for t in "${ALL_TESTS[@]}"; do
			[ "$t" == "$want" ] && found=1
		done
		if [ -z "$found" ]; then
			echo "$0: no such test: $arg" >&2
			usage
		fi
		TESTS+=("$want")
	done
	mapfile -t TESTS < <(printf '%s\n' "${TESTS[@]}" | LC_ALL=C sort -u)
else
	TESTS=("${ALL_TESTS[@]}")
fi

[ "$(id -u)" -eq 0 ] || echo "# warning: not running as root, tests will skip" >&2

mkdir -p "$LOGDIR" || exit 2
: > "$TAP" || exit 2

HAVE_KMEMLEAK=
[ -e "$KMEMLEAK" ] && HAVE_KMEMLEAK=1

PLAN=$(( ${#TESTS[@]} + 1 ))
[ -n "$HAVE_KMEMLEAK" ] && PLAN=$((PLAN + 1))

N=0
N_PASS=0
N_FAIL=0
N_SKIP=0

tap()
{
	printf '%s\n' "$*" | tee -a "$TAP"
}

report()
{
	# report RESULT(ok|fail|skip) NAME [REASON]
	N=$((N + 1))
	case "$1" in
	ok)
		N_PASS=$((N_PASS + 1))
		tap "ok $N $2"
		;;
	skip)
		N_SKIP=$((N_SKIP + 1))
		tap "ok $N $2 # SKIP ${3:-no reason given}"
		;;
	*)
		N_FAIL=$((N_FAIL + 1))
		[ -n "${3:-}" ] && tap "# $2: $3"
		tap "not ok $N $2"
		;;
	esac
}

taint()
{
	local v
	v=$(cat /proc/sys/kernel/tainted 2>/dev/null) || v=0
	echo "${v:-0}"
}

# Print the kernel log lines written after the line holding MARKER.
dmesg_since()
{
	dmesg 2>/dev/null | awk -v m="$1" '
		found { print; next }
		index($0, m) { found = 1 }
		{ all[NR] = $0 }
		END { if (!found) for (i = 1; i <= NR; i++) print all[i] }'
}

# A process blocked in the kernel (for instance on a mutex that an oops left
# locked) ignores SIGKILL, so timeout(1) alone could wait for it forever.
# run_bounded SECONDS COMMAND...: run COMMAND in the background and stop
# waiting after SECONDS; returns COMMAND's status, or RC_STUCK when it is
# still there (it is left behind, and the run goes on).  Never capture its
# output with $(...): a stuck COMMAND keeps the pipe open.
KILL_GRACE=30
RC_STUCK=200
run_bounded()
{
	local limit=$1 pid end
	shift
	"$@" < /dev/null &
	pid=$!
	end=$((SECONDS + limit))
	while kill -0 "$pid" 2>/dev/null; do
		if [ "$SECONDS" -ge "$end" ]; then
			echo "# gave up after ${limit}s: process $pid is stuck (in the kernel?)"
			return "$RC_STUCK"
		fi
		sleep 0.5
	done
	wait "$pid"
}

# tiers_of SCRIPT: the kernels a test runs on, from a "# kernels: ..."
# comment (default: "stock debug").  A test that has not yet been brought
# within the debug tier's time budget says "# kernels: stock", and is
# reported as skipped there, with that reason, never as passed.
tiers_of()
{
	local t
	t=$(sed -n 's/^#[[:space:]]*kernels:[[:space:]]*\(.*\)$/\1/p' "$1" | head -n 1)
	echo "${t:-stock debug}"
}

case "$(uname -r)" in
*tcmu-debug*) TIER=debug ;;
*) TIER=stock ;;
esac

timeout_of()
{
	local t
	t=$(sed -n 's/^#[[:space:]]*timeout:[[:space:]]*\([0-9][0-9]*\).*/\1/p' "$1" | head -n 1)
	echo "${t:-$DEFAULT_TIMEOUT}"
}

# ---------------------------------------------------------------------------
# Preparation: helpers built once, so no test pays for (or races on) it.

if [ -z "${TCMU_BIN_DIR:-}" ]; then
	if [ -x "$TCMU_DIR/tcmu_mailbox" ] && [ "$TCMU_DIR/tcmu_mailbox" -nt "$TCMU_DIR/tcmu_mailbox.c" ]; then
		TCMU_BIN_DIR=$TCMU_DIR
	else
		TCMU_BIN_DIR=$TCMU_OUT/bin
		mkdir -p "$TCMU_BIN_DIR"
		make -s -C "$TCMU_DIR" OUTPUT="$TCMU_BIN_DIR" > "$LOGDIR/build.log" 2>&1 ||
			echo "# warning: building the C helpers failed, see logs/build.log" >&2
	fi
fi
export TCMU_BIN_DIR

RUN_START=$(date +%s)
RUN_ID="$$-$RUN_START"

tap "TAP version 13"
tap "1..$PLAN"

# ---------------------------------------------------------------------------
# The tests

for name in "${TESTS[@]}"; do
	script=$TCMU_DIR/$name.sh
	log=$LOGDIR/$name.log
	limit=$(timeout_of "$script")
	marker="tcmu-selftest: begin $name run $RUN_ID"
	case " $(tiers_of "$script") " in
	*" $TIER "*) ;;
	*)
		report skip "$name" "not in the $TIER tier yet (runs on: $(tiers_of "$script"))"
		continue
		;;
	esac

	echo "$marker" > /dev/kmsg 2>/dev/null
	taint_before=$(taint)
	t0=$(date +%s)

	echo "# running $name (timeout ${limit}s)"
	echo "# $name: started $(date -u '+%F %T') UTC, timeout ${limit}s" > "$log"
	run_bounded $((limit + KILL_GRACE + 30)) \
		timeout --kill-after=$KILL_GRACE "$limit" bash "$script" >> "$log" 2>&1
	rc=$?
	t1=$(date +%s)

	# Whatever the test left behind would only confuse the next one.  (Into
	# a file, not a pipe: a cleanup stuck in the kernel would hold a pipe
	# open and block the reader forever.)
	run_bounded 60 tcmu_cleanup_all > "$TCMU_OUT/cleanup.txt" 2>&1
	[ $? -eq "$RC_STUCK" ] && echo "cleanup is stuck in the kernel; gave up waiting" >> "$TCMU_OUT/cleanup.txt"
	leftovers=$(cat "$TCMU_OUT/cleanup.txt")
	rm -f "$TCMU_OUT/cleanup.txt"

	klog=$(dmesg_since "$marker")
	taint_after=$(taint)
	new_taint=$(( (taint_after & ~taint_before) & BAD_TAINT ))

	{
		echo "# $name: exit code $rc after $((t1 - t0))s"
		if [ -n "$leftovers" ]; then
			echo "# left behind by the test:"
			printf '%s\n' "$leftovers" | sed 's/^/#   /'
		fi
		echo "# ---- kernel log since the test started ----"
		printf '%s\n' "$klog"
		echo "# ---- end of kernel log ----"
	} >> "$log"

	reason=
	splat=$(printf '%s\n' "$klog" | grep -E "$SPLAT_RE")
	if [ -n "$splat" ]; then
		reason="kernel report in dmesg: $(printf '%s\n' "$splat" | head -n 1)"
		echo "# FAIL: kernel report during the test" >> "$log"
	elif [ "$new_taint" -ne 0 ]; then
		reason="kernel taint grew from $taint_before to $taint_after"
		echo "# FAIL: $reason" >> "$log"
	fi

	if [ -n "$reason" ]; then
		report fail "$name" "$reason (log: logs/$name.log)"
	elif [ "$rc" -eq 0 ]; then
		report ok "$name"
	elif [ "$rc" -eq "$KSFT_SKIP" ]; then
		why=$(sed -n 's/^SKIP:[[:space:]]*//p' "$log" | tail -n 1)
		report skip "$name" "${why:-no reason given}"
	elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
		report fail "$name" "timed out after ${limit}s (log: logs/$name.log)"
	elif [ "$rc" -eq "$RC_STUCK" ]; then
		report fail "$name" "timed out after ${limit}s and could not be killed (log: logs/$name.log)"
	else
		first=$(grep -m 1 '^FAIL:' "$log")
		report fail "$name" "exit code $rc${first:+, first failure: $first} (log: logs/$name.log)"
	fi
done

# ---------------------------------------------------------------------------
# kmemleak over the whole run

kmemleak_check()
{
	local age=$1 ours=0 others=0

	echo "# kmemleak_clean: objects younger than ${age}s were allocated during this run"
	if ! tcmu_kmemleak_scan; then
		echo "SKIP: kmemleak is present but refuses to scan (disabled after an error?)"
		return "$KSFT_SKIP"
	fi
	tcmu_kmemleak_report "$age" ours others || {
		echo "FAIL: cannot read $KMEMLEAK"
		return 1
	}
	echo "# leaks from the code under test: $ours; other leaks from this run: $others"
	if [ "$ours" -ne 0 ] || [ "$others" -ne 0 ]; then
		echo "FAIL: $ours unreferenced object(s) from the code under test, $others other(s) from this run"
		return 1
	fi
	echo "PASS: no unreferenced object from this run"
	return 0
}

if [ -n "$HAVE_KMEMLEAK" ]; then
	log=$LOGDIR/kmemleak_clean.log
	kmemleak_check $(( $(date +%s) - RUN_START + 1 )) > "$log" 2>&1
	rc=$?
	if [ "$rc" -eq 0 ]; then
		report ok kmemleak_clean
	elif [ "$rc" -eq "$KSFT_SKIP" ]; then
		report skip kmemleak_clean "$(sed -n 's/^SKIP:[[:space:]]*//p' "$log" | tail -n 1)"
	else
		report fail kmemleak_clean "$(grep -m 1 '^FAIL:' "$log") (log: logs/kmemleak_clean.log)"
	fi
fi

# ---------------------------------------------------------------------------
# The whole kernel log since boot

log=$LOGDIR/dmesg_clean.log
dmesg > "$TCMU_OUT/dmesg.txt" 2>&1
splat=$(grep -E "$SPLAT_RE" "$TCMU_OUT/dmesg.txt")
bad=$(( $(taint) & BAD_TAINT ))
{
	echo "# dmesg_clean: full kernel log in dmesg.txt, taint $(taint)"
	if [ -n "$splat" ]; then
		echo "FAIL: kernel report(s) in the kernel log:"
		printf '%s\n' "$splat"
	fi
	[ "$bad" -eq 0 ] || echo "FAIL: kernel taint flags $bad set"
} > "$log"
if [ -n "$splat" ]; then
	report fail dmesg_clean "kernel report: $(printf '%s\n' "$splat" | head -n 1)"
elif [ "$bad" -ne 0 ]; then
	report fail dmesg_clean "kernel taint flags $bad set"
else
	report ok dmesg_clean
fi

tap "# tcmu: $N_PASS passed, $N_FAIL failed, $N_SKIP skipped"
[ "$N_FAIL" -eq 0 ]
