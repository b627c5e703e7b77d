#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# timeout: 300
#
# The generic netlink events of the user backstore, as a handler daemon
# sees them (tcmu_nl_listener, which never replies here, and the module is
# told with SET_FEATURES 0 that nobody does):
#
#   family      "TCM-USER", version 2, no user header, maxattr
#               TCMU_ATTR_MAX, the four *_DONE / SET_FEATURES operations
#               (all GENL_ADMIN_PERM), one multicast group "config"
#   ADDED_DEVICE      on enable: DEVICE (the uio name,
#                     "tcm-user/<hba>/<name>[/<dev_config>]"), MINOR (the
#                     N of uioN), DEVICE_ID (statistics/scsi_dev/indx),
#                     nothing else
#   RECONFIG_DEVICE   on writes to attrib/dev_config, dev_size and
#                     emulate_write_cache once enabled, with exactly one of
#                     DEV_CFG / DEV_SIZE / WRITECACHE; DEVICE is the name
#                     before the change; the change is applied afterwards
#                     (uio renamed, info updated)
#   REMOVED_DEVICE    on rmdir, with the same three attributes
# No event for writes before enable, for refused values or for the other
# attributes.  Without any listener a RECONFIG cannot be delivered: the
# write fails with ESRCH and changes nothing (upstream does the same),
# while enable and rmdir still work.  Events reach every network
# namespace and unprivileged subscribers.
#
# Where this module is stricter than upstream 6.1 (it validates every
# value, see Documentation/target/tcmu-design.rst): a trailing
# newline is not part of a dev_config value (upstream sends and keeps it),
# and an empty dev_config, dev_size 0, emulate_write_cache above 1 and any
# control write once enabled are refused (upstream takes them, and sends
# a RECONFIG for the attributes).

# shellcheck source=lib_nl.sh
. "$(dirname "$0")/lib_nl.sh"

# ---------------------------------------------------------------------------
# Checks

# nl_keys LINE: the keys of LINE in order, space separated.
nl_keys()
{
	local w words out=()
	read -r -a words <<< "$1"
	for w in "${words[@]}"; do
		out+=("${w%%=*}")
	done
	echo "${out[*]}"
}

# check_event WHAT LINE CMD DEVICE MINOR DEVICE_ID [KEY=VALUE...]
# The event has exactly these attributes with these values.
check_event()
{
	local what=$1 line=$2 v kv keys=(event n cmd version device minor device_id)
	local extra=("${@:7}")

	nl_field v "$line" cmd
	check_eq "$what: command" "$3" "$v"
	nl_field v "$line" version
	check_eq "$what: generic netlink version" 2 "$v"
	nl_field v "$line" device
	check_eq "$what: TCMU_ATTR_DEVICE" "$4" "$v"
	nl_field v "$line" minor
	check_eq "$what: TCMU_ATTR_MINOR" "$5" "$v"
	nl_field v "$line" device_id
	check_eq "$what: TCMU_ATTR_DEVICE_ID" "$6" "$v"
	for kv in "${extra[@]}"; do
		keys+=("${kv%%=*}")
		nl_field v "$line" "${kv%%=*}"
		check_eq "$what: ${kv%%=*}" "${kv#*=}" "$v"
	done
	keys+=(nattrs uio)
	check_eq "$what: no other attribute" "${keys[*]}" "$(nl_keys "$line")"
	nl_field v "$line" nattrs
	check_eq "$what: attribute count" $((3 + ${#extra[@]})) "$v"
}

# uio_minor HBA NAME CONFIG: the minor of the device's uio node (empty if
# there is not exactly one).
uio_minor()
{
	local u
	u=$(tcmu_find_uio "$(tcmu_uio_name "$1" "$2" "$3")")
	[[ $u =~ ^uio([0-9]+)$ ]] && echo "${BASH_REMATCH[1]}"
}

# ---------------------------------------------------------------------------

nl_init
shopt -s extglob

before=
after=
line=
c=
v=
HBA1=41
printf -v long '%256s' ''
HBA2=42

# --- the family as the controller reports it ---------------------------------

tcmu_log "--- family"
if "$NL_BIN" family > "$NL_WORK/family.txt" 2>&1; then
	pass "CTRL_CMD_GETFAMILY resolves TCM-USER"
	nl_find line "$NL_WORK/family.txt" '^family '
	check_eq "family: version, header size, maxattr" \
		"family name=TCM-USER version=2 hdrsize=0 maxattr=9" \
		"${line/ id=+([0-9])/}"
	ops=()
	bad=
	while read -r kind cmd flags; do
		[ "$kind" == op ] || continue
		ops[${cmd#cmd=}]=1
		# GENL_ADMIN_PERM (0x1) and a doit (0x2) on every operation.
		flags=${flags#flags=}
		(((flags & 3) == 3)) || bad+="[$cmd $flags]"
	done < "$NL_WORK/family.txt"
	check_eq "family: operations SET_FEATURES and the three *_DONE" "4 5 6 7" "${!ops[*]}"
	check_eq "family: every operation is GENL_ADMIN_PERM with a doit" "" "$bad"
	check_eq "family: one multicast group, \"config\"" 1 "$(nl_count "$NL_WORK/family.txt" '^group ')"
	check_eq "family: the group is named config" 1 "$(nl_count "$NL_WORK/family.txt" '^group name=config id=[0-9]+$')"
else
	nl_value v "$NL_WORK/family.txt"
	fail "CTRL_CMD_GETFAMILY for TCM-USER: $v"
fi

# --- events of one device's life ---------------------------------------------

tcmu_log "--- events"
nl_start main || tcmu_finish
MAIN=$NL_OUT

D1=$(tcmu_dev_path $HBA1 ev1)
tcmu_mkdev $HBA1 ev1 || tcmu_fatal "cannot create user_$HBA1/ev1"
check_write_ok "control" "$D1/control" \
	"dev_config=cfg/zero,dev_size=1048576,max_data_area_mb=4,cmd_ring_size_mb=1"
# Attribute writes before enable: applied, no event.
check_write_ok "dev_size before enable" "$D1/attrib/dev_size" 2097152
check_write_ok "emulate_write_cache before enable" "$D1/attrib/emulate_write_cache" 1
check_write_ok "emulate_write_cache before enable" "$D1/attrib/emulate_write_cache" 0
check_write_ok "dev_config before enable" "$D1/attrib/dev_config" "cfg/one"

check_write_ok "enable user_$HBA1/ev1" "$D1/enable" 1
NAME1=$(tcmu_uio_name $HBA1 ev1 cfg/one)
MINOR1=$(uio_minor $HBA1 ev1 cfg/one)
check_match "one uio node named $NAME1" '^[0-9]+$' "$MINOR1"
nl_value ID1 "$D1/statistics/scsi_dev/indx"
check_match "statistics/scsi_dev/indx is a number" '^[0-9]+$' "$ID1"
if nl_line "enable" event 1; then
	check_event "first event (nothing before enable)" "$NL_LINE" ADDED_DEVICE \
		"$NAME1" "$MINOR1" "$ID1"
	nl_field v "$NL_LINE" uio
	check_eq "ADDED_DEVICE: the uio node exists with that name" "$NAME1" "$v"
fi

# RECONFIG: dev_config.  DEVICE still carries the old name.
check_write_ok "dev_config after enable" "$D1/attrib/dev_config" "cfg/two"
if nl_line "dev_config" event 2; then
	check_event "RECONFIG dev_config" "$NL_LINE" RECONFIG_DEVICE "$NAME1" "$MINOR1" "$ID1" \
		dev_cfg=cfg/two
fi
NAME1=$(tcmu_uio_name $HBA1 ev1 cfg/two)
check_eq "uio node renamed after the new dev_config" "$MINOR1" "$(uio_minor $HBA1 ev1 cfg/two)"
check_reads "attrib/dev_config" "$D1/attrib/dev_config" cfg/two
tcmu_info_line line "$D1"
check_match "info shows the new dev_config" '^Config: cfg/two Size: 2097152 ' "$line"

# One trailing newline is not part of the value (upstream keeps it).
check_write_ok "dev_config with a trailing newline" "$D1/attrib/dev_config" $'cfg/three\n'
if nl_line "dev_config with newline" event 3; then
	check_event "RECONFIG dev_config (newline)" "$NL_LINE" RECONFIG_DEVICE "$NAME1" "$MINOR1" "$ID1" \
		dev_cfg=cfg/three
fi
NAME1=$(tcmu_uio_name $HBA1 ev1 cfg/three)
check_eq "uio node renamed again" "$MINOR1" "$(uio_minor $HBA1 ev1 cfg/three)"

check_write_ok "dev_size after enable" "$D1/attrib/dev_size" 4194304
if nl_line "dev_size" event 4; then
	check_event "RECONFIG dev_size" "$NL_LINE" RECONFIG_DEVICE "$NAME1" "$MINOR1" "$ID1" \
		dev_size=4194304
fi
check_reads "attrib/dev_size" "$D1/attrib/dev_size" 4194304
tcmu_info_line line "$D1"
check_match "info shows the new size" '^Config: cfg/three Size: 4194304 ' "$line"

check_write_ok "emulate_write_cache=1 after enable" "$D1/attrib/emulate_write_cache" 1
if nl_line "emulate_write_cache=1" event 5; then
	check_event "RECONFIG write cache on" "$NL_LINE" RECONFIG_DEVICE "$NAME1" "$MINOR1" "$ID1" \
		writecache=1
fi
check_reads "attrib/emulate_write_cache" "$D1/attrib/emulate_write_cache" 1
check_write_ok "emulate_write_cache=0 after enable" "$D1/attrib/emulate_write_cache" 0
if nl_line "emulate_write_cache=0" event 6; then
	check_event "RECONFIG write cache off" "$NL_LINE" RECONFIG_DEVICE "$NAME1" "$MINOR1" "$ID1" \
		writecache=0
fi
check_reads "attrib/emulate_write_cache" "$D1/attrib/emulate_write_cache" 0

# Refused values and the other attributes send nothing (the next event
# number proves it).
check_write_err "dev_size=0 refused" "$D1/attrib/dev_size" 0
check_write_err "emulate_write_cache=2 refused" "$D1/attrib/emulate_write_cache" 2
check_write_err "256-byte dev_config refused" "$D1/attrib/dev_config" "${long// /c}"
check_write_err "empty dev_config refused" "$D1/attrib/dev_config" $'\n'
check_write_err "control refused once enabled" "$D1/control" "dev_size=8388608"
for kv in cmd_time_out=10 qfull_time_out=5 tmr_notification=1 nl_reply_supported=0 \
	handler_exit_policy=1; do
	check_write_ok "attrib/${kv%%=*} (no event)" "$D1/attrib/${kv%%=*}" "${kv#*=}"
done

# A second device on another hba, without dev_config.
D2=$(tcmu_dev_path $HBA2 ev2)
tcmu_mkdev $HBA2 ev2 || tcmu_fatal "cannot create user_$HBA2/ev2"
check_write_ok "control of ev2" "$D2/control" "dev_size=1048576,max_data_area_mb=4,cmd_ring_size_mb=1"
check_write_ok "enable user_$HBA2/ev2" "$D2/enable" 1
NAME2=$(tcmu_uio_name $HBA2 ev2)
MINOR2=$(uio_minor $HBA2 ev2)
nl_value ID2 "$D2/statistics/scsi_dev/indx"
if nl_line "enable ev2" event 7; then
	check_event "ADDED_DEVICE of ev2 (no refused value or other attribute sent anything)" \
		"$NL_LINE" ADDED_DEVICE "$NAME2" "$MINOR2" "$ID2"
fi
check_ne "ev2 has its own minor" "$MINOR1" "$MINOR2"
check_ne "ev2 has its own device id" "$ID1" "$ID2"

check_true "rmdir ev1" rmdir "$D1"
if nl_line "rmdir ev1" event 8; then
	check_event "REMOVED_DEVICE of ev1" "$NL_LINE" REMOVED_DEVICE "$NAME1" "$MINOR1" "$ID1"
fi
check_eq "uio node of ev1 gone" "" "$(tcmu_find_uio "$NAME1")"
check_true "rmdir ev2" rmdir "$D2"
if nl_line "rmdir ev2" event 9; then
	check_event "REMOVED_DEVICE of ev2" "$NL_LINE" REMOVED_DEVICE "$NAME2" "$MINOR2" "$ID2"
fi

# Fence: one more device; its ADDED must be event 10 (nothing stray before).
D3=$(tcmu_dev_path $HBA1 fence)
tcmu_mkdev $HBA1 fence || tcmu_fatal "cannot create user_$HBA1/fence"
check_write_ok "control of the fence device" "$D3/control" "dev_size=1048576,max_data_area_mb=4,cmd_ring_size_mb=1"
check_write_ok "enable the fence device" "$D3/enable" 1
if nl_line "fence" event 10; then
	nl_field c "$NL_LINE" cmd
	nl_field v "$NL_LINE" device
	check_eq "event 10 is the fence device's ADDED_DEVICE" \
		"ADDED_DEVICE $(tcmu_uio_name $HBA1 fence)" "$c $v"
fi
check_eq "nothing but events in the report" 0 "$(nl_count "$MAIN" '^(other|overrun|reply|decoy)')"

# --- nobody listening ---------------------------------------------------------

tcmu_log "--- no listener"
nl_stop
tcmu_snapshot before "$D3"
check_write_err "dev_size without a listener" "$D3/attrib/dev_size" 8388608 "No such process"
check_write_err "dev_config without a listener" "$D3/attrib/dev_config" newcfg "No such process"
check_write_err "emulate_write_cache without a listener" "$D3/attrib/emulate_write_cache" 1 "No such process"
tcmu_snapshot after "$D3"
if [ "$before" == "$after" ]; then
	pass "nothing changed by the undeliverable RECONFIG events"
else
	fail "state changed by undeliverable RECONFIG events:"
	tcmu_snapshot_diff "$before" "$after"
fi
nl_uio_count c "^$(tcmu_uio_name $HBA1 fence)$"
check_eq "uio name unchanged" 1 "$c"
D4=$(tcmu_dev_path $HBA2 quiet)
tcmu_mkdev $HBA2 quiet || tcmu_fatal "cannot create user_$HBA2/quiet"
check_write_ok "control without a listener" "$D4/control" "dev_size=1048576,max_data_area_mb=4,cmd_ring_size_mb=1"
check_write_ok "enable without a listener" "$D4/enable" 1
check_true "rmdir without a listener" rmdir "$D4"
check_true "rmdir the fence device without a listener" rmdir "$D3"

# --- other network namespaces, unprivileged subscribers ----------------------

tcmu_log "--- other listeners"
nl_start main2 || tcmu_finish
MAIN=$NL_OUT
others=()
if command -v unshare > /dev/null && unshare -n true 2> /dev/null; then
	NL_PREFIX=(unshare -n)
	nl_start netns && others+=("$NL_OUT")
else
	tcmu_log "unshare -n not usable: network namespace check left out"
fi
if command -v setpriv > /dev/null; then
	NL_PREFIX=(setpriv --inh-caps=-all --bounding-set=-all)
	nl_start unpriv && others+=("$NL_OUT")
else
	tcmu_log "setpriv missing: unprivileged subscriber check left out"
fi
NL_PREFIX=()

D5=$(tcmu_dev_path $HBA1 ns)
tcmu_mkdev $HBA1 ns || tcmu_fatal "cannot create user_$HBA1/ns"
check_write_ok "control" "$D5/control" "dev_config=x,dev_size=1048576,max_data_area_mb=4,cmd_ring_size_mb=1"
check_write_ok "enable" "$D5/enable" 1
NAME5=$(tcmu_uio_name $HBA1 ns x)
MINOR5=$(uio_minor $HBA1 ns x)
nl_value ID5 "$D5/statistics/scsi_dev/indx"
check_write_ok "dev_size" "$D5/attrib/dev_size" 2097152
check_true "rmdir" rmdir "$D5"
for NL_OUT in "$MAIN" "${others[@]}"; do
	who=${NL_OUT##*/}
	who=${who%.out}
	nl_line "$who: enable" event 1 &&
		check_event "$who listener: ADDED_DEVICE" "$NL_LINE" ADDED_DEVICE "$NAME5" "$MINOR5" "$ID5"
	nl_line "$who: dev_size" event 2 &&
		check_event "$who listener: RECONFIG" "$NL_LINE" RECONFIG_DEVICE "$NAME5" "$MINOR5" "$ID5" \
			dev_size=2097152
	nl_line "$who: rmdir" event 3 &&
		check_event "$who listener: REMOVED_DEVICE" "$NL_LINE" REMOVED_DEVICE "$NAME5" "$MINOR5" "$ID5"
done

tcmu_finish
