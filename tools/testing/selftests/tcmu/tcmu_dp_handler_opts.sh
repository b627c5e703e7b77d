#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# timeout: 300
#
# What the initiator sees when the handler answers in unusual but legal
# ways, one handler option at a time on one exported device (1 MiB ring,
# 2 MiB data area):
#
#   --ooo            completions in reverse order: fio verify still passes
#   --sense 3/11/0:28  READ(10) fails with MEDIUM ERROR / 0x11, WRITE works
#   --read-len, --short-read 1024
#                    a 4 KiB READ delivers only the 1024 bytes the handler
#                    reported (the rest is residual), and they are right;
#                    through sd the remainder is fetched by more commands
#   --unknown-op     the kernel turns the flag into ILLEGAL REQUEST /
#                    INVALID COMMAND OPERATION CODE (0x20/0x00)
#   --keep-buf --free-kept
#                    fio moving 4x the data area still passes: kept
#                    buffers are given back
#   --keep-buf (kept by hand)
#                    action/free_kept_buf frees exactly the kept ids, once;
#                    closing the device drops the rest
#   --delay-ms 400   a READ takes at least that long and still succeeds

# shellcheck source=lib_dp.sh
. "$(dirname "$0")/lib_dp.sh"

dp_init
dp_require fio cmp

out=
cdb=()
PAGE=$(getconf PAGESIZE)
# Where the 4 KiB test pattern lives: past everything fio writes.
PLBA=49152

use_handler()
{
	dp_handler_stop
	dp_handler_start "$@"
}

# Data must survive handler restarts: keep it in a file.
DP_HANDLER_FILE=$DP_WORK/store
dp_create 63 dpopts "dev_size=$((32 << 20)),cmd_ring_size_mb=1,max_data_area_mb=2" ||
	tcmu_finish
dp_handler_start || tcmu_finish
dp_export || tcmu_finish

# ---------------------------------------------------------------------------
# --ooo

dp_section ooo
if use_handler --ooo; then
	DP_FIO_TIMEOUT=120 dp_fio_jobs ooo "$(dp_fio_verify_global)
[rand4k-qd32]
rw=randwrite
bs=4k
iodepth=32
size=$(dp_scale 2m 512k)
[seq64k-qd16]
rw=write
bs=64k
iodepth=16
size=$(dp_scale 4m 2m)"
	check_eq "ooo: fio write+verify exit status" 0 "$DP_FIO_RC" || dp_fio_log ooo
	check_eq "ooo: both jobs ended with err=0" 2 "$(dp_fio_okjobs ooo)"
	check_true "ooo: handler survived" dp_handler_alive
	dp_handler_stop
	check_eq "ooo: every command the handler took was completed" \
		"$(dp_handler_counter commands)" "$(dp_handler_counter completed)"
fi

# ---------------------------------------------------------------------------
# --sense for READ(10) only

dp_section sense
if use_handler --sense 3/11/0:28; then
	dp_cdb10 cdb 0x28 8 1
	dp_sg_ua out 20 -r 512 -- "${cdb[@]}"
	check_eq "sense: READ(10) status" "check condition" "$(dp_sg_status "$out")"
	check_eq "sense: READ(10) sense key/ASC/ASCQ" 3/11/00 "$(dp_sg_sense "$out")" ||
		dp_sg_show "$out"
	check_false "sense: a direct read through sd fails" \
		dd if="$DP_DISK" of=/dev/null bs=4096 count=1 skip=20 iflag=direct status=none
	head -c 512 /dev/urandom > "$DP_WORK/blk"
	dp_cdb10 cdb 0x2a 8 1
	dp_sg_ua out 20 -s 512 -i "$DP_WORK/blk" -- "${cdb[@]}"
	check_eq "sense: WRITE(10) is not affected" good "$(dp_sg_status "$out")"
	dp_handler_stop
	cc=$(dp_handler_counter check_conditions)
	check_true "sense: handler reported CHECK CONDITION (${cc:-?} times)" \
		test "${cc:-0}" -ge 2
fi

# ---------------------------------------------------------------------------
# --read-len and --short-read

dp_section read-len
head -c 4096 /dev/urandom > "$DP_WORK/pattern"
head -c 1024 "$DP_WORK/pattern" > "$DP_WORK/pattern.1k"
if use_handler --read-len; then
	dp_cdb10 cdb 0x2a $PLBA 8
	dp_sg_ua out 20 -s 4096 -i "$DP_WORK/pattern" -- "${cdb[@]}"
	check_eq "read-len: write 4 KiB pattern" good "$(dp_sg_status "$out")"
	before=$(dp_stat bytes_in)
	dp_cdb10 cdb 0x28 $PLBA 8
	rm -f "$DP_WORK/full"
	dp_sg_ua out 20 -r 4096 -o "$DP_WORK/full" -- "${cdb[@]}"
	check_eq "read-len: READ status" good "$(dp_sg_status "$out")"
	check_true "read-len: all 4096 bytes arrive and match" \
		cmp -s "$DP_WORK/pattern" "$DP_WORK/full"
	check_eq "read-len: stats bytes_in grew by the full length" \
		$((before + 4096)) "$(dp_stat bytes_in)"
fi
if use_handler --read-len --short-read 1024; then
	before=$(dp_stat bytes_in)
	dp_cdb10 cdb 0x28 $PLBA 8
	rm -f "$DP_WORK/short"
	dp_sg_ua out 20 -r 4096 -o "$DP_WORK/short" -- "${cdb[@]}"
	check_eq "short-read: READ status" good "$(dp_sg_status "$out")" ||
		dp_sg_show "$out"
	# sg_raw saves what arrived: the transfer length minus the residual.
	got=$(stat -c %s "$DP_WORK/short" 2>/dev/null)
	check_eq "short-read: bytes received (4096 asked, residual 3072)" 1024 "${got:-none}"
	check_match "short-read: sg_raw reports 1024 bytes" \
		'(^|'$'\n'')Writing 1024 bytes' "$out"
	check_true "short-read: the 1024 bytes are the start of the pattern" \
		cmp -s "$DP_WORK/pattern.1k" "$DP_WORK/short"
	check_eq "short-read: stats bytes_in grew by read_len only" \
		$((before + 1024)) "$(dp_stat bytes_in)"
	# Through sd the residual is not an error: the SCSI layer sends the
	# rest again until it has everything, 1024 bytes per command.
	before=$(dp_stat cmds)
	dd if="$DP_DISK" of="$DP_WORK/viasd" bs=4096 count=1 skip=$((PLBA / 8)) \
		iflag=direct status=none
	check_true "short-read: a 4 KiB direct read through sd gets the pattern" \
		cmp -s "$DP_WORK/pattern" "$DP_WORK/viasd"
	check_eq "short-read: sd needed four 1 KiB commands for it" \
		$((before + 4)) "$(dp_stat cmds)"
fi

# ---------------------------------------------------------------------------
# --unknown-op

dp_section unknown-op
if use_handler --unknown-op; then
	dp_sg_ua out 20 -- c0 00 00 00 00 00 00 00 00 00
	check_eq "unknown-op: status of opcode 0xc0" "check condition" "$(dp_sg_status "$out")"
	check_eq "unknown-op: ILLEGAL REQUEST / INVALID COMMAND OPERATION CODE" \
		5/20/00 "$(dp_sg_sense "$out")" || dp_sg_show "$out"
	dp_handler_stop
	check_true "unknown-op: the handler flagged it (not its own sense)" \
		test "$(dp_handler_counter unknown_op)" -ge 1
	check_eq "unknown-op: handler itself sent no CHECK CONDITION" \
		0 "$(dp_handler_counter check_conditions)"
fi

# ---------------------------------------------------------------------------
# --keep-buf --free-kept: 4x the data area moves only if kept buffers are
# handed back.

dp_section keep-buf
if use_handler --keep-buf --free-kept; then
	DP_FIO_TIMEOUT=90 dp_fio_jobs keep "$(dp_fio_verify_global)
[seq64k-qd16]
rw=write
bs=64k
iodepth=16
size=8m
[rand4k-qd32]
rw=randwrite
bs=4k
iodepth=32
size=$(dp_scale 1m 256k)"
	check_eq "keep-buf: fio write+verify exit status" 0 "$DP_FIO_RC" || {
		dp_fio_log keep
		dp_show_stats
	}
	check_eq "keep-buf: both jobs ended with err=0" 2 "$(dp_fio_okjobs keep)"
	pages=$(dp_stat data_pages)
	check_true "keep-buf: data_pages bounded by the 2 MiB area (${pages:-?})" \
		test "${pages:-99999}" -le $((2 * TCMU_MB / PAGE))
	check_eq "keep-buf: nothing in flight" 0 "$(dp_stat inflight)"
	dp_handler_stop
	kept=$(dp_handler_counter kept)
	check_true "keep-buf: handler kept (and freed) ${kept:-no} buffers" \
		test "${kept:-0}" -gt 256
fi

# ---------------------------------------------------------------------------
# Kept buffers freed by hand

dp_section kept
rm -f "$DP_WORK/kept"
if use_handler --keep-buf --kept-log "$DP_WORK/kept"; then
	dp_cdb10 cdb 0x28 0 128
	for i in 1 2 3; do
		dp_sg_ua out 20 -r 65536 -- "${cdb[@]}"
		check_eq "kept: READ $i status" good "$(dp_sg_status "$out")"
	done
	mapfile -t ids < "$DP_WORK/kept"
	check_eq "kept: the handler kept 3 buffers" 3 "${#ids[@]}"
	if [ "${#ids[@]}" -eq 3 ]; then
		check_write_ok "kept: free_kept_buf ${ids[0]}" \
			"$DP_DEV/action/free_kept_buf" "${ids[0]}"
		check_write_err "kept: free_kept_buf ${ids[0]} a second time" \
			"$DP_DEV/action/free_kept_buf" "${ids[0]}"
		check_write_ok "kept: free_kept_buf ${ids[1]}" \
			"$DP_DEV/action/free_kept_buf" "${ids[1]}"
		# Closing the device drops the third one.
		dp_handler_stop
		check_write_err "kept: ${ids[2]} went away with the handler" \
			"$DP_DEV/action/free_kept_buf" "${ids[2]}"
	fi
	check_write_err "kept: free_kept_buf of an id never used" \
		"$DP_DEV/action/free_kept_buf" 65000
fi

# ---------------------------------------------------------------------------
# --delay-ms

dp_section delay
if use_handler --delay-ms 400; then
	dp_cdb10 cdb 0x28 $PLBA 8
	dp_sg_ua out 20 -r 4096 -o "$DP_WORK/delayed" -- "${cdb[@]}"
	check_eq "delay: READ status" good "$(dp_sg_status "$out")"
	check_true "delay: READ took at least 0.4 s ($DP_SG_SECS s)" \
		dp_float_cmp "$DP_SG_SECS" ">=" 0.4
	check_true "delay: READ took less than 10 s" dp_float_cmp "$DP_SG_SECS" "<" 10
	check_true "delay: data still right" cmp -s "$DP_WORK/pattern" "$DP_WORK/delayed"
fi

dp_section teardown
dp_show_stats
dp_teardown
tcmu_finish
