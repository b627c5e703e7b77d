#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Build (or reuse) the initramfs for one rig kernel and print its path.
#
# Usage: mkinitramfs.sh --kernel stock|debug [--force]
#
# The image holds a static busybox, the modules this kernel needs to reach
# the host's file system (virtio-pci, 9p, overlay; none for a kernel that
# has them built in) and a small /init that:
#   1. loads those modules,
#   2. mounts the host root read-only over 9p (tag "hostroot") and puts an
#      overlay with a tmpfs upper layer on top,
#   3. mounts a tmpfs on the new /run, the run's control share (tag
#      "tcmuctl", read-write) on /run/tcmu-rig/ctl and moves the bare host
#      root to /run/tcmu-rig/host,
#   4. switch_roots into the overlay and runs the control share's
#      guest-init.sh (a copy of tools/testing/vm/guest-init.sh) with the
#      host's bash.
# Anything that goes wrong prints "TCMU-VM-INIT-FAILED: ..." and powers the
# guest off, so run-vm.sh does not have to wait for its timeout.
#
# The result is $TCMU_CACHE/initramfs-<kernel id>.cpio.gz.  A stamp file
# next to it records a hash of this script, busybox and the kernel release;
# the image is rebuilt only when that hash changes (or with --force).

set -euo pipefail

RIG_NAME=mkinitramfs
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# What /init needs from the kernel, in load order; dependencies are added
# by modprobe --show-depends.
INIT_MODULES=(virtio_pci 9pnet_virtio 9p overlay)
BUSYBOX=/bin/busybox
APPLETS=(sh mount umount mkdir insmod switch_root poweroff sleep cat uname echo)

usage() {
	sed -n '4,/^$/s/^# \{0,1\}//p' "$0"
	exit "${1:-0}"
}

kind='' force=0
while (($#)); do
	case $1 in
	--kernel)
		kind=${2:?--kernel needs an argument}
		shift 2
		;;
	--force)
		force=1
		shift
		;;
	-h | --help) usage 0 ;;
	*) usage 2 >&2 ;;
	esac
done
[[ -n $kind ]] || usage 2 >&2
rig_kernel "$kind" || exit 1
[[ -x $BUSYBOX ]] || rig_die "$BUSYBOX missing (apt-get install busybox-static)"

out=$TCMU_CACHE/initramfs-$RIG_KID.cpio.gz
want=$({
	sha256sum "${BASH_SOURCE[0]}" "$BUSYBOX" | cut -d' ' -f1
	echo "$RIG_KREL $RIG_MODROOT"
} | sha256sum | cut -c1-16)

if ((!force)) && [[ -e $out && $(cat "$out.stamp" 2>/dev/null) == "$want" ]]; then
	echo "$out"
	exit 0
fi

mkdir -p "$TCMU_CACHE"
# Several run-vm.sh calls may race to rebuild the same image.
exec 8>"$TCMU_CACHE/.initramfs.lock"
flock 8
if ((!force)) && [[ -e $out && $(cat "$out.stamp" 2>/dev/null) == "$want" ]]; then
	echo "$out"
	exit 0
fi

stage=$(mktemp -d "$TCMU_CACHE/.initramfs-stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,dev,proc,sys,lower,upper,newroot,modules}
cp "$BUSYBOX" "$stage/bin/busybox"
for a in "${APPLETS[@]}"; do
	ln -s busybox "$stage/bin/$a"
done

# Resolve the module list with the kernel's own modules.dep.  A module the
# kernel has built in needs nothing; one that is missing altogether is only
# a warning here: if it really mattered, /init will say which mount failed.
order=()
declare -A seen=()
for m in "${INIT_MODULES[@]}"; do
	if ! deps=$(modprobe -d "$RIG_MODROOT" -S "$RIG_KREL" --show-depends "$m" 2>&1); then
		rig_msg "warning: $m: $deps"
		continue
	fi
	while read -r verb path _; do
		[[ $verb == insmod ]] || continue # "builtin NAME"
		[[ -n ${seen[$path]:-} ]] && continue
		seen[$path]=1
		cp "$path" "$stage/modules/"
		order+=("$(basename "$path")")
	done <<<"$deps"
done
printf '%s\n' "${order[@]}" >"$stage/modules/load-order"
echo "$RIG_KREL" >"$stage/modules/krel"

# /init runs under busybox ash, before the host's bash is reachable.
cat >"$stage/init" <<'EOF'
#!/bin/sh
# Stage one of the rig guest: reach the host root, then hand over.
PATH=/bin
export PATH

die() {
	echo "TCMU-VM-INIT-FAILED: $*"
	poweroff -f
	sleep 10
	echo o >/proc/sysrq-trigger
}

mount -t proc proc /proc || die "mount /proc"
mount -t sysfs sysfs /sys || die "mount /sys"
mount -t devtmpfs devtmpfs /dev || die "mount /dev"
exec </dev/console >/dev/console 2>&1

# Modules were picked for one release; a different kernel gets none.
if [ "$(uname -r)" = "$(cat /modules/krel)" ]; then
	for m in $(cat /modules/load-order); do
		insmod "/modules/$m" || die "insmod $m"
	done
fi

p9=trans=virtio,version=9p2000.L,msize=512000
mount -t 9p -o "ro,$p9,cache=loose" hostroot /lower || die "mount 9p hostroot"
mount -t tmpfs -o mode=0755 rootrw /upper || die "mount tmpfs for the overlay"
mkdir -p /upper/data /upper/work
mount -t overlay -o lowerdir=/lower,upperdir=/upper/data,workdir=/upper/work \
	rootfs /newroot || die "mount overlay root"
mount -t tmpfs -o mode=0755,nosuid,nodev run /newroot/run || die "mount /run"
mkdir -p /newroot/run/tcmu-rig/ctl /newroot/run/tcmu-rig/host
mount -t 9p -o "$p9,cache=none" tcmuctl /newroot/run/tcmu-rig/ctl ||
	die "mount 9p tcmuctl"
mount -o move /lower /newroot/run/tcmu-rig/host || die "move the host root"
for d in dev proc sys; do
	mount -o move "/$d" "/newroot/$d" || die "move /$d"
done
[ -x /newroot/bin/bash ] || die "no /bin/bash on the host root"
exec switch_root /newroot /bin/bash /run/tcmu-rig/ctl/guest-init.sh
die "switch_root failed"
EOF
chmod 755 "$stage/init"

(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -1) >"$out.tmp"
mv -f "$out.tmp" "$out"
echo "$want" >"$out.stamp"
rig_msg "built $out (${#order[@]} modules: ${order[*]:-none})"
echo "$out"
