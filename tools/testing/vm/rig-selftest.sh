#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Prove that the VM rig reports what it claims to report.
#
# Usage: rig-selftest.sh [--kernel stock|debug]... [--logdir DIR]
#
# First, without booting anything, feeds splat-scan.sh real-looking kernel
# reports (each must be caught) and benign boot lines (none may be).  Then,
# for each kernel (default: stock), boots it four times through run-vm.sh:
#   clean    "true" exits 0, with no kernel report on a clean boot
#   status   "exit 3" comes back as 3; the command ran in the caller's
#            directory, wrote to $TCMU_OUT on the host, and a --module
#            landed in /lib/modules/<krel>/updates/
#   oops     "echo c > /proc/sysrq-trigger" panics the guest: exit 125
#   report   "echo l > /proc/sysrq-trigger" prints a stack dump but the
#            command succeeds; with --expect-splat that is exit 0
# Prints TAP and exits 0 only if every check held.  The console logs are
# kept in --logdir (default: a temporary directory, named at the end).

set -euo pipefail

# The rest of the script is one brace group: bash reads it whole before
# running any of it, so a checkout or an edit of this file while it runs
# (it may run for a long time) cannot make bash execute a half-read line.
{

RIG_NAME=rig-selftest
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

kernels=() logdir=''
while (($#)); do
	case $1 in
	--kernel)
		kernels+=("${2:?--kernel needs an argument}")
		shift 2
		;;
	--logdir)
		logdir=${2:?--logdir needs an argument}
		shift 2
		;;
	-h | --help)
		sed -n '4,/^$/s/^# \{0,1\}//p' "$0"
		exit 0
		;;
	*) rig_die "unknown argument '$1' (try --help)" ;;
	esac
done
((${#kernels[@]})) || kernels=(stock)
if [[ -n $logdir ]]; then
	mkdir -p "$logdir"
else
	logdir=$(mktemp -d "${TMPDIR:-/tmp}/rig-selftest.XXXXXX")
fi
logdir=$(cd "$logdir" && pwd)

n=0 failed=0
ok() {
	n=$((n + 1))
	echo "ok $n - $*"
}
not_ok() {
	n=$((n + 1))
	failed=$((failed + 1))
	echo "not ok $n - $*"
}
# check DESCRIPTION COMMAND...: one TAP line for a command's success.
check() {
	local what=$1
	shift
	if "$@"; then ok "$what"; else not_ok "$what"; fi
}

# --- splat-scan.sh without a VM -------------------------------------------

scan=$RIG_VM_DIR/splat-scan.sh
reports=(
	'[   12.345678] WARNING: CPU: 1 PID: 42 at drivers/target/target_core_user.c:123 tcmu_foo+0x1/0x2 [target_core_user]'
	'[   12.345678][ T1234] WARNING: CPU: 0 PID: 1234 at kernel/foo.c:1 bar+0x0/0x1'
	'[    1.000000] BUG: kernel NULL pointer dereference, address: 0000000000000008'
	'[    1.000000] BUG: KASAN: slab-use-after-free in tcmu_bar+0x10/0x20 [target_core_user]'
	'[    1.000000] BUG: sleeping function called from invalid context at mm/slab.h:1'
	'[    1.000000] BUG kmalloc-64 (Not tainted): Redzone overwritten'
	'[    1.000000] kernel BUG at drivers/target/target_core_user.c:99!'
	'[    1.000000] Oops: 0002 [#1] PREEMPT SMP NOPTI'
	'[    1.000000] invalid opcode: 0000 [#1] PREEMPT SMP KASAN'
	'[    1.000000] general protection fault, probably for non-canonical address 0xdead000000000100: 0000 [#1] SMP'
	'[    1.000000] UBSAN: shift-out-of-bounds in drivers/target/target_core_user.c:10:20'
	'[    1.000000] WARNING: possible circular locking dependency detected'
	'[    1.000000] WARNING: possible recursive locking detected'
	'[    1.000000] WARNING: inconsistent lock state'
	'[    1.000000] WARNING: suspicious RCU usage'
	'[  240.000000] INFO: task tcmu-runner:123 blocked for more than 120 seconds.'
	'[   80.000000] watchdog: BUG: soft lockup - CPU#0 stuck for 63s! [fio:321]'
	'[   90.000000] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:'
	'[    1.000000] Kernel panic - not syncing: Fatal exception'
	'[    1.000000] Call Trace:'
	'[    1.000000]  <TASK>'$'\n''[    1.000000] Call Trace:'
	'some test output[    5.000000] BUG: unable to handle page fault for address: ffffffffc0001000'
	'TCMU-VM-CMD-START'$'\n''[  300.000000] kmemleak: 2 new suspected memory leaks (see /sys/kernel/debug/kmemleak)'
	'[  300.000000] kmemleak: 1 new suspected memory leaks (see /sys/kernel/debug/kmemleak)'
)
benign=(
	'[    0.000000] RETBleed: WARNING: Spectre v2 mitigation leaves CPU vulnerable to RETBleed attacks, data leaks possible!'
	'[    0.120000] kmemleak: Kernel memory leak detector initialized (mem pool available: 14879)'
	'[    0.120000] kmemleak: Automatic memory scanning thread started'
	'[    2.996279] kasan: KernelAddressSanitizer initialized'
	'[    0.000000] Kernel command line: console=ttyS0,115200 panic=-1 kasan.fault=report'
	'[    0.136366] 	RCU CPU stall warnings timeout set to 60 (rcu_cpu_stall_timeout).'
	'[    4.229899] rcu: 	RCU lockdep checking is enabled.'
	'[    1.107040] AMD-Vi: AMD IOMMUv2 functionality not available on this system - This is not a bug.'
	'[    0.793632] PCI: Using host bridge windows from ACPI; if necessary, use "pci=nocrs" and report a bug'
	'[    4.402764] INFO: NMI handler (nmi_cpu_backtrace_handler) took too long to run: 1.699 msecs'
	'WARNING: printed by a test, not by the kernel'
	'BUG: user space may print anything'
	'not ok 3 tcmu_foo # Call Trace: in a test name'
	'[   60.000000] kmemleak: 3 new suspected memory leaks (see /sys/kernel/debug/kmemleak)'$'\n''TCMU-VM-CMD-START'
)
bad=0
for r in "${reports[@]}"; do
	if ! printf '%s\n' "$r" | "$scan" >/dev/null; then
		echo "# missed: $r"
		bad=1
	fi
done
check "splat-scan.sh catches ${#reports[@]} kinds of kernel report" test "$bad" = 0
bad=0
for b in "${benign[@]}"; do
	if printf '%s\n' "$b" | "$scan" >/dev/null; then
		echo "# false alarm: $b"
		bad=1
	fi
done
check "splat-scan.sh ignores ${#benign[@]} benign lines" test "$bad" = 0

# --- boots -----------------------------------------------------------------

# vm NAME KERNEL [run-vm options] -- CMD...: run one boot, log to the log
# dir; sets $rc.
vm() {
	local name=$1 kernel=$2
	shift 2
	rc=0
	"$RIG_VM_DIR/run-vm.sh" --kernel "$kernel" --log "$logdir/$kernel-$name.log" "$@" \
		>/dev/null 2>"$logdir/$kernel-$name.err" || rc=$?
	echo "# $kernel/$name: exit $rc (log: $logdir/$kernel-$name.log)"
}
# Show why a boot check failed.
explain() {
	sed 's/^/#   /' "$logdir/$1.err"
	tail -n 15 "$logdir/$1.log" | sed 's/^/#   | /'
}

for k in "${kernels[@]}"; do
	if ! rig_kernel "$k"; then
		not_ok "$k: kernel available"
		continue
	fi
	case $k in
	stock) t=300 ;;
	*) t=1200 ;;
	esac

	vm clean "$k" --timeout "$t" -- true
	if ((rc == 0)); then ok "$k: clean run exits 0"; else
		not_ok "$k: clean run exits 0 (got $rc)"
		explain "$k-clean"
	fi

	# Any module of this kernel serves to test the updates/ override.
	mod=$(find "$RIG_MODROOT/lib/modules/$RIG_KREL/kernel" -name 'uio.ko' -o -name 'target_core_user.ko' | head -n 1)
	out=$logdir/$k-out
	rm -rf "$out"
	mkdir -p "$out"
	modargs=()
	[[ -n $mod ]] && modargs=(--module "$mod")
	# shellcheck disable=SC2016 # expanded in the guest
	vm status "$k" --timeout "$t" --outdir "$out" "${modargs[@]}" -- \
		sh -c 'pwd >"$TCMU_OUT/pwd"; uname -r >"$TCMU_OUT/uname";
			[ -z "$1" ] || modinfo -n "$1" >"$TCMU_OUT/modpath"; exit 3' \
		sh "$(basename "${mod:-}" .ko)"
	if ((rc == 3)); then ok "$k: exit status 3 comes back"; else
		not_ok "$k: exit status 3 comes back (got $rc)"
		explain "$k-status"
	fi
	check "$k: command ran in the caller's directory" \
		test "$(cat "$out/pwd" 2>/dev/null)" = "$(pwd -P)"
	check "$k: guest kernel is $RIG_KREL" \
		test "$(cat "$out/uname" 2>/dev/null)" = "$RIG_KREL"
	if [[ -n $mod ]]; then
		check "$k: --module $(basename "$mod") is found in updates/" \
			grep -q "^/lib/modules/$RIG_KREL/updates/$(basename "$mod")\$" "$out/modpath"
	fi

	vm oops "$k" --timeout "$t" -- \
		sh -c 'echo 1 >/proc/sys/kernel/sysrq; echo c >/proc/sysrq-trigger; sleep 30'
	if ((rc == 125)); then ok "$k: sysrq crash is reported as 125"; else
		not_ok "$k: sysrq crash is reported as 125 (got $rc)"
		explain "$k-oops"
	fi

	vm report "$k" --timeout "$t" --expect-splat -- \
		sh -c 'echo 1 >/proc/sys/kernel/sysrq; echo l >/proc/sysrq-trigger; sleep 2; exit 0'
	if ((rc == 0)); then ok "$k: stack dump from a successful command is caught (--expect-splat)"; else
		not_ok "$k: stack dump from a successful command is caught (--expect-splat; got $rc)"
		explain "$k-report"
	fi
done

echo "1..$n"
echo "# logs: $logdir"
if ((failed)); then
	echo "# $failed of $n checks FAILED"
	exit 1
fi
echo "# all $n checks passed"
exit 0
}
