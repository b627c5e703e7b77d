#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# timeout: 300
#
# Once a device is enabled its geometry is fixed: every control key is
# refused with EINVAL, even with a value that would be valid before enable,
# and neither info, the attributes, the UIO map nor the mailbox change.
# A second, disabled device on the same hba is not affected.

# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

tcmu_setup

HBA=4
DEV=$(tcmu_dev_path $HBA locked)
tcmu_mkdev $HBA locked || tcmu_fatal "cannot create user_$HBA/locked"

check_write_ok "configure" "$DEV/control" \
	"dev_config=locked/cfg,dev_size=1048576,hw_block_size=512,hw_max_sectors=128,max_data_area_mb=1,cmd_ring_size_mb=1,data_pages_per_blk=1,nl_reply_supported=0"
check_write_ok "enable" "$DEV/enable" 1 || tcmu_finish

UIO_NAME=$(tcmu_uio_name $HBA locked locked/cfg)
UIO=$(tcmu_find_uio "$UIO_NAME")
check_match "uio device present" '^uio[0-9]+$' "$UIO" || tcmu_finish
MAP_SIZE=$(tcmu_value "$UIO_CLASS/$UIO/maps/map0/size")
MBOX=$("$TCMU_PYTHON" "$TCMU_DIR/uio_mailbox.py" "/dev/$UIO" 2>&1)
check_match "mailbox readable" '^version=2' "$MBOX"

before=
text=
after=
for s in dev_size=2097152 hw_block_size=4096 hw_block_size=1024 \
	hw_max_sectors=64 max_data_area_mb=2 data_pages_per_blk=2 \
	cmd_ring_size_mb=2 dev_config=other nl_reply_supported=1 \
	nl_reply_supported=-1 \
	"dev_size=2097152,max_data_area_mb=4" \
	$'cmd_ring_size_mb=8\ndev_config=x\n'; do
	tcmu_snapshot before "$DEV"
	check_write_err "enabled device refuses $(tcmu_show "$s")" "$DEV/control" "$s"
	tcmu_snapshot after "$DEV"
	if [ "$before" == "$after" ]; then
		pass "nothing changed after $(tcmu_show "$s")"
	else
		fail "state changed after the refused $(tcmu_show "$s"):"
		tcmu_snapshot_diff "$before" "$after"
	fi
done

check_eq "uio name unchanged" "$UIO" "$(tcmu_find_uio "$UIO_NAME")"
check_eq "map0 size unchanged" "$MAP_SIZE" "$(tcmu_value "$UIO_CLASS/$UIO/maps/map0/size")"
check_eq "mailbox unchanged" "$MBOX" "$("$TCMU_PYTHON" "$TCMU_DIR/uio_mailbox.py" "/dev/$UIO" 2>&1)"
tcmu_read text "$DEV/info"
check_match "info still shows the configured geometry" \
	'Config: locked/cfg Size: 1048576 MaxDataAreaMB: 1 DataPagesPerBlk: 1 CmdRingSizeMB: 1'$'\n''$' "$text"

# Enabling twice is refused and changes nothing either.
tcmu_snapshot before "$DEV"
check_false "second enable refused" tcmu_write "$DEV/enable" 1
tcmu_snapshot after "$DEV"
check_eq "nothing changed after the second enable" "$before" "$after"
check_eq "still one uio device after the second enable" "$UIO" "$(tcmu_find_uio "$UIO_NAME")"

# A disabled sibling keeps a working control file.
SIB=$(tcmu_dev_path $HBA sibling)
tcmu_mkdev $HBA sibling || tcmu_fatal "cannot create user_$HBA/sibling"
check_write_ok "disabled sibling accepts control" "$SIB/control" \
	"dev_size=2097152,max_data_area_mb=2,cmd_ring_size_mb=2"
check_eq "sibling attrib/dev_size" 2097152 "$(tcmu_value "$SIB/attrib/dev_size")"

check_true "rmdir the enabled device" rmdir "$DEV"
check_eq "its uio device is gone" "" "$(tcmu_find_uio "$UIO_NAME")"
check_true "rmdir the sibling" rmdir "$SIB"

tcmu_finish
