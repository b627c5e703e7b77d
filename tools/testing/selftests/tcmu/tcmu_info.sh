#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# timeout: 300
#
# The exact text of info, and the attribute and action files a user device
# offers, with their defaults before and after enable.
#
# info is the target core's text (transport_dump_dev_state: status, queue
# depth, sector size, max sectors, then eight spaces) followed by our line:
#   Config: <dev_config|NULL> Size: <n> MaxDataAreaMB: <n> DataPagesPerBlk: <n> CmdRingSizeMB: <n>\n
# The core prints "Max Queue Depth" from a field only the (unused here)
# queue_depth attribute sets, so it is 0; the device is DEACTIVATED until
# a fabric exports it.

# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

tcmu_setup

HBA=2
PAGE_SIZE=$(getconf PAGESIZE)

core_text()
{
	# core_text BLOCKSIZE MAXSECTORS
	printf 'Status: DEACTIVATED  Max Queue Depth: 0  SectorSize: %s  HwMaxSectors: %s\n        ' "$1" "$2"
}

our_text()
{
	# our_text CONFIG SIZE MB PPB RING (without the final newline, which
	# command substitution would strip anyway)
	printf 'Config: %s Size: %s MaxDataAreaMB: %s DataPagesPerBlk: %s CmdRingSizeMB: %s' "$@"
}

# check_info DESCRIPTION DEVPATH EXPECTED-TEXT
check_info()
{
	local text
	tcmu_read text "$2/info"
	check_eq "$1" "$3" "$text"
}

# --- a fresh device -----------------------------------------------------------

D=$(tcmu_dev_path $HBA fresh)
tcmu_mkdev $HBA fresh || tcmu_fatal "cannot create user_$HBA/fresh"

tcmu_read text "$D/info"
# Before enable the core has not set up the sector size; only its format is
# fixed here.  Our part is exact.
re='^Status: DEACTIVATED  Max Queue Depth: 0  SectorSize: [0-9]+  HwMaxSectors: [0-9]+'$'\n''        '
check_match "info of a fresh device starts with the core's text" "$re" "$text"
core=${text%%Config: *}
check_eq "info of a fresh device: our part" \
	"$(our_text NULL 0 1024 1 8)"$'\n' "${text#"$core"}"
check_eq "info ends in exactly one newline" $'\n' "${text: -1}"
lines=${text//[!$'\n']/}
check_eq "info has exactly two lines" 2 "${#lines}"

# Defaults of our attributes before enable.
for kv in cmd_time_out=30 qfull_time_out=-1 max_data_area_mb=1024 \
	data_pages_per_blk=1 cmd_ring_size_mb=8 dev_config= dev_size=0 \
	tmr_notification=0; do
	tcmu_read v "$D/attrib/${kv%%=*}"
	check_eq "attrib/${kv%%=*} default" "${kv#*=}"$'\n' "$v"
done

# Every attribute the spec names exists and reads back as number + newline
# (dev_config: a string).
for a in cmd_time_out qfull_time_out max_data_area_mb data_pages_per_blk \
	cmd_ring_size_mb dev_size emulate_write_cache tmr_notification \
	nl_reply_supported hw_block_size hw_max_sectors hw_pi_prot_type \
	hw_queue_depth alua_support pgr_support emulate_pr enforce_pr_isids \
	force_pr_aptpl; do
	if [ ! -e "$D/attrib/$a" ]; then
		fail "attrib/$a is missing"
		continue
	fi
	tcmu_read v "$D/attrib/$a"
	check_match "attrib/$a reads as a number" $'^-?[0-9]+\n$' "$v"
done
check_true "attrib/dev_config exists" test -e "$D/attrib/dev_config"
for a in block_dev reset_ring free_kept_buf; do
	check_true "action/$a exists" test -e "$D/action/$a"
done
for f in control enable info; do
	check_true "$f exists" test -e "$D/$f"
done

# --- set every value, then enable ----------------------------------------------

CFG=file//var/tmp/disk.img
check_write_ok "configure" "$D/control" \
	"dev_config=$CFG,dev_size=1073741824,max_data_area_mb=64,data_pages_per_blk=4,cmd_ring_size_mb=2"
tcmu_read text "$D/info"
check_eq "info our part after control" "$(our_text "$CFG" 1073741824 64 4 2)"$'\n' "${text#*        }"

check_write_ok "enable" "$D/enable" 1
check_info "info after enable (defaults: 512-byte blocks, 128 sectors)" "$D" \
	"$(core_text 512 128)$(our_text "$CFG" 1073741824 64 4 2)"$'\n'
for kv in hw_block_size=512 hw_max_sectors=128 hw_queue_depth=128 \
	max_data_area_mb=64 data_pages_per_blk=4 cmd_ring_size_mb=2 \
	"dev_config=$CFG" dev_size=1073741824 cmd_time_out=30 \
	qfull_time_out=-1 tmr_notification=0; do
	tcmu_read v "$D/attrib/${kv%%=*}"
	check_eq "attrib/${kv%%=*} after enable" "${kv#*=}"$'\n' "$v"
done
tcmu_read v "$D/attrib/emulate_write_cache"
check_match "attrib/emulate_write_cache is 0 or 1" $'^[01]\n$' "$v"
check_true "rmdir user_$HBA/fresh" rmdir "$D"

# --- block size and max sectors in the core's part ------------------------------

# blocksize:max_sectors given -> max sectors the core shows (rounded down to
# whole pages).
i=0
for spec in 4096:1024 1024:256 2048:100 512:100; do
	bs=${spec%:*}
	ms=${spec#*:}
	per_page=$((PAGE_SIZE / bs))
	[ "$per_page" -ge 1 ] || per_page=1
	shown=$((ms / per_page * per_page))
	i=$((i + 1))
	D=$(tcmu_dev_path $HBA "bs$i")
	tcmu_mkdev $HBA "bs$i" || { fail "cannot create user_$HBA/bs$i"; continue; }
	check_write_ok "configure bs $bs, max sectors $ms" "$D/control" \
		"dev_size=8388608,hw_block_size=$bs,hw_max_sectors=$ms,max_data_area_mb=64,cmd_ring_size_mb=1"
	check_write_ok "enable bs $bs" "$D/enable" 1
	check_info "info with bs $bs, max sectors $ms" "$D" \
		"$(core_text "$bs" "$shown")$(our_text NULL 8388608 64 1 1)"$'\n'
	check_true "rmdir user_$HBA/bs$i" rmdir "$D"
done

# --- the longest dev_config ------------------------------------------------------

LONG=$(printf '%255s' '' | tr ' ' L)
D=$(tcmu_dev_path $HBA long)
tcmu_mkdev $HBA long || tcmu_fatal "cannot create user_$HBA/long"
check_write_ok "configure a 255-byte dev_config" "$D/control" \
	"dev_config=$LONG,dev_size=4096,max_data_area_mb=1,cmd_ring_size_mb=1"
check_write_ok "enable" "$D/enable" 1
check_info "info with a 255-byte dev_config" "$D" \
	"$(core_text 512 128)$(our_text "$LONG" 4096 1 1 1)"$'\n'
tcmu_read v "$D/attrib/dev_config"
check_eq "attrib/dev_config with 255 bytes" "$LONG"$'\n' "$v"
check_true "rmdir user_$HBA/long" rmdir "$D"

tcmu_finish
