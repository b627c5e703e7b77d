#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Stage two of the rig guest, PID 1 after switch_root.  run-vm.sh copies
# this file into the run's control share; the initramfs starts it as
#   /bin/bash /run/tcmu-rig/ctl/guest-init.sh
# on an overlay of the host root (9p, read-only) with a tmpfs upper layer.
#
# It reads /run/tcmu-rig/ctl/config (written by run-vm.sh), finishes the
# guest's file system (proc, sys, dev, tmpfs, configfs, debugfs, the output
# share, /lib/modules), installs the modules under test into updates/,
# runs the command, reports its status and powers off.
#
# Console markers, read by run-vm.sh:
#   TCMU-VM-CMD-START              the command is about to start
#   TCMU-VM-EXIT: <n>              the command exited with status n
#   TCMU-VM-INIT-FAILED: <why>     the guest could not be set up
#   TCMU-VM-KMEMLEAK-BASELINE ...  brackets the scan of boot-time leaks

set -euo pipefail
# ERR traps in functions too, for a precise failure message.
set -E

CTL=/run/tcmu-rig/ctl
HOST=/run/tcmu-rig/host
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TERM=dumb LANG=C.UTF-8
umask 022
reported=0

power_off() {
	sync || true
	if [[ -x /bin/busybox ]]; then
		/bin/busybox poweroff -f || true
	fi
	# If the ACPI power-off did not end QEMU, try the sysrq path; PID 1
	# must never return, or the kernel panics.
	echo o >/proc/sysrq-trigger 2>/dev/null || true
	while :; do sleep 60; done
}

setup_failed() {
	echo "TCMU-VM-INIT-FAILED: guest-init.sh line $1: $2"
	reported=1
	power_off
}
trap 'setup_failed "$LINENO" "$BASH_COMMAND"' ERR
trap '((reported)) || echo "TCMU-VM-INIT-FAILED: guest-init.sh exited"; power_off' EXIT

# Values written by run-vm.sh: RIG_KIND, RIG_KREL, RIG_MODDIR (host path of
# the kernel's lib/modules), RIG_TRACE, RIG_KMEMLEAK_BASELINE, RIG_CWD,
# RIG_OUTDIR, RIG_CMD (array), RIG_ENV (array of NAME=VALUE to pass on).
# shellcheck source=/dev/null
. "$CTL/config"
# TCMU_VM_TRACE=1 on the host: trace this script with time stamps.
if [[ ${RIG_TRACE:-0} == 1 ]]; then
	PS4='+ ${EPOCHREALTIME} '
	set -x
fi

mnt() {
	local dir=${*: -1}
	mkdir -p "$dir"
	mount "$@"
}

# File systems the initramfs did not already provide.
mnt -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mnt -t tmpfs -o mode=1777,nosuid,nodev shm /dev/shm
mnt -t tmpfs -o mode=1777,nosuid,nodev tmp /tmp
mkdir -m 1777 /run/lock
mkdir -p /run/dbus /run/tcmu-rig/mods/upper /run/tcmu-rig/mods/work
ln -sfn /proc/self/fd /dev/fd
ln -sfn /proc/self/fd/0 /dev/stdin
ln -sfn /proc/self/fd/1 /dev/stdout
ln -sfn /proc/self/fd/2 /dev/stderr
mount -t debugfs debugfs /sys/kernel/debug
if [[ -d /sys/kernel/tracing ]]; then
	mount -t tracefs tracefs /sys/kernel/tracing || true
fi

# /lib/modules: the kernel's own tree from the cache (through the bare 9p
# mount, so it does not matter where the cache lives), under the modules
# being tested (updates/) and their index (modules.*), which run-vm.sh made
# with depmod on the host because a guest depmod over 4000 modules takes
# most of a minute under TCG.  The tmpfs upper layer keeps it writable
# (depmod, more modules) without touching the host.
lower=$HOST$RIG_MODDIR
[[ -d $CTL/modidx ]] && lower=$CTL/modidx:$lower
mnt -t overlay -o "lowerdir=$lower,upperdir=/run/tcmu-rig/mods/upper,workdir=/run/tcmu-rig/mods/work" \
	modules /lib/modules
[[ $(uname -r) == "$RIG_KREL" ]] ||
	echo "tcmu-vm: warning: booted $(uname -r), expected $RIG_KREL"
shopt -s nullglob
mods=("$CTL"/modules/*.ko)
if ((${#mods[@]})); then
	for m in "${mods[@]}"; do
		name=${m##*/}
		name=${name%.ko}
		where=$(modinfo -k "$RIG_KREL" -n "$name")
		if [[ $where != "/lib/modules/$RIG_KREL/updates/"* ]]; then
			echo "TCMU-VM-INIT-FAILED: modinfo -n $name gives $where, not updates/"
			reported=1
			power_off
		fi
		echo "tcmu-vm: $name -> $where"
	done
fi
shopt -u nullglob

# configfs is a module on the stock kernel; modprobe copes with built-ins.
modprobe configfs
mountpoint -q /sys/kernel/config || mount -t configfs configfs /sys/kernel/config

# Identity, loopback (the iSCSI tests use 127.0.0.1), no stray daemons: the
# D-Bus activation file would let any D-Bus call start a second
# tcmu-runner behind the tests' back.
echo tcmu-vm >/proc/sys/kernel/hostname
echo tcmu-vm >/etc/hostname
printf '127.0.1.1\ttcmu-vm\n' >>/etc/hosts
ip link set lo up
rm -f /usr/share/dbus-1/system-services/org.kernel.TCMUService1.service

# The command's directory and the output directory live at their host
# paths.  Under a directory the guest covers with its own tmpfs, take the
# host's copy from the bare 9p mount (read-only).
case $RIG_CWD in
/tmp | /tmp/* | /run | /run/* | /dev/shm | /dev/shm/*)
	if [[ $RIG_CWD != "$RIG_OUTDIR" && $RIG_CWD != "$RIG_OUTDIR"/* ]]; then
		mnt --bind "$HOST$RIG_CWD" "$RIG_CWD"
	fi
	;;
esac
mnt -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=none tcmuout "$RIG_OUTDIR"

# kmemleak: report the leaks that exist before the command starts and then
# forget them, so the command is only blamed for its own.  run-vm.sh
# ignores kmemleak summaries printed before TCMU-VM-CMD-START.
kml=/sys/kernel/debug/kmemleak
if [[ -w $kml && ${RIG_KMEMLEAK_BASELINE:-1} != 0 ]]; then
	echo "TCMU-VM-KMEMLEAK-BASELINE begin"
	t0=$SECONDS
	if echo scan >"$kml" 2>/dev/null; then
		echo clear >"$kml" || true
	fi
	sleep 1
	echo "TCMU-VM-KMEMLEAK-BASELINE end ($((SECONDS - t0)) s)"
fi

env=(PATH="$PATH" HOME="$HOME" TERM="$TERM" LANG="$LANG"
	TCMU_OUT="$RIG_OUTDIR" TCMU_KERNEL="$RIG_KIND" TCMU_VM=1 "${RIG_ENV[@]}")
cd "$RIG_CWD"
echo "tcmu-vm: $(uname -r), up $(cut -d' ' -f1 /proc/uptime) s; running in $RIG_CWD: ${RIG_CMD[*]}"
echo "TCMU-VM-CMD-START"
trap - ERR
set +e
env -i "${env[@]}" "${RIG_CMD[@]}" </dev/null
rc=$?
set -e
echo "$rc" >"$CTL/exit"
sync
echo "TCMU-VM-EXIT: $rc"
# shellcheck disable=SC2034 # read by the EXIT trap should power_off return
reported=1
power_off
