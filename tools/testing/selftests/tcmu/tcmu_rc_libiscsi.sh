#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# timeout: 720
#
# libiscsi's SCSI conformance suite (iscsi-test-cu, package libiscsi-bin)
# against a user:qcow backstore served by tcmu-runner and exported by the
# LIO iSCSI target on 127.0.0.1:3260 (targetcli: target, portal, LUN 0,
# ACLs for libiscsi's two initiator names), run twice in the same boot:
# first under the kernel's own target_core_user (Debian's stock module, or
# upstream's on the debug kernel, loaded by path), then under ours (the one
# installed under updates/).  Module swap: configuration cleared,
# tcmu-runner stopped, rmmod, insmod.
#
#   - both runs report a result for every selected test (none missing: the
#     suite did not crash or hang), and the stock run passes a sensible
#     share of them (the set-up works);
#   - every test that passes with the stock module passes with ours, and
#     every test it skips (prints [SKIPPED] but passes) passes or skips
#     with ours; the differences are listed;
#   - tests that fail with both, or that only ours passes, are listed for
#     information;
#   - at the end ours is the loaded module again (the tests after this
#     one test it), everything is removed and tcmu-runner exits 0.
#
# Per-test results of each module are in the log and in
# $TCMU_OUT/rc/tcmu_rc_libiscsi/results-{stock,ours}.txt, the suite's own
# output in libiscsi-{stock,ours}.log.
#
# TCMU_LIBISCSI_TESTS overrides the selection (iscsi-test-cu -t syntax:
# comma separated FAMILY.SUITE[.TEST] globs).

# shellcheck source=lib_rc.sh
. "$(dirname "$0")/lib_rc.sh"

IQN=iqn.2003-01.org.linux-iscsi.tcmu-vm:rc-libiscsi
SO=/backstores/user:qcow/rclib
INIT1=iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test
INIT2=iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test-2
URL=iscsi://127.0.0.1:3260/$IQN/0

# The selection: SBC commands whose data goes through the ring (reads and
# writes of 1 to 256 blocks, many at once (Async), write-and-verify,
# compare-and-write, write same), commands tcmu-runner emulates (inquiry,
# mode sense, read capacity, ...) or rejects as unsupported (VERIFY,
# UNMAP, PREFETCH, GET LBA STATUS, REPORT SUPPORTED OPCODES: the suite
# skips those tests, cheaply, after the sense data says so), and commands
# LIO's core answers itself (persistent reservations, RESERVE).  Timed
# under TCG (stock kernel, very busy machine): 40 to 50 s per module, the
# Read10/Write10/WriteSame10 Simple loops 5 to 10 s each (the log gives
# every test's time).  Left out:
#   - for time: WriteVerify10.Simple (10 s: the same 1..256-block loop as
#     Write10.Simple, then tcmu-runner's verify; ZeroBlocks and Flags
#     stay); (15 to 50 s each) the BeyondEol tests of the read/write
#     families (hundreds of commands failing past the end of the LUN;
#     PREFETCH and GET LBA STATUS still check that path), the 6/12/16-byte
#     repeats of the 10-byte data tests (16-byte CDBs stay in through the
#     cheap ZeroBlocks tests), WriteSame.Check, CompareAndWrite.Simple and
#     Miscompare (which tcmu-runner fails anyway);
#   - as they fail with the stock module too (tcmu-runner ignores the
#     protection and DPO/FUA bits, LIO's iSCSI target its residual rules):
#     ReadProtect, WriteProtect, DpoFua, iSCSI.iSCSIResiduals.
LR_TESTS_STOCK="SCSI.TestUnitReady,SCSI.Inquiry,SCSI.ReadCapacity10,SCSI.ReadCapacity16"
LR_TESTS_STOCK+=",SCSI.ModeSense6,SCSI.Mandatory,SCSI.ReportSupportedOpcodes"
LR_TESTS_STOCK+=",SCSI.Read10.Simple,SCSI.Read10.ZeroBlocks,SCSI.Read10.Async"
LR_TESTS_STOCK+=",SCSI.Write10.Simple,SCSI.Write10.ZeroBlocks,SCSI.Write10.Async"
LR_TESTS_STOCK+=",SCSI.Read16.ZeroBlocks,SCSI.Write16.ZeroBlocks"
LR_TESTS_STOCK+=",SCSI.WriteVerify10.ZeroBlocks,SCSI.WriteVerify10.Flags"
LR_TESTS_STOCK+=",SCSI.Verify10"
LR_TESTS_STOCK+=",SCSI.CompareAndWrite.Unwritten,SCSI.CompareAndWrite.InvalidDataOutSize"
LR_TESTS_STOCK+=",SCSI.WriteSame10.Simple,SCSI.WriteSame10.ZeroBlocks,SCSI.WriteSame10.Unmap"
LR_TESTS_STOCK+=",SCSI.WriteSame10.UnmapUnaligned,SCSI.WriteSame10.UnmapUntilEnd"
LR_TESTS_STOCK+=",SCSI.WriteSame10.InvalidDataOutSize"
LR_TESTS_STOCK+=",SCSI.Unmap,SCSI.Prefetch10,SCSI.GetLBAStatus"
LR_TESTS_STOCK+=",SCSI.PrinReadKeys,SCSI.PrinReportCapabilities,SCSI.ProutRegister"
LR_TESTS_STOCK+=",SCSI.ProutReserve.Simple,SCSI.ProutClear,SCSI.ProutPreempt"
LR_TESTS_STOCK+=",SCSI.Reserve6.Simple,SCSI.Reserve6.2Initiators"
# The debug kernel runs everything several times slower: one test of each
# kind (many reads and writes in flight at once instead of the 1..256
# block loops).
LR_TESTS_DEBUG="SCSI.TestUnitReady,SCSI.Inquiry.EVPD,SCSI.Inquiry.SupportedVPD"
LR_TESTS_DEBUG+=",SCSI.ReadCapacity16.Simple,SCSI.ModeSense6.AllPages"
LR_TESTS_DEBUG+=",SCSI.Read10.Async,SCSI.Write10.Async,SCSI.Write10.ZeroBlocks"
LR_TESTS_DEBUG+=",SCSI.CompareAndWrite.Unwritten,SCSI.WriteSame10.ZeroBlocks,SCSI.Verify10.Simple"
LR_TESTS_DEBUG+=",SCSI.ProutRegister,SCSI.ProutReserve.Simple"

LR_STOCK_KO=
LR_OURS_KO=

# ---------------------------------------------------------------------------
# Modules

# lr_find_modules: LR_STOCK_KO (the kernel's own target_core_user,
# decompressed into RC_WORK if need be) and LR_OURS_KO (updates/).
lr_find_modules()
{
	local d f
	d=/lib/modules/$(uname -r)
	for f in "$d"/kernel/drivers/target/target_core_user.ko{,.xz,.zst,.gz}; do
		[ -e "$f" ] || continue
		case $f in
		*.ko) LR_STOCK_KO=$f ;;
		*.xz) xz -dc "$f" > "$RC_WORK/stock.ko" && LR_STOCK_KO=$RC_WORK/stock.ko ;;
		*.zst) zstd -qdc "$f" > "$RC_WORK/stock.ko" && LR_STOCK_KO=$RC_WORK/stock.ko ;;
		*.gz) gzip -dc "$f" > "$RC_WORK/stock.ko" && LR_STOCK_KO=$RC_WORK/stock.ko ;;
		esac
		break
	done
	f=$(modinfo -n target_core_user 2> /dev/null)
	[[ "$f" == "$d"/updates/* ]] && LR_OURS_KO=$f
}

# Which target_core_user is loaded: ours (out of tree: taint O), stock
# (in-tree), or none.
lr_loaded()
{
	local t
	if [ ! -d /sys/module/target_core_user ]; then
		echo none
		return
	fi
	tcmu_read t /sys/module/target_core_user/taint
	if [[ "$t" == *O* ]]; then
		echo ours
	else
		echo stock
	fi
}

lr_unload()
{
	local i
	for ((i = 0; i < 50; i++)); do
		[ -d /sys/module/target_core_user ] || return 0
		rmmod target_core_user 2> /dev/null && return 0
		sleep 0.2
	done
	[ ! -d /sys/module/target_core_user ]
}

# lr_use_module stock|ours: make that one the loaded target_core_user.
lr_use_module()
{
	local ko=$LR_OURS_KO
	[ "$1" == stock ] && ko=$LR_STOCK_KO
	[ "$(lr_loaded)" == "$1" ] && return 0
	lr_unload || return 1
	insmod "$ko" || return 1
	[ "$(lr_loaded)" == "$1" ]
}

# shellcheck disable=SC2317 # called through the EXIT trap
lr_exit_trap()
{
	rc_exit_trap
	# The tests after this one expect our module.
	if [ -n "$LR_OURS_KO" ] && [ "$(lr_loaded)" != ours ]; then
		lr_use_module ours > /dev/null 2>&1
	fi
	return 0
}

# ---------------------------------------------------------------------------
# The suite

# lr_parse LOG: one "SUITE.TEST STATUS SECONDS" line per test iscsi-test-cu
# ran, in its order; STATUS is passed, skipped (passed, but said
# [SKIPPED]) or failed.  CUnit's verbose mode prints "  Test: NAME ..."
# when a test starts and "passed" or "FAILED" when it ends, after whatever
# the test logged in between.  Every line of LOG starts with the time it
# was printed at (see lr_stamp).
lr_parse()
{
	"$TCMU_PYTHON" -S - "$1" << 'EOF'
import re
import sys

suite = test = None
skipped = failed = False
t0 = now = last = 0.0
out = []


def finish(status):
    global test
    if test is not None:
        if status == "passed" and skipped:
            status = "skipped"
        out.append("%s.%s %s %.1f" % (suite, test, status, now - t0))
    test = None


for line in open(sys.argv[1], errors="replace"):
    stamp, _, line = line.rstrip("\n").partition(" ")
    last = now
    try:
        now = float(stamp)
    except ValueError:
        pass
    m = re.match(r"^Suite: (\S+)", line)
    if m:
        finish("failed")
        suite = m.group(1)
        continue
    m = re.match(r"^  Test: (\S+) \.\.\.(.*)$", line)
    if m and suite:
        finish("failed")
        test, rest = m.group(1), m.group(2)
        # A test starts when the line before it was printed.
        t0 = last
        skipped = failed = False
        line = rest
    if test is None:
        continue
    if "[SKIPPED]" in line:
        skipped = True
    if "[FAILED]" in line:
        failed = True
    end = line.strip()
    if end.endswith("passed") and not end.startswith("["):
        finish("failed" if failed else "passed")
    elif end.endswith("FAILED"):
        finish("failed")
    elif line.startswith("Run Summary:"):
        finish("failed")
finish("failed")
print("\n".join(out))
EOF
}

# lr_stamp: copy stdin to stdout, every line prefixed with the time
# (bash builtins only: no program started per line).
lr_stamp()
{
	local l
	while IFS= read -r l; do
		printf '%s %s\n' "$EPOCHREALTIME" "$l"
	done
	[ -z "$l" ] || printf '%s %s\n' "$EPOCHREALTIME" "$l"
}

# lr_run MODULE: set up the export under MODULE, run the selection, save
# the per-test results in $RC_LOGDIR/results-MODULE.txt.
lr_run()
{
	local mod=$1 log=$RC_LOGDIR/libiscsi-$1.log t0 rc n

	rc_section "$mod module: tcmu-runner, targetcli, iscsi-test-cu"
	if ! lr_use_module "$mod"; then
		fail "cannot load the $mod target_core_user"
		return 1
	fi
	check_eq "the loaded target_core_user is the $mod one" "$mod" "$(lr_loaded)" || return 1
	rc_runner_start || return 1
	rm -f "$RC_WORK/lr.qcow2"
	rc_qcow_image "$RC_WORK/lr.qcow2" 64M || {
		fail "qemu-img create"
		return 1
	}
	rc_q_user rclib qcow 64M "$RC_WORK/lr.qcow2"
	rc_q_iscsi "$IQN" 127.0.0.1 3260
	rc_q_iscsi_lun "$IQN" "$SO" 0
	rc_q_iscsi_acl "$IQN" "$INIT1"
	rc_q_iscsi_acl "$IQN" "$INIT2"
	check_true "$mod: targetcli creates a 64 MiB user:qcow backstore and an iSCSI target on 127.0.0.1:3260 with ACLs for libiscsi's initiators" \
		rc_tcli_run || return 1

	t0=$SECONDS
	# -d: the write tests may overwrite the LUN.  The suite writes
	# CUnit files into the current directory.
	(cd "$RC_WORK" && timeout -k 10 "$LR_LIMIT" stdbuf -oL iscsi-test-cu -d \
		-i "$INIT1" -I "$INIT2" -t "$LR_TESTS" "$URL") < /dev/null 2>&1 | lr_stamp > "$log"
	rc=${PIPESTATUS[0]}
	tcmu_log "$mod: iscsi-test-cu exited with $rc after $((SECONDS - t0))s"
	[ "$rc" -eq 124 ] && fail "$mod: iscsi-test-cu did not finish within ${LR_LIMIT}s"
	lr_parse "$log" > "$RC_LOGDIR/results-$mod.txt"
	n=$(grep -c . "$RC_LOGDIR/results-$mod.txt")
	tcmu_log "$mod: $n results: $(cut -d' ' -f2 "$RC_LOGDIR/results-$mod.txt" | sort | uniq -c | tr '\n' ' ')"
	sed "s/^/# $mod: /" "$RC_LOGDIR/results-$mod.txt"
	grep -E '^[0-9.]+ (Run Summary| +(suites|tests|asserts) )' "$log" | cut -d' ' -f2- | sed "s/^/# $mod: /"
	return 0
}

# lr_stop_export MODULE: remove the iSCSI target and the backstore
# (through configfs: a targetcli process costs many seconds under TCG) and
# stop tcmu-runner, so the module can go.
lr_stop_export()
{
	local v
	rc_lio_purge
	v=$(rc_leftovers | grep -E '^(configfs|uio|device node)')
	check_eq "$1: iSCSI target, backstore and uio device removed" "" "$v"
	if rc_runner_stop 30 && [ "$RC_RUNNER_RC" == 0 ]; then
		pass "$1: tcmu-runner exits 0 on SIGTERM"
	else
		fail "$1: tcmu-runner stop (exit status $RC_RUNNER_RC)"
	fi
}

# ---------------------------------------------------------------------------

# Only the qcow handler is needed.
RC_HANDLERS=qcow
rc_init
rc_require iscsi-test-cu stdbuf
rc_modprobe iscsi_target_mod
lr_find_modules
[ -n "$LR_STOCK_KO" ] ||
	tcmu_skip "the kernel has no target_core_user of its own to compare with"
[ -n "$LR_OURS_KO" ] ||
	tcmu_skip "our target_core_user is not installed under /lib/modules/$(uname -r)/updates"
trap lr_exit_trap EXIT
LR_TESTS=${TCMU_LIBISCSI_TESTS:-$(rc_scale "$LR_TESTS_STOCK" "$LR_TESTS_DEBUG")}
LR_LIMIT=$(rc_scale 200 240)
tcmu_log "stock module: $LR_STOCK_KO; ours: $LR_OURS_KO"
tcmu_log "selection: $LR_TESTS"
rc_dbus_start || tcmu_finish

for m in stock ours; do
	if ! lr_run "$m"; then
		rc_runner_log_tail 20
		tcmu_finish
	fi
	[ "$m" == stock ] && lr_stop_export stock
done

rc_section "comparison"
S=$RC_LOGDIR/results-stock.txt
O=$RC_LOGDIR/results-ours.txt
ns=$(grep -c . "$S")
no=$(grep -c . "$O")
np=$(grep -c ' passed ' "$S")
nk=$(grep -c ' skipped ' "$S")
check_true "stock: the suite reported results ($ns)" test "$ns" -gt 0
check_eq "ours: a result for every test the stock run reported" "$ns" "$no"
# A run that passes (almost) nothing says the set-up is broken, not that
# the module is good.
check_true "stock: a third of the tests, and half of those not skipped, pass ($np of $ns, $nk skipped)" \
	test $((3 * np)) -ge "$ns" -a $((2 * np)) -ge $((ns - nk)) -a "$np" -gt 0

# stock passed -> ours passed; stock skipped -> ours passed or skipped
diffs=$(awk '
	FNR == NR { ours[$1] = $2; next }
	$2 == "passed" && ours[$1] != "passed" { print $1 ": stock passed, ours " (ours[$1] == "" ? "did not run it" : ours[$1]) }
	$2 == "skipped" && ours[$1] != "passed" && ours[$1] != "skipped" { print $1 ": stock skipped, ours " (ours[$1] == "" ? "did not run it" : ours[$1]) }
' "$O" "$S")
if [ -z "$diffs" ]; then
	pass "every test that passes (or skips) with the stock module does so with ours ($np passed with stock)"
else
	fail "tests that pass with the stock module but not with ours:"
	printf '%s\n' "$diffs" | sed 's/^/#   /'
fi
v=$(awk 'FNR == NR { s[$1] = $2; next } $2 == "failed" && s[$1] == "failed" { print $1 }' "$S" "$O" | tr '\n' ' ')
[ -n "$v" ] && tcmu_log "failing with both modules (not held against ours): $v"
v=$(awk 'FNR == NR { s[$1] = $2; next } $2 == "passed" && s[$1] == "failed" { print $1 }' "$S" "$O" | tr '\n' ' ')
[ -n "$v" ] && tcmu_log "passing only with ours: $v"

lr_stop_export ours
check_eq "our target_core_user is still the loaded one" ours "$(lr_loaded)"
rc_teardown
tcmu_finish
