#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# "make bench": performance of our target_core_user against Debian's stock
# module and the in-kernel rd_mcp / fileio backstores, in one boot of the
# stock kernel (only ratios from the same boot mean anything under TCG).
#
# Usage: tools/testing/bench.sh
#
# Builds the module (build/bench/module/) and the test handler, boots the
# stock kernel once and runs bench-guest.sh: fio through tcm_loop against
#   rd_mcp, fileio   in-kernel backstores (file on the guest's tmpfs)
#   stock, ours      a user device served by tools/testing/tcmu-handler
#                    from RAM, under Debian's module and under ours; the
#                    two modules are swapped inside the boot and take
#                    turns over the rounds
#   stock_qcow, ours_qcow   the same under tcmu-runner's qcow handler
#                    (BENCH_RUNNER=1)
# then bench-report.py prints a table per case (median over the rounds,
# min..max spread, ratios ours/stock and ours/rd_mcp) and checks the
# targets of issue #6.
#
# Output: build/bench/<timestamp>/ (table.txt, results.json, host.txt with
# the host's load average at start and end, raw/ with the fio JSON,
# attrib/stats and handler counters of every case, console.log),
# build/bench/latest -> <timestamp>.  Not part of "make check": it judges
# nothing as passed or failed, it reports figures and the targets.
#
# Environment:
#   BENCH_ROUNDS=N     rounds (default 3)
#   BENCH_RUNTIME=SEC  seconds per case (default 10)
#   BENCH_QUICK=1      1 round, 3 s per case (development)
#   BENCH_RUNNER=1     also tcmu-runner's qcow handler (stock_qcow, ours_qcow)
#   BENCH_TARGETS="..." targets to run (default "rd_mcp fileio stock ours")
#   BENCH_CASES="..."  cases (default: all; see bench-guest.sh)
#   BENCH_THREADS=N    tcmu-handler --threads (default 1)
#   BENCH_PERF=1       profile each case (perf record -a in the guest; a
#                      flat report per case in raw/; skews the figures)
#   BENCH_SIZE_MB=N    device size (default 256)
#   BENCH_DATA_MB=N    max_data_area_mb of the user devices (default 64)
#   BENCH_MEM=MB       guest memory (default 3072)
#   BENCH_MODULE=FILE  use this target_core_user.ko instead of building one
#   BENCH_HANDLER=FILE use this tcmu-handler binary instead of building one
#
# Exit status: 0 when the run completed (missed targets are reported, not
# an error), 1 when it did not (build, VM or fio failure).

set -euo pipefail

# One brace group: an edit of this file while it runs cannot hurt.
{

case ${1:-} in
"") ;;
-h | --help)
	sed -n '4,/^$/s/^# \{0,1\}//p' "$0"
	exit 0
	;;
*)
	echo "bench: no arguments expected (try --help); settings come from the environment" >&2
	exit 2
	;;
esac

TESTING=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$TESTING/../.." && pwd)
cd "$REPO"
exec </dev/null

say() { printf '\n=== bench: %s\n' "$*"; }
die() {
	echo "bench: error: $*" >&2
	exit 1
}

rounds=${BENCH_ROUNDS:-3}
runtime=${BENCH_RUNTIME:-10}
if [[ ${BENCH_QUICK:-0} == 1 ]]; then
	rounds=1
	runtime=3
fi
targets=${BENCH_TARGETS:-rd_mcp fileio stock ours}
if [[ ${BENCH_RUNNER:-0} == 1 && -z ${BENCH_TARGETS:-} ]]; then
	targets+=" stock_qcow ours_qcow"
fi
cases=${BENCH_CASES:-}
mem=${BENCH_MEM:-3072}
[[ $rounds =~ ^[1-9][0-9]*$ && $runtime =~ ^[1-9][0-9]*$ && $mem =~ ^[0-9]+$ ]] ||
	die "BENCH_ROUNDS, BENCH_RUNTIME and BENCH_MEM take positive numbers"

say "setup"
mkdir -p build/bench
"$TESTING/vm/setup.sh" >build/bench/setup.log 2>&1 || {
	tail -n 30 build/bench/setup.log >&2
	die "tools/testing/vm/setup.sh failed (log: build/bench/setup.log)"
}
# shellcheck source-path=SCRIPTDIR source=vm/common.sh
(. "$TESTING/vm/common.sh" && rig_kernel stock) || die "the stock kernel is not set up"

if [[ -n ${BENCH_MODULE:-} ]]; then
	module=$(cd "$(dirname "$BENCH_MODULE")" && pwd)/$(basename "$BENCH_MODULE")
	[[ -f $module ]] || die "BENCH_MODULE=$BENCH_MODULE: no such file"
else
	say "build the module"
	# shellcheck source-path=SCRIPTDIR source=vm/common.sh
	kdir=$(. "$TESTING/vm/common.sh" && rig_kernel stock && echo "$RIG_KDIR")
	bdir=$REPO/build/bench/module
	rm -rf "$bdir"
	mkdir -p "$bdir"
	# shellcheck source-path=SCRIPTDIR source=vm/common.sh
	(. "$TESTING/vm/common.sh" && rig_copy_module_sources "$bdir")
	make -s -C "$kdir" M="$bdir" modules || die "module build failed"
	module=$bdir/target_core_user.ko
	[[ -f $module ]] || die "the build left no $module"
fi
if [[ -n ${BENCH_HANDLER:-} ]]; then
	handler=$(cd "$(dirname "$BENCH_HANDLER")" && pwd)/$(basename "$BENCH_HANDLER")
	[[ -x $handler ]] || die "BENCH_HANDLER=$BENCH_HANDLER: not an executable"
else
	say "build the test handler"
	make -s -C "$TESTING/tcmu-handler" || die "tcmu-handler build failed"
	handler=$TESTING/tcmu-handler/tcmu-handler
fi

stamp=$(date +%Y%m%d-%H%M%S)
out=$REPO/build/bench/$stamp
mkdir -p "$out"
# The machine may be shared: its load goes into the report, so that a
# reader can tell a quiet run from a busy one.
host_state() {
	echo "${1}_date=$(date '+%Y-%m-%d %H:%M:%S %Z')"
	echo "${1}_loadavg=$(cut -d' ' -f1-3 /proc/loadavg)"
}
{
	echo "host_ncpu=$(nproc)"
	host_state start
} >"$out/host.txt"

# Time limit: per target and round, the prefill plus every case with its
# ramp and start-up, then generous slack for TCG on a busy machine.
ntargets=$(wc -w <<<"$targets")
ncases=$(wc -w <<<"${cases:-x x x x x x x}")
limit=$((300 + rounds * ntargets * (60 + ncases * (runtime + 15)) * 2))

say "run: $rounds round(s), ${runtime} s per case, targets: $targets (VM limit ${limit} s)"
echo "results in ${out#"$REPO"/}"
env_vm=(TCMU_HANDLER="$handler" TCMU_BENCH_ROUNDS="$rounds" TCMU_BENCH_RUNTIME="$runtime" TCMU_BENCH_TARGETS="$targets")
[[ -n $cases ]] && env_vm+=(TCMU_BENCH_CASES="$cases")
[[ -n ${BENCH_THREADS:-} ]] && env_vm+=(TCMU_BENCH_THREADS="$BENCH_THREADS")
[[ -n ${BENCH_SIZE_MB:-} ]] && env_vm+=(TCMU_BENCH_SIZE_MB="$BENCH_SIZE_MB")
[[ -n ${BENCH_DATA_MB:-} ]] && env_vm+=(TCMU_BENCH_DATA_MB="$BENCH_DATA_MB")
[[ ${BENCH_PERF:-0} == 1 ]] && env_vm+=(TCMU_BENCH_PERF=1)
set +e
env "${env_vm[@]}" "$TESTING/vm/run-vm.sh" --kernel stock --module "$module" \
	--mem "$mem" --timeout "$limit" --outdir "$out" --log "$out/console.log" \
	-- "$TESTING/bench-guest.sh" 2>"$out/run-vm.err" |
	grep --line-buffered '^\[bench'
rc=${PIPESTATUS[0]}
set -e
cat "$out/run-vm.err" >&2
host_state end >>"$out/host.txt"

ln -sfn "$stamp" "$REPO/build/bench/latest"
say "report"
report_rc=0
python3 "$TESTING/bench-report.py" "$out" || report_rc=$?
echo
echo "saved in ${out#"$REPO"/} (also build/bench/latest)"
case $rc in
0) ;;
124) die "the VM run timed out after $limit s; see ${out#"$REPO"/}/console.log" ;;
125) die "the kernel reported a problem (Oops, WARNING, ...); see ${out#"$REPO"/}/console.log" ;;
*) die "the VM run failed (exit $rc); see ${out#"$REPO"/}/console.log" ;;
esac
((report_rc == 0)) || die "the results are incomplete"
exit 0
}
