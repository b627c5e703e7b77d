#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# timeout: 900
#
# tcmu-runner dies and comes back; the devices stay:
#
#   user:qcow and user:zbc exported through tcm_loop, data written;
#   1. tcmu-runner is SIGKILLed while idle: the backstores, their uio
#      devices and the disks stay (and, with our module, attrib/stats
#      counts one handler exit per device); a read issued now waits (it
#      neither fails nor completes without a handler); a new tcmu-runner
#      reopens the existing devices, the waiting read completes with the
#      right data, and everything written before reads back (the zone's
#      write pointer included); new writes work;
#   2. tcmu-runner is stopped with SIGTERM (exit 0) and started again:
#      the same, without the waiting read.

# shellcheck source=lib_rc.sh
. "$(dirname "$0")/lib_rc.sh"

# Only the handlers the test uses (each costs time at every start).
RC_HANDLERS="qcow zbc"
rc_init
rc_require sg_rep_zones blockdev

WWN=$(rc_loop_wwn 5)
QSO=/backstores/user:qcow/rcqr
MIB=$((1 << 20))

rc_dbus_start || tcmu_finish
rc_runner_start || tcmu_finish

# stat_of DIR NAME: one counter of our attrib/stats (empty without it).
stat_of()
{
	[ -r "$1/attrib/stats" ] || return 0
	sed -n "s/^$2 //p" "$1/attrib/stats"
}

# check_everything TITLE: all data written so far reads back.
check_everything()
{
	rc_check_data "$1: qcow data A" "$QDISK" "$RC_WORK/a" $MIB
	rc_check_data "$1: qcow data B" "$QDISK" "$RC_WORK/b" $((50 * MIB))
	rc_clear_ua "$ZSG"
	check_eq "$1: zone 2's write pointer" 17408 "$(rc_zone_wp "$ZSG" 16384)"
	rc_sg_read "$ZSG" "$RC_WORK/zs.back" 16384 1024 512 &&
		check_true "$1: zbc sequential zone data" cmp "$RC_WORK/zs" "$RC_WORK/zs.back"
}

rc_section "set-up"
# A read will wait for the restarted handler: room for a slow start.
rc_q_qcow_zbc rcqr rczr "$WWN" "$QSO set attribute cmd_time_out=120"
check_true "targetcli creates user:qcow, user:zbc, a tcm_loop target with 2 LUNs" rc_tcli_run ||
	tcmu_finish
QDIR=$(rc_so_dir rcqr)
ZDIR=$(rc_so_dir rczr)
rc_qcow_zbc_devs "$WWN" || tcmu_finish
QBLK=$RC_QBLK
QDISK=/dev/$QBLK
ZSG=$RC_ZSG
echo 120 > "/sys/block/$QBLK/device/timeout"
QUIO=$(tcmu_all_uio | awk -v n="/rcqr/" 'index($2, n) { print $1 }')
ZUIO=$(tcmu_all_uio | awk -v n="/rczr/" 'index($2, n) { print $1 }')
check_match "the two uio devices" '^uio[0-9]+ uio[0-9]+$' "$QUIO $ZUIO"

rc_random "$RC_WORK/a" $((2 * MIB))
rc_random "$RC_WORK/b" $((1 * MIB))
rc_random "$RC_WORK/zs" $((512 << 10))
check_true "qcow: 2 MiB written at 1 MiB" rc_dd_write "$QDISK" "$RC_WORK/a" $MIB
check_true "zbc: RESET WRITE POINTER of zone 2" sg_reset_wp --zone=16384 "/dev/$ZSG"
check_true "zbc: 512 KiB written at zone 2's write pointer" rc_sg_write "$ZSG" "$RC_WORK/zs" 16384 512
check_true "qcow: 1 MiB written at 50 MiB" rc_dd_write "$QDISK" "$RC_WORK/b" $((50 * MIB))
check_everything "before"

# ---------------------------------------------------------------------------
rc_section "SIGKILL while idle"
q_exits=$(stat_of "$QDIR" handler_exits)
z_exits=$(stat_of "$ZDIR" handler_exits)
rc_runner_kill
check_eq "tcmu-runner was killed by SIGKILL" 137 "$RC_RUNNER_RC"
check_true "the backstores are still in configfs" test -d "$QDIR" -a -d "$ZDIR"
check_eq "their uio devices are still there" "$QUIO $ZUIO" \
	"$(tcmu_all_uio | awk -v q="/rcqr/" -v z="/rczr/" 'index($2, q) { a = $1 } index($2, z) { b = $1 } END { print a, b }')"
check_true "/dev/$QUIO still exists" test -c "/dev/$QUIO"
check_true "the qcow disk is still there" test -b "$QDISK"
if [ -n "$q_exits" ]; then
	check_eq "stats: one handler exit counted on each device" "$((q_exits + 1)) $((z_exits + 1))" \
		"$(stat_of "$QDIR" handler_exits) $(stat_of "$ZDIR" handler_exits)"
fi

# A read now has nobody to serve it: it must wait for the next handler.
rc_dd_read "$QDISK" "$RC_WORK/waiting" $MIB $MIB &
rpid=$!
RC_BG_PIDS+=("$rpid")
sleep 3
check_true "a read issued without a handler waits (still running after 3 s)" kill -0 "$rpid"

rc_section "restart after SIGKILL"
rc_runner_start || tcmu_finish
if tcmu_wait_for 90 rc_pid_gone "$rpid"; then
	wait "$rpid"
	check_eq "the waiting read completed successfully" 0 $?
	check_true "and returned the right data" cmp "$RC_WORK/waiting" <(head -c $MIB "$RC_WORK/a")
else
	fail "the read issued while tcmu-runner was dead did not complete within 90 s of its restart"
	rc_runner_log_tail 20
fi
RC_BG_PIDS=()
check_everything "after SIGKILL + restart"
rc_random "$RC_WORK/c" $((1 * MIB))
check_true "qcow: new 1 MiB write at 20 MiB" rc_dd_write "$QDISK" "$RC_WORK/c" $((20 * MIB))
rc_check_data "qcow: it reads back" "$QDISK" "$RC_WORK/c" $((20 * MIB))

# ---------------------------------------------------------------------------
rc_section "SIGTERM and restart"
check_true "tcmu-runner stops on SIGTERM" rc_runner_stop 30
check_eq "tcmu-runner exit status" 0 "$RC_RUNNER_RC"
check_true "the backstores are still in configfs" test -d "$QDIR" -a -d "$ZDIR"
rc_runner_start || tcmu_finish
check_everything "after SIGTERM + restart"
rc_check_data "qcow: the write made after the first restart" "$QDISK" "$RC_WORK/c" $((20 * MIB))
check_true "qcow: another write works" rc_dd_write "$QDISK" "$RC_WORK/b" $((40 * MIB))
rc_check_data "qcow: and reads back" "$QDISK" "$RC_WORK/b" $((40 * MIB))

rc_teardown
tcmu_finish
