#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# timeout: 300
#
# The UIO device an enabled user device registers: its name (with and
# without dev_config, with '/' in dev_config), version, map0 name, size
# and offset for several geometries, the device node, and the mailbox at
# the start of map0 as seen through mmap -- read by the C helper (built
# from our uapi header) and by the Python reader (offsets spelled out from
# the ABI), which must agree.  Removing the device removes the UIO device.

# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

tcmu_setup

HBA=3
PAGE_SIZE=$(getconf PAGESIZE)
MAILBOX_BIN=$(tcmu_helper tcmu_mailbox) || MAILBOX_BIN=
[ -n "$MAILBOX_BIN" ] || fail "the C helper tcmu_mailbox is not available (build failed?)"
MAILBOX_PY=$TCMU_DIR/uio_mailbox.py

# check_uio NAME DEV_CONFIG RING_MB DATA_MB [CONTROL-EXTRA]
# Create user_$HBA/NAME with that geometry, enable it, check its UIO
# device and mailbox, remove it and check the UIO device is gone.
check_uio()
{
	local name=$1 cfg=$2 ring=$3 data=$4 extra=${5:-}
	local dev uio_name uios uio sysd v want_size ctl
	local c_out py_out scan_len what="$name (ring ${ring} MiB, data ${data} MiB)"

	dev=$(tcmu_dev_path $HBA "$name")
	tcmu_mkdev $HBA "$name" || { fail "cannot create user_$HBA/$name"; return; }
	ctl="dev_size=1048576,cmd_ring_size_mb=$ring,max_data_area_mb=$data"
	[ -n "$cfg" ] && ctl+=",dev_config=$cfg"
	[ -n "$extra" ] && ctl+=",$extra"
	check_write_ok "$what: configure" "$dev/control" "$ctl" || return
	uio_name=$(tcmu_uio_name $HBA "$name" "$cfg")
	check_eq "$what: no uio device before enable" "" "$(tcmu_find_uio "$uio_name")"
	check_write_ok "$what: enable" "$dev/enable" 1 || return

	uios=$(tcmu_find_uio "$uio_name")
	check_match "$what: exactly one uio device named $uio_name" '^uio[0-9]+$' "$uios" || {
		tcmu_log "tcm-user uio devices: $(tcmu_all_uio | tr '\n' ';')"
		return
	}
	uio=$uios
	sysd=$UIO_CLASS/$uio

	check_eq "$what: $uio/version" 2 "$(tcmu_value "$sysd/version")"
	check_eq "$what: $uio/maps/map0/name" "tcm-user command & data buffer" \
		"$(tcmu_value "$sysd/maps/map0/name")"
	check_eq "$what: $uio/maps/map0/offset" 0x0 "$(tcmu_value "$sysd/maps/map0/offset")"
	check_false "$what: only one map" test -e "$sysd/maps/map1"

	v=$(tcmu_value "$sysd/maps/map0/size")
	want_size=$(( (ring + data) * TCMU_MB ))
	if check_match "$what: map0/size is hex" '^0x[0-9a-f]+$' "$v"; then
		check_eq "$what: map0/size is ring + data area" \
			"$(printf '0x%x' $want_size)" "$(printf '0x%x' $((v)))"
	fi

	check_true "$what: /dev/$uio is a character device" \
		tcmu_wait_for 5 test -c "/dev/$uio"

	# The helpers map the whole region (upstream refuses any other
	# length) but read only the mailbox and the first page of the ring,
	# or the whole ring when it is small; the data area has no pages
	# until a command owns them.
	scan_len=$PAGE_SIZE
	[ "$ring" -le 2 ] && scan_len=$((ring * TCMU_MB))

	if [ -n "$MAILBOX_BIN" ]; then
		c_out=$("$MAILBOX_BIN" "/dev/$uio" "$scan_len" 2>&1)
		check_eq "$what: mailbox via mmap (C helper)" \
			"$(printf '%s\n' version=2 flags=0xf cmdr_off=$TCMU_CMDR_OFF \
				cmdr_size=$((ring * TCMU_MB - TCMU_CMDR_OFF)) cmd_head=0 \
				cmd_tail=0 ring_nonzero=0)" \
			"$c_out"
	fi
	py_out=$("$TCMU_PYTHON" "$MAILBOX_PY" "/dev/$uio" "$scan_len" 2>&1)
	check_eq "$what: mailbox via mmap (Python)" \
		"$(printf '%s\n' version=2 flags=0xf cmdr_off=$TCMU_CMDR_OFF \
			cmdr_size=$((ring * TCMU_MB - TCMU_CMDR_OFF)) cmd_head=0 \
			cmd_tail=0 ring_nonzero=0)" \
		"$py_out"

	check_true "$what: rmdir" rmdir "$dev"
	check_eq "$what: uio device gone after rmdir" "" "$(tcmu_find_uio "$uio_name")"
	check_false "$what: $sysd gone after rmdir" test -e "$sysd"
	check_true "$what: /dev/$uio gone after rmdir" \
		tcmu_wait_for 5 test ! -e "/dev/$uio"
}

# Names.
check_uio plain "" 1 1
check_uio named "cfgstring" 1 1
check_uio slashes "file//var/tmp/disk.img" 1 1
check_uio deep "rbd/pool/image@snap;opt=1" 1 1

# Geometries: name defaults, map sizes.
check_uio g2x3 "" 2 3
check_uio g8x16 "" 8 16 "data_pages_per_blk=4"
check_uio g4x1 "" 4 1
check_uio gdefault "" 8 1024

# The default geometry with nothing but dev_size set: 0x40800000.
D=$(tcmu_dev_path $HBA defaults)
tcmu_mkdev $HBA defaults || tcmu_fatal "cannot create user_$HBA/defaults"
check_write_ok "defaults: configure dev_size only" "$D/control" "dev_size=1048576"
check_write_ok "defaults: enable" "$D/enable" 1
uio=$(tcmu_find_uio "$(tcmu_uio_name $HBA defaults)")
if check_match "defaults: one uio device" '^uio[0-9]+$' "$uio"; then
	v=$(tcmu_value "$UIO_CLASS/$uio/maps/map0/size")
	check_eq "defaults: map0/size" 0x40800000 "$(printf '0x%x' $((v)))"
fi
check_true "defaults: rmdir" rmdir "$D"

# Two devices at once get two distinct UIO devices.
A=$(tcmu_dev_path $HBA twin_a)
B=$(tcmu_dev_path $HBA twin_b)
tcmu_mkdev $HBA twin_a || tcmu_fatal "cannot create twin_a"
tcmu_mkdev $HBA twin_b || tcmu_fatal "cannot create twin_b"
for d in "$A" "$B"; do
	check_write_ok "${d##*/}: configure" "$d/control" "dev_size=1048576,max_data_area_mb=1,cmd_ring_size_mb=1"
	check_write_ok "${d##*/}: enable" "$d/enable" 1
done
ua=$(tcmu_find_uio "$(tcmu_uio_name $HBA twin_a)")
ub=$(tcmu_find_uio "$(tcmu_uio_name $HBA twin_b)")
check_match "twin_a has a uio device" '^uio[0-9]+$' "$ua"
check_match "twin_b has a uio device" '^uio[0-9]+$' "$ub"
check_ne "twins have distinct uio devices" "$ua" "$ub"
check_true "rmdir twin_a" rmdir "$A"
check_eq "twin_b's uio device survives twin_a's removal" "$ub" \
	"$(tcmu_find_uio "$(tcmu_uio_name $HBA twin_b)")"
check_true "rmdir twin_b" rmdir "$B"

check_eq "no tcm-user uio device left" "" "$(tcmu_all_uio)"

tcmu_finish
