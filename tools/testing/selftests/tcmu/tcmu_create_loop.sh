#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# timeout: 1200
#
# Create, enable and remove a device 100 times (small geometry to keep it
# quick), plus 20 rounds that remove a device without enabling it.  Each
# round must get its UIO device and lose it again; at the end no UIO
# device or configfs directory may be left.  With kmemleak (debug kernel)
# the objects allocated during the loop must not leak.
#
# TCMU_LOOPS overrides the number of enabled rounds (for quick runs).

# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

tcmu_setup

HBA=5
LOOPS=${TCMU_LOOPS:-100}
HBA_PATH=$(tcmu_hba_path $HBA)
tcmu_mkhba $HBA || tcmu_fatal "cannot create user_$HBA"

START=$(date +%s)
errors=0

# Report only the first few failures of each kind, then count.
loop_fail()
{
	errors=$((errors + 1))
	[ "$errors" -le 10 ] && fail "$*"
	return 0
}

for ((i = 1; i <= LOOPS; i++)); do
	name=loop$((i % 3))
	dev=$HBA_PATH/$name
	if ! mkdir "$dev"; then
		loop_fail "round $i: mkdir $name"
		continue
	fi
	tcmu_write "$dev/control" "dev_size=1048576,max_data_area_mb=1,cmd_ring_size_mb=1" ||
		loop_fail "round $i: control: $TCMU_ERR"
	if tcmu_write "$dev/enable" 1; then
		uio=$(tcmu_find_uio "$(tcmu_uio_name $HBA $name)")
		[[ "$uio" =~ ^uio[0-9]+$ ]] ||
			loop_fail "round $i: expected one uio device, found $(tcmu_show "$uio")"
	else
		loop_fail "round $i: enable: $TCMU_ERR"
	fi
	rmdir "$dev" || loop_fail "round $i: rmdir $name"
	uio=$(tcmu_find_uio "$(tcmu_uio_name $HBA $name)")
	[ -z "$uio" ] || loop_fail "round $i: uio device $uio left after rmdir"
done

for ((i = 1; i <= 20; i++)); do
	dev=$HBA_PATH/idle
	mkdir "$dev" || { loop_fail "idle round $i: mkdir"; continue; }
	tcmu_write "$dev/control" "dev_size=1048576,max_data_area_mb=1,cmd_ring_size_mb=1" ||
		loop_fail "idle round $i: control: $TCMU_ERR"
	rmdir "$dev" || loop_fail "idle round $i: rmdir"
done

END=$(date +%s)
tcmu_log "$LOOPS enabled + 20 idle rounds in $((END - START))s"
check_eq "every round succeeded" 0 "$errors"

check_eq "no tcm-user uio device left" "" "$(tcmu_all_uio)"
left=
for d in "$HBA_PATH"/*/; do
	[ -d "$d" ] && left+="${d%/} "
done
check_eq "no device directory left under user_$HBA" "" "$left"
check_true "rmdir user_$HBA" rmdir "$HBA_PATH"
check_false "user_$HBA is gone" test -e "$HBA_PATH"

if tcmu_kmemleak_available; then
	age=$(( $(date +%s) - START + 1 ))
	if tcmu_kmemleak_scan; then
		ours=0
		others=0
		if tcmu_kmemleak_report "$age" ours others; then
			check_eq "kmemleak: no leak from the code under test" 0 "$ours"
			check_eq "kmemleak: no other object leaked during the loop" 0 "$others"
		else
			fail "kmemleak: cannot read $KMEMLEAK"
		fi
	else
		tcmu_log "kmemleak present but refuses to scan; leak check not done"
	fi
else
	tcmu_log "no kmemleak in this kernel; leak check not done"
fi

tcmu_finish
