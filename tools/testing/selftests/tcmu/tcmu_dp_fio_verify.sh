#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# timeout: 420
#
# Data integrity through the whole path: fio writes with crc32c verify
# headers and reads everything back (direct I/O, libaio) on the tcm_loop
# disk, for block sizes 512 B .. 8 MiB and queue depths 1, 16 and 128, on
# two geometries:
#
#   big    8 MiB max transfer (hw_max_sectors=16384) and a 64 MiB data
#          area; tcm_loop carries at most one page per segment, so sd
#          splits 8 MiB I/O into 1 MiB commands; one SG_IO write/read
#          pair of that largest size checks a single many-block command;
#   small  1 MiB ring, 2 MiB data area, 1 MiB max transfer: the ring
#          wraps (the handler sees PAD entries), commands wait for space
#          (qfull) and large commands get many data blocks.
#
# Afterwards attrib/stats must show the traffic (and, for the small
# geometry, the waits), nothing may be left in flight and the kernel log
# must not mention a broken ring.

# shellcheck source=lib_dp.sh
. "$(dirname "$0")/lib_dp.sh"

dp_init
dp_require fio cmp

MARK=fio_verify.$$
out=
cdb=()
dp_kmsg_mark "$MARK"

# fio_matrix NAME QDS SIZES: a job file, one job after the other
# (stonewall), for every block size x queue depth.  SIZES holds one bytes
# count per block size (512 4k 64k 1m 8m); small blocks write randomly.
fio_matrix()
{
	local name=$1 qds=$2 sizes bss=(512 4k 64k 1m 8m)
	local i qd rw text

	read -ra sizes <<< "$3"
	text="$(dp_fio_verify_global)
"
	for ((i = 0; i < ${#bss[@]}; i++)); do
		rw="write"
		[ $i -lt 2 ] && rw="randwrite"
		for qd in $qds; do
			text+="
[bs${bss[i]}-qd$qd]
rw=$rw
bs=${bss[i]}
iodepth=$qd
size=${sizes[i]}
"
		done
	done
	dp_fio_jobs "$name" "$text"
}

# run_matrix WHAT NAME QDS SIZES: run it and check every job passed.
run_matrix()
{
	local what=$1 name=$2 qds=$3 njobs t0

	njobs=$((5 * $(wc -w <<< "$qds")))
	t0=$(dp_now)
	fio_matrix "$name" "$qds" "$4"
	tcmu_log "$what: fio took $(dp_elapsed "$t0")s"
	if ! check_eq "$what: fio write+verify exit status" 0 "$DP_FIO_RC"; then
		dp_fio_log "$name" 20
		dp_handler_log 20
	fi
	check_eq "$what: jobs with err=0" "$njobs" "$(dp_fio_okjobs "$name")"
	check_eq "$what: jobs with an error" 0 "$(dp_fio_errjobs "$name")"
	if grep -qiE 'verify.*(fail|bad)|bad magic|crc32c.*mismatch' "$DP_WORK/$name.fio"; then
		fail "$what: fio reported verify mismatches"
		dp_fio_log "$name" 20
	else
		pass "$what: no verify mismatch reported"
	fi
}

# Stats that must hold after any fio run; nothing may be left in flight.
check_stats_common()
{
	local what=$1 cmds

	cmds=$(dp_stat cmds)
	check_true "$what: stats cmds > 0 (${cmds:-?})" test "${cmds:-0}" -gt 0
	check_true "$what: stats bytes_out > 0" test "$(dp_stat bytes_out)" -gt 0
	check_true "$what: stats bytes_in > 0" test "$(dp_stat bytes_in)" -gt 0
	check_eq "$what: stats inflight after the run" 0 "$(dp_stat inflight)"
	check_eq "$what: no timeouts" 0 "$(dp_stat timeouts)"
}

# ---------------------------------------------------------------------------
# Big transfers

# Bytes per job for 512 4k 64k 1m 8m.  On the small geometry, the 512 byte
# jobs alone send 3 x 2 x 1536 commands of at least 128 ring bytes each:
# more than the 1 MiB ring holds, so it must wrap.
if [ -n "$DP_DEBUG" ]; then
	SIZES_BIG="32k 128k 512k 1m 8m"
	SIZES_SMALL="768k 64k 256k 1m 8m"
else
	SIZES_BIG="128k 512k 2m 4m 16m"
	SIZES_SMALL="768k 256k 1m 2m 8m"
fi

if dp_create 61 dpbig "dev_size=$((96 << 20)),hw_max_sectors=16384,max_data_area_mb=64" &&
	dp_handler_start && dp_export; then
	check_eq "big: hw_max_sectors" 16384 "$(tcmu_value "$DP_DEV/attrib/hw_max_sectors")"
	# sd caps requests at 1280 KiB by default; allow what the LUN takes.
	maxhw=$(cat "/sys/block/$DP_BLK/queue/max_hw_sectors_kb")
	tcmu_log "max_hw_sectors_kb $maxhw"
	if [ "${maxhw:-0}" -ge 8192 ]; then
		echo 8192 > "/sys/block/$DP_BLK/queue/max_sectors_kb"
	fi

	# The largest single command tcm_loop can carry (one page per
	# segment), sent through SG_IO so that nothing splits it: it needs
	# many data blocks and more than the default hw_max_sectors.
	segs=$(cat "/sys/block/$DP_BLK/queue/max_segments")
	big=$(( segs * $(getconf PAGESIZE) ))
	[ "$big" -gt $((8 << 20)) ] && big=$((8 << 20))
	nblk=$((big / 512))
	tcmu_log "largest SG_IO command: $big bytes ($segs segments)"
	head -c "$big" /dev/urandom > "$DP_WORK/big.in"
	before=$(dp_stat cmds)
	dp_cdb10 cdb 0x2a 4096 "$nblk"
	dp_sg_ua out 30 -s "$big" -i "$DP_WORK/big.in" -- "${cdb[@]}"
	if check_eq "big: one $big byte WRITE(10) via SG_IO" good "$(dp_sg_status "$out")"; then
		dp_cdb10 cdb 0x28 4096 "$nblk"
		dp_sg_ua out 30 -r "$big" -o "$DP_WORK/big.out" -- "${cdb[@]}"
		check_eq "big: one $big byte READ(10) via SG_IO" good "$(dp_sg_status "$out")" ||
			dp_sg_show "$out"
		check_true "big: the data read back equals what was written" \
			cmp -s "$DP_WORK/big.in" "$DP_WORK/big.out"
		check_eq "big: each transfer was a single command" \
			$((before + 2)) "$(dp_stat cmds)"
	else
		dp_sg_show "$out"
	fi
	rm -f "$DP_WORK/big.in" "$DP_WORK/big.out"

	run_matrix big fio_big "1 16 128" "$SIZES_BIG"
	dp_show_stats
	check_stats_common big
	check_true "big: handler still running" dp_handler_alive
fi
dp_teardown

# ---------------------------------------------------------------------------
# Small ring and data area

if dp_create 62 dpsmall "dev_size=$((64 << 20)),cmd_ring_size_mb=1,max_data_area_mb=2,hw_max_sectors=2048" &&
	dp_handler_start && dp_export; then
	run_matrix small fio_small "1 16 128" "$SIZES_SMALL"
	dp_show_stats
	check_stats_common small
	qf=$(dp_stat qfull_events)
	check_true "small: commands waited for space (qfull_events=$qf)" test "${qf:-0}" -gt 0
	full=$(( $(dp_stat ring_full) + $(dp_stat data_full) ))
	check_true "small: ring_full + data_full > 0 ($full)" test "$full" -gt 0
	pages=$(dp_stat data_pages)
	check_true "small: data_pages within the 2 MiB area (${pages:-?})" \
		test "${pages:-99999}" -le $((2 * TCMU_MB / $(getconf PAGESIZE)))
	dp_handler_refresh_status
	pad=$(dp_handler_counter pad)
	check_true "small: the ring wrapped (handler saw ${pad:-no} PAD entries)" \
		test "${pad:-0}" -gt 0
	check_eq "small: handler found no malformed entries" 0 "$(dp_handler_counter bad_entries)"
	check_true "small: handler still running" dp_handler_alive
fi
dp_teardown

broken=$(dp_kmsg_since "$MARK" | grep -i 'ring broken')
check_eq "kernel log: no broken ring" "" "$broken"

tcmu_finish
