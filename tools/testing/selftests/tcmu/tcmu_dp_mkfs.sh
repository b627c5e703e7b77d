#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# timeout: 240
#
# A file system on the user device, every step checked: mkfs.ext4, mount,
# write a large random file, many small files and a directory tree,
# unmount, drop the page cache, mount again, compare everything with the
# originals, unmount, and fsck -n must find the file system clean.

# shellcheck source=lib_dp.sh
. "$(dirname "$0")/lib_dp.sh"

dp_init
dp_require mkfs.ext4 fsck.ext4 mount umount cmp sha256sum split

MNT=$DP_WORK/mnt
SRC=$DP_WORK/src
BLOB_MB=$(dp_scale 8 2)
NFILES=$(dp_scale 64 16)
mkdir -p "$MNT" "$SRC/tree/a/b/c"

# The originals: one large file, small files of varied sizes, a tree.
head -c $((BLOB_MB << 20)) /dev/urandom > "$SRC/blob"
# (split makes them in one go: forking is slow in the guest)
head -c $((NFILES * 7919 - 1234)) /dev/urandom | split -b 7919 -a 3 - "$SRC/small."
echo "hello from tcmu" > "$SRC/tree/a/b/c/hello.txt"
ln -s a/b/c/hello.txt "$SRC/tree/link"
(cd "$SRC" && find . -type f -print0 | sort -z | xargs -0 sha256sum) > "$DP_WORK/sums"

# shellcheck disable=SC2317 # called through check_true
verify_sums()
{
	(cd "$MNT" && sha256sum --quiet -c "$DP_WORK/sums")
}

dp_create 68 dpfs "dev_size=$((256 << 20)),max_data_area_mb=32" || tcmu_finish
dp_handler_start || tcmu_finish
dp_export || tcmu_finish

dp_section mkfs
check_true "mkfs.ext4" mkfs.ext4 -q -F -E nodiscard "$DP_DISK" || tcmu_finish
check_true "mount" mount -t ext4 "$DP_DISK" "$MNT" || tcmu_finish
DP_MOUNTS+=("$MNT")
check_true "copy the files onto it" cp -a "$SRC/." "$MNT/"
check_true "sync" sync
written=$(dp_stat bytes_out)
check_true "the large file went through the ring (bytes_out ${written:-?})" \
	test "${written:-0}" -ge $((BLOB_MB << 20))
check_true "umount" umount "$MNT"

dp_section remount
echo 3 > /proc/sys/vm/drop_caches
in0=$(dp_stat bytes_in)
check_true "mount again" mount -t ext4 "$DP_DISK" "$MNT" || tcmu_finish
check_true "the large file reads back identical" cmp "$SRC/blob" "$MNT/blob"
check_true "every file's checksum matches" verify_sums
check_eq "the symlink survived" "a/b/c/hello.txt" "$(readlink "$MNT/tree/link")"
check_eq "file count" "$(find "$SRC" | wc -l)" "$(find "$MNT" -path "$MNT/lost+found" -prune -o -print | wc -l)"
in1=$(dp_stat bytes_in)
check_true "the data came from the device, not the page cache (bytes_in +$((in1 - in0)))" \
	test $((in1 - in0)) -ge $((BLOB_MB << 20))
check_true "umount again" umount "$MNT"

dp_section fsck
fsck_out=$(fsck.ext4 -f -n "$DP_DISK" 2>&1)
fsck_rc=$?
check_eq "fsck.ext4 -f -n finds the file system clean" 0 "$fsck_rc" ||
	printf '%s\n' "$fsck_out" | tail -n 10 | sed 's/^/#   /'
check_true "handler still running" dp_handler_alive
dp_show_stats

dp_teardown
tcmu_finish
