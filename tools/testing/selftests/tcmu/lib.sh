#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Shared helpers for the target_core_user selftests.  Every tcmu_*.sh test
# sources this file.  Conventions:
#
#   - every check prints one "PASS: ..." or "FAIL: ..." line;
#   - tcmu_finish exits 0 when all checks passed, 1 otherwise (and also 1
#     when no check ran at all, so an empty test can never look green);
#   - tcmu_skip prints "SKIP: reason" and exits 4 (kselftest skip code);
#   - objects made through tcmu_mkdev / tcmu_mkhba are removed by an EXIT
#     trap, so a test that dies half way does not poison the next one.
#
# shellcheck disable=SC2034 # variables here are used by the sourcing tests

KSFT_PASS=0
KSFT_FAIL=1
KSFT_SKIP=4

TCMU_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TCMU_OUT=${TCMU_OUT:-/tmp/tcmu-out}
CONFIGFS=/sys/kernel/config
TARGET_CORE=$CONFIGFS/target/core
UIO_CLASS=/sys/class/uio
KMEMLEAK=/sys/kernel/debug/kmemleak

# Geometry defaults from the spec.
TCMU_DEF_MAX_DATA_AREA_MB=1024
TCMU_DEF_DATA_PAGES_PER_BLK=1
TCMU_DEF_CMD_RING_SIZE_MB=8
TCMU_CMDR_OFF=128
TCMU_MB=$((1024 * 1024))

TCMU_PASSES=0
TCMU_FAILS=0
TCMU_CLEANUP_DEVS=()
TCMU_CLEANUP_HBAS=()

if [ -z "${TCMU_PYTHON:-}" ]; then
	if [ -x /usr/bin/python3 ]; then
		TCMU_PYTHON=/usr/bin/python3
	else
		TCMU_PYTHON=python3
	fi
fi

# ---------------------------------------------------------------------------
# Reporting

tcmu_log()
{
	echo "# $*"
}

pass()
{
	TCMU_PASSES=$((TCMU_PASSES + 1))
	echo "PASS: $*"
}

fail()
{
	TCMU_FAILS=$((TCMU_FAILS + 1))
	echo "FAIL: $*"
}

# Exit now with a failure: for broken preconditions that make every
# following check meaningless.
tcmu_fatal()
{
	fail "$*"
	tcmu_finish
}

tcmu_skip()
{
	echo "SKIP: $*"
	exit "$KSFT_SKIP"
}

tcmu_finish()
{
	echo "# summary: $TCMU_PASSES passed, $TCMU_FAILS failed"
	if [ "$TCMU_FAILS" -ne 0 ]; then
		exit "$KSFT_FAIL"
	fi
	if [ "$TCMU_PASSES" -eq 0 ]; then
		echo "FAIL: no check ran"
		exit "$KSFT_FAIL"
	fi
	exit "$KSFT_PASS"
}

# Show a value on one line, with control characters made visible; very
# long values are cut short.
tcmu_show()
{
	if [ ${#1} -gt 300 ]; then
		printf '%q...(%d bytes)' "${1:0:60}" ${#1}
	else
		printf '%q' "$1"
	fi
}

# check_eq DESCRIPTION EXPECTED ACTUAL
check_eq()
{
	if [ "$2" == "$3" ]; then
		pass "$1"
		return 0
	fi
	fail "$1: expected $(tcmu_show "$2"), got $(tcmu_show "$3")"
	return 1
}

# check_ne DESCRIPTION UNEXPECTED ACTUAL
check_ne()
{
	if [ "$2" != "$3" ]; then
		pass "$1"
		return 0
	fi
	fail "$1: got the unexpected value $(tcmu_show "$3")"
	return 1
}

# check_match DESCRIPTION EXTENDED-REGEX ACTUAL (anchor the regex yourself)
check_match()
{
	if [[ "$3" =~ $2 ]]; then
		pass "$1"
		return 0
	fi
	fail "$1: $(tcmu_show "$3") does not match /$2/"
	return 1
}

# check_true DESCRIPTION COMMAND...: passes when COMMAND exits 0.
check_true()
{
	local desc=$1
	shift
	if "$@"; then
		pass "$desc"
		return 0
	fi
	fail "$desc (command failed: $*)"
	return 1
}

# check_false DESCRIPTION COMMAND...: passes when COMMAND exits non-zero.
check_false()
{
	local desc=$1
	shift
	if "$@"; then
		fail "$desc (command unexpectedly succeeded: $*)"
		return 1
	fi
	pass "$desc"
	return 0
}

# ---------------------------------------------------------------------------
# File access without forking an external program (the guest runs under
# TCG, where every exec costs a lot).

# tcmu_read VAR FILE: VAR gets the whole content of FILE, trailing newline
# included.  Returns 1 (VAR empty) when the file cannot be read.
tcmu_read()
{
	local -n _tcmu_out=$1
	_tcmu_out=
	[ -r "$2" ] || return 1
	IFS= read -r -d '' _tcmu_out < "$2" 2>/dev/null
	# read returns 1 on EOF without a NUL, which is the normal case; a real
	# read error leaves nothing to compare, so only the open matters here.
	return 0
}

# tcmu_value FILE: print FILE's content without its trailing newline.
tcmu_value()
{
	local v
	tcmu_read v "$1" || return 1
	printf '%s' "${v%$'\n'}"
}

# tcmu_write FILE STRING: hand STRING (no newline added) to the kernel in a
# single write(2), as the control file's all-or-nothing rule needs.
# Sets TCMU_ERR to "" on success or to the strerror text on failure, and
# returns 0 / 1 accordingly.
#
# bash's printf builtin costs no fork or exec (which count under TCG), but
# it flushes at every newline and every 4096 bytes, so it is only used for
# strings without a newline that fit in one buffer; anything else goes
# through dd, which collects the whole string first (iflag=fullblock).
# configfs itself takes at most 4095 bytes per write; dd writes the rest
# of a longer string in further calls, as any writer would.
TCMU_ERR=
tcmu_write()
{
	local out len err LC_ALL=C

	len=${#2}
	if [ "$len" -eq 0 ]; then
		TCMU_ERR="empty write not supported by tcmu_write"
		return 1
	fi
	if [ "$len" -le 4096 ] && [[ "$2" != *$'\n'* ]]; then
		err=${TMPDIR:-/tmp}/.tcmu-write.$BASHPID
		if { printf '%s' "$2" > "$1"; } 2> "$err"; then
			TCMU_ERR=
			return 0
		fi
		IFS= read -r out < "$err"
	elif out=$(printf '%s' "$2" |
		dd of="$1" bs="$len" count=1 iflag=fullblock status=none 2>&1); then
		TCMU_ERR=
		return 0
	fi
	TCMU_ERR=${out##*: }
	[ -n "$TCMU_ERR" ] || TCMU_ERR="unknown error"
	return 1
}

# check_write_ok DESCRIPTION FILE STRING
check_write_ok()
{
	if tcmu_write "$2" "$3"; then
		pass "$1"
		return 0
	fi
	fail "$1: writing $(tcmu_show "$3") to ${2#"$TARGET_CORE"/} failed: $TCMU_ERR"
	return 1
}

# check_write_err DESCRIPTION FILE STRING [ERRNO-TEXT]
# The write must fail, by default with EINVAL ("Invalid argument").
check_write_err()
{
	local want=${4:-Invalid argument}

	if tcmu_write "$2" "$3"; then
		fail "$1: writing $(tcmu_show "$3") to ${2#"$TARGET_CORE"/} succeeded, expected \"$want\""
		return 1
	fi
	if [ "$TCMU_ERR" != "$want" ]; then
		fail "$1: writing $(tcmu_show "$3") failed with \"$TCMU_ERR\", expected \"$want\""
		return 1
	fi
	pass "$1"
	return 0
}

# tcmu_wait_for TIMEOUT-SECONDS COMMAND...: poll COMMAND every 0.1 s.
tcmu_wait_for()
{
	local tries=$(($1 * 10))
	shift
	while ! "$@"; do
		tries=$((tries - 1))
		[ "$tries" -gt 0 ] || return 1
		tcmu_sleep 0.1
	done
	return 0
}

# tcmu_sleep SECONDS: sleep(1), or, once tcmu_sleep_init has run, the
# same without starting a program (under TCG every exec costs a lot): a
# read with a time limit on a FIFO that nobody writes to.
TCMU_SLEEP_FD=
tcmu_sleep()
{
	if [ -n "$TCMU_SLEEP_FD" ]; then
		read -r -t "$1" -u "$TCMU_SLEEP_FD" _
		return 0
	fi
	sleep "$1"
}

# tcmu_sleep_init DIR: make the FIFO for tcmu_sleep in DIR (opened for
# reading and writing, so the open does not wait for a writer).
tcmu_sleep_init()
{
	[ -n "$TCMU_SLEEP_FD" ] && return 0
	mkfifo "$1/tcmu-sleep" 2> /dev/null || return 0
	exec {TCMU_SLEEP_FD}<> "$1/tcmu-sleep"
}

# ---------------------------------------------------------------------------
# Environment

tcmu_require_root()
{
	[ "$(id -u)" -eq 0 ] || tcmu_skip "must run as root"
}

tcmu_mount_configfs()
{
	if [ ! -d "$CONFIGFS" ] || ! grep -qs " $CONFIGFS configfs " /proc/mounts; then
		modprobe configfs 2>/dev/null
		mount -t configfs none "$CONFIGFS" 2>/dev/null
	fi
	grep -qs " $CONFIGFS configfs " /proc/mounts ||
		tcmu_skip "configfs is not available (CONFIG_CONFIGFS_FS)"
}

# Load the target core; a kernel built without it is a skip, a core that is
# present but does not load is a failure.
tcmu_load_core()
{
	tcmu_mount_configfs
	if [ ! -d "$TARGET_CORE" ]; then
		modinfo target_core_mod > /dev/null 2>&1 ||
			[ -d /sys/module/target_core_mod ] ||
			tcmu_skip "target_core_mod is not available (CONFIG_TARGET_CORE)"
		modprobe target_core_mod ||
			tcmu_fatal "modprobe target_core_mod failed"
	fi
	[ -d "$TARGET_CORE" ] ||
		tcmu_fatal "$TARGET_CORE missing after loading target_core_mod"
}

tcmu_load_user()
{
	tcmu_load_core
	if [ ! -d /sys/module/target_core_user ]; then
		modprobe target_core_user ||
			tcmu_fatal "modprobe target_core_user failed"
	fi
}

# Standard prologue for tests that need the module loaded.
tcmu_setup()
{
	tcmu_require_root
	tcmu_load_user
	trap tcmu_cleanup EXIT
}

# ---------------------------------------------------------------------------
# Configfs objects

tcmu_hba_path()
{
	echo "$TARGET_CORE/user_$1"
}

tcmu_dev_path()
{
	echo "$TARGET_CORE/user_$1/$2"
}

# tcmu_mkhba HBA-NUMBER: create (or reuse) user_N; registered for cleanup.
tcmu_mkhba()
{
	local p
	p=$(tcmu_hba_path "$1")
	if [ ! -d "$p" ]; then
		mkdir "$p" || return 1
	fi
	TCMU_CLEANUP_HBAS+=("$p")
}

# tcmu_mkdev HBA NAME: create user_HBA/NAME (and the hba); registered for
# cleanup.  Prints nothing; the path is $(tcmu_dev_path HBA NAME).
tcmu_mkdev()
{
	local p
	tcmu_mkhba "$1" || return 1
	p=$(tcmu_dev_path "$1" "$2")
	mkdir "$p" || return 1
	TCMU_CLEANUP_DEVS+=("$p")
}

# Remove one device directory; returns the rmdir status.
tcmu_rmdev()
{
	[ -d "$1" ] || return 0
	rmdir "$1"
}

# Remove every device under one user_N hba, then the hba itself.
tcmu_rmhba()
{
	local d rc=0
	[ -d "$1" ] || return 0
	for d in "$1"/*/; do
		[ -d "$d" ] || continue
		rmdir "${d%/}" || rc=1
	done
	rmdir "$1" || rc=1
	return $rc
}

# EXIT trap: remove everything this test registered.
tcmu_cleanup()
{
	local p
	rm -f "${TMPDIR:-/tmp}/.tcmu-write.$$"
	for p in "${TCMU_CLEANUP_DEVS[@]}"; do
		[ -d "$p" ] && rmdir "$p"
	done
	for p in "${TCMU_CLEANUP_HBAS[@]}"; do
		[ -d "$p" ] && tcmu_rmhba "$p"
	done
	return 0
}

# Remove every user_* hba (and devices) no matter who made it.  Used by
# run_tests.sh between tests.  Prints what it had to remove.
tcmu_cleanup_all()
{
	local h d
	[ -d "$TARGET_CORE" ] || return 0
	for h in "$TARGET_CORE"/user_*; do
		[ -d "$h" ] || continue
		for d in "$h"/*/; do
			[ -d "$d" ] || continue
			echo "cleanup: removing leftover device ${d#"$TARGET_CORE"/}"
			rmdir "${d%/}"
		done
		echo "cleanup: removing leftover hba ${h#"$TARGET_CORE"/}"
		rmdir "$h"
	done
}

# tcmu_snapshot VAR DEVPATH: VAR gets info plus every readable attrib, one
# "name=value" per line, to compare the state before and after a write.
tcmu_snapshot()
{
	local -n _tcmu_snap=$1
	local f v
	tcmu_read v "$2/info"
	_tcmu_snap="info=$v"
	for f in "$2"/attrib/*; do
		[ -f "$f" ] || continue
		tcmu_read v "$f"
		_tcmu_snap+=$'\n'"${f##*/}=${v%$'\n'}"
	done
}

# Show what differs between two snapshots (for failure messages).
tcmu_snapshot_diff()
{
	diff <(printf '%s\n' "$1") <(printf '%s\n' "$2") | sed 's/^/#   /'
}

# tcmu_info_line VAR DEVPATH: VAR gets our own line of info (the part after
# the core's generic text), without its newline.
tcmu_info_line()
{
	local -n _tcmu_line=$1
	local v
	tcmu_read v "$2/info"
	v=${v%$'\n'}
	_tcmu_line=${v##*$'\n'}
	_tcmu_line=${_tcmu_line#"        "}
}

# ---------------------------------------------------------------------------
# UIO

# tcmu_uio_name HBA NAME [DEV_CONFIG]: the name the UIO device must carry.
tcmu_uio_name()
{
	if [ -n "${3:-}" ]; then
		echo "tcm-user/$1/$2/$3"
	else
		echo "tcm-user/$1/$2"
	fi
}

# tcmu_find_uio UIO-NAME: print every uioN whose name is exactly UIO-NAME.
tcmu_find_uio()
{
	local u n
	for u in "$UIO_CLASS"/uio*; do
		[ -e "$u/name" ] || continue
		tcmu_read n "$u/name" || continue
		if [ "${n%$'\n'}" == "$1" ]; then
			echo "${u##*/}"
		fi
	done
}

# List every UIO device that belongs to a tcm-user backstore.
tcmu_all_uio()
{
	local u n
	for u in "$UIO_CLASS"/uio*; do
		[ -e "$u/name" ] || continue
		tcmu_read n "$u/name" || continue
		case "$n" in
		tcm-user/*) echo "${u##*/} ${n%$'\n'}" ;;
		esac
	done
}

# Path of a C helper: prebuilt next to the scripts, in $TCMU_BIN_DIR, or
# built now into $TCMU_OUT/bin.
tcmu_helper()
{
	local name=$1 d
	for d in "${TCMU_BIN_DIR:-}" "$TCMU_DIR"; do
		if [ -n "$d" ] && [ -x "$d/$name" ] && [ "$d/$name" -nt "$TCMU_DIR/$name.c" ]; then
			echo "$d/$name"
			return 0
		fi
	done
	mkdir -p "$TCMU_OUT/bin" || return 1
	if ! make -s -C "$TCMU_DIR" OUTPUT="$TCMU_OUT/bin" "$TCMU_OUT/bin/$name" >&2; then
		echo "cannot build helper $name" >&2
		return 1
	fi
	echo "$TCMU_OUT/bin/$name"
}

# ---------------------------------------------------------------------------
# kmemleak

tcmu_kmemleak_available()
{
	[ -w "$KMEMLEAK" ]
}

# Run two scans, as kmemleak's documentation advises: an object that was
# merely in flight during the first scan is referenced again by the
# second one and drops out of the report.  kmemleak ignores objects
# younger than 5 s, so wait that long first.
tcmu_kmemleak_scan()
{
	sleep 6
	echo scan > "$KMEMLEAK" || return 1
	sleep 2
	echo scan > "$KMEMLEAK" || return 1
}

# Frames that tie a leaked object to the code under test: symbols of the
# target modules and uio, tcmu_/configfs_/uio_ functions, and bare
# addresses (the symbol of an unloaded module no longer resolves, and our
# modules are the ones that get unloaded here).
TCMU_KMEMLEAK_OURS='\[(target_core_[a-z]+|tcm_loop|uio)\]|[[:space:]](tcmu_|configfs_|uio_|target_core_|transport_)[A-Za-z0-9_]*\+0x|\][[:space:]]+0x[0-9a-f]+$'

# tcmu_kmemleak_report MAX-AGE-SECONDS OUR-VAR OTHER-VAR
# Read the current report and split the objects younger than MAX-AGE into
# those with a frame from the code under test (OUR-VAR, a count) and the
# others (OTHER-VAR).  Objects from the code under test count whatever
# their age.  Every counted object is printed.
tcmu_kmemleak_report()
{
	local maxage=$1
	local -n _ours=$2 _others=$3
	local report

	_ours=0
	_others=0
	report=$(cat "$KMEMLEAK") || return 1
	[ -n "$report" ] || return 0

	local counts
	counts=$(printf '%s\n' "$report" | awk -v maxage="$maxage" -v ours="$TCMU_KMEMLEAK_OURS" '
		function flush() {
			if (rec == "")
				return
			if (mine) {
				n_ours++
				printf "# kmemleak (code under test):\n%s", rec
			} else if (age >= 0 && age < maxage) {
				n_others++
				printf "# kmemleak (other):\n%s", rec
			}
			rec = ""
		}
		/^unreferenced object/ { flush(); mine = 0; age = -1 }
		{
			rec = rec "#   " $0 "\n"
			if (match($0, /\(age [0-9.]+s\)/))
				age = substr($0, RSTART + 5, RLENGTH - 7) + 0
			if ($0 ~ ours)
				mine = 1
		}
		END { flush(); printf "COUNTS %d %d\n", n_ours, n_others }')
	printf '%s\n' "$counts" | grep -v '^COUNTS '
	read -r _ _ours _others < <(printf '%s\n' "$counts" | grep '^COUNTS ')
	return 0
}
