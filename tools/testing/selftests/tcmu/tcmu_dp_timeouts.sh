#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# timeout: 240
#
# Timeouts as the initiator sees them, with a handler that takes READ(10)
# commands and never answers them (--ignore 28):
#
#   cmd_time_out=3   (set before the LUN is exported; refused while it is)
#                    a READ sent with sg_raw fails after about 3 s with
#                    NOT READY / LOGICAL UNIT COMMUNICATION FAILURE
#                    (2/08/00); stats timeouts counts it; the device keeps
#                    working for other commands.
#   qfull_time_out   one ignored 1 MiB READ owns the whole 1 MiB data area,
#                    so the next READ cannot get space:
#                      0  it is refused at once with TASK SET FULL every
#                         time it is sent (it never waits: qfull_events
#                         does not move)
#                      2  each attempt waits about 2 s, then TASK SET FULL
# The SCSI midlayer resends a command that got TASK SET FULL (as it does
# for BUSY) until its timeout has passed, even for SG_IO (whose timeout
# the block layer raises to at least 7 s); so the attempts are counted
# with the disk's iorequest_cnt.

# shellcheck source=lib_dp.sh
. "$(dirname "$0")/lib_dp.sh"

dp_init

out=
cdb=()
bgout=

use_handler()
{
	dp_handler_stop
	dp_handler_start "$@"
}

dp_create 64 dptmo "dev_size=$((16 << 20)),cmd_ring_size_mb=1,max_data_area_mb=1" ||
	tcmu_finish
dp_attr cmd_time_out 3 || tcmu_finish
check_eq "cmd_time_out set before export" 3 "$(tcmu_value "$DP_DEV/attrib/cmd_time_out")"
dp_handler_start || tcmu_finish
dp_export || tcmu_finish
check_write_err "cmd_time_out refused while exported" "$DP_DEV/attrib/cmd_time_out" 5
check_eq "cmd_time_out unchanged" 3 "$(tcmu_value "$DP_DEV/attrib/cmd_time_out")"

# ---------------------------------------------------------------------------
dp_section "cmd_time_out"

use_handler --ignore 28 || tcmu_finish
tmo0=$(dp_stat timeouts)
dp_cdb10 cdb 0x28 0 1
dp_sg_ua out 30 -r 512 -- "${cdb[@]}"
check_eq "ignored READ: status" "check condition" "$(dp_sg_status "$out")"
check_eq "ignored READ: NOT READY / LOGICAL UNIT COMMUNICATION FAILURE" \
	2/08/00 "$(dp_sg_sense "$out")" || dp_sg_show "$out"
check_true "ignored READ: failed after ~3 s ($DP_SG_SECS s)" \
	dp_float_cmp "$DP_SG_SECS" ">=" 2.5
check_true "ignored READ: failed within 8 s ($DP_SG_SECS s)" \
	dp_float_cmp "$DP_SG_SECS" "<=" 8
check_true "stats timeouts counted it" test "$(dp_stat timeouts)" -gt "$tmo0"
head -c 512 /dev/urandom > "$DP_WORK/blk"
dp_cdb10 cdb 0x2a 8 1
dp_sg_ua out 30 -s 512 -i "$DP_WORK/blk" -- "${cdb[@]}"
check_eq "WRITE still served after the timeout" good "$(dp_sg_status "$out")"
dp_handler_refresh_status
check_true "handler did take and ignore the READ" \
	test "$(dp_handler_counter ignored)" -ge 1

# ---------------------------------------------------------------------------
dp_section "qfull_time_out=0"

# reset_ring hands back what the ignored READ still holds.
dp_action reset_ring 2
check_eq "nothing in flight after reset_ring" 0 "$(dp_stat inflight)"

# fill_data_area: one ignored 1 MiB READ in the background owns every data
# block; its sg_raw ends after cmd_time_out, its blocks stay owned.
fill_data_area()
{
	local c0
	c0=$(dp_stat cmds)
	dp_cdb10 cdb 0x28 0 2048
	(dp_sg bgout 30 -r $((1 << 20)) -- "${cdb[@]}"
	 printf '%s\n' "$bgout" > "$DP_WORK/fill.out") &
	dp_bg_add $!
	if ! tcmu_wait_for 10 dp_stat_above cmds "$c0"; then
		fail "the 1 MiB READ did not reach the ring"
		return 1
	fi
	return 0
}

# try_read QFULL_TIMEOUT SG_TIMEOUT: one 512 byte READ that cannot get
# space; sets OUT, QF (qfull_events added), TO (timeouts added) and ATT
# (times the SCSI layer sent it).
try_read()
{
	local qf0 to0 io0
	qf0=$(dp_stat qfull_events)
	to0=$(dp_stat timeouts)
	io0=$(dp_iorequests)
	dp_cdb10 cdb 0x28 64 1
	dp_sg out "$2" -r 512 -- "${cdb[@]}"
	QF=$(( $(dp_stat qfull_events) - qf0 ))
	TO=$(( $(dp_stat timeouts) - to0 ))
	ATT=$(( $(dp_iorequests) - io0 ))
	tcmu_log "qfull_time_out=$1, sg_raw -t $2: $(dp_sg_status "$out") after ${DP_SG_SECS}s, $ATT attempts, qfull_events +$QF, timeouts +$TO"
}

dp_attr qfull_time_out 0
if fill_data_area; then
	try_read 0 7
	check_eq "qfull 0: READ ends with TASK SET FULL" "task set full" "$(dp_sg_status "$out")" ||
		dp_sg_show "$out"
	check_eq "qfull 0: the READ never waited for space" 0 "$QF"
	check_true "qfull 0: every attempt was refused at once ($ATT attempts in ${DP_SG_SECS}s)" \
		test "$ATT" -ge 4
	check_true "the 1 MiB READ's sg_raw ended" dp_bg_wait 15
	check_eq "the 1 MiB READ itself timed out" \
		2/08/00 "$(dp_sg_sense "$(cat "$DP_WORK/fill.out" 2>/dev/null)")"
fi

# ---------------------------------------------------------------------------
dp_section "qfull_time_out=2"

dp_action reset_ring 2
dp_attr qfull_time_out 2
if fill_data_area; then
	try_read 2 7
	check_eq "qfull 2: READ ends with TASK SET FULL" "task set full" "$(dp_sg_status "$out")" ||
		dp_sg_show "$out"
	check_true "qfull 2: it waited for space ($QF times)" test "$QF" -ge 1
	check_true "qfull 2: the waits expired ($TO times)" test "$TO" -ge 1
	check_true "qfull 2: took at least one 2 s wait (${DP_SG_SECS}s)" \
		dp_float_cmp "$DP_SG_SECS" ">=" 1.8
	# each attempt waited ~2 s: no more than one attempt per 1.5 s
	check_true "qfull 2: attempts were ~2 s apart ($ATT in ${DP_SG_SECS}s)" \
		dp_float_cmp "$ATT" "<=" "$(awk -v s="$DP_SG_SECS" 'BEGIN { print s / 1.5 + 1 }')"
	check_true "qfull 2: attempts match the waits ($ATT attempts, $QF waits)" \
		test "$ATT" -le $((QF + 1))
	dp_bg_wait 15
fi

# ---------------------------------------------------------------------------
dp_section "recovery"

dp_action reset_ring 2
dp_attr qfull_time_out -1
use_handler || tcmu_finish
dp_cdb10 cdb 0x28 0 2048
dp_sg_ua out 30 -r $((1 << 20)) -- "${cdb[@]}"
check_eq "a 1 MiB READ works again with a plain handler" good "$(dp_sg_status "$out")"
check_eq "nothing in flight" 0 "$(dp_stat inflight)"
dp_show_stats

dp_teardown
tcmu_finish
