#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# timeout: 120
#
# data_pages_per_blk=0 must be refused with EINVAL.  Upstream 6.1 divides
# by the value before checking it and oopses, so this case lives apart from
# tcmu_control_keys.sh (and sorts last): when it does bring the kernel
# down, the other tests have already reported.

# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

tcmu_setup

HBA=9
DEV=$(tcmu_dev_path $HBA zero)
tcmu_mkdev $HBA zero || tcmu_fatal "cannot create user_$HBA/zero"

before=
after=
for s in "data_pages_per_blk=0" "data_pages_per_blk=00" \
	"max_data_area_mb=1,data_pages_per_blk=0" \
	"data_pages_per_blk=0,dev_size=1048576"; do
	tcmu_snapshot before "$DEV"
	check_write_err "control rejects $s" "$DEV/control" "$s"
	tcmu_snapshot after "$DEV"
	if [ "$before" == "$after" ]; then
		pass "nothing changed after $s"
	else
		fail "state changed after the rejected $s:"
		tcmu_snapshot_diff "$before" "$after"
	fi
done

check_eq "attrib/data_pages_per_blk still 1" 1 "$(tcmu_value "$DEV/attrib/data_pages_per_blk")"

# The device is still usable.
check_write_ok "configure" "$DEV/control" "dev_size=1048576,max_data_area_mb=1,cmd_ring_size_mb=1"
check_write_ok "enable" "$DEV/enable" 1
check_eq "one uio device" 1 "$(tcmu_find_uio "$(tcmu_uio_name $HBA zero)" | wc -l)"
check_write_err "data_pages_per_blk=0 refused once enabled" "$DEV/control" "data_pages_per_blk=0"
check_true "rmdir" rmdir "$DEV"

tcmu_finish
