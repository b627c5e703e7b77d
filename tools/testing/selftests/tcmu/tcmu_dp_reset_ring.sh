#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# timeout: 300
#
# Recovering from a handler that dies with commands on the ring:
#
#   the handler abort()s after N completions while fio writes, leaving
#   fio's commands stranded; action/reset_ring empties the ring and a new
#   handler on the same /dev/uioN takes over:
#     reset_ring=2  the stranded commands fail (CHECK CONDITION), fio
#                   reports the error; a fresh fio write+verify passes;
#     reset_ring=1  they complete with BUSY, the SCSI layer resends them
#                   to the new handler and fio finishes without an error,
#                   its verify pass included.
#   action/block_dev=1: new commands get BUSY (sg_raw sees it once the
#   SCSI layer gives up resending) and never reach the handler; after
#   block_dev=0 they work again.
#
# The handler stores the data in a file so that a new handler sees what
# the old one wrote.

# shellcheck source=lib_dp.sh
. "$(dirname "$0")/lib_dp.sh"

dp_init
dp_require fio

out=
cdb=()
FIO_PID=
FIO_SIZE=$(dp_scale 2m 1m)
CRASH_AFTER=$(dp_scale 200 100)

use_handler()
{
	dp_handler_stop
	dp_handler_start "$@"
}

DP_HANDLER_FILE=$DP_WORK/store
dp_create 66 dprr "dev_size=$((32 << 20)),cmd_ring_size_mb=1,max_data_area_mb=4" ||
	tcmu_finish
dp_handler_start || tcmu_finish
dp_export || tcmu_finish
UIO=$DP_UIO

FIO_JOB=(--rw=randwrite --bs=4k --iodepth=16 "--size=$FIO_SIZE" --verify=crc32c
	--do_verify=1 --verify_fatal=1)

# fio_start NAME: fio write+verify in the background.
fio_start()
{
	dp_fio "$1" "${FIO_JOB[@]}" &
	FIO_PID=$!
	dp_bg_add "$FIO_PID"
}

# fio_end: wait (bounded) for the background fio; FIO_RC gets its status.
fio_end()
{
	FIO_RC=
	if ! tcmu_wait_for 90 dp_pid_gone "$FIO_PID"; then
		fail "fio did not finish"
		return 1
	fi
	wait "$FIO_PID"
	FIO_RC=$?
	DP_BG_PIDS=()
	return 0
}

# crash_and_reset LEVEL NAME: run fio under a handler that crashes, reset
# the ring with LEVEL and start a plain handler on the same uio device.
crash_and_reset()
{
	local level=$1 name=$2 infl
	use_handler --crash-after "$CRASH_AFTER" || return 1
	fio_start "$name"
	if ! dp_handler_wait_exit 60; then
		fail "reset $level: the handler did not crash"
		return 1
	fi
	check_eq "reset $level: handler died by SIGABRT" 134 "$DP_HANDLER_RC"
	check_true "reset $level: fio is stuck, not finished" kill -0 "$FIO_PID"
	infl=$(dp_stat inflight)
	check_true "reset $level: commands stranded on the ring ($infl)" test "${infl:-0}" -gt 0
	check_write_ok "reset $level: action/reset_ring" "$DP_DEV/action/reset_ring" "$level"
	check_eq "reset $level: uio device unchanged" "$UIO" \
		"$(tcmu_find_uio "$(tcmu_uio_name "$DP_HBA" "$DP_NAME")")"
	dp_handler_start || return 1
	fio_end
}

# ---------------------------------------------------------------------------
dp_section "crash, reset_ring=2"

if crash_and_reset 2 crash2; then
	tcmu_log "fio after reset_ring=2: exit $FIO_RC"
	check_ne "reset 2: fio saw the failed commands" 0 "$FIO_RC"
	check_match "reset 2: fio reports an I/O error" \
		'(Input/output error|err=[[:space:]]*[1-9])' "$(cat "$DP_WORK/crash2.fio")"
	dp_fio fresh2 "${FIO_JOB[@]}"
	check_eq "reset 2: a fresh fio write+verify passes" 0 "$DP_FIO_RC" ||
		dp_fio_log fresh2
fi

# ---------------------------------------------------------------------------
dp_section "crash, reset_ring=1"

if crash_and_reset 1 crash1; then
	check_eq "reset 1: fio finished without error (BUSY was retried)" 0 "$FIO_RC" ||
		dp_fio_log crash1
	check_eq "reset 1: fio jobs with err=0" 1 "$(dp_fio_okjobs crash1)"
	check_true "reset 1: the new handler is serving" dp_handler_alive
fi

# ---------------------------------------------------------------------------
dp_section "block_dev"

if dp_handler_alive || dp_handler_start; then
	dp_action block_dev 1
	check_eq "block_dev reads blocked" blocked "$(tcmu_value "$DP_DEV/action/block_dev")"
	dp_handler_refresh_status
	taken=$(dp_handler_counter commands)
	io0=$(dp_iorequests)
	dp_cdb10 cdb 0x28 0 8
	dp_sg out 2 -r 4096 -- "${cdb[@]}"
	tcmu_log "blocked READ: $(dp_sg_status "$out") after ${DP_SG_SECS}s, sent $(( $(dp_iorequests) - io0 )) times"
	check_eq "blocked: READ ends with BUSY" busy "$(dp_sg_status "$out")" ||
		dp_sg_show "$out"
	dp_handler_refresh_status
	check_eq "blocked: the handler got nothing" "$taken" "$(dp_handler_counter commands)"
	dp_action block_dev 0
	check_eq "block_dev reads unblocked" unblocked "$(tcmu_value "$DP_DEV/action/block_dev")"
	dp_sg_ua out 20 -r 4096 -- "${cdb[@]}"
	check_eq "unblocked: READ works" good "$(dp_sg_status "$out")"
fi

dp_show_stats
dp_teardown
tcmu_finish
