#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# timeout: 900
#
# targetcli's saveconfig / clearconfig / restoreconfig round trip with
# user backstores served by tcmu-runner:
#
#   user:qcow (cmd_time_out and qfull_time_out set through targetcli) and
#   user:zbc exported through tcm_loop (and an iSCSI target with portal,
#   LUN and ACL when the iSCSI target module exists); data written to the
#   qcow disk, to a conventional zone and at a sequential zone's write
#   pointer;
#   saveconfig: exit 0, the JSON holds both objects with their config,
#   size and attributes and the targets;
#   clearconfig confirm=True: exit 0, no configfs object, uio device or
#   SCSI device left, tcmu-runner still running;
#   restoreconfig: the configuration comes back.  rtslib writes every
#   saved attribute again after enabling the device; tcmu-runner 1.5.4's
#   handlers refuse the dev_config, dev_size and emulate_write_cache
#   RECONFIG events, which the kernel passes on as EOPNOTSUPP, so
#   targetcli reports them as "recoverable errors" (the stock module does
#   the same); any other error fails the test.  Afterwards the attributes
#   are back, the disks reappear, every byte written before reads back,
#   zone 2's write pointer is where it was, and a second saveconfig
#   matches the first.

# shellcheck source=lib_rc.sh
. "$(dirname "$0")/lib_rc.sh"

# Only the handlers the test uses (each costs time at every start).
RC_HANDLERS="qcow zbc"
rc_init
rc_require sg_rep_zones

WWN=$(rc_loop_wwn 3)
IQN=iqn.2003-01.org.linux-iscsi.tcmu-vm:rc-saveconfig
QSO=/backstores/user:qcow/rcqs
MIB=$((1 << 20))
SAVED=$RC_WORK/saved.json

HAVE_ISCSI=
modprobe iscsi_target_mod 2>/dev/null && HAVE_ISCSI=1

rc_dbus_start || tcmu_finish
rc_runner_start || tcmu_finish

# normalised JSON of a saveconfig file, for comparing: sorted keys, and
# every list in a canonical order (rtslib lists objects, LUNs and portals
# in directory order, which a restore does not keep).
json_norm()
{
	"$TCMU_PYTHON" -S -c '
import json, sys
def norm(x):
    if isinstance(x, dict):
        return {k: norm(v) for k, v in x.items()}
    if isinstance(x, list):
        return sorted((norm(v) for v in x), key=lambda v: json.dumps(v, sort_keys=True))
    return x
print(json.dumps(norm(json.load(open(sys.argv[1]))), sort_keys=True, indent=1))' "$1"
}

rc_section "set-up"
rc_q_qcow_zbc rcqs rczs "$WWN" "$QSO set attribute cmd_time_out=45 qfull_time_out=7"
QCOW=$RC_QCOW
ZBC=$RC_ZBC
if [ -n "$HAVE_ISCSI" ]; then
	rc_q_iscsi "$IQN" 127.0.0.1 3260
	rc_q_iscsi_lun "$IQN" "$QSO" 0
	rc_q_iscsi_acl "$IQN" "$RC_ISCSI_INITIATOR"
else
	tcmu_log "no iscsi_target_mod: the configuration has no iSCSI target"
fi
check_true "targetcli creates the configuration" rc_tcli_run || tcmu_finish
QDIR=$(rc_so_dir rcqs)
check_eq "configfs: cmd_time_out set through targetcli" 45 "$(tcmu_value "$QDIR/attrib/cmd_time_out")"
check_eq "configfs: qfull_time_out set through targetcli" 7 "$(tcmu_value "$QDIR/attrib/qfull_time_out")"

rc_qcow_zbc_devs "$WWN" || tcmu_finish
QDISK=/dev/$RC_QBLK
ZSG=$RC_ZSG

rc_random "$RC_WORK/a" $((2 * MIB))
rc_random "$RC_WORK/b" $((64 << 10))
rc_random "$RC_WORK/zc" $((128 << 10))
rc_random "$RC_WORK/zs" $((256 << 10))
check_true "qcow: 2 MiB written at 5 MiB" rc_dd_write "$QDISK" "$RC_WORK/a" $((5 * MIB))
check_true "qcow: 64 KiB written at 60 MiB + 4 KiB" rc_dd_write "$QDISK" "$RC_WORK/b" $((60 * MIB + 4096)) 4096
check_true "zbc: 128 KiB written at LBA 4096 (conventional zone)" rc_sg_write "$ZSG" "$RC_WORK/zc" 4096 512
check_true "zbc: RESET WRITE POINTER of zone 2" sg_reset_wp --zone=16384 "/dev/$ZSG"
check_true "zbc: 256 KiB written at zone 2's write pointer" rc_sg_write "$ZSG" "$RC_WORK/zs" 16384 512
check_eq "zbc: zone 2's write pointer" 16896 "$(rc_zone_wp "$ZSG" 16384)"
check_true "qcow: SYNCHRONIZE CACHE" sg_sync "$QDISK"
check_true "zbc: SYNCHRONIZE CACHE" sg_sync "/dev/$ZSG"

# ---------------------------------------------------------------------------
rc_section "saveconfig"
rm -f "$RC_SAVECONFIG"
check_true "targetcli saveconfig" rc_tcli saveconfig
check_true "it wrote $RC_SAVECONFIG" test -s "$RC_SAVECONFIG"
cp "$RC_SAVECONFIG" "$SAVED" 2>/dev/null
# What the file must say, checked with python's json module.
out=$("$TCMU_PYTHON" -S - "$SAVED" "$QCOW" "$ZBC" "$WWN" "$IQN" "$HAVE_ISCSI" <<'EOF'
import json, sys
path, qcow, zbc, wwn, iqn, have_iscsi = sys.argv[1:]
c = json.load(open(path))
so = {s["name"]: s for s in c.get("storage_objects", [])}
bad = []
def want(what, got, exp):
    if got != exp:
        bad.append("%s: %r, expected %r" % (what, got, exp))
q, z = so.get("rcqs", {}), so.get("rczs", {})
want("rcqs plugin", q.get("plugin"), "user")
want("rcqs config", q.get("config"), "qcow/" + qcow)
want("rcqs size", q.get("size"), 64 << 20)
want("rcqs cmd_time_out", q.get("attributes", {}).get("cmd_time_out"), 45)
want("rcqs qfull_time_out", q.get("attributes", {}).get("qfull_time_out"), 7)
want("rczs config", z.get("config"), "zbc/" + zbc)
want("rczs size", z.get("size"), 64 << 20)
tg = {(t["fabric"], t["wwn"]): t for t in c.get("targets", [])}
lo = tg.get(("loopback", wwn))
if not lo:
    bad.append("no loopback target " + wwn)
else:
    luns = sorted((l["index"], l["storage_object"]) for l in lo["tpgs"][0]["luns"])
    want("loopback LUNs", luns, [(0, "/backstores/user/rcqs"), (1, "/backstores/user/rczs")])
if have_iscsi:
    it = tg.get(("iscsi", iqn))
    if not it:
        bad.append("no iSCSI target " + iqn)
    else:
        tpg = it["tpgs"][0]
        want("iSCSI portals", [(p["ip_address"], p["port"]) for p in tpg["portals"]], [("127.0.0.1", 3260)])
        want("iSCSI ACLs", [a["node_wwn"] for a in tpg["node_acls"]], ["iqn.2003-01.org.linux-iscsi.tcmu-vm:rc-initiator"])
        want("iSCSI LUNs", [l["storage_object"] for l in tpg["luns"]], ["/backstores/user/rcqs"])
print("\n".join(bad))
EOF
)
check_eq "the saved JSON describes both backstores and the targets" "" "$out"

# ---------------------------------------------------------------------------
rc_section "clearconfig"
check_true "targetcli clearconfig confirm=True" rc_tcli clearconfig confirm=True
left=$(rc_leftovers | grep -v '^process: tcmu-runner')
check_eq "nothing left in configfs, no uio node, no SCSI device" "" "$left"
check_true "tcmu-runner still running" rc_runner_alive

# ---------------------------------------------------------------------------
rc_section "restoreconfig"
rc_tcli restoreconfig
rc=$?
# Errors rtslib may report: the RECONFIG refusals of the handler.
unexpected=$(printf '%s\n' "$RC_TCLI_OUT" | grep -E 'skipped$|[Ee]rror|[Ff]ail' |
	grep -vE '^Storage Object user/rc[qz]s: Cannot set attribute (dev_config|dev_size|emulate_write_cache): \[Errno 95\] Operation not supported, skipped$' |
	grep -vE '^Configuration restored, [0-9]+ recoverable errors:$')
check_match "targetcli restoreconfig: configuration restored" \
	'Configuration restored' "$RC_TCLI_OUT"
check_eq "restoreconfig: no error other than the handlers' RECONFIG refusals" "" "$unexpected"
if [ $rc -ne 0 ] && ! printf '%s\n' "$RC_TCLI_OUT" | grep -q 'recoverable errors'; then
	fail "restoreconfig exited $rc without naming recoverable errors"
fi

QDIR=$(rc_so_dir rcqs)
ZDIR=$(rc_so_dir rczs)
check_true "configfs: both backstores are back" test -n "$QDIR" -a -n "$ZDIR"
check_eq "configfs: qcow enabled" 1 "$(tcmu_value "$QDIR/enable")"
check_eq "configfs: qcow dev_config" "qcow/$QCOW" "$(tcmu_value "$QDIR/attrib/dev_config")"
check_eq "configfs: qcow cmd_time_out restored" 45 "$(tcmu_value "$QDIR/attrib/cmd_time_out")"
check_eq "configfs: qcow qfull_time_out restored" 7 "$(tcmu_value "$QDIR/attrib/qfull_time_out")"
check_eq "configfs: zbc dev_config" "zbc/$ZBC" "$(tcmu_value "$ZDIR/attrib/dev_config")"
[ -n "$HAVE_ISCSI" ] &&
	check_true "configfs: iSCSI portal 127.0.0.1:3260 is back" test -d "$RC_ISCSI/$IQN/tpgt_1/np/127.0.0.1:3260"

if rc_loop_dev "$WWN" 0 && [ -n "$RC_BLK" ]; then
	QDISK=/dev/$RC_BLK
	rc_check_data "qcow: the 2 MiB read back after the round trip" "$QDISK" "$RC_WORK/a" $((5 * MIB))
	rc_check_data "qcow: the 64 KiB read back after the round trip" "$QDISK" "$RC_WORK/b" $((60 * MIB + 4096)) 4096
else
	fail "no tcm_loop disk for the qcow backstore after restoreconfig"
fi
if rc_loop_dev "$WWN" 1 && [ -n "$RC_SG" ]; then
	ZSG=$RC_SG
	rc_clear_ua "$ZSG"
	check_eq "zbc: zone 2's write pointer survived" 16896 "$(rc_zone_wp "$ZSG" 16384)"
	rc_sg_read "$ZSG" "$RC_WORK/zc.back" 4096 256 512 &&
		check_true "zbc: conventional zone data read back" cmp "$RC_WORK/zc" "$RC_WORK/zc.back"
	rc_sg_read "$ZSG" "$RC_WORK/zs.back" 16384 512 512 &&
		check_true "zbc: sequential zone data read back" cmp "$RC_WORK/zs" "$RC_WORK/zs.back"
else
	fail "no sg node for the zbc backstore after restoreconfig"
fi

check_true "targetcli saveconfig again" rc_tcli saveconfig savefile="$RC_WORK/again.json"
d=$(diff <(json_norm "$SAVED") <(json_norm "$RC_WORK/again.json"))
check_eq "the configuration saved after the round trip is the one saved before" "" "$d" ||
	printf '%s\n' "$d" | head -n 30 | sed 's/^/#   /'

check_true "tcmu-runner still running" rc_runner_alive
rc_teardown
tcmu_finish
