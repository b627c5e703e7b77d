#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# timeout: 480
#
# The attribute surface of a user device, against upstream 6.1's show and
# store functions:
#
#   attrib/   exactly the core's passthrough attributes (hw_pi_prot_type,
#             hw_block_size, hw_max_sectors, hw_queue_depth, emulate_pr,
#             alua_support, pgr_support, enforce_pr_isids, force_pr_aptpl)
#             plus ours (cmd_time_out, qfull_time_out, max_data_area_mb,
#             data_pages_per_blk, cmd_ring_size_mb, dev_config, dev_size,
#             emulate_write_cache, tmr_notification, nl_reply_supported,
#             and the additions handler_exit_policy and stats), with the
#             right modes; every value reads back as upstream prints it
#             (number or string + newline, cmd_time_out and qfull_time_out
#             in seconds, qfull_time_out -1 by default)
#   writable  values round-trip before and after enable (dev_config,
#             dev_size and emulate_write_cache then go through a netlink
#             RECONFIG, so a listener runs); bad values fail with EINVAL
#             and change nothing; read-only files refuse writes (EACCES)
#   enable    nl_reply_supported (7 here) becomes the value of the
#             daemon's SET_FEATURES (0 here)
#   exported  (a tcm_loop LUN): cmd_time_out and force_pr_aptpl are
#             refused, everything else still works; info says ACTIVATED
#   action/   block_dev (0/1, reads blocked/unblocked), reset_ring (1/2,
#             write-only), free_kept_buf (a kept command id, write-only):
#             refused before enable and for invalid values
#   info      follows every change

# shellcheck source=lib_nl.sh
. "$(dirname "$0")/lib_nl.sh"

HBA=44
LOOP_WWN=naa.50014050dd0000aa
LOOP=$CONFIGFS/target/loopback/$LOOP_WWN
LOOP_LUN=$LOOP/tpgt_1/lun/lun_0
v=
x=
have=
odd=

# shellcheck disable=SC2317 # the EXIT trap (NL_EXIT_HOOK)
attrs_exit()
{
	[ -L "$LOOP_LUN/link" ] && rm -f "$LOOP_LUN/link"
	[ -d "$LOOP_LUN" ] && rmdir "$LOOP_LUN"
	[ -d "$LOOP/tpgt_1" ] && rmdir "$LOOP/tpgt_1"
	[ -d "$LOOP" ] && rmdir "$LOOP"
	return 0
}

# show VAR VALUE: VAR gets VALUE as tcmu_show prints it, without a fork.
show()
{
	local -n _sh=$1
	if [ ${#2} -gt 300 ]; then
		printf -v _sh '%q...(%d bytes)' "${2:0:60}" ${#2}
	else
		printf -v _sh '%q' "$2"
	fi
}

# rt WHAT DEVPATH ATTR VALUE [SHOWN]: the write succeeds and the file then
# reads SHOWN (default VALUE) plus a newline.
rt()
{
	local f=$2/$3 q
	show q "$4"
	if ! nl_write "$f" "$4"; then
		fail "$1: $3=$q failed: $TCMU_ERR"
		return
	fi
	pass "$1: $3=$q"
	tcmu_read v "$f"
	check_eq "$1: $3 reads back" "${5-$4}"$'\n' "$v"
}

# state VAR DEVPATH FILE: VAR gets what a refused write to FILE must not
# change: FILE itself (when readable) and info; every attribute for the
# files that are not attributes.
state()
{
	local -n _st=$1
	local x
	case $3 in
	attrib/* | action/block_dev)
		tcmu_read _st "$2/$3"
		tcmu_read x "$2/info"
		_st+=$'\n'$x
		;;
	*)
		tcmu_snapshot _st "$2"
		;;
	esac
}

# bad WHAT DEVPATH FILE VALUE [ERROR]: the write fails (EINVAL by default)
# and changes nothing.
bad()
{
	local b a q
	show q "$4"
	state b "$2" "$3"
	if nl_write "$2/$3" "$4"; then
		fail "$1: $3=$q succeeded, expected \"${5:-Invalid argument}\""
	else
		check_eq "$1: $3=$q refused" "${5:-Invalid argument}" "$TCMU_ERR"
	fi
	state a "$2" "$3"
	if [ "$b" == "$a" ]; then
		pass "$1: nothing changed after $3=$q"
	else
		fail "$1: state changed after the refused $3=$q:"
		tcmu_snapshot_diff "$b" "$a"
	fi
}

# writable_attrs WHAT DEVPATH enabled|disabled: round trips and refusals of every
# writable attribute.  The values that only go through a parser are all
# tried while disabled; once enabled one accepted and one refused value
# each show that enabling changed nothing there.  dev_config, dev_size and
# emulate_write_cache take another path once enabled (a RECONFIG event,
# which needs a listener), so they get every value in both states.
writable_attrs()
{
	local w=$1 d=$2 long cur

	if [ "$3" == enabled ]; then
		rt "$w" "$d" attrib/cmd_time_out 0x10 16
		bad "$w" "$d" attrib/cmd_time_out 86401
		rt "$w" "$d" attrib/cmd_time_out 30
		rt "$w" "$d" attrib/qfull_time_out -1
		bad "$w" "$d" attrib/qfull_time_out -2
		rt "$w" "$d" attrib/tmr_notification 1
		bad "$w" "$d" attrib/tmr_notification 2
		rt "$w" "$d" attrib/tmr_notification 0
		rt "$w" "$d" attrib/nl_reply_supported -128
		bad "$w" "$d" attrib/nl_reply_supported 128
		rt "$w" "$d" attrib/nl_reply_supported 0
		rt "$w" "$d" attrib/handler_exit_policy 1
		bad "$w" "$d" attrib/handler_exit_policy 2
		rt "$w" "$d" attrib/handler_exit_policy 0
	else
		rt "$w" "$d" attrib/cmd_time_out 0
		rt "$w" "$d" attrib/cmd_time_out 1
		rt "$w" "$d" attrib/cmd_time_out 0x10 16
		rt "$w" "$d" attrib/cmd_time_out 86400
		rt "$w" "$d" attrib/cmd_time_out $'45\n' 45
		for x in -1 86401 4294967296 abc 1.5 $'\n'; do
			bad "$w" "$d" attrib/cmd_time_out "$x"
		done
		rt "$w" "$d" attrib/cmd_time_out 30

		rt "$w" "$d" attrib/qfull_time_out 0
		rt "$w" "$d" attrib/qfull_time_out 7
		rt "$w" "$d" attrib/qfull_time_out 86400
		rt "$w" "$d" attrib/qfull_time_out -1
		for x in -2 86401 abc 1x; do
			bad "$w" "$d" attrib/qfull_time_out "$x"
		done

		rt "$w" "$d" attrib/tmr_notification 1
		rt "$w" "$d" attrib/tmr_notification 0
		for x in 2 -1 abc; do
			bad "$w" "$d" attrib/tmr_notification "$x"
		done

		rt "$w" "$d" attrib/nl_reply_supported -1
		rt "$w" "$d" attrib/nl_reply_supported 127
		rt "$w" "$d" attrib/nl_reply_supported -128
		rt "$w" "$d" attrib/nl_reply_supported 0
		for x in 128 -129 abc; do
			bad "$w" "$d" attrib/nl_reply_supported "$x"
		done

		rt "$w" "$d" attrib/handler_exit_policy 1
		rt "$w" "$d" attrib/handler_exit_policy 0
		for x in 2 -1 abc; do
			bad "$w" "$d" attrib/handler_exit_policy "$x"
		done
	fi

	rt "$w" "$d" attrib/dev_config a
	rt "$w" "$d" attrib/dev_config "file//var/tmp/with space"
	printf -v long '%255s' ''
	long=${long// /L}
	rt "$w" "$d" attrib/dev_config "$long"
	rt "$w" "$d" attrib/dev_config $'cfg/nl\n' cfg/nl
	bad "$w" "$d" attrib/dev_config "${long}L"
	bad "$w" "$d" attrib/dev_config $'\n'

	rt "$w" "$d" attrib/dev_size 2097152
	rt "$w" "$d" attrib/dev_size 0x400000 4194304
	for x in 0 -1 abc 18446744073709551616; do
		bad "$w" "$d" attrib/dev_size "$x"
	done
	# Below one block: the block size is only known once enabled.
	[ "$3" == enabled ] && bad "$w" "$d" attrib/dev_size 100
	rt "$w" "$d" attrib/dev_size 1048576

	rt "$w" "$d" attrib/emulate_write_cache 1
	rt "$w" "$d" attrib/emulate_write_cache 0
	for x in 2 -1 abc; do
		bad "$w" "$d" attrib/emulate_write_cache "$x"
	done

	# The core's passthrough attributes take booleans (the core's code:
	# once is enough).
	[ "$3" == enabled ] && return
	for a in emulate_pr alua_support pgr_support enforce_pr_isids force_pr_aptpl; do
		tcmu_read cur "$d/attrib/$a"
		cur=${cur%$'\n'}
		rt "$w" "$d" "attrib/$a" $((1 - cur))
		rt "$w" "$d" "attrib/$a" "$cur"
		bad "$w" "$d" "attrib/$a" abc
	done
}

# readonly_attrs WHAT DEVPATH: every read-only file refuses writes.
readonly_attrs()
{
	local a
	for a in attrib/hw_pi_prot_type attrib/hw_block_size attrib/hw_max_sectors \
		attrib/hw_queue_depth attrib/max_data_area_mb attrib/data_pages_per_blk \
		attrib/cmd_ring_size_mb attrib/stats info; do
		bad "$1" "$2" "$a" 1 "Permission denied"
	done
}

# ---------------------------------------------------------------------------

nl_init
NL_EXIT_HOOK=attrs_exit
# RECONFIG events need a subscriber; it never answers, and nl_init told
# the module (SET_FEATURES 0) that nobody does, so nothing waits.
nl_start events || tcmu_finish

tcmu_read GLOBAL_MB "$PARAMS/global_max_data_area_mb"
GLOBAL_MB=${GLOBAL_MB%$'\n'}
DEF_MB=$TCMU_DEF_MAX_DATA_AREA_MB
[[ $GLOBAL_MB =~ ^[0-9]+$ ]] && [ "$GLOBAL_MB" -lt "$DEF_MB" ] && DEF_MB=$GLOBAL_MB

D=$(tcmu_dev_path $HBA attrs)
tcmu_mkdev $HBA attrs || tcmu_fatal "cannot create user_$HBA/attrs"

# --- the files and their modes -------------------------------------------------

UPSTREAM_RW=(alua_support cmd_time_out dev_config dev_size emulate_pr emulate_write_cache
	enforce_pr_isids force_pr_aptpl nl_reply_supported pgr_support qfull_time_out
	tmr_notification)
UPSTREAM_RO=(cmd_ring_size_mb data_pages_per_blk hw_block_size hw_max_sectors hw_pi_prot_type
	hw_queue_depth max_data_area_mb)
OURS_RW=(handler_exit_policy)
OURS_RO=(stats)
# listing VAR DIR: VAR gets the names in DIR, in C order, space separated.
listing()
{
	local -n _ls=$1
	local LC_ALL=C f
	_ls=
	for f in "$2"/*; do
		_ls+="${f##*/} "
	done
}
# One stat for every mode (each exec costs under TCG).
declare -A MODE=()
while read -r m f; do
	MODE[${f#"$D"/}]=$m
done < <(stat -c '%a %n' "$D"/attrib/* "$D"/action/*)
declare -A WANT=()
for a in "${UPSTREAM_RW[@]}" "${UPSTREAM_RO[@]}" "${OURS_RW[@]}" "${OURS_RO[@]}"; do
	WANT[$a]=1
done
odd=
for a in "$D"/attrib/*; do
	a=${a##*/}
	if [ -n "${WANT[$a]-}" ]; then
		unset "WANT[$a]"
	else
		odd+=" extra:$a"
	fi
done
for a in "${!WANT[@]}"; do
	odd+=" missing:$a"
done
check_eq "attrib/ holds upstream's attributes plus handler_exit_policy and stats" "" "$odd"
for a in "${UPSTREAM_RW[@]}" "${OURS_RW[@]}"; do
	check_eq "attrib/$a is rw-r--r--" 644 "${MODE[attrib/$a]-}"
done
for a in "${UPSTREAM_RO[@]}" "${OURS_RO[@]}"; do
	check_eq "attrib/$a is r--r--r--" 444 "${MODE[attrib/$a]-}"
done
listing have "$D/action"
check_eq "action/ holds block_dev, free_kept_buf, reset_ring" "block_dev free_kept_buf reset_ring " "$have"
check_eq "action/block_dev is rw-r--r--" 644 "${MODE[action/block_dev]-}"
check_eq "action/reset_ring is -w-------" 200 "${MODE[action/reset_ring]-}"
check_eq "action/free_kept_buf is -w-------" 200 "${MODE[action/free_kept_buf]-}"
check_false "action/reset_ring cannot be read" readable "$D/action/reset_ring"
check_false "action/free_kept_buf cannot be read" readable "$D/action/free_kept_buf"

# --- defaults of a fresh device ---------------------------------------------------

for kv in cmd_time_out=30 qfull_time_out=-1 "max_data_area_mb=$DEF_MB" data_pages_per_blk=1 \
	cmd_ring_size_mb=8 dev_config= dev_size=0 emulate_write_cache=0 tmr_notification=0 \
	nl_reply_supported=0 handler_exit_policy=0 hw_pi_prot_type=0 hw_block_size=0 \
	hw_max_sectors=0 hw_queue_depth=0 emulate_pr=1 alua_support=1 pgr_support=1 \
	enforce_pr_isids=1 force_pr_aptpl=0; do
	check_reads "fresh: attrib/${kv%%=*}" "$D/attrib/${kv%%=*}" "${kv#*=}"
done
check_reads "fresh: action/block_dev" "$D/action/block_dev" unblocked
tcmu_read v "$D/attrib/stats"
re='^cmds 0\nbytes_out 0\nbytes_in 0\nqfull_events 0\ntimeouts 0\nring_full 0\ndata_full 0\ninflight 0\ninflight_max 0\ndata_pages 0\nhandler_exits 0\nexit_failed 0\n$'
check_match "fresh: attrib/stats, one \"name value\" per line" "${re//\\n/$'\n'}" "$v"

# --- before enable ------------------------------------------------------------------

writable_attrs "disabled" "$D" disabled
readonly_attrs "disabled" "$D"
for a in block_dev reset_ring free_kept_buf; do
	bad "disabled" "$D" "action/$a" 1
done
bad "disabled" "$D" action/block_dev 0
check_eq "no event for writes before enable" 0 "$(nl_count "$NL_OUT" '^event ')"

# --- enabled ---------------------------------------------------------------------------

# At enable nl_reply_supported, unless negative, becomes the daemon's
# SET_FEATURES value (0 here).
check_write_ok "nl_reply_supported=7 before enable" "$D/attrib/nl_reply_supported" 7
check_write_ok "control" "$D/control" \
	"dev_config=cfg/attrs,dev_size=8388608,max_data_area_mb=4,data_pages_per_blk=2,cmd_ring_size_mb=1"
check_write_ok "enable" "$D/enable" 1
for kv in hw_block_size=512 hw_max_sectors=128 hw_queue_depth=128 hw_pi_prot_type=0 \
	max_data_area_mb=4 data_pages_per_blk=2 cmd_ring_size_mb=1 dev_config=cfg/attrs \
	dev_size=8388608; do
	check_reads "enabled: attrib/${kv%%=*}" "$D/attrib/${kv%%=*}" "${kv#*=}"
done
check_reads "enabled: nl_reply_supported became the daemon's 0" "$D/attrib/nl_reply_supported" 0
bad "enabled" "$D" control dev_size=4194304
readonly_attrs "enabled" "$D"
writable_attrs "enabled" "$D" enabled
# Each accepted dev_config, dev_size and emulate_write_cache write above
# is one RECONFIG event: 4 + 3 + 2.
nl_wait v "$NL_OUT" '^event n=10 ' 5
check_eq "enabled: one RECONFIG per accepted dev_config/dev_size/emulate_write_cache write" 9 \
	"$(nl_count "$NL_OUT" '^event .* cmd=RECONFIG_DEVICE ')"
check_eq "enabled: no other event than these and ADDED_DEVICE" 10 "$(nl_count "$NL_OUT" '^event ')"

check_write_ok "dev_config for info" "$D/attrib/dev_config" info/cfg
check_write_ok "dev_size for info" "$D/attrib/dev_size" 16777216
tcmu_read v "$D/info"
check_eq "info follows the attributes" \
	"Status: DEACTIVATED  Max Queue Depth: 0  SectorSize: 512  HwMaxSectors: 128"$'\n'"        Config: info/cfg Size: 16777216 MaxDataAreaMB: 4 DataPagesPerBlk: 2 CmdRingSizeMB: 1"$'\n' "$v"

# --- actions ------------------------------------------------------------------------------

rt "enabled" "$D" action/block_dev 1 blocked
rt "enabled" "$D" action/block_dev 1 blocked
for x in 2 -1 abc; do
	bad "enabled, blocked" "$D" action/block_dev "$x"
done
rt "enabled" "$D" action/block_dev 0 unblocked
rt "enabled" "$D" action/block_dev 0 unblocked
check_write_ok "action/reset_ring=1" "$D/action/reset_ring" 1
check_write_ok "action/reset_ring=2" "$D/action/reset_ring" 2
check_write_ok "action/reset_ring=0x1" "$D/action/reset_ring" 0x1
for x in 0 3 -1 256 abc; do
	bad "enabled" "$D" action/reset_ring "$x"
done
for x in 0 1 65535 65536 -1 abc; do
	bad "enabled, nothing kept" "$D" action/free_kept_buf "$x"
done

# --- exported through tcm_loop --------------------------------------------------------------

if [ ! -d /sys/module/tcm_loop ] && ! modprobe tcm_loop 2>/dev/null; then
	tcmu_log "tcm_loop is not available: the checks while exported are left out"
elif ! mkdir -p "$LOOP_LUN" || ! ln -s "$D" "$LOOP_LUN/link"; then
	fail "cannot export the device through tcm_loop"
else
	# No nexus: the LUN counts as an export, but no command reaches the
	# device (there is no handler).
	tcmu_read v "$D/info"
	check_match "exported: info says ACTIVATED" '^Status: ACTIVATED ' "$v"
	bad "exported" "$D" attrib/cmd_time_out 5
	bad "exported" "$D" attrib/force_pr_aptpl 1
	rt "exported" "$D" attrib/qfull_time_out 3
	rt "exported" "$D" attrib/tmr_notification 1
	rt "exported" "$D" attrib/nl_reply_supported 0
	rt "exported" "$D" attrib/handler_exit_policy 1
	rt "exported" "$D" attrib/dev_config exported/cfg
	rt "exported" "$D" attrib/dev_size 33554432
	rt "exported" "$D" attrib/emulate_write_cache 1
	rt "exported" "$D" attrib/enforce_pr_isids 0
	rt "exported" "$D" action/block_dev 1 blocked
	rt "exported" "$D" action/block_dev 0 unblocked
	bad "exported" "$D" control dev_size=4194304
	readonly_attrs "exported" "$D"
	check_true "unexport" rm "$LOOP_LUN/link"
	tcmu_read v "$D/info"
	check_match "unexported: info says DEACTIVATED" '^Status: DEACTIVATED ' "$v"
	rt "unexported" "$D" attrib/cmd_time_out 5
	rt "unexported" "$D" attrib/force_pr_aptpl 1
fi

check_true "rmdir" rmdir "$D"
tcmu_finish
