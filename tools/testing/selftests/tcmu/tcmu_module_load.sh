#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# timeout: 300
#
# The module under test is the one that gets loaded, registers the "user"
# backend, stays pinned while configfs objects of that backend exist, and
# unloads and reloads cleanly.

# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

tcmu_require_root
tcmu_load_core
trap tcmu_cleanup EXIT

MOD=target_core_user
SYSMOD=/sys/module/$MOD
HBA=0
HBA_PATH=$(tcmu_hba_path $HBA)
DEV_PATH=$(tcmu_dev_path $HBA dev0)

# Print the GNU build id of a module file (compressed or not) as hex.
file_build_id()
{
	local f=$1 tmp id
	case "$f" in
	*.xz) tmp=$(mktemp); xz -dc "$f" > "$tmp" || return 1 ;;
	*.zst) tmp=$(mktemp); zstd -qdc "$f" > "$tmp" || return 1 ;;
	*.gz) tmp=$(mktemp); gzip -dc "$f" > "$tmp" || return 1 ;;
	*) tmp= ;;
	esac
	id=$(readelf -n "${tmp:-$f}" 2>/dev/null | sed -n 's/^[[:space:]]*Build ID:[[:space:]]*\([0-9a-f]*\).*/\1/p' | head -n 1)
	[ -n "$tmp" ] && rm -f "$tmp"
	echo "$id"
}

# Print the build id of the loaded module (the note's descriptor, i.e. the
# last descsz bytes of the GNU note in /sys/module/MOD/notes).
loaded_build_id()
{
	local note=$SYSMOD/notes/.note.gnu.build-id hex descsz
	[ -r "$note" ] || return 1
	hex=$(od -An -v -tx1 "$note" | tr -d ' \n')
	# namesz, descsz, type (4 bytes each, little endian), then "GNU\0"
	descsz=$((16#${hex:14:2}${hex:12:2}${hex:10:2}${hex:8:2}))
	echo "${hex:32:$((descsz * 2))}"
}

# --- which module file modprobe uses -------------------------------------

path=$(modinfo -n $MOD 2>&1)
check_match "modinfo -n $MOD points into updates/ (our build): $path" '/updates/' "$path"

# Begin from an unloaded module so that this test performs a real load.
if [ -d "$SYSMOD" ]; then
	tcmu_cleanup_all
	rmmod $MOD || tcmu_fatal "cannot unload the $MOD left loaded by someone else"
fi

check_true "modprobe $MOD" modprobe $MOD
check_true "$SYSMOD exists after modprobe" test -d "$SYSMOD"
[ -d "$SYSMOD" ] || tcmu_finish

# The loaded image must be the file modinfo named.
file_id=$(file_build_id "$path")
mod_id=$(loaded_build_id)
if [ -n "$file_id" ] && [ -n "$mod_id" ]; then
	check_eq "loaded $MOD has the build id of $path" "$file_id" "$mod_id"
else
	f_src=$(modinfo -F srcversion "$path" 2>/dev/null)
	m_src=$(tcmu_value "$SYSMOD/srcversion" 2>/dev/null)
	if [ -n "$f_src" ] && [ -n "$m_src" ]; then
		check_eq "loaded $MOD has the srcversion of $path" "$f_src" "$m_src"
	else
		tcmu_log "note: neither build id nor srcversion available; loaded image not compared with $path"
	fi
fi

check_true "uio is loaded as a dependency" test -d /sys/module/uio
check_eq "global_max_data_area_mb module parameter defaults to 2048" \
	2048 "$(tcmu_value "$SYSMOD/parameters/global_max_data_area_mb")"

# --- the "user" backend works ---------------------------------------------

check_true "mkdir user_$HBA" mkdir "$HBA_PATH"
TCMU_CLEANUP_HBAS+=("$HBA_PATH")
check_match "hba_info names the user plugin" '^HBA Index: [0-9]+ plugin: user version: ' \
	"$(tcmu_value "$HBA_PATH/hba_info")"
check_true "mkdir user_$HBA/dev0" mkdir "$DEV_PATH"
check_true "user_$HBA/dev0 has a control file" test -e "$DEV_PATH/control"
check_true "user_$HBA/dev0 has an info file" test -r "$DEV_PATH/info"

# --- rmmod is refused while configfs objects exist -------------------------

check_false "rmmod refused while user_$HBA/dev0 exists" rmmod $MOD
check_true "module still loaded after the refused rmmod" test -d "$SYSMOD"

check_true "rmdir user_$HBA/dev0" rmdir "$DEV_PATH"
check_false "rmmod refused while the hba user_$HBA exists" rmmod $MOD
check_true "module still loaded after the refused rmmod" test -d "$SYSMOD"

# An enabled device pins the module as well.
check_true "mkdir user_$HBA/dev1" mkdir "$HBA_PATH/dev1"
check_write_ok "configure user_$HBA/dev1" "$HBA_PATH/dev1/control" \
	"dev_size=1048576,max_data_area_mb=1,cmd_ring_size_mb=1"
check_write_ok "enable user_$HBA/dev1" "$HBA_PATH/dev1/enable" 1
check_false "rmmod refused while an enabled device exists" rmmod $MOD
check_true "rmdir the enabled device" rmdir "$HBA_PATH/dev1"
check_eq "no tcm-user uio device left" "" "$(tcmu_all_uio)"

check_true "rmdir user_$HBA" rmdir "$HBA_PATH"

# --- clean unload and reload -------------------------------------------------

check_true "rmmod succeeds once no configfs object is left" rmmod $MOD
check_false "$SYSMOD is gone after rmmod" test -d "$SYSMOD"

check_true "modprobe $MOD again" modprobe $MOD
check_true "mkdir user_$HBA after the reload" mkdir "$HBA_PATH"
check_true "mkdir user_$HBA/dev0 after the reload" mkdir "$DEV_PATH"
check_write_ok "configure after the reload" "$DEV_PATH/control" \
	"dev_size=1048576,max_data_area_mb=1,cmd_ring_size_mb=1"
check_write_ok "enable after the reload" "$DEV_PATH/enable" 1
check_eq "uio device of the reloaded module" 1 \
	"$(tcmu_find_uio "$(tcmu_uio_name $HBA dev0)" | wc -l)"
check_true "rmdir after the reload" rmdir "$DEV_PATH"
check_true "rmdir user_$HBA after the reload" rmdir "$HBA_PATH"
check_true "second rmmod" rmmod $MOD
check_true "modprobe leaves the module loaded for the next test" modprobe $MOD

tcmu_finish
