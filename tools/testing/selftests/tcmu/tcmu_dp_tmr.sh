#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# timeout: 240
#
# Task management reaches the handler (attrib/tmr_notification=1) as TMR
# entries on the ring that name the aborted commands.  The handler here
# takes READ(10) commands and never answers them (--ignore 28), and
# cmd_time_out is 0, so the kernel holds such a READ until the ring is
# reset:
#
#   off          with tmr_notification=0 a LUN reset on an idle LUN puts
#                nothing on the ring.
#   LUN RESET    sg_reset -d while a READ is held: the handler's TMR log
#                gets "type=5" (LUN_RESET) naming that READ's cmd_id; the
#                reset waits for the READ, and action/reset_ring lets both
#                finish.
#   ABORT TASK   a READ whose SG_IO times out (the block layer makes that
#                at least 7 s): the SCSI error handler aborts it, the
#                handler logs "type=1" with its id; reset_ring ends it.
# Afterwards the LUN still serves I/O.
#
# Note: tcm_loop completes a command that a LUN reset aborted with
# whatever result the SCSI command had, usually GOOD without data; only
# its completion (no hang) is checked for that READ.

# shellcheck source=lib_dp.sh
. "$(dirname "$0")/lib_dp.sh"

dp_init
dp_require sg_reset

out=
cdb=()
bgout=
TMRLOG=$DP_WORK/tmr.log
RESET_PID=

use_handler()
{
	dp_handler_stop
	dp_handler_start "$@"
}

dp_create 65 dptmr "dev_size=$((16 << 20)),cmd_ring_size_mb=1,max_data_area_mb=1" ||
	tcmu_finish
dp_attr cmd_time_out 0 || tcmu_finish
dp_handler_start || tcmu_finish
dp_export || tcmu_finish

ignored_count()
{
	grep -c 'ignoring cmd [0-9]* op 0x28' "$DP_HANDLER_LOG"
}

# shellcheck disable=SC2317 # called through tcmu_wait_for
ignored_above()
{
	[ "$(ignored_count)" -gt "$1" ]
}

# shellcheck disable=SC2317 # called through tcmu_wait_for
tmr_logged()
{
	grep -q "^TMR type=$1 " "$TMRLOG" 2>/dev/null
}

# ignored_read SG_TIMEOUT: send a READ in the background and wait until
# the handler has taken (and ignored) it; IGNORED_ID gets its cmd_id.
ignored_read()
{
	local line n0
	IGNORED_ID=
	# A reset leaves a UNIT ATTENTION for the next command, which the
	# core would answer without asking the handler: use it up first.
	dp_sg_ua out 20 -- 00 00 00 00 00 00
	n0=$(ignored_count)
	dp_cdb10 cdb 0x28 16 1
	rm -f "$DP_WORK/read.out" "$DP_WORK/read.rc"
	(dp_sg bgout "$1" -r 512 -- "${cdb[@]}"
	 printf '%s\n' "$bgout" > "$DP_WORK/read.out"
	 echo "$DP_SG_RC" > "$DP_WORK/read.rc") &
	READ_PID=$!
	dp_bg_add "$READ_PID"
	if ! tcmu_wait_for 10 ignored_above "$n0"; then
		fail "the handler never got the READ"
		return 1
	fi
	line=$(grep -o 'ignoring cmd [0-9]* op 0x28' "$DP_HANDLER_LOG" | tail -n 1)
	IGNORED_ID=${line#ignoring cmd }
	IGNORED_ID=${IGNORED_ID%% *}
	tcmu_log "the handler holds READ cmd_id $IGNORED_ID"
}

# read_done: wait (bounded) for the held READ's sg_raw; READ_RC gets its
# exit status.
# shellcheck disable=SC2317 # called through check_true
read_done()
{
	READ_RC=
	tcmu_wait_for 20 dp_pid_gone "$READ_PID" || return 1
	READ_RC=$(cat "$DP_WORK/read.rc" 2>/dev/null)
	tcmu_log "READ: sg_raw exit ${READ_RC:-?}: $(grep -E 'status|Status' "$DP_WORK/read.out" 2>/dev/null | tr '\n' ' ')"
	return 0
}

# ---------------------------------------------------------------------------
dp_section "LUN RESET, notification off"

dp_attr tmr_notification 0
rm -f "$TMRLOG"
if use_handler --tmr-log "$TMRLOG"; then
	check_true "sg_reset -d on an idle LUN" timeout 60 sg_reset -d "$DP_DISK"
	dp_handler_stop
	check_eq "no TMR entry with tmr_notification=0" "" "$(cat "$TMRLOG" 2>/dev/null)"
fi

# ---------------------------------------------------------------------------
dp_section "LUN RESET with a READ held by the handler"

dp_attr tmr_notification 1
check_eq "tmr_notification reads back" 1 "$(tcmu_value "$DP_DEV/attrib/tmr_notification")"
rm -f "$TMRLOG"
if use_handler --ignore 28 --tmr-log "$TMRLOG" -v -v && ignored_read 60; then
	timeout 90 sg_reset -d "$DP_DISK" > "$DP_WORK/reset.out" 2>&1 &
	RESET_PID=$!
	dp_bg_add "$RESET_PID"
	check_true "the handler got a LUN_RESET TMR entry" tcmu_wait_for 20 tmr_logged 5
	log=$(cat "$TMRLOG" 2>/dev/null)
	tcmu_log "TMR log: $(printf '%s' "$log" | tr '\n' ';')"
	check_match "the LUN_RESET entry (type=5) names cmd $IGNORED_ID" \
		"(^|"$'\n'")TMR type=5 ids=([0-9]+,)*$IGNORED_ID(,[0-9]+)*($|"$'\n'")" "$log"
	sleep 1
	check_true "the reset waits for the held READ" kill -0 "$RESET_PID"
	check_write_ok "reset_ring=2 releases the held READ" "$DP_DEV/action/reset_ring" 2
	if tcmu_wait_for 20 dp_pid_gone "$RESET_PID"; then
		wait "$RESET_PID"
		check_eq "sg_reset -d finished successfully" 0 "$?" ||
			sed 's/^/#   /' "$DP_WORK/reset.out"
	else
		fail "sg_reset -d still blocked after reset_ring"
	fi
	check_true "the READ completed (did not hang)" read_done
	dp_handler_refresh_status
	check_true "the handler counted the TMR entry" test "$(dp_handler_counter tmr)" -ge 1
fi
dp_bg_wait 5

# ---------------------------------------------------------------------------
dp_section "ABORT TASK after an SG_IO timeout"

rm -f "$TMRLOG"
if use_handler --ignore 28 --tmr-log "$TMRLOG" -v -v && ignored_read 1; then
	tmo0=$(dp_iotimeouts)
	check_true "the handler got an ABORT_TASK TMR entry" tcmu_wait_for 30 tmr_logged 1
	log=$(cat "$TMRLOG" 2>/dev/null)
	tcmu_log "TMR log: $(printf '%s' "$log" | tr '\n' ';')"
	check_match "the ABORT_TASK entry (type=1) names cmd $IGNORED_ID" \
		"(^|"$'\n'")TMR type=1 ids=$IGNORED_ID($|"$'\n'")" "$log"
	check_write_ok "reset_ring=2 releases the aborted READ" "$DP_DEV/action/reset_ring" 2
	check_true "the aborted READ completed (did not hang)" read_done
	check_true "the aborted READ failed (sg_raw exit ${READ_RC:-none})" \
		test "${READ_RC:-0}" -ne 0
	check_true "the SCSI layer saw the timeout" test "$(dp_iotimeouts)" -gt "$tmo0"
fi
dp_bg_wait 5

# ---------------------------------------------------------------------------
dp_section "the LUN still works"

# reset_ring emptied the ring, so a new handler starts clean.
use_handler || tcmu_finish
head -c 4096 /dev/urandom > "$DP_WORK/data"
dp_cdb10 cdb 0x2a 200 8
dp_sg_ua out 30 -s 4096 -i "$DP_WORK/data" -- "${cdb[@]}"
check_eq "WRITE after the resets" good "$(dp_sg_status "$out")" || dp_sg_show "$out"
dp_cdb10 cdb 0x28 200 8
dp_sg_ua out 30 -r 4096 -o "$DP_WORK/back" -- "${cdb[@]}"
check_eq "READ after the resets" good "$(dp_sg_status "$out")"
check_true "data read back" cmp -s "$DP_WORK/data" "$DP_WORK/back"
dp_show_stats

dp_teardown
tcmu_finish
