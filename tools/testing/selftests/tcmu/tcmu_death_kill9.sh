#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# timeout: 600
#
# A handler killed with SIGKILL under load, again and again.
#
# attrib/handler_exit_policy=0 (the default): when the handler's last fd
# and mapping go away, every command it had taken completes at once with
# BUSY (the SCSI layer resends it), its data blocks are freed and the ring
# is emptied, so a restarted handler starts clean.  With a file-backed
# handler and fio writing (crc32c verify headers) in passes of "write
# everything, then --verify_only", the handler is killed $TCMU_KILLS
# (default 20) times at random moments and restarted each time (the next
# handler is already started with --wait and stands by until the device
# is free, the way a supervisor would keep one ready):
#
#   - each kill is followed by the release: attrib/stats handler_exits
#     moves, exit_failed counts the bounced commands; the time from the
#     kill to the release (all in-flight commands completed) and to the
#     next handler serving are printed; the median release takes at most
#     1 s, and the next handler serves at most the bound after the kill
#     (5 s, 10 s on the debug kernel: slack for TCG on a busy host, far
#     below the 30 s the commands would otherwise wait for cmd_time_out);
#   - no task waits in D state for block I/O longer than the bound: a
#     sampler watches /proc (state, wchan and how often each task ran,
#     so that back-to-back waits are told apart) all along, while a dd does
#     synchronous O_DIRECT reads (which sleep in D until answered) next
#     to fio; waits on the 9p root file system (exec, page cache) do not
#     count, nor do stretches when the whole guest stood still (the
#     sampler itself came back late: TCG on a busy host); the hung task
#     detector is set to 10 s meanwhile;
#   - fio never sees an error: every write is acknowledged, and every
#     pass reads back intact (attrib/stats bytes_in shows the reads),
#     the last one once more at the end;
#
# attrib/handler_exit_policy=1: the commands of a killed handler (slowed
# down with --delay-ms so that it holds some) stay in flight, nothing is
# bounced, and the restarted handler serves them: fio finishes without an
# error and its data verifies.

# shellcheck source=lib_dp.sh
. "$(dirname "$0")/lib_dp.sh"

dp_init
dp_require fio
[ -x "$TCMU_PYTHON" ] || command -v "$TCMU_PYTHON" > /dev/null ||
	tcmu_skip "python3 is not installed"

KILLS=${TCMU_KILLS:-20}
BOUND=${TCMU_DEATH_BOUND:-$(dp_scale 5 10)}	# seconds, see above
SIZE=$(dp_scale 16m 4m)
HUNG=/proc/sys/kernel/hung_task_timeout_secs
HUNG_OLD=
SAMPLER_PID=
STANDBY_PID=
out=

DP_HANDLER_FILE=$DP_WORK/store
dp_create 91 k9 "dev_size=$((64 << 20)),cmd_ring_size_mb=1,max_data_area_mb=8" ||
	tcmu_finish
[ -e "$DP_DEV/attrib/handler_exit_policy" ] ||
	tcmu_skip "the module has no attrib/handler_exit_policy"
check_eq "handler_exit_policy is 0 by default" 0 \
	"$(tcmu_value "$DP_DEV/attrib/handler_exit_policy")"
dp_handler_start || tcmu_finish
dp_export || tcmu_finish

# shellcheck disable=SC2317 # the EXIT trap
k9_exit()
{
	[ -n "$STANDBY_PID" ] && kill -KILL "$STANDBY_PID" 2>/dev/null
	[ -n "$SAMPLER_PID" ] && kill "$SAMPLER_PID" 2>/dev/null
	[ -n "$HUNG_OLD" ] && echo "$HUNG_OLD" > "$HUNG"
	dp_exit_trap
}
trap k9_exit EXIT

# stat_get VAR NAME: VAR gets counter NAME of attrib/stats (no fork).
stat_get()
{
	local -n _k9_v=$1
	local s line
	_k9_v=0
	tcmu_read s "$DP_DEV/attrib/stats" || return 1
	while IFS= read -r line; do
		if [ "${line%% *}" == "$2" ]; then
			_k9_v=${line#* }
			return 0
		fi
	done <<< "$s"
	return 1
}

# secs VAR MICROSECONDS: VAR gets them as seconds, "1.234".
secs()
{
	printf -v "$1" '%d.%03d' $(($2 / 1000000)) $(($2 % 1000000 / 1000))
}

stat_of()
{
	local v
	stat_get v "$1"
	echo "$v"
}

# ---------------------------------------------------------------------------
# The D state sampler: every 50 ms, which tasks are in D state; at the end
# the longest stretch each spent there.

sampler_start()
{
	"$TCMU_PYTHON" - "$DP_WORK/dstate" <<'EOF' &
import os, re, signal, sys, time

# Waits that have nothing to do with the device under test: the 9p root
# file system (exec, page faults, page cache) and memory management.
FOREIGN = re.compile(r'^(p9_|v9fs|netfs|folio_wait|filemap|__filemap|'
                     r'wait_on_page|__lock_page|do_read_cache|khugepaged|'
                     r'kcompactd|kswapd|rcu_|0$)')
out = sys.argv[1]
stop = []
signal.signal(signal.SIGTERM, lambda s, f: stop.append(1))
since = {}      # pid -> [t0, comm, set of wchans, switches, lost at t0]
worst = {}      # kind -> (seconds, pid, comm, wchans, raw seconds)
samples = 0
# Seconds the whole guest stood still (this loop came back late): under
# TCG on a busy host every task waits then, so it is not held against a
# D state that spans it.
lost = 0.0
last = time.monotonic()


def switches(p):
    # times the task ran: a change means it woke up since the last look
    try:
        with open('/proc/%s/schedstat' % p) as f:
            return f.read().split()[2]
    except (OSError, IndexError):
        with open('/proc/%s/status' % p) as f:
            return ''.join(l for l in f if 'ctxt_switches' in l)


def close(p, d):
    t0, comm, wch, sw, lost0 = since[p]
    kind = 'other' if all(FOREIGN.match(w) for w in wch) else 'io'
    adj = d - (lost - lost0)
    if adj > worst.get(kind, (0,))[0]:
        worst[kind] = (adj, p, comm, ','.join(sorted(wch)), d)


while not stop:
    now = time.monotonic()
    lost += max(0.0, now - last - 0.25)
    last = now
    seen = set()
    for p in os.listdir('/proc'):
        if not p.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % p) as f:
                st = f.read()
            r = st.rfind(')')
            if st[r + 2] != 'D':
                continue
            with open('/proc/%s/wchan' % p) as f:
                w = f.read().strip() or '0'
            sw = switches(p)
        except OSError:
            continue
        e = since.get(p)
        if e and e[3] != sw:
            # it ran in between: a new sleep, not the same one
            close(p, now - e[0])
            e = None
        if not e:
            e = since[p] = [now, st[st.find('(') + 1:r], set(), sw, lost]
        seen.add(p)
        e[2].add(w)
    for p in list(since):
        if p not in seen:
            close(p, now - since[p][0])
            del since[p]
    samples += 1
    time.sleep(0.05)
now = time.monotonic()
for p in since:
    close(p, now - since[p][0])
with open(out, 'w') as f:
    f.write('samples %d, the guest stood still for %.1fs\n' % (samples, lost))
    for kind in ('io', 'other'):
        d, p, comm, w, raw = worst.get(kind, (0, '-', '-', '-', 0))
        f.write('%s %.2f %s %s %s (%.2fs with the stalls)\n' %
                (kind, d, p, comm, w, raw))
EOF
	SAMPLER_PID=$!
}

sampler_stop()
{
	[ -n "$SAMPLER_PID" ] || return
	kill "$SAMPLER_PID" 2>/dev/null
	wait "$SAMPLER_PID"
	SAMPLER_PID=
}

# ---------------------------------------------------------------------------
dp_section "policy 0: $KILLS kills under load"
[ "$KILLS" -lt 20 ] && tcmu_log "$KILLS kills (TCMU_KILLS), not the 20 of the default"

# The same job writes (no verify phase) and, with --verify_only, reads
# everything back (do_verify must stay on for that).
FIO_JOB=(--rw=randwrite --bsrange=4k-64k --iodepth=32 "--size=$SIZE"
	--verify=crc32c --verify_fatal=1 --allow_file_create=0)
FIO_W=("${FIO_JOB[@]}" --do_verify=0)
FIO_V=("${FIO_JOB[@]}" --do_verify=1 --verify_only)

# fio_read_kib NAME: KiB the fio run NAME read (its READ summary line).
fio_read_kib()
{
	awk '/ READ: bw=/ && match($0, /io=[0-9.]+[KMGT]iB/) {
		v = substr($0, RSTART + 3, RLENGTH - 6)
		u = substr($0, RSTART + RLENGTH - 3, 1)
		n += v * (u == "K" ? 1 : u == "M" ? 1024 : u == "G" ? 1048576 : 1 / 1024)
	} END { printf "%d\n", n }' "$DP_WORK/$1.fio"
}

# Write passes, each read back with --verify_only, until told to stop.
passes()
{
	local i=0
	while [ ! -e "$DP_WORK/stop" ]; do
		i=$((i + 1))
		DP_FIO_TIMEOUT=300 dp_fio "w$i" "${FIO_W[@]}" "--randseed=$i"
		echo "w$i $DP_FIO_RC $(dp_fio_okjobs "w$i")" >> "$DP_WORK/passes"
		DP_FIO_TIMEOUT=300 dp_fio "v$i" "${FIO_V[@]}" "--randseed=$i"
		echo "v$i $DP_FIO_RC $(dp_fio_okjobs "v$i") $(fio_read_kib "v$i")" >> "$DP_WORK/passes"
	done
}

# standby_start: the next handler, waiting for the device to be free.
standby_start()
{
	rm -f "$DP_WORK/standby.pid"
	"$DP_HANDLER_BIN" --uio "/dev/$DP_UIO" --wait 120 \
		--pidfile "$DP_WORK/standby.pid" --status "$DP_WORK/handler.status" \
		--file "$DP_HANDLER_FILE" --size $((64 << 20)) \
		< /dev/null >> "$DP_HANDLER_LOG" 2>&1 &
	STANDBY_PID=$!
}

# Synchronous O_DIRECT reads: each one sleeps in D state until answered.
sync_reader()
{
	while [ ! -e "$DP_WORK/stop" ]; do
		dd if="$DP_DISK" of=/dev/null bs=64k iflag=direct count=256 \
			2>> "$DP_WORK/dd.err" || echo "dd failed" >> "$DP_WORK/dd.err"
	done
}

if [ -w "$HUNG" ]; then
	HUNG_OLD=$(cat "$HUNG")
	echo 10 > "$HUNG"
fi
: > "$DP_WORK/passes"
exits0=$(stat_of handler_exits)
failed0=$(stat_of exit_failed)
sampler_start
passes &
PASSES_PID=$!
dp_bg_add "$PASSES_PID"
sync_reader &
READER_PID=$!
dp_bg_add "$READER_PID"

# standby_ready: the standby handler is waiting for the device (no fork).
# shellcheck disable=SC2317 # called through dp_wait_secs
standby_ready()
{
	local log
	tcmu_read log "$DP_HANDLER_LOG"
	[[ "$log" == *"tcmu-handler[$STANDBY_PID]: "*" standing by"* ]]
}

# standby_show: what the standby handler is doing (when it is late).
standby_show()
{
	local p=$1 st wchan
	read -r st < "/proc/$p/stat" 2> /dev/null || st="gone"
	read -r wchan < "/proc/$p/wchan" 2> /dev/null
	tcmu_log "standby $p: state ${st#*) }, wchan ${wchan:-?}"
	[ -r "/proc/$p/stack" ] && sed 's/^/#   stack: /' "/proc/$p/stack"
	dp_handler_log 10
}

worst=
serve_worst_us=0
release_worst_us=0
times=()
serve_times=()
bounced=0
standby_start
for ((k = 1; k <= KILLS; k++)); do
	tw=$SECONDS
	if ! dp_wait_secs 30 standby_ready; then
		tcmu_log "kill $k: the standby is not ready after $((SECONDS - tw))s"
		standby_show "$STANDBY_PID"
	fi
	dp_nap $(((RANDOM % 8 + 2) * 100))
	stat_get e0 handler_exits
	stat_get f0 exit_failed
	stat_get infl inflight
	# (bash reports the killed job on stderr: not interesting here)
	{
		t0=${EPOCHREALTIME/./}
		kill -KILL "$DP_HANDLER_PID"
		for ((i = 0; i < 3000; i++)); do
			stat_get v handler_exits
			[ "$v" -gt "$e0" ] && break
			dp_nap 10
		done
		us=$((${EPOCHREALTIME/./} - t0))
		wait "$DP_HANDLER_PID"
	} 2>/dev/null
	DP_HANDLER_PID=$STANDBY_PID
	STANDBY_PID=
	stat_get f exit_failed
	f=$((f - f0))
	bounced=$((bounced + f))
	secs dt "$us"
	times+=("$dt")
	((us > release_worst_us)) && release_worst_us=$us
	if ! dp_wait_secs 20 test -s "$DP_WORK/standby.pid"; then
		fail "kill $k: the standby handler did not take over within 20s"
		standby_show "$DP_HANDLER_PID"
		break
	fi
	# it wrote the pidfile once it had the ring mapped: exact time, but
	# from the coarse clock, which may lag behind EPOCHREALTIME by a tick
	# or more (TCG): a time before the kill counts as 0
	t1=$(stat -c %.6Y "$DP_WORK/standby.pid")
	us=$((${t1/./} - t0))
	((us < 0)) && us=0
	((us > serve_worst_us)) && serve_worst_us=$us
	secs ts "$us"
	serve_times+=("$ts")
	tcmu_log "kill $k at ${SECONDS}s: $infl in flight, released after ${dt}s, $f bounced with BUSY, the next handler serves after ${ts}s"
	standby_start
done
touch "$DP_WORK/stop"
if [ -n "$STANDBY_PID" ]; then
	{
		kill -KILL "$STANDBY_PID"
		wait "$STANDBY_PID"
	} 2>/dev/null
	STANDBY_PID=
fi
tcmu_log "release times: ${times[*]}"
tcmu_log "the next handler served after: ${serve_times[*]}"
median=$(printf '%s\n' "${times[@]}" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
check_true "the median kill released the device within 1 s (${median}s)" \
	dp_float_cmp "${median:-999}" "<=" 1
secs worst "$release_worst_us"
check_true "every kill released the device within ${BOUND}s (worst ${worst}s)" \
	test "$release_worst_us" -le $((BOUND * 1000000))
secs worst "$serve_worst_us"
check_true "after every kill the next handler served within ${BOUND}s (worst ${worst}s)" \
	test "$serve_worst_us" -le $((BOUND * 1000000))
check_eq "attrib/stats handler_exits counts every kill" "$KILLS" \
	$(( $(stat_of handler_exits) - exits0 ))
check_eq "attrib/stats exit_failed counts the bounced commands" "$bounced" \
	$(( $(stat_of exit_failed) - failed0 ))
check_true "commands were in flight at some kills ($bounced bounced)" test "$bounced" -gt 0

if ! tcmu_wait_for 300 dp_pid_gone "$PASSES_PID"; then
	fail "fio passes did not finish"
fi
tcmu_wait_for 30 dp_pid_gone "$READER_PID" || fail "the dd reader did not finish"
dp_bg_reap 5
sampler_stop
check_eq "dd: every synchronous read succeeded" "" "$(grep failed "$DP_WORK/dd.err")"
[ -n "$HUNG_OLD" ] && echo "$HUNG_OLD" > "$HUNG"
HUNG_OLD=

tcmu_log "longest D state: $(sed -n '2,3p' "$DP_WORK/dstate" | tr '\n' ';') ($(head -n 1 "$DP_WORK/dstate"))"
dmax=$(sed -n 's/^io \([0-9.]*\) .*/\1/p' "$DP_WORK/dstate")
check_true "the D state sampler ran" grep -q '^samples [1-9]' "$DP_WORK/dstate"
check_true "no task waited in D state for I/O longer than ${BOUND}s (${dmax:-?}s)" \
	dp_float_cmp "${dmax:-999}" "<=" "$BOUND"

npass=$(wc -l < "$DP_WORK/passes")
nver=$(grep -c '^v' "$DP_WORK/passes")
bad=$(awk '$2 != 0 || $3 != 1' "$DP_WORK/passes")
short=$(awk -v want=$(( ${SIZE%m} * 1024 )) '$1 ~ /^v/ && $4 < want' "$DP_WORK/passes")
check_eq "every verify pass ($nver) read all $SIZE back" "" "$short"
tcmu_log "fio: $(tr '\n' ' ' < "$DP_WORK/passes")"
check_true "fio ran write and verify passes during the kills ($npass)" test "$npass" -ge 2
check_eq "fio never saw an error, every pass read back intact" "" "$bad" ||
	dp_fio_log "$(awk '$2 != 0 || $3 != 1 { print $1; exit }' "$DP_WORK/passes")"

# The last pass once more, from a fresh handler reading the file.
last=$(awk '$1 ~ /^w/ { n = substr($1, 2) } END { print n }' "$DP_WORK/passes")
if [ -n "$last" ]; then
	dp_handler_stop
	dp_handler_start
	dp_fio final "${FIO_V[@]}" "--randseed=$last"
	check_eq "the last pass (w$last) still reads back intact" 0 "$DP_FIO_RC" ||
		dp_fio_log final
	check_eq "... all $SIZE of it (KiB)" $(( ${SIZE%m} * 1024 )) "$(fio_read_kib final)"
fi
dp_show_stats

# ---------------------------------------------------------------------------
dp_section "policy 1: kept for the next handler"

dp_attr handler_exit_policy 1
check_eq "handler_exit_policy reads 1" 1 "$(tcmu_value "$DP_DEV/attrib/handler_exit_policy")"
dp_handler_stop
dp_handler_start --delay-ms 200
FIO_K=(--rw=randwrite --bs=4k --iodepth=16 --size=1m --verify=crc32c
	--do_verify=1 --verify_fatal=1 --randseed=77 --allow_file_create=0)
dp_fio keep "${FIO_K[@]}" &
KPID=$!
dp_bg_add "$KPID"
tcmu_wait_for 20 dp_stat_above inflight 3
e0=$(stat_of handler_exits)
f0=$(stat_of exit_failed)
dp_handler_kill
infl=$(stat_of inflight)
tcmu_log "killed the slow handler with $infl commands in flight"
check_eq "policy 1: the release was counted" $((e0 + 1)) "$(stat_of handler_exits)"
check_eq "policy 1: nothing was bounced" "$f0" "$(stat_of exit_failed)"
check_true "policy 1: the commands stay in flight ($infl)" test "$infl" -gt 0
dp_nap 1000
check_eq "policy 1: they are still there a second later" "$infl" "$(stat_of inflight)"
check_true "policy 1: fio is still waiting for them" kill -0 "$KPID"
dp_handler_start
if tcmu_wait_for 60 dp_pid_gone "$KPID"; then
	wait "$KPID"
	check_eq "policy 1: fio finished without an error after the restart" 0 $?
	check_eq "policy 1: its verify pass passed" 1 "$(dp_fio_okjobs keep)" ||
		dp_fio_log keep
else
	fail "policy 1: fio did not finish after the restart"
fi
DP_BG_PIDS=()
dp_handler_refresh_status
check_true "policy 1: the new handler served the kept commands ($(dp_handler_counter commands) taken)" \
	test "$(dp_handler_counter commands)" -ge "$infl"
check_eq "policy 1: none left in flight" 0 "$(stat_of inflight)"
check_eq "policy 1: still nothing bounced" "$f0" "$(stat_of exit_failed)"
dp_attr handler_exit_policy 0

dp_show_stats
dp_teardown
tcmu_finish
