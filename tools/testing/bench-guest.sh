#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Runs inside the VM (see bench.sh): fio through tcm_loop against the
# in-kernel rd_mcp and fileio backstores (the ceiling) and against user
# devices served by the same handler under Debian's stock target_core_user
# and under ours.  Both modules are called target_core_user, so they take
# turns: every round loads one, runs every case, swaps, runs every case
# again (the order alternates between rounds so drift cancels out).
#
# Raw results go to $TCMU_OUT/raw/r<round>/<target>/:
#   <case>.json       fio's JSON output
#   <case>.stats      attrib/stats of the user device after the case (ours)
#   <case>.handler    the handler's counters after the case
#   <case>.cpu        guest CPU time over the case (from /proc/stat) and the
#                     handler's own CPU time
#   device.txt        the device's attributes, the module in use, the disk
# plus $TCMU_OUT/raw/meta.txt (settings) and $TCMU_OUT/raw/done (written
# last: the report refuses a run without it).
#
# Settings (environment; bench.sh maps BENCH_* to these):
#   TCMU_BENCH_ROUNDS    rounds (default 3)
#   TCMU_BENCH_RUNTIME   seconds per case (default 10), after 1 s ramp
#   TCMU_BENCH_TARGETS   default "rd_mcp fileio stock ours" (+ stock_qcow
#                        ours_qcow: tcmu-runner's qcow handler)
#   TCMU_BENCH_CASES     default: all of the cases listed below
#   TCMU_BENCH_SIZE_MB   device size (default 256)
#   TCMU_BENCH_DATA_MB   max_data_area_mb of the user devices (default 64)
#   TCMU_BENCH_THREADS   tcmu-handler --threads (default 1: inline)
#   TCMU_BENCH_PERF      1: profile every case with "perf record -a" and
#                        save a flat report (<case>.perf.txt) beside it
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${TCMU_OUT:?TCMU_OUT must be set (run through bench.sh)}
RAW=$OUT/raw
CFS=/sys/kernel/config/target
CORE=$CFS/core
LOOP=$CFS/loopback
WORK=/tmp/bench
HANDLER=${TCMU_HANDLER:-$here/tcmu-handler/tcmu-handler}

ROUNDS=${TCMU_BENCH_ROUNDS:-3}
RUNTIME=${TCMU_BENCH_RUNTIME:-10}
SIZE_MB=${TCMU_BENCH_SIZE_MB:-256}
DATA_MB=${TCMU_BENCH_DATA_MB:-64}
THREADS=${TCMU_BENCH_THREADS:-1}
PERF=${TCMU_BENCH_PERF:-0}
read -r -a TARGETS <<<"${TCMU_BENCH_TARGETS:-rd_mcp fileio stock ours}"
ALL_CASES=(randread_4k_qd1 randread_4k_qd16 randread_4k_qd64 randwrite_4k_qd16
	randrw_64k_qd16 read_1m_qd4 write_1m_qd4)
read -r -a CASES <<<"${TCMU_BENCH_CASES:-${ALL_CASES[*]}}"
SIZE=$((SIZE_MB << 20))

# fio options of one case
case_opts()
{
	case $1 in
	randread_4k_qd1) echo "--rw=randread --bs=4k --iodepth=1" ;;
	randread_4k_qd16) echo "--rw=randread --bs=4k --iodepth=16" ;;
	randread_4k_qd64) echo "--rw=randread --bs=4k --iodepth=64" ;;
	randwrite_4k_qd16) echo "--rw=randwrite --bs=4k --iodepth=16" ;;
	randrw_64k_qd16) echo "--rw=randrw --rwmixread=50 --bs=64k --iodepth=16" ;;
	read_1m_qd4) echo "--rw=read --bs=1m --iodepth=4" ;;
	write_1m_qd4) echo "--rw=write --bs=1m --iodepth=4" ;;
	*) return 1 ;;
	esac
}

T0=$SECONDS
say() { printf '[bench %4ds] %s\n' $((SECONDS - T0)) "$*"; }
die()
{
	say "FATAL: $*"
	cleanup
	exit 1
}

# wait_for SECONDS CMD...: poll CMD every 0.1 s
wait_for()
{
	local n=$(($1 * 10))
	shift
	until "$@"; do
		((--n > 0)) || return 1
		sleep 0.1
	done
}

# put FILE STRING: one write(2) of STRING
put()
{
	printf '%s' "$2" >"$1" 2>/dev/null || {
		say "writing '$2' to ${1#"$CFS"/} failed"
		return 1
	}
}

# ---------------------------------------------------------------------------
# Modules

# The kernel's own target_core_user (maybe compressed), and ours (updates/).
find_stock()
{
	local d f
	d=/lib/modules/$(uname -r)/kernel/drivers/target
	for f in "$d"/target_core_user.ko "$d"/target_core_user.ko.xz \
		"$d"/target_core_user.ko.zst "$d"/target_core_user.ko.gz; do
		[[ -e $f ]] || continue
		case $f in
		*.ko) STOCK_KO=$f ;;
		*.xz) xz -dc "$f" >"$WORK/stock_tcmu.ko" && STOCK_KO=$WORK/stock_tcmu.ko ;;
		*.zst) zstd -qdc "$f" >"$WORK/stock_tcmu.ko" && STOCK_KO=$WORK/stock_tcmu.ko ;;
		*.gz) gzip -dc "$f" >"$WORK/stock_tcmu.ko" && STOCK_KO=$WORK/stock_tcmu.ko ;;
		esac
		return 0
	done
	return 1
}

# Which target_core_user is loaded: "ours" (out-of-tree, taint O),
# "stock", or "none".
loaded_module()
{
	local t
	[[ -d /sys/module/target_core_user ]] || {
		echo none
		return
	}
	t=$(cat /sys/module/target_core_user/taint 2>/dev/null)
	if [[ $t == *O* ]]; then echo ours; else echo stock; fi
}

# use_module stock|ours: make that target_core_user the loaded one
use_module()
{
	local want=$1 ko i
	[[ $(loaded_module) == "$want" ]] && return 0
	if [[ -d /sys/module/target_core_user ]]; then
		for ((i = 0; i < 50; i++)); do
			rmmod target_core_user 2>/dev/null && break
			sleep 0.2
		done
		if [[ -d /sys/module/target_core_user ]]; then
			ls -d "$CORE"/user_* "$CORE"/user_*/* 2>/dev/null
			die "cannot unload target_core_user ($(cat /sys/module/target_core_user/refcnt) users)"
		fi
	fi
	case $want in
	stock) ko=$STOCK_KO ;;
	ours) ko=$OURS_KO ;;
	esac
	insmod "$ko" || die "insmod $ko failed"
	[[ $(loaded_module) == "$want" ]] || die "loaded $ko but the kernel reports $(loaded_module)"
	say "target_core_user is now $want ($ko)"
}

# ---------------------------------------------------------------------------
# Devices

# Every target gets its own HBA number and tcm_loop port.
declare -A HBA=([rd_mcp]=11 [fileio]=12 [stock]=13 [ours]=14 [stock_qcow]=15 [ours_qcow]=16)
# per target: configfs device directory, disk, tcm_loop WWN, handler pid
declare -A DEV DISK WWN HPID

# make_dev TARGET: create and enable the backstore device of TARGET.
make_dev()
{
	local t=$1 h=${HBA[$1]} d
	case $t in
	rd_mcp)
		d=$CORE/rd_mcp_$h/bench
		mkdir -p "$d" || return 1
		DEV[$t]=$d
		put "$d/control" "rd_pages=$((SIZE / 4096))" || return 1
		;;
	fileio)
		d=$CORE/fileio_$h/bench
		mkdir -p "$d" || return 1
		DEV[$t]=$d
		# the file lives on the guest's tmpfs
		truncate -s "$SIZE" "$WORK/fileio.img" || return 1
		put "$d/control" "fd_dev_name=$WORK/fileio.img,fd_dev_size=$SIZE" || return 1
		;;
	stock | ours)
		d=$CORE/user_$h/bench
		mkdir -p "$d" || return 1
		DEV[$t]=$d
		# Our handler does not speak netlink: never wait for a reply
		# (once tcmu-runner has run, both modules would, for every new
		# device, until it times out or, upstream, forever).
		put "$d/control" "dev_size=$SIZE,dev_config=bench/ram,max_data_area_mb=$DATA_MB,nl_reply_supported=-1" ||
			return 1
		;;
	stock_qcow | ours_qcow)
		d=$CORE/user_$h/bench
		rm -f "$WORK/qcow.img"
		qemu-img create -q -f qcow2 -o preallocation=metadata "$WORK/qcow.img" "$SIZE" ||
			return 1
		mkdir -p "$d" || return 1
		DEV[$t]=$d
		put "$d/control" "dev_size=$SIZE,dev_config=qcow/$WORK/qcow.img,max_data_area_mb=$DATA_MB" ||
			return 1
		;;
	*) return 1 ;;
	esac
	put "$d/enable" 1 || return 1
}

# find_uio DEVDIR: the uioN serving a user device
find_uio()
{
	local h=${1%/*} n
	h=${h##*user_}
	for n in /sys/class/uio/uio*/name; do
		if [[ $(cat "$n") == tcm-user/$h/${1##*/}/* ]]; then
			n=${n%/name}
			echo "${n##*/}"
			return 0
		fi
	done
	return 1
}

# start_handler TARGET: our test handler, RAM store, on the user device
start_handler()
{
	local t=$1 uio pidf=$WORK/$1.handler.pid
	uio=$(find_uio "${DEV[$t]}") || {
		say "no uio device for ${DEV[$t]}"
		return 1
	}
	wait_for 5 test -c "/dev/$uio" || return 1
	rm -f "$pidf" "$WORK/$t.handler.status"
	"$HANDLER" --uio "/dev/$uio" --size "$SIZE" --threads "$THREADS" \
		--pidfile "$pidf" --status "$WORK/$t.handler.status" \
		</dev/null >>"$WORK/$t.handler.log" 2>&1 &
	HPID[$t]=$!
	wait_for 10 test -s "$pidf" || {
		say "handler for $t did not start:"
		tail -n 5 "$WORK/$t.handler.log"
		return 1
	}
}

stop_handler()
{
	local p=${HPID[$1]:-}
	[[ -n $p ]] || return 0
	kill -TERM "$p" 2>/dev/null
	wait_for 10 bash -c "! kill -0 $p 2>/dev/null" || kill -KILL "$p" 2>/dev/null
	wait "$p" 2>/dev/null
	HPID[$1]=
}

# tcmu-runner (no D-Bus needed: the device is made through configfs, and
# the runner finds it through netlink or its start-up scan).
RPID=
start_runner()
{
	command -v tcmu-runner >/dev/null || {
		say "tcmu-runner is not installed"
		return 1
	}
	mkdir -p "$WORK/runner"
	rm -f "$WORK/runner/tcmu-runner.log"
	tcmu-runner -l "$WORK/runner" </dev/null >>"$WORK/runner/stdout" 2>&1 &
	RPID=$!
	# it loads every handler before it listens; rbd comes last
	wait_for 30 grep -qs 'Handler rbd is registered' "$WORK/runner/tcmu-runner.log" ||
		wait_for 5 grep -qs 'Handler qcow is registered' "$WORK/runner/tcmu-runner.log" || {
		say "tcmu-runner did not start:"
		tail -n 5 "$WORK/runner/tcmu-runner.log" "$WORK/runner/stdout"
		return 1
	}
	sleep 0.5
}

stop_runner()
{
	[[ -n $RPID ]] || return 0
	kill -TERM "$RPID" 2>/dev/null
	wait_for 15 bash -c "! kill -0 $RPID 2>/dev/null" || kill -KILL "$RPID" 2>/dev/null
	wait "$RPID" 2>/dev/null
	cat "$WORK/runner/tcmu-runner.log" >>"$RAW/tcmu-runner.log" 2>/dev/null
	RPID=
}

# runner_has_uio TARGET: tcmu-runner has opened the device's uio node
# shellcheck disable=SC2317 # called through wait_for
runner_has_uio()
{
	local uio f
	uio=$(find_uio "${DEV[$1]}") || return 1
	for f in /proc/"$RPID"/fd/*; do
		[[ $(readlink "$f") == /dev/$uio ]] && return 0
	done
	return 1
}

# handler_status TARGET FILE: a fresh copy of the handler's counters
handler_status()
{
	local p=${HPID[$1]:-} f=$WORK/$1.handler.status
	[[ -n $p ]] || return 0
	rm -f "$f"
	kill -USR1 "$p" 2>/dev/null || return 0
	wait_for 5 test -s "$f" && cp "$f" "$2"
}

# export_dev TARGET: tcm_loop port + LUN 0 -> DISK[TARGET]
export_dev()
{
	local t=$1 h=${HBA[$1]} tpg addr b blk=
	WWN[$t]=$(printf 'naa.5001405bb0%06x' "$h")
	tpg=$LOOP/${WWN[$t]}/tpgt_1
	mkdir -p "$tpg/lun/lun_0" || return 1
	put "$tpg/nexus" "$(printf 'naa.5001405bc0%06x' "$h")" || return 1
	ln -s "${DEV[$t]}" "$tpg/lun/lun_0/bench" || return 1
	addr=$(cat "$tpg/address"):0
	for ((i = 0; i < 150; i++)); do
		for b in /sys/class/scsi_device/"$addr"/device/block/*; do
			[[ -e $b ]] && blk=${b##*/}
		done
		[[ -n $blk && -b /dev/$blk ]] && break
		sleep 0.2
	done
	[[ -n $blk && -b /dev/$blk ]] || {
		say "no SCSI disk for $t ($addr)"
		return 1
	}
	DISK[$t]=/dev/$blk
	# the same queue settings everywhere: no I/O scheduler
	echo none >"/sys/block/$blk/queue/scheduler" 2>/dev/null
}

unexport_dev()
{
	local t=$1 tpg blk=${DISK[$1]:-}
	[[ -n ${WWN[$t]:-} ]] || return 0
	tpg=$LOOP/${WWN[$t]}/tpgt_1
	[[ -L $tpg/lun/lun_0/bench ]] && rm "$tpg/lun/lun_0/bench"
	[[ -d $tpg/lun/lun_0 ]] && rmdir "$tpg/lun/lun_0"
	[[ -d $tpg ]] && rmdir "$tpg"
	[[ -d $LOOP/${WWN[$t]} ]] && rmdir "$LOOP/${WWN[$t]}"
	[[ -n $blk ]] && wait_for 10 test ! -e "/sys/block/${blk#/dev/}"
	WWN[$t]=
	DISK[$t]=
}

remove_dev()
{
	local t=$1 d=${DEV[$1]:-}
	[[ -n $d ]] || return 0
	[[ -d $d ]] && rmdir "$d"
	[[ -d ${d%/*} ]] && rmdir "${d%/*}"
	DEV[$t]=
	[[ $t == fileio ]] && rm -f "$WORK/fileio.img"
	[[ $t == *_qcow ]] && rm -f "$WORK/qcow.img"
	return 0
}

# setup TARGET: everything up to the disk; records device.txt
setup_target()
{
	local t=$1 a
	case $t in
	stock | ours) use_module "$t" ;;
	stock_qcow | ours_qcow)
		use_module "${t%_qcow}"
		start_runner || return 1
		;;
	esac
	make_dev "$t" || return 1
	case $t in
	stock | ours) start_handler "$t" || return 1 ;;
	stock_qcow | ours_qcow)
		wait_for 20 runner_has_uio "$t" || {
			say "tcmu-runner did not open the device"
			tail -n 5 "$WORK/runner/tcmu-runner.log"
			return 1
		}
		;;
	esac
	export_dev "$t" || return 1
	{
		echo "target=$t"
		echo "disk=${DISK[$t]}"
		echo "configfs=${DEV[$t]}"
		echo "module=$(loaded_module)"
		[[ -d /sys/module/target_core_user ]] &&
			echo "module_srcversion=$(cat /sys/module/target_core_user/srcversion 2>/dev/null)"
		for a in hw_max_sectors max_sectors_kb hw_queue_depth queue_depth block_size \
			max_data_area_mb data_pages_per_blk cmd_ring_size_mb emulate_write_cache; do
			[[ -r ${DEV[$t]}/attrib/$a ]] && echo "attrib.$a=$(cat "${DEV[$t]}/attrib/$a")"
		done
		for a in max_sectors_kb nr_requests scheduler; do
			echo "queue.$a=$(cat "/sys/block/${DISK[$t]#/dev/}/queue/$a")"
		done
		echo "handler_threads=$THREADS"
	} >"$CUR/device.txt"
	# one sequential pass so that every target reads written data
	fio --name=prefill --filename="${DISK[$t]}" --ioengine=libaio --direct=1 \
		--rw=write --bs=1m --iodepth=4 --size="$SIZE" --output-format=terse \
		>"$CUR/prefill.txt" 2>&1 || say "prefill of $t failed (see prefill.txt)"
	# counters before the first case, so that the report can take deltas
	[[ -r ${DEV[$t]}/attrib/stats ]] && cat "${DEV[$t]}/attrib/stats" >"$CUR/prefill.stats"
	handler_status "$t" "$CUR/prefill.handler"
	return 0
}

teardown_target()
{
	local t=$1
	unexport_dev "$t"
	stop_handler "$t"
	remove_dev "$t"
	[[ $t == *_qcow ]] && stop_runner
	return 0
}

cleanup()
{
	local t
	for t in "${!DEV[@]}"; do
		teardown_target "$t" 2>/dev/null
	done
	stop_runner 2>/dev/null
}

# /proc/stat: total and idle jiffies of all CPUs
cpu_sample()
{
	local user nice sys idle iowait irq softirq steal rest
	read -r _ user nice sys idle iowait irq softirq steal rest </proc/stat
	echo "$((user + nice + sys + idle + iowait + irq + softirq + steal)) $((idle + iowait))"
}

# a process's "utime stime minflt" (ticks, ticks, count)
proc_ticks()
{
	local s f
	[[ -n ${1:-} && -r /proc/$1/stat ]] || {
		echo 0 0 0
		return
	}
	s=$(cat "/proc/$1/stat")
	s=${s##*) }
	read -r -a f <<<"$s"
	echo "${f[11]} ${f[12]} ${f[7]}"
}

run_case()
{
	local t=$1 c=$2 opts c0 c1 h0 h1 hp a0 a1 i0 i1 u0 u1 s0 s1 f0 f1 rc=0
	local prof=()
	opts=$(case_opts "$c") || return 1
	c0=$(cpu_sample)
	hp=${HPID[$t]:-}
	[[ $t == *_qcow ]] && hp=$RPID
	h0=$(proc_ticks "$hp")
	[[ $PERF == 1 ]] && prof=(perf record -q -a -F 499 -o "$CUR/$c.perf.data" --)
	# shellcheck disable=SC2086 # opts are separate words
	timeout -k 10 $((RUNTIME + 90)) "${prof[@]}" fio --name="$c" --filename="${DISK[$t]}" \
		--ioengine=libaio --direct=1 $opts --size="$SIZE" \
		--time_based --runtime="$RUNTIME" --ramp_time=1 \
		--norandommap --randrepeat=0 --lat_percentiles=1 \
		--output-format=json --output="$CUR/$c.json" >"$CUR/$c.err" 2>&1 || rc=$?
	c1=$(cpu_sample)
	h1=$(proc_ticks "$hp")
	read -r a0 i0 <<<"$c0"
	read -r a1 i1 <<<"$c1"
	read -r u0 s0 f0 <<<"$h0"
	read -r u1 s1 f1 <<<"$h1"
	{
		echo "total_ticks=$((a1 - a0))"
		echo "idle_ticks=$((i1 - i0))"
		echo "handler_ticks=$((u1 - u0 + s1 - s0))"
		echo "handler_utime=$((u1 - u0))"
		echo "handler_stime=$((s1 - s0))"
		echo "handler_minflt=$((f1 - f0))"
		echo "hz=$(getconf CLK_TCK)"
		echo "ncpu=$(nproc)"
	} >"$CUR/$c.cpu"
	if [[ -s $CUR/$c.perf.data ]]; then
		perf report -i "$CUR/$c.perf.data" --stdio --sort dso,sym 2>/dev/null |
			grep -v -e '^#' -e '^$' | head -n 60 >"$CUR/$c.perf.txt"
		rm -f "$CUR/$c.perf.data"
	fi
	[[ -s $CUR/$c.err ]] || rm -f "$CUR/$c.err"
	[[ -r ${DEV[$t]}/attrib/stats ]] && cat "${DEV[$t]}/attrib/stats" >"$CUR/$c.stats"
	handler_status "$t" "$CUR/$c.handler"
	if ((rc)); then
		say "  $t $c: fio failed ($rc)"
		return 1
	fi
	say "  $t $c: $(summary "$CUR/$c.json")"
}

# one line for the console
summary()
{
	python3 - "$1" <<'EOF' 2>/dev/null || echo "(no parse)"
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
iops = j["read"]["iops"] + j["write"]["iops"]
bw = (j["read"]["bw_bytes"] + j["write"]["bw_bytes"]) / 1e6
print("%.0f IOPS %.1f MB/s" % (iops, bw))
EOF
}

# ---------------------------------------------------------------------------

[[ $(id -u) == 0 ]] || die "must run as root"
mkdir -p "$WORK" "$RAW" || die "cannot create $WORK / $RAW"
rm -f "$RAW/done"
command -v fio >/dev/null || die "fio is not installed"
[[ $PERF != 1 ]] || command -v perf >/dev/null || die "TCMU_BENCH_PERF=1 but perf is not installed"
[[ -x $HANDLER ]] || die "no handler at $HANDLER (make -C tools/testing/tcmu-handler)"
for c in "${CASES[@]}"; do case_opts "$c" >/dev/null || die "unknown case $c"; done
for t in "${TARGETS[@]}"; do [[ -n ${HBA[$t]:-} ]] || die "unknown target $t"; done

modprobe -a configfs target_core_mod uio tcm_loop sd_mod target_core_iblock \
	target_core_file 2>/dev/null
mountpoint -q /sys/kernel/config || mount -t configfs none /sys/kernel/config
[[ -d $CORE ]] || die "target core not available"
find_stock || die "Debian's target_core_user.ko not found under /lib/modules/$(uname -r)/kernel"
OURS_KO=/lib/modules/$(uname -r)/updates/target_core_user.ko
[[ -e $OURS_KO ]] || die "our module is not installed at $OURS_KO (run-vm.sh --module)"
trap cleanup EXIT

{
	echo "kernel=$(uname -r)"
	echo "ncpu=$(nproc)"
	echo "mem_kb=$(sed -n 's/MemTotal: *\([0-9]*\).*/\1/p' /proc/meminfo)"
	echo "rounds=$ROUNDS"
	echo "runtime=$RUNTIME"
	echo "size_mb=$SIZE_MB"
	echo "data_mb=$DATA_MB"
	echo "threads=$THREADS"
	echo "targets=${TARGETS[*]}"
	echo "cases=${CASES[*]}"
	echo "stock_ko=$STOCK_KO"
	echo "ours_ko=$OURS_KO"
	echo "fio=$(fio --version)"
	for c in "${CASES[@]}"; do echo "case.$c=$(case_opts "$c")"; done
} >"$RAW/meta.txt"
say "rounds=$ROUNDS runtime=${RUNTIME}s targets='${TARGETS[*]}' cases=${#CASES[@]}"

failed=0
for ((r = 1; r <= ROUNDS; r++)); do
	# stock and ours take turns: odd rounds stock first, even ours first
	order=()
	for t in "${TARGETS[@]}"; do
		case $t in stock | ours | stock_qcow | ours_qcow) ;; *) order+=("$t") ;; esac
	done
	if ((r % 2)); then
		for t in stock stock_qcow ours ours_qcow; do
			[[ " ${TARGETS[*]} " == *" $t "* ]] && order+=("$t")
		done
	else
		for t in ours ours_qcow stock stock_qcow; do
			[[ " ${TARGETS[*]} " == *" $t "* ]] && order+=("$t")
		done
	fi
	for t in "${order[@]}"; do
		CUR=$RAW/r$r/$t
		mkdir -p "$CUR"
		say "round $r/$ROUNDS: $t"
		if ! setup_target "$t"; then
			say "set-up of $t failed"
			failed=1
			teardown_target "$t"
			continue
		fi
		for c in "${CASES[@]}"; do
			run_case "$t" "$c" || failed=1
		done
		teardown_target "$t"
	done
done
trap - EXIT
cleanup
for t in stock ours; do
	[[ -s $WORK/$t.handler.log ]] && cp "$WORK/$t.handler.log" "$RAW/$t.handler.log"
done
echo "failed=$failed" >"$RAW/done"
say "finished (failed=$failed)"
exit $failed
