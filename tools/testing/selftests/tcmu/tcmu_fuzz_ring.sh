#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# timeout: 900
#
# A hostile handler must only ever break its own device, and only until
# action/reset_ring.  Two user devices, each behind its own tcm_loop port:
#
#   A  served by tcmu-handler --fuzz, which, while it serves fio's I/O,
#      writes cmd_tail anywhere (beyond the ring, unaligned, past cmd_head,
#      backwards, inside an entry), scribbles on the mailbox, completes
#      with bad lengths, opcodes, flags, statuses, read_len, unknown,
#      stale or repeated ids, drops and keeps commands, touches data pages
#      no command owns (SIGBUS, caught), remaps, reopens, forks, kicks
#      with odd sizes, toggles block_dev and resets the ring; it repairs
#      what it broke with action/reset_ring.  fio runs without verify and
#      with --continue_on_error=all: errors on A are expected;
#   B  served by a plain handler, with fio --verify=crc32c runs one after
#      the other for the whole time: every run must pass.
#
# 1. broken-ring cases, one at a time: a handler that sets cmd_tail
#    beyond the ring, unaligned, past cmd_head, backwards or inside an
#    entry gets its device marked broken at once (the kernel log names
#    the reason; upstream 6.1 spins in a soft lockup on the first), the
#    next command fails at once with NOT READY / LOGICAL UNIT
#    COMMUNICATION FAILURE, and reset_ring brings the device back;
#    a handler that leaves the mailbox header scribbled when it exits
#    does not hand the mess to the next one (the kernel restores it);
# 2. the fuzz storm: TCMU_FUZZ_SECS seconds (default 90, 150 on the
#    debug kernel), half with an inline handler, half with worker
#    threads (the handler is killed under load in between).  A probe
#    resets the ring itself if A stays broken (the handler should have);
# 3. A is reset and a plain handler passes a fio write+verify run on it;
# 4. everything is removed; run_tests.sh checks the kernel log.
#
# TCMU_FUZZ_SEED (default random) and TCMU_FUZZ_RATE (misbehaviours per
# second, default 4) are passed on; the seed is printed.

# Most functions run through "on" (below), which shellcheck cannot follow.
# shellcheck disable=SC2317
# shellcheck source=lib_dp.sh
. "$(dirname "$0")/lib_dp.sh"

dp_init
dp_require fio

SECS=${TCMU_FUZZ_SECS:-$(dp_scale 90 150)}
SEED=${TCMU_FUZZ_SEED:-$((RANDOM << 30 | RANDOM << 15 | RANDOM))}
RATE=${TCMU_FUZZ_RATE:-4}
DEV_SIZE=$((64 << 20))
B_MB=$(dp_scale 8 4)	# MiB per fio run on B
VERIFY_MB=$(dp_scale 16 8)	# MiB of the final run on A
ROOT=$DP_WORK
out=
cdb=()

tcmu_log "fuzz seed $SEED, rate $RATE/s, $SECS s (TCMU_FUZZ_SEED/_RATE/_SECS)"

# ---------------------------------------------------------------------------
# Two devices with lib_dp.sh's one-device helpers: each device has its own
# copy of the DP_* state, swapped in with ctx_load and saved with ctx_save.

CTX_VARS=(DP_HBA DP_NAME DP_DEV DP_UIO DP_HANDLER_PID DP_HANDLER_OPTS
	DP_HANDLER_LOG DP_WWN DP_TPG DP_LUN_LINK DP_ADDR DP_DISK DP_BLK
	DP_BG_PIDS DP_MOUNTS DP_TORN_DOWN DP_HANDLER_FILE DP_WORK)
declare -A CTX=()

ctx_save()
{
	local s
	s=$(declare -p "${CTX_VARS[@]}")
	s=${s//declare -- /declare -g }
	s=${s//declare -a /declare -ga }
	CTX[$1]=$s
}

ctx_load()
{
	eval "${CTX[$1]}"
}

# on NAME CMD...: run CMD with device NAME's state.
on()
{
	local rc
	ctx_load "$1"
	"${@:2}"
	rc=$?
	ctx_save "$1"
	return $rc
}

fz_exit_trap()
{
	local n
	# the fuzzing handler's log names every misdeed, for a post-mortem
	if [ -s "$ROOT/a/handler.log" ] && [ -d "$TCMU_OUT/logs" ]; then
		cp "$ROOT/a/handler.log" "$TCMU_OUT/logs/tcmu_fuzz_ring.handler-a.log"
	fi
	for n in a b; do
		[ -n "${CTX[$n]:-}" ] || continue
		ctx_load "$n"
		[ -n "$DP_TORN_DOWN" ] || dp_teardown quiet
		ctx_save "$n"
	done
	tcmu_cleanup
	rm -rf "$ROOT"
	return 0
}
trap fz_exit_trap EXIT

mkdir -p "$ROOT/a" "$ROOT/b"
DP_WORK=$ROOT/a
ctx_save a
DP_WORK=$ROOT/b
ctx_save b

# setup HBA NAME CONTROL ATTR=VALUE...: device, plain handler, LUN.
setup()
{
	local a
	dp_create "$1" "$2" "$3" || return 1
	for a in "${@:4}"; do
		dp_attr "${a%%=*}" "${a#*=}" || return 1
	done
	dp_handler_start || return 1
	dp_export
}

on a setup 81 fza "dev_size=$DEV_SIZE,cmd_ring_size_mb=1,max_data_area_mb=8" \
	cmd_time_out=5 tmr_notification=1 || tcmu_finish
on b setup 82 fzb "dev_size=$DEV_SIZE,cmd_ring_size_mb=1,max_data_area_mb=16" ||
	tcmu_finish
A_NAME=fza
B_NAME=fzb

# ---------------------------------------------------------------------------
# helpers (run inside "on")

restart_handler()
{
	dp_handler_stop
	dp_handler_start "$@"
}

# A's ring was reset from here: tell the handler to start over.
reset_and_resync()
{
	dp_action reset_ring "$1" || return 1
	dp_handler_alive && kill -USR2 "$DP_HANDLER_PID"
	return 0
}

read8()
{
	dp_cdb10 cdb 0x28 0 8
	dp_sg out "$1" -r 4096 -- "${cdb[@]}"
}

# ---------------------------------------------------------------------------
dp_section "1. broken rings, one cmd_tail misdeed at a time"

# broken_case OP REASON: the handler does OP once (and repairs nothing).
broken_case()
{
	local op=$1 why=$2 mark st n secs

	mark="fuzz case $op $$"
	dp_kmsg_mark "$mark"
	restart_handler "--fuzz=$SEED" --fuzz-ops "$op" --fuzz-max 1 \
		--fuzz-rate 0 --fuzz-recover -1 || return 1
	# tail_inside needs an entry to land in: a READ the handler has not
	# taken yet.  The handler looks for one when it wakes, so a READ that
	# arrives while it is already awake is taken and served normally
	# (slow kernels keep it awake longer), hence up to eight tries.  The
	# others break the ring before any command arrives.
	for n in 1 2 3 4 5 6 7 8; do
		read8 15
		tcmu_log "$op: READ $n: $(dp_sg_status "$out") $(dp_sg_sense "$out") after ${DP_SG_SECS}s"
		dp_handler_refresh_status
		[ "$(dp_handler_counter "fuzz_$op")" == 0 ] || break
	done
	check_eq "$op: the handler did it once" 1 "$(dp_handler_counter "fuzz_$op")" ||
		dp_handler_log 10
	read8 10
	st="$(dp_sg_status "$out") $(dp_sg_sense "$out")"
	secs=$DP_SG_SECS
	check_eq "$op: the next READ fails with LU communication failure" \
		"check condition 2/08/00" "$st" || dp_sg_show "$out"
	check_true "$op: ... at once (${secs}s)" dp_float_cmp "$secs" "<" 2
	n=$(dp_kmsg_since "$mark" | grep -c "$A_NAME: ring broken by handler: $why")
	check_eq "$op: kernel log: ring broken by handler: $why" 1 "$n"
	check_true "$op: the handler is still running" dp_handler_alive
	reset_and_resync 1
	dp_sg_ua out 15 -r 4096 -- "${cdb[@]}"
	check_eq "$op: after reset_ring, READ works again" good "$(dp_sg_status "$out")" ||
		dp_sg_show "$out"
}

for c in "tail_outside:cmd_tail outside the ring" \
	"tail_unaligned:cmd_tail outside the ring" \
	"tail_beyond_head:cmd_tail beyond cmd_head" \
	"tail_backwards:cmd_tail beyond cmd_head" \
	"tail_inside:cmd_tail inside an entry"; do
	on a broken_case "${c%%:*}" "${c#*:}"
done

# mb_poke read|scribble: with no handler running, map the uio device and
# print the kernel's mailbox fields (version, flags, cmdr_off, cmdr_size,
# cmd_head) as a fresh mapping sees them, or write junk over them and
# exit, as a handler dying mid-misdeed would.
mb_poke()
{
	python3 - "$1" "/dev/$DP_UIO" "$(cat "/sys/class/uio/$DP_UIO/maps/map0/size")" <<'PYEOF'
import mmap, os, struct, sys
fd = os.open(sys.argv[2], os.O_RDWR)
m = mmap.mmap(fd, int(sys.argv[3], 0), mmap.MAP_SHARED,
              mmap.PROT_READ | mmap.PROT_WRITE)
if sys.argv[1] == "scribble":
    m[0:16] = struct.pack("<HHIII", 0x497c, 0xffff, 7, 0x12345, 0x6789a)
else:
    print("version %d flags %#x cmdr_off %d cmdr_size %d cmd_head %d"
          % struct.unpack("<HHIII", m[0:16]))
m.close()
os.close(fd)
PYEOF
}

scribbled_header_case()
{
	local mark="mailbox scribble $$" before after n

	dp_handler_stop
	before=$(mb_poke read)
	tcmu_log "mailbox header before: $before"
	dp_kmsg_mark "$mark"
	mb_poke scribble || fail "could not scribble on the mailbox"
	after=$(mb_poke read)
	check_eq "a scribbled mailbox header is restored when its handler exits" \
		"$before" "$after"
	local msg="handler left the mailbox header or cmd_head scribbled; restored"
	n=$(dp_kmsg_since "$mark" | grep -c "$A_NAME: $msg")
	check_eq "kernel log: the header was restored, once" 1 "$n"
	dp_handler_start || return 1
	read8 15
	check_eq "the next handler serves a READ" good "$(dp_sg_status "$out")" ||
		dp_sg_show "$out"
}
on a scribbled_header_case

# ---------------------------------------------------------------------------
dp_section "2. fuzz storm: $SECS s"

STORM_MARK="fuzz storm $$"
dp_kmsg_mark "$STORM_MARK"
HALF=$((SECS / 2))
T_END=$((SECS + $(date +%s)))
HANDLER_DEATHS=0
PROBE_RESETS=0
DEAD_RC=()

fuzz_handler_start()
{
	dp_handler_start "--fuzz=$1" --fuzz-rate "$RATE" "${@:2}"
}

# fio on A: mixed sizes and directions, errors expected and ignored.
a_fio()
{
	DP_FIO_TIMEOUT=$((SECS + 90)) dp_fio afuzz --rw=randrw --bsrange=512-64k \
		--iodepth=16 --numjobs=2 --size=$((DEV_SIZE / 2)) --time_based \
		"--runtime=$SECS" --continue_on_error=all --group_reporting \
		--allow_file_create=0 \
		> /dev/null
	echo "$DP_FIO_RC" > "$DP_WORK/afuzz.rc"
}

# fio write+verify runs on B until the storm is over; one line per run.
b_loop()
{
	local i=0
	: > "$DP_WORK/runs"
	while [ "$(date +%s)" -lt "$T_END" ]; do
		i=$((i + 1))
		DP_FIO_TIMEOUT=120 dp_fio "b$i" --rw=randwrite --bsrange=512-64k \
			--iodepth=8 "--size=${B_MB}m" "--offset=$(( (i % 6) * (B_MB << 20) ))" \
			--verify=crc32c --do_verify=1 --verify_fatal=1 \
			"--randseed=$((SEED + i))" --allow_file_create=0 > /dev/null
		echo "b$i $DP_FIO_RC $(dp_fio_okjobs "b$i")" >> "$DP_WORK/runs"
	done
}

bg_start()
{
	"$@" &
	dp_bg_add $!
}

# Is A broken right now (a command fails at once with 2/08/00)?
a_broken_now()
{
	local o
	dp_sg o 10 -- 00 00 00 00 00 00
	[ "$(dp_sg_sense "$o")" == 2/08/00 ] && dp_float_cmp "$DP_SG_SECS" "<" 1
}

# Is the handler running (kill -0 also succeeds on a zombie)?
handler_running()
{
	local st
	[ -n "$DP_HANDLER_PID" ] &&
		read -r _ _ st _ < "/proc/$DP_HANDLER_PID/stat" 2>/dev/null &&
		[ "$st" != Z ]
}

# One look at A: the handler still alive, the ring not stuck broken.
a_watch()
{
	local rc=
	if ! handler_running; then
		if [ -n "$DP_HANDLER_PID" ]; then
			wait "$DP_HANDLER_PID"
			rc=$?
		fi
		HANDLER_DEATHS=$((HANDLER_DEATHS + 1))
		DEAD_RC+=("$rc")
		tcmu_log "the fuzzing handler died" \
			"(exit ${rc:-none: it did not start}); restarting it"
		dp_handler_log 15
		DP_HANDLER_PID=
		reset_and_resync 1
		fuzz_handler_start "$((SEED + 1000 + HANDLER_DEATHS))" "${A_OPTS[@]}"
		return
	fi
	if a_broken_now && sleep 1 && a_broken_now; then
		PROBE_RESETS=$((PROBE_RESETS + 1))
		tcmu_log "A stayed broken; reset_ring from the test"
		reset_and_resync 1
	fi
}

# Add the fuzzing handler's counters to A_SUM (one handler's worth).
declare -A A_SUM=()
a_snapshot()
{
	local k v
	dp_handler_refresh_status || return 0
	while IFS='=' read -r k v; do
		[[ "$v" =~ ^[0-9]+$ ]] || continue
		A_SUM[$k]=$(( ${A_SUM[$k]:-0} + v ))
	done < "$DP_WORK/handler.status"
}

A_OPTS=()
on a restart_handler "--fuzz=$SEED" --fuzz-rate "$RATE"
on a bg_start a_fio
on b bg_start b_loop

t_half=$(($(date +%s) + HALF))
phase=1
while [ "$(date +%s)" -lt "$T_END" ]; do
	sleep 2
	if [ $phase -eq 1 ] && [ "$(date +%s)" -ge "$t_half" ]; then
		phase=2
		# Kill the inline handler under load; worker threads from now on.
		on a a_watch
		on a a_snapshot
		on a dp_handler_kill
		A_OPTS=(--threads 3)
		on a fuzz_handler_start "$((SEED + 1))" "${A_OPTS[@]}"
		tcmu_log "second half: a new fuzzing handler with worker threads"
		continue
	fi
	on a a_watch
done
on a a_watch
on a a_snapshot
tcmu_log "storm over after $((SECONDS - DP_SECTION_T)) s; waiting for fio"

# fio on A ends by itself (time_based); on B after the current run.
on a dp_bg_wait 90 || fail "fio on A did not end within 90 s after the storm"
tcmu_log "fio on A done after $((SECONDS - DP_SECTION_T)) s"
on b dp_bg_wait 150 || fail "the fio loop on B did not end"
tcmu_log "fio on B done after $((SECONDS - DP_SECTION_T)) s"

# --- results of the storm
check_eq "the fuzzing handler never died on its own" 0 "$HANDLER_DEATHS" ||
	tcmu_log "exit codes: ${DEAD_RC[*]}"
tcmu_log "resets the test had to do: $PROBE_RESETS"

# sum COUNTER: its total over the fuzzing handlers.
sum()
{
	echo "${A_SUM[$1]:-0}"
}

acts=$(sum fuzz_actions)
ops=0
kinds=
for n in tail_outside tail_unaligned tail_beyond_head tail_backwards \
	tail_inside tail_forward tail_random head mailbox ring_scribble \
	touch remap partial_unmap bad_mmap reopen odd_io fork reset block \
	free_kept_bogus len bad_op uflags kflags status read_len unknown_id \
	repeat stale_id other_id drop keep keep_twice data; do
	[ "$(sum "fuzz_$n")" -gt 0 ] || continue
	ops=$((ops + 1))
	kinds+="$n=$(sum "fuzz_$n") "
done
tcmu_log "A: per kind: $kinds"
tcmu_log "A: $acts misbehaviours of $ops kinds, $(sum fuzz_recovers) ring resets," \
	"$(sum fuzz_sigbus) SIGBUS caught, $(sum completed) completions," \
	"$(sum fuzz_exec_faults) faults while executing"
check_true "A: at least $((SECS * RATE / 8)) misbehaviours ($acts)" \
	test "$acts" -ge $((SECS * RATE / 8))
check_true "A: at least 20 kinds of misbehaviour ($ops)" test "$ops" -ge 20
check_true "A: the handler repaired the ring ($(sum fuzz_recovers) resets)" \
	test "$(sum fuzz_recovers)" -gt 0
check_true "A: I/O flowed between misdeeds ($(sum completed) completions)" \
	test "$(sum completed)" -ge $((SECS * 10))
check_eq "A: the kernel never surprised the fuzzer (odd mmap/read/write results)" \
	0 "$(sum fuzz_unexpected)"
n=$(dp_kmsg_since "$STORM_MARK" | grep -c "$A_NAME: ring broken by handler")
check_true "A: the kernel saw broken rings during the storm ($n logged)" test "$n" -gt 0
n=$(dp_kmsg_since "$STORM_MARK" | grep -c "$B_NAME: ")
check_eq "B: no kernel message about B" 0 "$n"
tcmu_log "fio on A: exit $(cat "$ROOT/a/afuzz.rc" 2>/dev/null)"

runs=$(wc -l < "$ROOT/b/runs")
bad=$(awk '$2 != 0 || $3 != 1' "$ROOT/b/runs")
check_true "B: fio write+verify ran all along ($runs runs)" test "$runs" -ge 2
check_eq "B: every fio write+verify run passed" "" "$bad" ||
	{ on b dp_fio_log "$(awk '$2 != 0 || $3 != 1 { print $1; exit }' "$ROOT/b/runs")"; }
on b dp_handler_refresh_status
check_eq "B: its handler saw no bad entry" 0 "$(on b dp_handler_counter bad_entries)"
check_eq "B: its handler never had to resync" 0 "$(on b dp_handler_counter resyncs)"
check_true "B: its handler is alive" on b dp_handler_alive

# ---------------------------------------------------------------------------
dp_section "3. A after the storm: reset, plain handler, fio verify"

a_clean()
{
	local state sectors
	dp_handler_stop
	[ "$(tcmu_value "$DP_DEV/action/block_dev")" == blocked ] && dp_action block_dev 0
	dp_action reset_ring 2
	dp_handler_start || return 1
	state=$(cat "/sys/class/scsi_device/$DP_ADDR/device/state")
	check_eq "A: the SCSI device is still running" running "$state"
	[ "$state" == running ] || echo running > "/sys/class/scsi_device/$DP_ADDR/device/state"
	# a fuzzed READ CAPACITY may have given sd a wrong size
	echo 1 > "/sys/class/scsi_device/$DP_ADDR/device/rescan"
	sectors=$(cat "/sys/block/$DP_BLK/size")
	check_eq "A: the disk has its size back" $((DEV_SIZE / 512)) "$sectors"
	dp_fio averify --rw=randwrite --bsrange=512-64k --iodepth=16 "--size=${VERIFY_MB}m" \
		--verify=crc32c --do_verify=1 --verify_fatal=1 "--randseed=$SEED" \
		--allow_file_create=0
	check_eq "A: fio write+verify passes with a plain handler" 0 "$DP_FIO_RC" ||
		dp_fio_log averify
	check_eq "A: fio jobs with err=0" 1 "$(dp_fio_okjobs averify)"
	dp_show_stats
}
on a a_clean

# ---------------------------------------------------------------------------
dp_section "4. teardown"

# The broken rings above are intended; from here on nothing may break.
DP_KMSG_MARK="teardown of ${0##*/} $$"
dp_kmsg_mark "$DP_KMSG_MARK"

a_gone()
{
	local uio=$DP_UIO dev=$DP_DEV wwn=$DP_LOOPBACK/$DP_WWN
	dp_teardown quiet
	check_true "A: device removed" test ! -e "$dev"
	check_true "A: uio device $uio gone" test ! -e "/sys/class/uio/$uio"
	check_true "A: tcm_loop port gone" test ! -e "$wwn"
}
on a a_gone
on b dp_teardown
tcmu_finish
