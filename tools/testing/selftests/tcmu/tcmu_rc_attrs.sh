#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# timeout: 900
#
# Attributes of a user:qcow backstore through targetcli and configfs, with
# tcmu-runner (debug log) serving it:
#
#   - "targetcli SO set attribute cmd_time_out=45 qfull_time_out=7
#     tmr_notification=1" (before export): configfs and "targetcli SO get
#     attribute" both show the new values; out-of-range values
#     (qfull_time_out=-2, cmd_time_out=-5) are refused and change nothing;
#   - emulate_write_cache=1: the kernel sends a RECONFIG (write cache)
#     event, tcmu-runner's log shows it arrive and the qcow handler
#     refuse it, targetcli fails with "Operation not supported" and the
#     attribute stays 0;
#   - once exported through tcm_loop: cmd_time_out can no longer change
#     (refused, the old value stays) but qfull_time_out can;
#   - dev_size written to configfs after enable: the RECONFIG (size)
#     event reaches tcmu-runner (its log), the handler refuses it, the
#     write fails with EOPNOTSUPP, dev_size and the capacity the
#     initiator sees after a rescan (blockdev, READ CAPACITY) are
#     unchanged, and I/O still works; the same for a dev_config change.
#
# tcmu-runner 1.5.4 ships no handler that accepts a size change (only rbd,
# which needs a Ceph cluster), so the refusal path is what runs here.

# shellcheck source=lib_rc.sh
. "$(dirname "$0")/lib_rc.sh"

# Only the qcow handler is needed.
RC_HANDLERS=qcow
rc_init
rc_require blockdev

QCOW=$RC_WORK/rcqa.qcow2
WWN=$(rc_loop_wwn 4)
SO=/backstores/user:qcow/rcqa
MIB=$((1 << 20))

rc_dbus_start || tcmu_finish
rc_runner_start -d || tcmu_finish

# got_attrs: the "name=value" lines "get attribute" printed in the last
# targetcli run, on one line.
got_attrs()
{
	printf '%s\n' "$RC_TCLI_OUT" | sed -n 's/^\([a-z_]*=[^ ]*\) *$/\1/p' | tr '\n' ' ' | sed 's/ $//'
}

# cfs ATTR...: the same from configfs.
cfs()
{
	local a out=()
	for a in "$@"; do
		out+=("$a=$(tcmu_value "$DIR/attrib/$a")")
	done
	echo "${out[*]}"
}

rc_section "set-up"
check_true "qemu-img creates a 64 MiB qcow2 image" rc_qcow_image "$QCOW" 64M || tcmu_finish
rc_q_user rcqa qcow 64M "$QCOW"
check_true "targetcli creates the backstore" rc_tcli_run || tcmu_finish
DIR=$(rc_so_dir rcqa)
[ -n "$DIR" ] || tcmu_fatal "no configfs directory for rcqa"
check_eq "defaults" "cmd_time_out=30 qfull_time_out=-1 tmr_notification=0 emulate_write_cache=0" \
	"$(cfs cmd_time_out qfull_time_out tmr_notification emulate_write_cache)"

# ---------------------------------------------------------------------------
rc_section "set attribute (not exported)"
# "!": the line must fail.
rc_tcli_q "$SO set attribute cmd_time_out=45 qfull_time_out=7 tmr_notification=1" \
	"$SO get attribute cmd_time_out qfull_time_out tmr_notification" \
	"!$SO set attribute qfull_time_out=-2" \
	"!$SO set attribute cmd_time_out=-5"
check_true "targetcli: set attribute cmd_time_out=45 qfull_time_out=7 tmr_notification=1; get attribute; qfull_time_out=-2 and cmd_time_out=-5 refused" \
	rc_tcli_run
check_eq "targetcli get attribute shows the new values" \
	"cmd_time_out=45 qfull_time_out=7 tmr_notification=1" "$(got_attrs)"
check_eq "configfs shows the new values, which the refused ones did not change" \
	"cmd_time_out=45 qfull_time_out=7 tmr_notification=1" \
	"$(cfs cmd_time_out qfull_time_out tmr_notification)"

mark=$(rc_runner_log_mark)
check_true "targetcli: qfull_time_out=-1 accepted, emulate_write_cache=1 refused" \
	rc_tcli_lines "$SO set attribute qfull_time_out=-1" "!$SO set attribute emulate_write_cache=1"
check_match "  with Operation not supported (the handler's answer)" \
	'Operation not supported' "$RC_TCLI_OUT"
check_eq "configfs: qfull_time_out -1, emulate_write_cache still 0" \
	"qfull_time_out=-1 emulate_write_cache=0" "$(cfs qfull_time_out emulate_write_cache)"
check_true "tcmu-runner's log shows the write cache RECONFIG and the handler's refusal" \
	rc_runner_log_wait 10 "$mark" 'rcqa: Handler reconfig for TCMULIB_CFG_WRITE_CACHE failed'

# ---------------------------------------------------------------------------
rc_section "exported"
rc_tcli_q "/loopback create $WWN" "/loopback/$WWN/luns create $SO lun=0" \
	"!$SO set attribute cmd_time_out=50" \
	"$SO set attribute qfull_time_out=9" \
	"$SO get attribute cmd_time_out qfull_time_out"
check_true "targetcli: export through tcm_loop; then cmd_time_out=50 refused, qfull_time_out=9 accepted" \
	rc_tcli_run || tcmu_finish
check_eq "configfs: cmd_time_out still 45, qfull_time_out 9" "cmd_time_out=45 qfull_time_out=9" \
	"$(cfs cmd_time_out qfull_time_out)"
check_eq "targetcli get attribute" "cmd_time_out=45 qfull_time_out=9" "$(got_attrs)"
if ! rc_loop_dev "$WWN" 0 || [ -z "$RC_BLK" ]; then
	tcmu_fatal "no tcm_loop disk"
fi
DISK=/dev/$RC_BLK
BLK=$RC_BLK
check_eq "capacity" $((64 * MIB)) "$(blockdev --getsize64 "$DISK")"

rc_random "$RC_WORK/a" $((1 * MIB))
check_true "1 MiB written at 2 MiB" rc_dd_write "$DISK" "$RC_WORK/a" $((2 * MIB))

# ---------------------------------------------------------------------------
rc_section "dev_size after enable"
mark=$(rc_runner_log_mark)
check_write_err "configfs: dev_size=128 MiB after enable is refused" \
	"$DIR/attrib/dev_size" $((128 * MIB)) "Operation not supported"
check_true "tcmu-runner's log shows the size RECONFIG and the handler's refusal" \
	rc_runner_log_wait 10 "$mark" 'rcqa: Handler reconfig for TCMULIB_CFG_DEV_SIZE failed'
check_eq "configfs: dev_size unchanged" $((64 * MIB)) "$(tcmu_value "$DIR/attrib/dev_size")"
check_match "configfs: info still says Size: 67108864" 'Size: 67108864 ' "$(tcmu_value "$DIR/info" | tr '\n' ' ')"
check_true "rescan of $BLK" tcmu_write "/sys/block/$BLK/device/rescan" 1
check_eq "capacity after the rescan unchanged" $((64 * MIB)) "$(blockdev --getsize64 "$DISK")"
cap=$(sg_readcap -l "$DISK" 2>&1)
check_match "READ CAPACITY(16) from tcmu-runner: still 131072 blocks" \
	'Last LBA=131071 ' "$(printf '%s' "$cap" | tr '\n' ' ')"
rc_check_data "the data is still there" "$DISK" "$RC_WORK/a" $((2 * MIB))

mark=$(rc_runner_log_mark)
check_write_err "configfs: dev_config change after enable is refused" \
	"$DIR/attrib/dev_config" "qcow/$RC_WORK/other.qcow2" "Operation not supported"
check_true "tcmu-runner's log shows the config RECONFIG and the handler's refusal" \
	rc_runner_log_wait 10 "$mark" 'rcqa: Handler reconfig for TCMULIB_CFG_DEV_CFGSTR failed'
check_eq "configfs: dev_config unchanged" "qcow/$QCOW" "$(tcmu_value "$DIR/attrib/dev_config")"

rc_random "$RC_WORK/b" $((1 * MIB))
check_true "I/O after the refused reconfigurations: 1 MiB written at 30 MiB" \
	rc_dd_write "$DISK" "$RC_WORK/b" $((30 * MIB))
rc_check_data "and read back" "$DISK" "$RC_WORK/b" $((30 * MIB))
rc_check_data "the first write too" "$DISK" "$RC_WORK/a" $((2 * MIB))

check_true "tcmu-runner still running" rc_runner_alive
rc_teardown
tcmu_finish
