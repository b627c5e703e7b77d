#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# timeout: 420
#
# Direct inspection of the command ring.  The device is served not by our
# C handler but by tcmu_ring_inspect.py, a small independent handler that
# checks every entry against the ring protocol in the design document:
# entry layout and length, PAD placement at the wrap, iovecs (inside the
# data area, block aligned, merged, never overlapping a held block, and
# exactly the blocks the documented allocation policy picks), CDB placement
# and cyclic cmd_ids.  Workload, through tcm_loop's /dev/sdX:
#
#   1. 64 KiB writes on a fresh data area: each must get one iovec;
#   2. 4 KiB writes the handler completes with KEEP_BUF until every block
#      of the 1 MiB data area is kept, after which the handler frees the
#      kept buffers on odd blocks: every other block is now free;
#   3. fio, 4 KiB and 64 KiB writes mixed, verified with crc32c, until the
#      1 MiB ring wrapped (twice, once on the debug kernel): 64 KiB
#      commands now get 16 single-block iovecs, the mix of entry sizes
#      forces PAD entries, and every byte read back must match.

# shellcheck source=lib_dp.sh
. "$(dirname "$0")/lib_dp.sh"

dp_init
dp_require fio dd cmp
command -v "$TCMU_PYTHON" > /dev/null || tcmu_skip "python3 is not installed"

INSPECT=$TCMU_DIR/tcmu_ring_inspect.py
SUMMARY=$DP_WORK/summary
ILOG=$DP_WORK/inspect.log
WRAPS=$(dp_scale 2 1)
KEEP_LBA=16384		# 8 MiB into the disk, in 512-byte sectors
KEEP_SECTORS=2048	# 256 x 4 KiB, one per data-area block
IPID=

summary()
{
	local k v
	while read -r k v; do
		[ "$k" == "$1" ] && { echo "$v"; return 0; }
	done < "$SUMMARY"
	echo 0
}

# summary_ge KEY N: the inspector's counter KEY is at least N (for polling)
# shellcheck disable=SC2317 # called through tcmu_wait_for
summary_ge()
{
	[ "$(summary "$1")" -ge "$2" ]
}

stop_inspector()
{
	[ -n "$IPID" ] || return 0
	kill -TERM "$IPID" 2>/dev/null
	wait "$IPID"
	IRC=$?
	IPID=
}

dp_create 72 ringinsp "dev_size=$((16 << 20)),cmd_ring_size_mb=1,max_data_area_mb=1,data_pages_per_blk=1,hw_max_sectors=128" ||
	tcmu_finish
"$TCMU_PYTHON" "$INSPECT" --uio "/dev/$DP_UIO" --dev "$DP_DEV" \
	--summary "$SUMMARY" --keep-lba "$KEEP_LBA,$KEEP_SECTORS" > "$ILOG" 2>&1 &
IPID=$!
dp_bg_add "$IPID"
check_true "the inspector started" tcmu_wait_for 20 test -s "$SUMMARY" || tcmu_finish
if ! dp_export; then
	stop_inspector
	sed 's/^/# inspector: /' "$ILOG" | head -n 25
	tcmu_finish
fi

dp_section "fresh data area"
head -c $((1 << 20)) /dev/urandom > "$DP_WORK/pattern"
check_true "16 x 64 KiB direct writes" \
	dd if="$DP_WORK/pattern" of="$DP_DISK" bs=64k count=16 oflag=direct status=none
check_true "read back identical" \
	cmp <(dd if="$DP_DISK" bs=64k count=16 iflag=direct status=none) "$DP_WORK/pattern"
check_eq "no command needed more than one iovec on a fresh area" 1 "$(summary max_iov)"

dp_section "fragmenting with KEEP_BUF"
check_true "256 x 4 KiB writes into the kept range" \
	dd if="$DP_WORK/pattern" of="$DP_DISK" bs=4k count=256 seek=$((KEEP_LBA / 8)) \
	oflag=direct status=none
check_true "the handler kept 256 buffers and freed the 128 on odd blocks" \
	tcmu_wait_for 10 summary_ge freed 128
check_eq "buffers freed" 128 "$(summary freed)"
check_eq "kept so far" 256 "$(summary kept)"

dp_section "mixed sizes until the ring wraps"
fio_rounds=0
while [ "$(summary wraps)" -lt "$WRAPS" ] && [ $fio_rounds -lt 40 ]; do
	fio_rounds=$((fio_rounds + 1))
	dp_fio "mix$fio_rounds" --rw=randwrite --bssplit=4k/90:64k/10 \
		--iodepth=1 --size=4m --offset=0 --verify=crc32c --do_verify=1 \
		--verify_fatal=1 "--randseed=$fio_rounds" || break
done
check_eq "fio verify (crc32c) passed in every round" 0 "$DP_FIO_RC" ||
	dp_fio_log "mix$fio_rounds"
check_true "the ring wrapped at least $WRAPS times ($(summary wraps) in $fio_rounds rounds)" \
	test "$(summary wraps)" -ge "$WRAPS"
check_true "PAD entries were written at the wrap ($(summary pads))" \
	test "$(summary pads)" -ge 1
check_eq "64 KiB commands on the fragmented area got 16 iovecs" 16 "$(summary max_iov)"
check_true "multi-iovec commands seen ($(summary multi_iov))" test "$(summary multi_iov)" -ge 1
check_true "allocations checked against the documented policy ($(summary exact_alloc))" \
	test "$(summary exact_alloc)" -ge 100

dp_section "verdict"
stop_inspector
tcmu_log "inspector: $(tr '\n' ' ' < "$SUMMARY")"
sed 's/^/# inspector: /' "$ILOG" | head -n 25
check_eq "every entry met the ring protocol (violations)" 0 "$(summary violations)"
check_eq "the inspector exited cleanly" 0 "$IRC"
check_true "commands inspected ($(summary commands))" test "$(summary commands)" -ge 1000

dp_teardown
tcmu_finish
