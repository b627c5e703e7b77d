#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# "make check": set up the rig, run the host tests, build the module for
# every kernel, check the rig itself, boot each kernel once to run the
# selftests, and summarise.  Non-interactive; runs from a fresh clone.
#
# Usage: tools/testing/check.sh
#
# Environment:
#   TCMU_KERNELS          kernels to test, default "stock debug"
#   TCMU_TIMEOUT_STOCK    VM time limit in seconds, default 2400
#   TCMU_TIMEOUT_DEBUG    VM time limit in seconds, default 3600
#   TCMU_HOST_TIMEOUT     time limit per host test, default 1800
#   TCMU_TESTS            only these selftests (names passed to run_tests.sh)
#   TCMU_RESULTS          results directory, default build/results
#   (and everything run-vm.sh passes on: TCMU_* reaches the guest)
#
# Steps, each recorded as one or more named tests:
#   1. setup.sh (plus --debug when the debug kernel is wanted)
#   2. every executable tools/testing/host/*.sh, run from the repository
#      root: exit 0 pass, 4 skip, anything else fail
#   3. per kernel, the module built out of tree in build/<kernel>/; then the
#      user-space helpers (tools/testing/tcmu-handler, selftests/tcmu)
#   4. vm/rig-selftest.sh on the stock kernel
#   5. per kernel, one boot running selftests/tcmu/run_tests.sh; its TAP
#      ($TCMU_OUT/tap.txt) gives one test per line, named "<kernel>: <test>",
#      plus "<kernel>: vm finished" (no timeout, no rig failure, TAP
#      complete) and "<kernel>: kernel log clean" (run-vm.sh saw no report)
#   6. a summary; the last line is "N passed, N failed, N skipped".
# Logs: <results>/*.log, <results>/<kernel>/ (console.log, tap.txt, logs/).
# Exit status: 1 if anything failed, else 0.

set -euo pipefail

# The rest of the script is one brace group: bash reads it whole before
# running any of it, so a checkout or an edit of this file while it runs
# (it may run for a long time) cannot make bash execute a half-read line.
{

case ${1:-} in
"") ;;
-h | --help)
	sed -n '4,/^$/s/^# \{0,1\}//p' "$0"
	exit 0
	;;
*)
	echo "check: no arguments expected (try --help); settings come from the environment" >&2
	exit 2
	;;
esac

TESTING=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$TESTING/../.." && pwd)
VM=$TESTING/vm
cd "$REPO"
exec </dev/null

read -r -a KERNELS <<<"${TCMU_KERNELS:-stock debug}"
RESULTS=${TCMU_RESULTS:-$REPO/build/results}
mkdir -p "$RESULTS"
RESULTS=$(cd "$RESULTS" && pwd)
# Results of an earlier run would only mislead.
find "$RESULTS" -mindepth 1 -delete

names=() states=() notes=()
declare -A reasons=()
# record pass|fail|skip NAME [NOTE]
record() {
	names+=("$2")
	states+=("$1")
	notes+=("${3:-}")
	local tag
	case $1 in
	pass) tag=PASS ;;
	fail) tag=FAIL ;;
	*) tag=SKIP ;;
	esac
	printf '%s %s%s\n' "$tag" "$2" "${3:+ ($3)}" | tee -a "$RESULTS/results.txt"
}
say() { printf '\n=== %s (at %d s)\n' "$*" "$SECONDS"; }
has_kernel() {
	local k
	for k in "${KERNELS[@]}"; do [[ $k == "$1" ]] && return 0; done
	return 1
}
# step NAME LOG CMD...: run CMD with its output in LOG, record pass/fail,
# and show the end of LOG on failure.
step() {
	local name=$1 log=$2 rc=0
	shift 2
	"$@" >"$log" 2>&1 || rc=$?
	if ((rc == 0)); then
		record pass "$name"
	else
		record fail "$name" "exit $rc, log: ${log#"$REPO"/}"
		tail -n 40 "$log" | sed 's/^/    | /'
	fi
	return "$rc"
}

for k in "${KERNELS[@]}"; do
	[[ $k == stock || $k == debug ]] || {
		echo "check: unknown kernel '$k' in TCMU_KERNELS" >&2
		exit 2
	}
done

# --- 1. setup ------------------------------------------------------------
say "setup"
step "setup: stock" "$RESULTS/setup.log" "$VM/setup.sh" || true
if has_kernel debug; then
	step "setup: debug kernel" "$RESULTS/setup-debug.log" "$VM/setup.sh" --debug || true
fi

# --- 2. host tests -------------------------------------------------------
say "host tests"
mkdir -p "$RESULTS/host"
shopt -s nullglob
for t in "$TESTING"/host/*.sh; do
	[[ -x $t ]] || continue
	name=$(basename "$t" .sh)
	log=$RESULTS/host/$name.log
	rc=0
	timeout -k 30 "${TCMU_HOST_TIMEOUT:-1800}" "$t" >"$log" 2>&1 || rc=$?
	case $rc in
	0) record pass "host: $name" ;;
	4) record skip "host: $name" "$(sed -n 's/.*SKIP:[[:space:]]*//p' "$log" | tail -n 1 | cut -c1-150)" ;;
	*)
		record fail "host: $name" "exit $rc, log: ${log#"$REPO"/}"
		tail -n 40 "$log" | sed 's/^/    | /'
		;;
	esac
done
shopt -u nullglob

# --- 3. builds -----------------------------------------------------------
say "builds"
declare -A built=()
for k in "${KERNELS[@]}"; do
	bdir=$REPO/build/$k
	log=$RESULTS/build-$k.log
	# shellcheck source-path=SCRIPTDIR source=vm/common.sh
	if ! (. "$VM/common.sh" && rig_kernel "$k" && echo "$RIG_KDIR") >"$RESULTS/kdir-$k" 2>"$log"; then
		record fail "build: $k target_core_user.ko" "no $k kernel, log: ${log#"$REPO"/}"
		continue
	fi
	kdir=$(<"$RESULTS/kdir-$k")
	rm -f "$RESULTS/kdir-$k"
	rm -rf "$bdir"
	mkdir -p "$bdir"
	# shellcheck source-path=SCRIPTDIR source=vm/common.sh
	(. "$VM/common.sh" && rig_copy_module_sources "$bdir")
	if step "build: $k target_core_user.ko" "$log" make -C "$kdir" M="$bdir" modules; then
		if [[ -f $bdir/target_core_user.ko ]]; then
			built[$k]=1
		else
			record fail "build: $k target_core_user.ko exists" "make left no .ko"
		fi
	fi
done
for d in tcmu-handler selftests/tcmu; do
	[[ -f $TESTING/$d/Makefile ]] || continue
	step "build: $d" "$RESULTS/build-${d//\//-}.log" make -C "$TESTING/$d" || true
done

# --- 4. the rig's own self-test ------------------------------------------
if has_kernel stock; then
	say "rig self-test (stock)"
	step "rig: self-test (stock)" "$RESULTS/rig-selftest.log" \
		"$VM/rig-selftest.sh" --kernel stock --logdir "$RESULTS/rig-selftest" || true
fi

# --- 5. selftests in the VMs ---------------------------------------------
run_tests=$TESTING/selftests/tcmu/run_tests.sh
read -r -a wanted <<<"${TCMU_TESTS:-}"
for k in "${KERNELS[@]}"; do
	say "selftests on the $k kernel"
	if [[ ! -x $run_tests ]]; then
		record fail "$k: selftests" "${run_tests#"$REPO"/} missing"
		continue
	fi
	if [[ -z ${built[$k]:-} ]]; then
		record skip "$k: selftests" "the module did not build"
		continue
	fi
	out=$RESULTS/$k
	mkdir -p "$out"
	case $k in
	stock) limit=${TCMU_TIMEOUT_STOCK:-2400} ;;
	debug) limit=${TCMU_TIMEOUT_DEBUG:-3600} ;;
	esac
	# The whole console goes to console.log; show only the TAP lines live.
	mods=(--module "build/$k/target_core_user.ko")
	# The KUnit module exists only for kernels built with KUnit.
	if [[ -f build/$k/target_core_user_kunit.ko ]]; then
		mods+=(--module "build/$k/target_core_user_kunit.ko")
	fi
	set +e
	"$VM/run-vm.sh" --kernel "$k" "${mods[@]}" \
		--timeout "$limit" --outdir "$out" --log "$out/console.log" \
		-- "$run_tests" "${wanted[@]}" 2>"$out/run-vm.err" |
		grep --line-buffered -E '^(not )?ok [0-9]+' | sed -u "s/^/    $k: /"
	rc=${PIPESTATUS[0]}
	set -e
	cat "$out/run-vm.err"

	tap=$out/tap.txt
	planned=0 seen=0
	if [[ -f $tap ]]; then
		planned=$(sed -n 's/^1\.\.\([0-9][0-9]*\).*/\1/p' "$tap" | head -n 1)
		planned=${planned:-0}
		while IFS= read -r line; do
			if [[ $line =~ ^(not\ )?ok\ +[0-9]+\ *-?\ *(.*)$ ]]; then
				seen=$((seen + 1))
				rest=${BASH_REMATCH[2]}
				name=${rest%%#*}
				name=${name%"${name##*[![:space:]]}"}
				if [[ $rest =~ \#[[:space:]]*[Ss][Kk][Ii][Pp][[:space:]]*(.*)$ ]]; then
					record skip "$k: $name" "${BASH_REMATCH[1]}"
				elif [[ $line == ok* ]]; then
					record pass "$k: $name"
				else
					record fail "$k: $name" "log: ${out#"$REPO"/}/logs/$name.log"
					# The summary repeats why: a CI log keeps only its tail.
					reasons["$k: $name"]=$(grep -m 3 '^FAIL' \
						"$out/logs/$name.log" 2>/dev/null | cut -c1-200)
				fi
			fi
		done <"$tap"
	fi

	# The VM as a whole.
	why=''
	case $rc in
	124) why="timed out after $limit s" ;;
	126) why="rig failure (see console.log)" ;;
	esac
	[[ -z $why && ! -f $tap ]] && why="no tap.txt written"
	[[ -z $why ]] && ((seen < planned)) && why="only $seen of $planned planned results"
	[[ -z $why && $rc != 125 ]] && ((seen == 0)) && why="no results at all"
	if [[ -n $why ]]; then
		record fail "$k: vm finished" "$why; console: ${out#"$REPO"/}/console.log"
		tail -n 30 "$out/console.log" 2>/dev/null | sed 's/^/    | /'
	else
		record pass "$k: vm finished"
	fi
	if ((rc == 125)); then
		record fail "$k: kernel log clean" "kernel report on the console; see ${out#"$REPO"/}/console.log"
	else
		record pass "$k: kernel log clean"
	fi
done

# --- 6. summary ----------------------------------------------------------
pass=0 fail=0 skip=0
declare -A gp=() gf=() gs=()
groups=()
for i in "${!names[@]}"; do
	g=${names[$i]%%:*}
	[[ -n ${gp[$g]+x} ]] || {
		groups+=("$g")
		gp[$g]=0 gf[$g]=0 gs[$g]=0
	}
	case ${states[$i]} in
	pass) pass=$((pass + 1)) gp[$g]=$((gp[$g] + 1)) ;;
	fail) fail=$((fail + 1)) gf[$g]=$((gf[$g] + 1)) ;;
	*) skip=$((skip + 1)) gs[$g]=$((gs[$g] + 1)) ;;
	esac
done
say "summary (details: ${RESULTS#"$REPO"/}/results.txt)"
printf '%-10s %7s %7s %8s\n' group passed failed skipped
for g in "${groups[@]}"; do
	printf '%-10s %7d %7d %8d\n' "$g" "${gp[$g]}" "${gf[$g]}" "${gs[$g]}"
done
if ((fail)); then
	echo
	echo "failed:"
	for i in "${!names[@]}"; do
		[[ ${states[$i]} == fail ]] || continue
		echo "  ${names[$i]}${notes[$i]:+ (${notes[$i]})}"
		[[ -n ${reasons[${names[$i]}]:-} ]] &&
			sed 's/^/      /' <<<"${reasons[${names[$i]}]}"
	done
fi
if ((skip)); then
	echo
	echo "skipped:"
	for i in "${!names[@]}"; do
		[[ ${states[$i]} == skip ]] && echo "  ${names[$i]}${notes[$i]:+ (${notes[$i]})}"
	done
fi
echo
echo "$pass passed, $fail failed, $skip skipped"
((fail == 0))
exit 0
}
