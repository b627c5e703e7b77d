#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# timeout: 600
#
# The control file of a disabled device: every key with values inside and
# outside its range.  A rejected write must fail with EINVAL and leave the
# device exactly as it was (info text and every attribute), even when the
# bad key follows good ones in the same write.  Accepted values must show
# up in info and attrib/.  Enabling needs a dev_size of at least one block.

# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

tcmu_setup

HBA=1
NAME=keys
DEV=$(tcmu_dev_path $HBA $NAME)
CTRL=$DEV/control
tcmu_mkdev $HBA $NAME || tcmu_fatal "cannot create user_$HBA/$NAME"

PAGE_SIZE=$(getconf PAGESIZE)
PAGES_PER_MB=$((TCMU_MB / PAGE_SIZE))
GLOBAL_MAX_MB=$(tcmu_value /sys/module/target_core_user/parameters/global_max_data_area_mb)
[[ "$GLOBAL_MAX_MB" =~ ^[0-9]+$ ]] || {
	fail "global_max_data_area_mb parameter unreadable: $(tcmu_show "$GLOBAL_MAX_MB")"
	GLOBAL_MAX_MB=2048
}

# A long value for the description of a check, kept readable.
short()
{
	local s=$1
	if [ ${#s} -gt 48 ]; then
		printf '%q...(%d bytes)' "${s:0:40}" ${#s}
	else
		printf '%q' "$s"
	fi
}

# repeat CHAR COUNT
repeat()
{
	local s
	printf -v s '%*s' "$2" ''
	printf '%s' "${s// /$1}"
}

# --- expected state of the device, updated after every accepted write ----

E_CONFIG=
E_SIZE=0
E_MB=$TCMU_DEF_MAX_DATA_AREA_MB
E_PPB=$TCMU_DEF_DATA_PAGES_PER_BLK
E_RING=$TCMU_DEF_CMD_RING_SIZE_MB
E_NL=$(tcmu_value "$DEV/attrib/nl_reply_supported")
check_match "nl_reply_supported attribute is an integer" '^-?[0-9]+$' "$E_NL"

# Compare info and the attributes with the expected state.
verify_state()
{
	local what=$1 line cfg=${E_CONFIG:-NULL}

	tcmu_info_line line "$DEV"
	check_eq "$what: info line" \
		"Config: $cfg Size: $E_SIZE MaxDataAreaMB: $E_MB DataPagesPerBlk: $E_PPB CmdRingSizeMB: $E_RING" \
		"$line"
	check_eq "$what: attrib/dev_config" "$E_CONFIG" "$(tcmu_value "$DEV/attrib/dev_config")"
	check_eq "$what: attrib/dev_size" "$E_SIZE" "$(tcmu_value "$DEV/attrib/dev_size")"
	check_eq "$what: attrib/max_data_area_mb" "$E_MB" "$(tcmu_value "$DEV/attrib/max_data_area_mb")"
	check_eq "$what: attrib/data_pages_per_blk" "$E_PPB" "$(tcmu_value "$DEV/attrib/data_pages_per_blk")"
	check_eq "$what: attrib/cmd_ring_size_mb" "$E_RING" "$(tcmu_value "$DEV/attrib/cmd_ring_size_mb")"
	check_eq "$what: attrib/nl_reply_supported" "$E_NL" "$(tcmu_value "$DEV/attrib/nl_reply_supported")"
}

# bad STRING: the write fails with EINVAL and changes nothing.
bad()
{
	local before after
	tcmu_snapshot before "$DEV"
	check_write_err "control rejects $(short "$1")" "$CTRL" "$1"
	tcmu_snapshot after "$DEV"
	if [ "$before" == "$after" ]; then
		pass "nothing changed after $(short "$1")"
	else
		fail "state changed after the rejected $(short "$1"):"
		tcmu_snapshot_diff "$before" "$after"
	fi
}

# good STRING VAR=VALUE...: the write succeeds; then set the expected
# state variables and verify everything.
good()
{
	local s=$1 kv
	shift
	check_write_ok "control accepts $(short "$s")" "$CTRL" "$s" || return
	for kv in "$@"; do
		printf -v "${kv%%=*}" '%s' "${kv#*=}"
	done
	verify_state "after $(short "$s")"
}

verify_state "defaults"

# --- generic syntax errors -------------------------------------------------

bad "foo=1"
bad "DEV_SIZE=1048576"
bad "dev_size =1048576"
bad "dev_size"
bad "dev_config"
bad "=1048576"
bad "="
bad "abc"
bad "dev_size:1048576"
bad "$(repeat x 300)"
bad "$(repeat x 5000)"

# --- dev_config: 1..255 bytes ----------------------------------------------

bad "dev_config="
bad "dev_config=$(repeat c 256)"
bad "dev_config=$(repeat c 300)"
bad "dev_config=$(repeat c 5000)"
good "dev_config=a" E_CONFIG=a
good "dev_config=file//var/tmp/disk.img" E_CONFIG=file//var/tmp/disk.img
good "dev_config=$(repeat c 255)" "E_CONFIG=$(repeat c 255)"
good $'dev_config=with-newline\n' E_CONFIG=with-newline

# --- dev_size: u64, above zero ----------------------------------------------

bad "dev_size="
bad "dev_size=0"
bad "dev_size=-1"
bad "dev_size=-1048576"
bad "dev_size=abc"
bad "dev_size=1x"
bad "dev_size=1.5"
bad "dev_size=18446744073709551616"
bad "dev_size=99999999999999999999"
bad "dev_size=$(repeat 9 300)"
bad "dev_size=$(repeat 9 5000)"
good "dev_size=512" E_SIZE=512
good "dev_size=18446744073709551615" E_SIZE=18446744073709551615
good "dev_size=1048576" E_SIZE=1048576
good $'dev_size=2097152\n' E_SIZE=2097152

# --- hw_block_size: 512, 1024, 2048 or 4096 (read back after enable below) -

bad "hw_block_size="
bad "hw_block_size=0"
bad "hw_block_size=-512"
bad "hw_block_size=256"
bad "hw_block_size=513"
bad "hw_block_size=1000"
bad "hw_block_size=8192"
bad "hw_block_size=abc"
bad "hw_block_size=512x"
bad "hw_block_size=4294967808"
bad "hw_block_size=99999999999999999999"
for bs in 512 1024 2048 4096; do
	good "hw_block_size=$bs"
done
good "hw_block_size=512"

# --- hw_max_sectors: 1..65535 ------------------------------------------------

bad "hw_max_sectors="
bad "hw_max_sectors=0"
bad "hw_max_sectors=-1"
bad "hw_max_sectors=65536"
bad "hw_max_sectors=4294967297"
bad "hw_max_sectors=abc"
bad "hw_max_sectors=12x"
for n in 1 65535 128; do
	good "hw_max_sectors=$n"
done

# --- nl_reply_supported: any int ---------------------------------------------

bad "nl_reply_supported="
bad "nl_reply_supported=2147483648"
bad "nl_reply_supported=-2147483649"
bad "nl_reply_supported=99999999999999999999"
bad "nl_reply_supported=abc"
bad "nl_reply_supported=1x"
for n in -1 2147483647 -2147483648 1 0; do
	good "nl_reply_supported=$n" "E_NL=$n"
done

# --- max_data_area_mb: 1..global_max_data_area_mb ---------------------------

bad "max_data_area_mb="
bad "max_data_area_mb=0"
bad "max_data_area_mb=-1"
bad "max_data_area_mb=$((GLOBAL_MAX_MB + 1))"
bad "max_data_area_mb=4294967297"
bad "max_data_area_mb=99999999999999999999"
bad "max_data_area_mb=abc"
bad "max_data_area_mb=16M"
good "max_data_area_mb=1" E_MB=1
good "max_data_area_mb=$GLOBAL_MAX_MB" "E_MB=$GLOBAL_MAX_MB"
# Numbers take a 0x (hex) or 0 (octal) prefix, as upstream's match_int().
good "max_data_area_mb=0x10" E_MB=16
good "max_data_area_mb=010" E_MB=8
bad "max_data_area_mb=08"
good "dev_size=0x100000" E_SIZE=1048576
good "max_data_area_mb=1024" E_MB=1024

# --- data_pages_per_blk: 1..pages of max_data_area_mb ------------------------

bad "data_pages_per_blk="
bad "data_pages_per_blk=-1"
bad "data_pages_per_blk=abc"
bad "data_pages_per_blk=4x"
bad "data_pages_per_blk=99999999999999999999"
bad "data_pages_per_blk=$((E_MB * PAGES_PER_MB + 1))"
good "data_pages_per_blk=$((E_MB * PAGES_PER_MB))" "E_PPB=$((E_MB * PAGES_PER_MB))"
good "data_pages_per_blk=1" E_PPB=1
# data_pages_per_blk=0 has a test of its own (tcmu_zero_pages_per_blk.sh):
# upstream 6.1 divides by it, and an oops would wreck the checks here.

# The two limits together: the data area must hold one block.
good "max_data_area_mb=2,data_pages_per_blk=$((2 * PAGES_PER_MB))" E_MB=2 "E_PPB=$((2 * PAGES_PER_MB))"
bad "max_data_area_mb=1"
bad "data_pages_per_blk=$((2 * PAGES_PER_MB + 1))"
good "data_pages_per_blk=1,max_data_area_mb=1024" E_PPB=1 E_MB=1024
bad "data_pages_per_blk=$((2 * PAGES_PER_MB)),max_data_area_mb=1"

# --- cmd_ring_size_mb: 1..8 ---------------------------------------------------

bad "cmd_ring_size_mb="
bad "cmd_ring_size_mb=0"
bad "cmd_ring_size_mb=-1"
bad "cmd_ring_size_mb=9"
bad "cmd_ring_size_mb=4294967297"
bad "cmd_ring_size_mb=abc"
bad "cmd_ring_size_mb=2x"
good "cmd_ring_size_mb=1" E_RING=1
good "cmd_ring_size_mb=8" E_RING=8
good "cmd_ring_size_mb=4" E_RING=4

# --- several keys per write: all or nothing ----------------------------------

good "dev_size=4194304,cmd_ring_size_mb=2,max_data_area_mb=16" E_SIZE=4194304 E_RING=2 E_MB=16
good $'dev_size=8388608\ncmd_ring_size_mb=8\nmax_data_area_mb=1024\n' E_SIZE=8388608 E_RING=8 E_MB=1024
good "dev_config=multi,nl_reply_supported=0" E_CONFIG=multi E_NL=0
bad "dev_size=2097152,hw_block_size=999"
bad "dev_config=changed,foo=1"
bad $'cmd_ring_size_mb=2\nmax_data_area_mb=0'
bad "max_data_area_mb=8,dev_size="
bad "nl_reply_supported=5,dev_config="
verify_state "after the rejected multi-key writes"

# --- enable needs a usable dev_size ------------------------------------------

# enable_refused DEVPATH WHAT: enable fails with EINVAL and no uio appears.
enable_refused()
{
	local uio
	check_write_err "enable refused: $2" "$1/enable" 1
	uio=$(tcmu_find_uio "$(tcmu_uio_name $HBA "${1##*/}")")
	check_eq "no uio device after the refused enable ($2)" "" "$uio"
}

# enable_ok DEVPATH WHAT BLOCKSIZE MAXSECTORS: enable works and the core
# attributes read back.
enable_ok()
{
	check_write_ok "enable: $2" "$1/enable" 1 || return
	check_eq "attrib/hw_block_size after enable ($2)" "$3" "$(tcmu_value "$1/attrib/hw_block_size")"
	check_eq "attrib/hw_max_sectors after enable ($2)" "$4" "$(tcmu_value "$1/attrib/hw_max_sectors")"
	check_eq "one uio device after enable ($2)" 1 \
		"$(tcmu_find_uio "$(tcmu_uio_name $HBA "${1##*/}")" | wc -l)"
}

SMALL="max_data_area_mb=1,cmd_ring_size_mb=1"

D=$(tcmu_dev_path $HBA nosize)
tcmu_mkdev $HBA nosize || tcmu_fatal "cannot create user_$HBA/nosize"
check_write_ok "small geometry without dev_size" "$D/control" "$SMALL"
enable_refused "$D" "dev_size never set"
check_write_ok "dev_size set after the refused enable" "$D/control" "dev_size=1048576"
enable_ok "$D" "after setting dev_size" 512 128
check_true "rmdir user_$HBA/nosize" rmdir "$D"

# dev_size below the block size: refused either when written or at enable.
D=$(tcmu_dev_path $HBA small)
tcmu_mkdev $HBA small || tcmu_fatal "cannot create user_$HBA/small"
check_write_ok "small geometry, 2048-byte device" "$D/control" "$SMALL,dev_size=2048"
tcmu_snapshot before "$D"
if tcmu_write "$D/control" "hw_block_size=4096"; then
	pass "hw_block_size=4096 accepted with dev_size=2048 (checked at enable)"
	enable_refused "$D" "dev_size 2048 < hw_block_size 4096"
else
	check_eq "hw_block_size=4096 with dev_size=2048 refused with EINVAL" "Invalid argument" "$TCMU_ERR"
	tcmu_snapshot after "$D"
	check_eq "state unchanged after the refused hw_block_size" "$before" "$after"
	enable_ok "$D" "hw_block_size 512 kept" 512 128
fi
check_true "rmdir user_$HBA/small" rmdir "$D"

D=$(tcmu_dev_path $HBA tiny)
tcmu_mkdev $HBA tiny || tcmu_fatal "cannot create user_$HBA/tiny"
check_write_ok "small geometry" "$D/control" "$SMALL"
tcmu_snapshot before "$D"
if tcmu_write "$D/control" "dev_size=100"; then
	pass "dev_size=100 accepted (checked at enable)"
	enable_refused "$D" "dev_size 100 < hw_block_size 512"
	check_write_ok "dev_size=512 after the refused enable" "$D/control" "dev_size=512"
else
	check_eq "dev_size=100 refused with EINVAL" "Invalid argument" "$TCMU_ERR"
	tcmu_snapshot after "$D"
	check_eq "state unchanged after the refused dev_size" "$before" "$after"
	check_write_ok "dev_size=512" "$D/control" "dev_size=512"
fi
enable_ok "$D" "dev_size equal to one block" 512 128
check_true "rmdir user_$HBA/tiny" rmdir "$D"

# --- hw_block_size and hw_max_sectors read back once enabled -----------------

# The data area (256 MiB) is big enough for the largest transfer
# (65535 x 4096 bytes), so only the values themselves are under test here.
GEO="max_data_area_mb=256,cmd_ring_size_mb=1"

i=0
for spec in 512:128 1024:256 2048:64 4096:1 4096:65535 512:65535; do
	bs=${spec%:*}
	ms=${spec#*:}
	i=$((i + 1))
	D=$(tcmu_dev_path $HBA "geo$i")
	tcmu_mkdev $HBA "geo$i" || { fail "cannot create user_$HBA/geo$i"; continue; }
	check_write_ok "hw_block_size=$bs hw_max_sectors=$ms" "$D/control" \
		"$GEO,dev_size=1048576,hw_block_size=$bs,hw_max_sectors=$ms"
	# The core rounds hw_max_sectors down to whole pages at enable.
	per_page=$((PAGE_SIZE / bs))
	[ "$per_page" -ge 1 ] || per_page=1
	enable_ok "$D" "bs $bs, max sectors $ms" "$bs" $((ms / per_page * per_page))
	check_eq "attrib/hw_queue_depth after enable (bs $bs)" 128 \
		"$(tcmu_value "$D/attrib/hw_queue_depth")"
	check_true "rmdir user_$HBA/geo$i" rmdir "$D"
done

# hw_max_sectors x block size must fit in the data area: the module
# refuses such an enable (Documentation/target/tcmu-design.rst, control
# table) instead of failing every large command later, as upstream does.
D=$(tcmu_dev_path $HBA bigxfer)
tcmu_mkdev $HBA bigxfer || tcmu_fatal "cannot create user_$HBA/bigxfer"
check_write_ok "4 MiB transfers, 1 MiB data area" "$D/control" \
	"$SMALL,dev_size=1048576,hw_block_size=4096,hw_max_sectors=1024"
enable_refused "$D" "hw_max_sectors x block size above the data area"
check_true "rmdir user_$HBA/bigxfer" rmdir "$D"

tcmu_finish
