#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# timeout: 900
#
# A user:qcow backstore served by tcmu-runner, exported at the same time
# through tcm_loop and through the LIO iSCSI target on 127.0.0.1:3260
# (targetcli: target, tpg1, portal, LUN, ACL for our initiator name), and
# used by open-iscsi:
#
#   - sendtargets discovery lists the target, iscsiadm logs in, a disk
#     shows up behind the session with the backstore's capacity;
#   - data written through tcm_loop reads back through iSCSI and the
#     other way round, byte for byte (large writes split by the block
#     layer, unaligned 4 KiB writes);
#   - logout removes the session and its disk while the tcm_loop disk
#     still reads the data; a second login sees it again;
#   - everything is removed at the end and tcmu-runner exits 0.

# shellcheck source=lib_rc.sh
. "$(dirname "$0")/lib_rc.sh"

# Only the handlers the test uses (each costs time at every start).
RC_HANDLERS="qcow"
rc_init
rc_require blockdev
rc_iscsi_init || tcmu_finish

QCOW=$RC_WORK/rcqi.qcow2
WWN=$(rc_loop_wwn 2)
IQN=iqn.2003-01.org.linux-iscsi.tcmu-vm:rc-iscsi
SO=/backstores/user:qcow/rcqi
MIB=$((1 << 20))

rc_dbus_start || tcmu_finish
rc_runner_start || tcmu_finish

rc_section "targetcli: qcow backstore, tcm_loop and iSCSI targets"
check_true "qemu-img creates a 64 MiB qcow2 image" rc_qcow_image "$QCOW" 64M || tcmu_finish
rc_q_user rcqi qcow 64M "$QCOW"
rc_q_loop "$WWN"
rc_q_loop_lun "$WWN" "$SO" 0
rc_q_iscsi "$IQN" 127.0.0.1 3260
rc_q_iscsi_lun "$IQN" "$SO" 0
rc_q_iscsi_acl "$IQN" "$RC_ISCSI_INITIATOR"
check_true "targetcli creates the backstore, a tcm_loop LUN and an iSCSI target with portal, LUN and ACL" \
	rc_tcli_run || tcmu_finish

TPG=$RC_ISCSI/$IQN/tpgt_1
check_eq "configfs: iSCSI tpg enabled" 1 "$(tcmu_value "$TPG/enable")"
check_eq "configfs: the only portal is 127.0.0.1:3260" "127.0.0.1:3260" \
	"$(cd "$TPG/np" 2>/dev/null && echo *)"
link=
for f in "$TPG/lun/lun_0/"*; do
	[ -L "$f" ] && link=$(readlink -f "$f")
done
check_eq "configfs: LUN 0 of the tpg points at the backstore" \
	"$(readlink -f "$(rc_so_dir rcqi)")" "$link"
check_true "configfs: the ACL maps LUN 0" test -d "$TPG/acls/$RC_ISCSI_INITIATOR/lun_0"

if ! rc_loop_dev "$WWN" 0 || [ -z "$RC_BLK" ]; then
	tcmu_fatal "no tcm_loop disk for the backstore"
fi
LDISK=/dev/$RC_BLK
tcmu_log "tcm_loop disk: $LDISK ($RC_HCTL)"

rc_random "$RC_WORK/a" $((2 * MIB))
check_true "tcm_loop: 2 MiB written at 1 MiB" rc_dd_write "$LDISK" "$RC_WORK/a" $MIB

# ---------------------------------------------------------------------------
rc_section "open-iscsi: discovery, login"
rc_iscsi_login "$IQN" 127.0.0.1 3260 || { rc_runner_log_tail 10; tcmu_finish; }
check_eq "one iSCSI session, to our target" "$IQN" "$(rc_iscsi_sessions)"
if ! rc_iscsi_dev "$IQN" 0 || [ -z "$RC_BLK" ]; then
	fail "no disk appeared behind the iSCSI session"
	tcmu_finish
fi
IDISK=/dev/$RC_BLK
IHCTL=$RC_HCTL
tcmu_log "iSCSI disk: $IDISK ($IHCTL)"
check_eq "iSCSI disk: vendor" "LIO-ORG" "$(tcmu_value "/sys/bus/scsi/devices/$IHCTL/vendor" | sed 's/ *$//')"
check_eq "iSCSI disk: capacity" $((64 * MIB)) "$(blockdev --getsize64 "$IDISK")"

rc_section "data both ways"
rc_check_data "iSCSI reads what tcm_loop wrote" "$IDISK" "$RC_WORK/a" $MIB
rc_random "$RC_WORK/b" $(($(rc_scale 8 2) * MIB))
check_true "iSCSI: $(($(rc_file_size "$RC_WORK/b") / MIB)) MiB written at 8 MiB in 1 MiB writes" \
	rc_dd_write "$IDISK" "$RC_WORK/b" $((8 * MIB)) $MIB
rc_random "$RC_WORK/c" $((12 << 10))
check_true "iSCSI: 12 KiB written at 40 MiB + 4 KiB in 4 KiB writes" \
	rc_dd_write "$IDISK" "$RC_WORK/c" $((40 * MIB + 4096)) 4096
rc_check_data "iSCSI reads its large write back" "$IDISK" "$RC_WORK/b" $((8 * MIB)) $MIB
rc_check_data "tcm_loop reads the iSCSI large write" "$LDISK" "$RC_WORK/b" $((8 * MIB))
rc_check_data "tcm_loop reads the iSCSI 4 KiB writes" "$LDISK" "$RC_WORK/c" $((40 * MIB + 4096)) 4096
rc_check_data "iSCSI still reads the first range" "$IDISK" "$RC_WORK/a" $MIB

# ---------------------------------------------------------------------------
rc_section "logout, login again"
check_true "iscsiadm logout" rc_iscsi_logout "$IQN" 127.0.0.1 3260
check_eq "no iSCSI session left" "" "$(rc_iscsi_sessions)"
check_true "the iSCSI disk went away" tcmu_wait_for 15 test ! -e "/sys/bus/scsi/devices/$IHCTL"
rc_check_data "tcm_loop still reads the data after the logout" "$LDISK" "$RC_WORK/b" $((8 * MIB))

if rc_iscsi_login "$IQN" 127.0.0.1 3260 && rc_iscsi_dev "$IQN" 0 && [ -n "$RC_BLK" ]; then
	pass "second login: a disk again (/dev/$RC_BLK)"
	rc_check_data "second login reads the data" "/dev/$RC_BLK" "$RC_WORK/b" $((8 * MIB))
	check_true "second logout" rc_iscsi_logout "$IQN" 127.0.0.1 3260
	check_eq "no iSCSI session left" "" "$(rc_iscsi_sessions)"
else
	fail "second login gave no disk"
fi

check_true "tcmu-runner still running" rc_runner_alive
rc_teardown
tcmu_finish
