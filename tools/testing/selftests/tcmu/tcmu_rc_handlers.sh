#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# timeout: 900
#
# Debian's tcmu-runner 1.5.4 serving three user backstores that targetcli
# creates, all exported through one tcm_loop target:
#
#   LUN 0  user:qcow  64 MiB qcow2 image (metadata preallocated)
#          random data at several offsets (aligned, unaligned, the last
#          MiB, an overwrite inside an earlier range) reads back byte for
#          byte; the image itself, converted to raw by qemu-img, holds the
#          same bytes at the same offsets; then mkfs.ext4, files written,
#          read back after a remount, and fsck -n finds it clean
#   LUN 1  user:zbc   64 MiB host-managed zoned disk, 4 MiB zones, 2
#          conventional: REPORT ZONES shows the layout; random data in a
#          conventional zone; sequential writes at a sequential zone's
#          write pointer read back and move it; a write off the write
#          pointer fails with the handler's ILLEGAL REQUEST / UNALIGNED
#          WRITE COMMAND sense; RESET WRITE POINTER empties the zone;
#          through the block layer too (blkzone, dd) when the kernel has
#          zoned block device support
#   LUN 2  user:fbo   32 MiB file-backed optical (MMC) unit: INQUIRY says
#          CD/DVD "VOPTA", READ CAPACITY 16384 blocks of 2048 bytes; data
#          written with WRITE(10) reads back through sg and through the sr
#          block device, and is in the backing file at the right offset
#
# Finally everything is deleted (targetcli clearconfig) and tcmu-runner
# must exit 0 with no configfs object, uio node or SCSI device left.

# shellcheck source=lib_rc.sh
. "$(dirname "$0")/lib_rc.sh"

rc_init
rc_require mkfs.ext4 fsck.ext4 mount umount sg_raw sg_rep_zones sg_reset_wp sg_sync blockdev split truncate

QCOW=$RC_WORK/rcq0.qcow2
ZBC=$RC_WORK/rcz0.zbc
FBO=$RC_WORK/rco0.img
WWN=$(rc_loop_wwn 1)
MIB=$((1 << 20))

rc_dbus_start || tcmu_finish
rc_runner_start || tcmu_finish

rc_section "targetcli: three backstores, one tcm_loop target"
check_true "qemu-img creates a 64 MiB qcow2 image" rc_qcow_image "$QCOW" 64M || tcmu_finish
# The optical handler reads past the end of a short file as an error.
truncate -s 32M "$FBO"
rc_q_user rcq0 qcow 64M "$QCOW"
rc_q_user rcz0 zbc 64M "model-HM/zsize-4/conv-2@$ZBC"
rc_q_user rco0 fbo 32M "$FBO"
rc_q_loop "$WWN"
rc_q_loop_lun "$WWN" /backstores/user:qcow/rcq0 0
rc_q_loop_lun "$WWN" /backstores/user:zbc/rcz0 1
rc_q_loop_lun "$WWN" /backstores/user:fbo/rco0 2
check_true "targetcli creates user:qcow, user:zbc, user:fbo and a tcm_loop target with 3 LUNs" \
	rc_tcli_run || tcmu_finish

for so in "rcq0 qcow/$QCOW" "rcz0 zbc/model-HM/zsize-4/conv-2@$ZBC" "rco0 fbo/$FBO"; do
	name=${so%% *}
	cfg=${so#* }
	dir=$(rc_so_dir "$name")
	if [ -z "$dir" ]; then
		fail "configfs: no user_*/$name"
		continue
	fi
	check_eq "configfs: $name enabled" 1 "$(tcmu_value "$dir/enable")"
	check_eq "configfs: $name dev_config" "$cfg" "$(tcmu_value "$dir/attrib/dev_config")"
	hba=${dir%/*}
	hba=${hba##*/user_}
	uio=$(tcmu_find_uio "$(tcmu_uio_name "$hba" "$name" "$cfg")")
	check_match "$name has its uio device" '^uio[0-9]+$' "$uio"
done

# ---------------------------------------------------------------------------
rc_section "qcow: data through /dev/sdX"
if ! rc_loop_dev "$WWN" 0; then
	fail "qcow: no SCSI disk for LUN 0"
	rc_runner_log_tail 20
	tcmu_finish
fi
QDISK=/dev/$RC_BLK
tcmu_log "qcow LUN is $RC_HCTL $QDISK $RC_SG"
check_eq "qcow: capacity seen by the initiator" $((64 * MIB)) "$(blockdev --getsize64 "$QDISK")"

# Ranges: aligned, unaligned to the 64 KiB cluster, the last MiB.
rc_random "$RC_WORK/a" $((4 * MIB))
rc_random "$RC_WORK/b" $((192 << 10))
rc_random "$RC_WORK/c" $((1 * MIB))
rc_random "$RC_WORK/d" $((8 << 10))
OFF_A=0
OFF_B=$((13 * MIB + 4096))
OFF_C=$((63 * MIB))
OFF_D=$((1 * MIB + 512))
check_true "qcow: write 4 MiB at 0" rc_dd_write "$QDISK" "$RC_WORK/a" $OFF_A
check_true "qcow: write 192 KiB at 13 MiB + 4 KiB" rc_dd_write "$QDISK" "$RC_WORK/b" $OFF_B 4096
check_true "qcow: write the last MiB" rc_dd_write "$QDISK" "$RC_WORK/c" $OFF_C
check_true "qcow: overwrite 8 KiB at 1 MiB + 512 inside the first range" \
	rc_dd_write "$QDISK" "$RC_WORK/d" $OFF_D 512
cp "$RC_WORK/a" "$RC_WORK/a2"
dd if="$RC_WORK/d" of="$RC_WORK/a2" bs=512 seek=$((OFF_D / 512)) conv=notrunc status=none
rc_check_data "qcow: first 4 MiB read back (with the overwrite)" "$QDISK" "$RC_WORK/a2" $OFF_A
rc_check_data "qcow: unaligned range reads back" "$QDISK" "$RC_WORK/b" $OFF_B 4096
rc_check_data "qcow: last MiB reads back" "$QDISK" "$RC_WORK/c" $OFF_C
check_true "qcow: SYNCHRONIZE CACHE" sg_sync "$QDISK"

# The handler really wrote the image: qemu-img reads it independently.
if qemu-img convert -U -f qcow2 -O raw "$QCOW" "$RC_WORK/raw" 2> "$RC_WORK/convert.err"; then
	ok=1
	for r in "a2 $OFF_A" "b $OFF_B" "c $OFF_C"; do
		f=$RC_WORK/${r%% *}
		o=${r#* }
		cmp -s "$f" <(dd if="$RC_WORK/raw" bs=4096 skip=$((o / 4096)) \
			count=$(($(rc_file_size "$f") / 4096)) status=none) || ok=
	done
	check_eq "qcow: qemu-img reads the same bytes from the image file" 1 "$ok"
	rm -f "$RC_WORK/raw"
else
	fail "qemu-img convert of the live image failed: $(head -n 2 "$RC_WORK/convert.err")"
fi

rc_section "qcow: ext4"
MNT=$RC_WORK/mnt
mkdir -p "$MNT" "$RC_WORK/src"
rc_random "$RC_WORK/src/big" $(($(rc_scale 4 1) * MIB))
head -c $((32 * 7919)) /dev/urandom | split -b 7919 -a 2 - "$RC_WORK/src/small."
(cd "$RC_WORK/src" && md5sum ./*) > "$RC_WORK/sums"
check_true "mkfs.ext4 on the qcow disk" mkfs.ext4 -q -F -E nodiscard "$QDISK"
if check_true "mount" mount -t ext4 "$QDISK" "$MNT"; then
	RC_MOUNTS+=("$MNT")
	check_true "copy files onto it" cp "$RC_WORK/src/"* "$MNT/"
	check_true "umount" umount "$MNT"
	echo 3 > /proc/sys/vm/drop_caches
	check_true "mount again" mount -t ext4 -o ro "$QDISK" "$MNT"
	check_true "every file reads back identical" \
		bash -c "cd '$MNT' && md5sum --quiet -c '$RC_WORK/sums'"
	check_true "umount again" umount "$MNT"
	RC_MOUNTS=()
fi
out=$(fsck.ext4 -f -n "$QDISK" 2>&1)
check_eq "fsck.ext4 -f -n finds the file system clean" 0 $? ||
	printf '%s\n' "$out" | tail -n 8 | sed 's/^/#   /'

# ---------------------------------------------------------------------------
rc_section "zbc: host-managed zoned disk"

# zones SG [START-LBA [COUNT]]: one "start len wp type cond" line per zone
# (decimal), from REPORT ZONES' raw answer.
zones()
{
	sg_rep_zones --raw --start="${2:-0}" "/dev/$1" 2> /dev/null | "$TCMU_PYTHON" -S -c '
import sys
d = sys.stdin.buffer.read()
n = int.from_bytes(d[0:4], "big") // 64
for i in range(n):
    z = d[64 + 64 * i: 128 + 64 * i]
    if len(z) < 64:
        break
    print(int.from_bytes(z[16:24], "big"), int.from_bytes(z[8:16], "big"),
          int.from_bytes(z[24:32], "big"), z[0] & 15, z[1] >> 4)
' | head -n "${3:-1000}"
}

# sense_of OUTPUT: "KEY/ASC/ASCQ" from sg_raw -v's raw sense bytes.
sense_of()
{
	printf '%s\n' "$1" | awk '
		/Raw sense data/ { on = 1; next }
		on && /^[[:space:]]+([0-9a-f][0-9a-f][[:space:]]*)+$/ {
			for (i = 1; i <= NF; i++) b[n++] = tolower($i); next }
		{ on = 0 }
		END {
			if (b[0] == "70" || b[0] == "71") printf "%s/%s/%s\n", substr(b[2], 2, 1), b[12], b[13]
			else if (b[0] == "72" || b[0] == "73") printf "%s/%s/%s\n", substr(b[1], 2, 1), b[2], b[3]
		}'
}

# Peripheral device type 20 (0x14): host-managed zoned.
if rc_loop_sg zbc "$WWN" 1 20; then
	ZSG=$RC_SG
	ZBLK=$RC_BLK
	cap=$(sg_readcap -l "/dev/$ZSG" 2>&1)
	check_match "zbc: READ CAPACITY(16) 131072 blocks of 512 bytes" \
		'Last LBA=131071 .*Logical block length=512 bytes' "$(printf '%s' "$cap" | tr '\n' ' ')"
	zl=$(zones "$ZSG")
	check_eq "zbc: REPORT ZONES lists 16 zones" 16 "$(printf '%s\n' "$zl" | grep -c .)"
	check_eq "zbc: zones 0-1 conventional, 2-15 sequential-write-required and empty" \
		"1:0 1:0 $(printf '2:1 %.0s' {1..14})" \
		"$(printf '%s\n' "$zl" | awk '{ printf "%s:%s ", $4, $5 }')"
	check_eq "zbc: zone 2 starts at LBA 16384 with 8192 blocks, write pointer at its start" \
		"16384 8192 16384" "$(printf '%s\n' "$zl" | sed -n 3p | cut -d' ' -f1-3)"

	# Conventional zone: any LBA.
	rc_random "$RC_WORK/zc" $((256 << 10))
	check_true "zbc: 256 KiB written at LBA 100 of a conventional zone" \
		rc_sg_write "$ZSG" "$RC_WORK/zc" 100 512
	rc_sg_read "$ZSG" "$RC_WORK/zc.back" 100 512 512 &&
		check_true "zbc: conventional zone data reads back" cmp "$RC_WORK/zc" "$RC_WORK/zc.back"

	# Sequential zone 2: writes at the write pointer.
	rc_random "$RC_WORK/zs" $((1 * MIB))
	check_true "zbc: RESET WRITE POINTER of zone 2" sg_reset_wp --zone=16384 "/dev/$ZSG"
	check_true "zbc: 1 MiB written sequentially from zone 2's write pointer" \
		rc_sg_write "$ZSG" "$RC_WORK/zs" 16384 512
	check_eq "zbc: zone 2's write pointer moved by 2048 blocks, zone implicitly open" \
		"18432 2 2" "$(zones "$ZSG" 16384 1 | awk '{ print $3, $4, $5 }')"
	rc_sg_read "$ZSG" "$RC_WORK/zs.back" 16384 2048 512 &&
		check_true "zbc: sequential zone data reads back" cmp "$RC_WORK/zs" "$RC_WORK/zs.back"
	rc_sg_read "$ZSG" "$RC_WORK/zz" 18432 64 512 &&
		check_true "zbc: blocks past the write pointer read as zeroes" \
			cmp "$RC_WORK/zz" <(head -c $((64 * 512)) /dev/zero)
	head -c 512 /dev/urandom > "$RC_WORK/blk"
	out=$(sg_raw -v -s 512 -i "$RC_WORK/blk" "/dev/$ZSG" 2a 00 00 00 40 00 00 00 01 00 2>&1)
	check_eq "zbc: a write off the write pointer fails with ILLEGAL REQUEST, UNALIGNED WRITE COMMAND" \
		5/21/04 "$(sense_of "$out")"
	check_eq "zbc: the refused write left the write pointer alone" \
		18432 "$(zones "$ZSG" 16384 1 | cut -d' ' -f3)"
	check_true "zbc: RESET WRITE POINTER of zone 2 again" sg_reset_wp --zone=16384 "/dev/$ZSG"
	check_eq "zbc: zone 2 empty again" "16384 1" "$(zones "$ZSG" 16384 1 | awk '{ print $3, $5 }')"
	rc_sg_read "$ZSG" "$RC_WORK/zz" 16384 64 512 &&
		check_true "zbc: a reset zone reads as zeroes" \
			cmp "$RC_WORK/zz" <(head -c $((64 * 512)) /dev/zero)

	# The block layer's view (sd_zbc), when the kernel has it.
	if [ -n "$ZBLK" ] && command -v blkzone > /dev/null; then
		check_eq "zbc: /sys/block/$ZBLK/queue/zoned" host-managed \
			"$(tcmu_value "/sys/block/$ZBLK/queue/zoned")"
		check_eq "zbc: blkzone report lists 16 zones" 16 \
			"$(blkzone report "/dev/$ZBLK" | grep -c 'start:')"
		check_true "zbc: blkzone reset of zone 3" blkzone reset -o 24576 -c 1 "/dev/$ZBLK"
		rc_random "$RC_WORK/zb" $((512 << 10))
		check_true "zbc: dd (O_DIRECT) 512 KiB at zone 3's start" \
			rc_dd_write "/dev/$ZBLK" "$RC_WORK/zb" $((24576 * 512))
		check_match "zbc: blkzone shows zone 3's write pointer 1024 sectors in" \
			'wptr 0x0*400 ' "$(blkzone report -o 24576 -c 1 "/dev/$ZBLK")"
		rc_check_data "zbc: block-layer data reads back" "/dev/$ZBLK" "$RC_WORK/zb" $((24576 * 512))
	elif [ -z "$ZBLK" ]; then
		tcmu_log "zbc: no block device (kernel without CONFIG_BLK_DEV_ZONED?): block-layer part not run"
		if grep -qs '^CONFIG_BLK_DEV_ZONED=y' "/boot/config-$(uname -r)" ||
			{ [ -r /proc/config.gz ] && zcat /proc/config.gz | grep -q '^CONFIG_BLK_DEV_ZONED=y'; }; then
			fail "zbc: the kernel supports zoned block devices, yet sd did not attach the LUN"
		fi
	fi
fi

# ---------------------------------------------------------------------------
rc_section "fbo: optical unit"
# Peripheral device type 5: CD/DVD.
if rc_loop_sg fbo "$WWN" 2 5; then
	OSG=$RC_SG
	OBLK=$RC_BLK
	inq=$(sg_inq "/dev/$OSG" 2>&1)
	check_match "fbo: INQUIRY from the handler (LIO-ORG VOPTA, removable)" \
		'Vendor identification: LIO-ORG.*Product identification: VOPTA' "$(printf '%s' "$inq" | tr '\n' ' ')"
	check_match "fbo: INQUIRY says removable medium" 'RMB=1' "$(printf '%s' "$inq" | tr '\n' ' ')"
	cap=$(sg_readcap "/dev/$OSG" 2>&1)
	check_match "fbo: READ CAPACITY 16384 blocks of 2048 bytes" \
		'Last LBA=16383 .*Logical block length=2048 bytes' "$(printf '%s' "$cap" | tr '\n' ' ')"
	rc_random "$RC_WORK/o" $((512 << 10))
	check_true "fbo: WRITE(10) of 512 KiB at LBA 1000" rc_sg_write "$OSG" "$RC_WORK/o" 1000 2048
	rc_sg_read "$OSG" "$RC_WORK/o.back" 1000 256 2048 &&
		check_true "fbo: READ(10) through sg returns it" cmp "$RC_WORK/o" "$RC_WORK/o.back"
	check_true "fbo: the backing file holds it at 1000 * 2048" \
		cmp "$RC_WORK/o" <(dd if="$FBO" bs=2048 skip=1000 count=256 status=none)
	if [ -n "$OBLK" ]; then
		check_eq "fbo: $OBLK capacity" $((32 * MIB)) "$(blockdev --getsize64 "/dev/$OBLK")"
		rc_check_data "fbo: the same data through the sr block device" \
			"/dev/$OBLK" "$RC_WORK/o" $((1000 * 2048))
	else
		fail "fbo: no sr block device"
	fi
fi

check_true "tcmu-runner still running" rc_runner_alive
rc_teardown
tcmu_finish
