#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Boot a rig kernel under QEMU (TCG) and run one command inside.
#
# Usage: run-vm.sh --kernel stock|debug [--module FILE.ko]... [--timeout SEC]
#                  [--mem MB] [--log FILE] [--outdir DIR] [--expect-splat]
#                  -- CMD [ARG]...
#
# The guest sees the host's root file system read-only with a private,
# writable tmpfs overlay on top, so the host's tools run unchanged.  CMD runs
# as root with standard input from /dev/null, in the caller's working
# directory, with a clean environment:
#   PATH, HOME=/root, TERM=dumb, LANG=C.UTF-8,
#   TCMU_OUT     a directory shared read-write with the host: --outdir, or
#                a fresh temporary directory (kept, and named at the end),
#                mounted in the guest at the same path as on the host,
#   TCMU_KERNEL  stock or debug,  TCMU_VM=1,
#   plus every TCMU_* variable and CI from the caller's environment.
# Each --module is copied to /lib/modules/$(uname -r)/updates/ and depmod
# runs, so "modprobe NAME" loads it rather than the kernel's own copy.
#
# The guest console (kernel messages and CMD's output) is streamed to
# standard output and, with --log, to FILE.
#
# Inside the guest: hostname tcmu-vm, loopback up (no other network),
# /proc, /sys, /dev (devtmpfs, pts, shm), /tmp and /run are the guest's
# own (tmpfs), configfs on /sys/kernel/config, debugfs on /sys/kernel/debug,
# /lib/modules is the booted kernel's tree from $TCMU_CACHE (writable,
# private), the bare read-only host root is also at /run/tcmu-rig/host.
# Nothing is running but CMD (no systemd, udev, dbus or tcmu-runner; the
# D-Bus activation file of tcmu-runner is removed).  A caller directory
# under /tmp or /run is bind-mounted from the host, read-only.
#
# Knobs (environment):
#   TCMU_SPLAT_IDLE=SEC          see exit status 125 below
#   TCMU_VM_TRACE=1              trace guest-init.sh (set -x, guest up-time)
#   TCMU_VM_KMEMLEAK_BASELINE=0  skip the kmemleak scan of boot-time leaks
#   TCMU_QEMU_MACHINE=TYPE       QEMU machine (default q35; "pc" makes the
#                                debug kernel spend 30 s per PCI device in
#                                ACPI _PRT evaluation)
#
# Exit status:
#   CMD's own status, when the kernel stayed quiet;
#   124  timeout (default 600 s stock, 1800 s debug); QEMU is killed;
#   125  the console shows a kernel report (see splat-scan.sh), even if CMD
#        succeeded; a guest that stays silent for $TCMU_SPLAT_IDLE seconds
#        (default 600, 0 = never) after a report is killed early;
#   126  rig failure: the guest never reported CMD's status (bad kernel,
#        initramfs or setup; see the console), or bad usage.
# A kernel report wins over a timeout (a hang after an oops gives 125).
# The offending console lines, or the last 50 lines after a timeout, are
# printed on standard error.
# With --expect-splat: 0 if a kernel report was seen, 1 otherwise.

set -euo pipefail

# The rest of the script is one brace group: bash reads it whole before
# running any of it, so a checkout or an edit of this file while it runs
# (it may run for a long time) cannot make bash execute a half-read line.
{

RIG_NAME="run-vm"
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
	sed -n '4,/^$/s/^# \{0,1\}//p' "$0"
	exit "$1"
}
bad_usage() {
	rig_msg "$*"
	exit 126
}

kind="" timeout="" mem="" log="" outdir="" expect_splat=0
modules=()
while (($#)); do
	case $1 in
	--kernel | --module | --timeout | --mem | --log | --outdir)
		(($# >= 2)) || bad_usage "$1 needs an argument"
		case $1 in
		--kernel) kind=$2 ;;
		--module) modules+=("$2") ;;
		--timeout) timeout=$2 ;;
		--mem) mem=$2 ;;
		--log) log=$2 ;;
		--outdir) outdir=$2 ;;
		esac
		shift 2
		;;
	--expect-splat)
		expect_splat=1
		shift
		;;
	--)
		shift
		break
		;;
	-h | --help) usage 0 ;;
	*) bad_usage "unknown argument '$1' (try --help)" ;;
	esac
done
(($#)) || bad_usage "no command given (... -- CMD [ARG]...)"
[[ -n $kind ]] || bad_usage "--kernel stock|debug is required"
rig_kernel "$kind" || exit 126
case $kind in
stock) : "${timeout:=600}" ;;
debug) : "${timeout:=1800}" ;;
esac
: "${mem:=$RIG_DEFMEM}"
[[ $timeout =~ ^[0-9]+$ && $mem =~ ^[0-9]+$ ]] || bad_usage "--timeout and --mem take numbers"
splat_idle=${TCMU_SPLAT_IDLE:-600}
for m in "${modules[@]}"; do
	[[ -f $m && $m == *.ko ]] || bad_usage "--module $m: no such .ko file"
done
[[ -r $RIG_KIMAGE ]] || bad_usage "kernel image $RIG_KIMAGE missing"
command -v qemu-system-x86_64 >/dev/null || bad_usage "qemu-system-x86_64 missing; run setup.sh"

initrd=$("$RIG_VM_DIR/mkinitramfs.sh" --kernel "$kind") || exit 126

# Everything of this run lives in $run; ctl/ is shared with the guest.
run=$(mktemp -d "${TMPDIR:-/tmp}/tcmu-vm.XXXXXX")
qpid="" spid=""
# shellcheck disable=SC2317 # called through the EXIT trap
cleanup() {
	[[ -n $qpid ]] && kill -9 "$qpid" 2>/dev/null
	[[ -n $spid ]] && kill "$spid" 2>/dev/null
	rm -rf "$run"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$run/ctl/modules"

own_outdir=0
if [[ -n $outdir ]]; then
	mkdir -p "$outdir"
	outdir=$(cd "$outdir" && pwd -P)
else
	outdir=$(mktemp -d "${TMPDIR:-/tmp}/tcmu-out.XXXXXX")
	own_outdir=1
fi
if [[ -n $log ]]; then
	mkdir -p "$(dirname "$log")"
	: >"$log"
else
	log=$run/console.log
fi
# Index the modules on the host: depmod over the kernel's whole tree takes
# 40 s under TCG but well under a second here.  The scratch tree links to
# the kernel's own directories and holds the modules under test in
# updates/.  Its result, updates/ and the new modules.* files, goes to
# ctl/modidx/<krel>/, which the guest lays over the kernel's tree as the
# top layer of its /lib/modules overlay.  Same kmod and /etc/depmod.d as
# the guest would use.
if ((${#modules[@]})); then
	src=$RIG_MODROOT/lib/modules/$RIG_KREL
	dst=$run/depmod/lib/modules/$RIG_KREL
	idx=$run/ctl/modidx/$RIG_KREL
	mkdir -p "$dst/updates" "$idx/updates"
	for e in "$src"/*; do
		case ${e##*/} in
		modules.order | modules.builtin | modules.builtin.modinfo) cp "$e" "$dst/" ;;
		modules.* | build | source) ;;
		updates) cp -r "$e/." "$dst/updates/" ;;
		*) ln -s "$e" "$dst/" ;;
		esac
	done
	cp "${modules[@]}" "$dst/updates/"
	depmod -b "$run/depmod" "$RIG_KREL" || bad_usage "depmod failed"
	cp "$dst"/modules.* "$idx/"
	cp "$dst"/updates/* "$idx/updates/"
	cp "${modules[@]}" "$run/ctl/modules/"
fi
cp "$RIG_VM_DIR/guest-init.sh" "$run/ctl/guest-init.sh"

# Pass-through environment: TCMU_* (minus what the rig sets) and CI.
passenv=()
while IFS= read -r name; do
	case $name in
	TCMU_OUT | TCMU_KERNEL | TCMU_VM) ;;
	*) passenv+=("$name=${!name}") ;;
	esac
done < <(compgen -e | grep -E '^(TCMU_[A-Za-z0-9_]*|CI)$' || true)

cwd=$(pwd -P)
{
	echo "RIG_KIND=$kind"
	printf 'RIG_KREL=%q\n' "$RIG_KREL"
	printf 'RIG_MODDIR=%q\n' "$RIG_MODROOT/lib/modules"
	printf 'RIG_TRACE=%q\n' "${TCMU_VM_TRACE:-0}"
	printf 'RIG_KMEMLEAK_BASELINE=%q\n' "${TCMU_VM_KMEMLEAK_BASELINE:-1}"
	printf 'RIG_CWD=%q\n' "$cwd"
	printf 'RIG_OUTDIR=%q\n' "$outdir"
	printf 'RIG_CMD=('
	printf ' %q' "$@"
	printf ' )\nRIG_ENV=('
	((${#passenv[@]} == 0)) || printf ' %q' "${passenv[@]}"
	printf ' )\n'
} >"$run/ctl/config"

# Kernel command line: serial console, every kernel message on it (no
# "quiet"), time stamps for splat-scan.sh, no reboot after a panic so QEMU
# (with -no-reboot) exits.  Lockup and stall detectors get more slack than
# usual because TCG on a busy host can starve a vCPU for several seconds.
# mitigations=off: page-table isolation and friends cost a lot under TCG
# and are irrelevant to the tests.
append="console=ttyS0,115200 panic=-1 printk.time=1 loglevel=7"
append+=" mitigations=off random.trust_cpu=on watchdog_thresh=30"
append+=" rcupdate.rcu_cpu_stall_timeout=60"
[[ $kind == debug ]] && append+=" kasan.fault=report"

console=$run/console
: >"$console"
p9="security_model=none,multidevs=remap"
# shellcheck disable=SC2054 # the commas belong to QEMU options
qemu=(qemu-system-x86_64 -machine "${TCMU_QEMU_MACHINE:-q35}" -nodefaults -no-user-config -nographic -no-reboot
	-accel tcg,thread=multi -smp 2 -cpu max -m "$mem"
	-kernel "$RIG_KIMAGE" -initrd "$initrd" -append "$append"
	-serial "file:$console" -monitor none
	-virtfs "local,path=/,mount_tag=hostroot,readonly=on,$p9"
	-virtfs "local,path=$run/ctl,mount_tag=tcmuctl,$p9"
	-virtfs "local,path=$outdir,mount_tag=tcmuout,$p9")

rig_msg "booting $kind kernel $RIG_KREL (${mem} MiB, timeout ${timeout} s)${modules[*]:+ with ${modules[*]}}"
start=$SECONDS
"${qemu[@]}" </dev/null >"$run/qemu.out" 2>&1 &
qpid=$!

# Stream the console: tail follows the file until QEMU is gone.  The serial
# line ends in CR LF, and the firmware clears the screen with escape codes.
clean='s/\r//g; s/\x1b\[[0-9;?]*[A-Za-z]//g; s/\x1bc//g'
{ tail -n +1 -s 0.2 -f --pid="$qpid" "$console" 2>/dev/null | sed -u "$clean" | tee -p -a "$log"; } &
spid=$!

timed_out=0 idle_kill=0 last_size=-1 last_change=$SECONDS splat_seen=0 next_scan=0
while kill -0 "$qpid" 2>/dev/null; do
	sleep 0.25
	now=$SECONDS
	if ((now - start >= timeout)); then
		timed_out=1
		break
	fi
	size=$(stat -c %s "$console")
	if ((size != last_size)); then
		last_size=$size
		last_change=$now
	fi
	# A kernel report may leave the guest hung; do not wait for the
	# full timeout once the console has gone quiet after one.
	if ((splat_idle > 0 && now >= next_scan)); then
		next_scan=$((now + 5))
		if ((!splat_seen)) && "$RIG_VM_DIR/splat-scan.sh" "$console" >/dev/null; then
			splat_seen=1
		fi
		if ((splat_seen && now - last_change >= splat_idle)); then
			idle_kill=1
			break
		fi
	fi
done
if ((timed_out || idle_kill)); then
	kill "$qpid" 2>/dev/null || true
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		kill -0 "$qpid" 2>/dev/null || break
		sleep 1
	done
	kill -9 "$qpid" 2>/dev/null || true
fi
qrc=0
wait "$qpid" || qrc=$?
qpid=
wait "$spid" 2>/dev/null || true
spid=
elapsed=$((SECONDS - start))

# The streamed copy is what the user saw; scan a fresh, complete copy.
sed "$clean" "$console" >"$run/console.clean"
# The log gets the complete console even if the stream was cut short.
cp "$run/console.clean" "$log"
rc=
if [[ -s $run/ctl/exit ]]; then
	rc=$(<"$run/ctl/exit")
else
	rc=$(sed -n 's/.*TCMU-VM-EXIT: \([0-9]\{1,3\}\).*/\1/p' "$run/console.clean" | tail -n 1)
fi
splat=0
if "$RIG_VM_DIR/splat-scan.sh" "$run/console.clean" >"$run/splats"; then
	splat=1
fi

echo >&2
# A temporary output directory the command left empty is of no interest.
if ((own_outdir)) && rmdir "$outdir" 2>/dev/null; then
	outdir="$outdir (empty, removed)"
fi
rig_msg "QEMU ran for ${elapsed} s (exit $qrc); TCMU_OUT was $outdir"
if [[ -s $run/qemu.out ]]; then
	rig_msg "QEMU said:"
	sed 's/^/  /' "$run/qemu.out" >&2
fi
if ((splat)); then
	rig_msg "kernel report(s) on the console:"
	head -n 40 "$run/splats" | sed 's/^/  /' >&2
fi
if ((timed_out)); then
	rig_msg "TIMEOUT after ${timeout} s; last 50 console lines:"
	tail -n 50 "$run/console.clean" | sed 's/^/  | /' >&2
elif ((idle_kill)); then
	rig_msg "guest silent for ${splat_idle} s after a kernel report; killed it"
fi

if ((expect_splat)); then
	if ((splat)); then
		rig_msg "kernel report detected, as expected"
		exit 0
	fi
	rig_msg "expected a kernel report, saw none"
	exit 1
fi
((splat)) && exit 125
((timed_out)) && exit 124
if [[ -z $rc ]]; then
	rig_msg "the guest never reported the command's exit status; last 50 console lines:"
	tail -n 50 "$run/console.clean" | sed 's/^/  | /' >&2
	exit 126
fi
rig_msg "command exited with status $rc"
exit "$rc"
}
