#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Runs inside the VM (see demo.sh): one user device, served by our handler
# from RAM, exported through tcm_loop, with an ext4 filesystem on it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cfs=/sys/kernel/config/target
name=demo0
size=$((256 << 20))

step() { printf '\n=== %s\n' "$*"; }

step "load modules"
modprobe target_core_user
modprobe tcm_loop
modprobe sd_mod 2>/dev/null || true
echo "target_core_user: $(modinfo -n target_core_user)"

step "create and enable user_0/$name"
dev=$cfs/core/user_0/$name
mkdir -p "$dev"
echo "dev_size=$size,dev_config=demo/ram" > "$dev/control"
echo 1 > "$dev/enable"
cat "$dev/info"
uio=$(grep -l "^tcm-user/0/$name/" /sys/class/uio/uio*/name | head -n1)
uio=$(basename "$(dirname "$uio")")
echo "uio node: /dev/$uio ($(cat /sys/class/uio/"$uio"/name))"

step "start the handler"
"$here/tcmu-handler/tcmu-handler" --uio "/dev/$uio" --size "$size" &
handler=$!
sleep 1

step "export through tcm_loop"
wwn=naa.5001405000000001
tpg=$cfs/loopback/$wwn/tpgt_1
mkdir -p "$tpg/lun/lun_0"
echo naa.5001405000000002 > "$tpg/nexus"
ln -s "$dev" "$tpg/lun/lun_0/demo_link"
addr=$(cat "$tpg/address")
disk=
for _ in $(seq 50); do
	for b in /sys/class/scsi_device/"$addr":0/device/block/*; do
		[ -e "$b" ] && disk=/dev/$(basename "$b")
	done
	[ -n "$disk" ] && break
	sleep 0.2
done
[ -n "$disk" ] || { echo "no disk for $addr"; exit 1; }
echo "disk: $disk ($(cat /sys/block/"${disk#/dev/}"/size) sectors)"

step "mkfs.ext4, write, remount, read back"
mkfs.ext4 -q -F "$disk"
mkdir -p /mnt/demo
mount "$disk" /mnt/demo
head -c $((8 << 20)) /dev/urandom > /tmp/blob
cp /tmp/blob /mnt/demo/blob
echo "hello from tcmu" > /mnt/demo/hello.txt
umount /mnt/demo
echo 3 > /proc/sys/vm/drop_caches
mount "$disk" /mnt/demo
cmp /tmp/blob /mnt/demo/blob
cat /mnt/demo/hello.txt
umount /mnt/demo
fsck.ext4 -n "$disk"
grep -E '^(cmds|bytes_out|bytes_in) ' "$dev/attrib/stats" || true

step "tear down"
rm "$tpg/lun/lun_0/demo_link"
rmdir "$tpg/lun/lun_0"
rmdir "$tpg"
rmdir "$cfs/loopback/$wwn"
kill "$handler"
wait "$handler" || true
rmdir "$dev"
rmdir "$cfs/core/user_0"
echo "demo OK"
