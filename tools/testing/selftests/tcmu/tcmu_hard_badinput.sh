#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# timeout: 600
#
# Hostile configuration input.  One user device gets boundary values (a
# fixed table) and random values (seeded PRNG; the seed is in the log and
# TCMU_HARD_SEED=N repeats a run) written to control, to every writable
# attribute (attrib/*) and to every action (action/*), in three phases:
#
#   disabled   freshly created, nothing enabled yet
#   enabled    enabled, no handler, not exported
#   exported   served by tools/testing/tcmu-handler and exported through
#              tcm_loop (cmd_time_out and force_pr_aptpl are refused then)
#
# Every value goes to the kernel in one write(2), from one python3 process
# (tcmu_hard_badinput.py, which holds the rules and documents them).  A
# valid value must be applied and read back in the documented format, an
# invalid one refused with EINVAL, and every readable file under the device
# directory (info included) is compared before and after each write: only
# the expected files may change.  Once enabled, the helper also listens to
# the TCM-USER netlink group: writes of dev_config, dev_size and
# emulate_write_cache must send one RECONFIG event with the new value.  In
# the enabled phase two threads also write dev_config (and one dev_size)
# concurrently while others read the UIO name; afterwards the UIO name must
# match dev_config.  At the end the device must still move data.
#
# On the debug kernel, where every configfs read is slow, only the files a
# write may change (and info) are read after each write, and every file is
# compared once per file under test; the exported phase then covers only
# what export changes (see below).
#
# Environment: TCMU_HARD_SEED (PRNG seed), TCMU_HARD_RANDOM (random inputs
# per file, default 40, 10 on the debug kernel), TCMU_HARD_RACE (seconds of
# the concurrent part, default 3), TCMU_HARD_FULL=1 (the full snapshot after
# every write and all files in every phase, also on the debug kernel).

# shellcheck source=lib_dp.sh
. "$(dirname "$0")/lib_dp.sh"

dp_init
dp_require dd cmp
[ -x "$TCMU_PYTHON" ] || command -v "$TCMU_PYTHON" > /dev/null ||
	tcmu_skip "python3 is not installed"

HELPER=$TCMU_DIR/tcmu_hard_badinput.py
HBA=171
NAME=badinput
SEED=${TCMU_HARD_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
NRAND=${TCMU_HARD_RANDOM:-$(dp_scale 40 10)}
FAST=()
[ -n "$DP_DEBUG" ] && [ "${TCMU_HARD_FULL:-0}" != 1 ] && FAST=(--fast)
RACE=${TCMU_HARD_RACE:-3}
DEV_SIZE=$((64 << 20))
GOOD="dev_config=hard/badinput,dev_size=$DEV_SIZE,hw_block_size=512,hw_max_sectors=128,nl_reply_supported=0,max_data_area_mb=8,data_pages_per_blk=1,cmd_ring_size_mb=1"
# Settings a later phase (and the handler) rely on.
RESTORE=(--restore attrib/qfull_time_out=-1 --restore attrib/emulate_write_cache=0
	--restore attrib/tmr_notification=0 --restore attrib/handler_exit_policy=0
	--restore attrib/emulate_pr=1 --restore attrib/enforce_pr_isids=1
	--restore attrib/alua_support=1 --restore attrib/pgr_support=1
	--restore attrib/nl_reply_supported=0)

tcmu_log "seed $SEED (TCMU_HARD_SEED=$SEED repeats this run), $NRAND random inputs per file"

# helper PHASE ARG...: run the python helper and take over its PASS/FAIL
# lines; a helper that dies half way is a failure.
helper()
{
	local phase=$1 line done="" t0=$SECONDS
	shift
	while IFS= read -r line; do
		case "$line" in
		PASS:*) pass "${line#PASS: }" ;;
		FAIL:*) fail "${line#FAIL: }" ;;
		"# done") done=1 ;;
		*) echo "$line" ;;
		esac
	done < <("$TCMU_PYTHON" "$HELPER" --phase "$phase" --seed "$SEED" \
		--random "$NRAND" "${FAST[@]}" "$@" 2>&1)
	[ -n "$done" ] || fail "$phase: the python helper did not run to the end"
	tcmu_log "$phase phase took $((SECONDS - t0))s"
}

# ---------------------------------------------------------------------------
dp_section "disabled device"

DP_HBA=$HBA
# shellcheck disable=SC2034 # read by lib_dp.sh
DP_NAME=$NAME
DP_DEV=$(tcmu_dev_path $HBA $NAME)
DP_TORN_DOWN=
tcmu_mkdev $HBA $NAME || tcmu_fatal "cannot create user_$HBA/$NAME"
helper disabled --dev "$DP_DEV" --final-control "$GOOD" "${RESTORE[@]}" \
	--restore attrib/cmd_time_out=30 --restore attrib/force_pr_aptpl=0

# ---------------------------------------------------------------------------
dp_section "enabled device"

check_write_ok "enable after the disabled phase" "$DP_DEV/enable" 1 ||
	tcmu_fatal "the device cannot be enabled after the disabled phase"
DP_UIO=$(tcmu_find_uio "$(tcmu_uio_name $HBA $NAME hard/badinput)")
[[ "$DP_UIO" =~ ^uio[0-9]+$ ]] ||
	tcmu_fatal "expected one uio device named $(tcmu_uio_name $HBA $NAME hard/badinput), found $(tcmu_show "$DP_UIO")"
tcmu_wait_for 5 test -c "/dev/$DP_UIO" || tcmu_fatal "/dev/$DP_UIO did not appear"
helper enabled --dev "$DP_DEV" --uio "$DP_UIO" --hba $HBA --name $NAME \
	--race "$RACE" "${RESTORE[@]}" --restore attrib/cmd_time_out=30 \
	--restore attrib/force_pr_aptpl=0 --restore action/block_dev=0 \
	--restore "attrib/dev_size=$DEV_SIZE" --restore attrib/dev_config=hard/badinput
check_eq "dev_size restored for the handler" "$DEV_SIZE" "$(tcmu_value "$DP_DEV/attrib/dev_size")"
check_eq "device unblocked for the handler" unblocked "$(tcmu_value "$DP_DEV/action/block_dev")"

# ---------------------------------------------------------------------------
dp_section "exported device"

if dp_handler_start && dp_export; then
	# Let the SCSI scan finish: nothing else may move the counters.
	prev=
	for ((i = 0; i < 50; i++)); do
		cur=$(dp_stat cmds)
		[ "$cur" == "$prev" ] && break
		prev=$cur
		sleep 0.3
	done
	# On the debug kernel only what export changes (the rules of
	# cmd_time_out and force_pr_aptpl, the netlink reconfiguration of a
	# live device, the actions) is tested again, to keep the time down.
	only=()
	if [ ${#FAST[@]} -ne 0 ]; then
		only=(--only "control,attrib/cmd_time_out,attrib/force_pr_aptpl,attrib/dev_size,attrib/dev_config,attrib/emulate_write_cache,action/block_dev,action/reset_ring")
	fi
	helper exported --dev "$DP_DEV" --uio "$DP_UIO" --hba $HBA --name $NAME \
		"${only[@]}" "${RESTORE[@]}" --restore action/block_dev=0 \
		--restore "attrib/dev_size=$DEV_SIZE" --restore attrib/dev_config=hard/badinput

	# The device must still work after all that.
	head -c $((1 << 20)) /dev/urandom > "$DP_WORK/in"
	if dd if="$DP_WORK/in" of="$DP_DISK" bs=64k oflag=direct status=none &&
		dd if="$DP_DISK" of="$DP_WORK/out" bs=64k count=16 iflag=direct status=none; then
		check_true "1 MiB written and read back through the disk afterwards" \
			cmp -s "$DP_WORK/in" "$DP_WORK/out"
	else
		fail "I/O on $DP_DISK failed after the exported phase"
		dp_handler_log 20
	fi
	check_true "handler still running" dp_handler_alive
fi
dp_teardown

tcmu_finish
