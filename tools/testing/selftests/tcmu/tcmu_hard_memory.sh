#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# timeout: 480
#
# Memory: what an idle device costs, and the global data-area limit.
#
# 1. 64 user devices with the smallest ring (cmd_ring_size_mb=1, the
#    minimum) are enabled at once.  MemAvailable, Slab and vmalloc usage
#    (/proc/meminfo, and /proc/vmallocinfo entries allocated by
#    target_core_user) are compared before and after, with the page cache
#    dropped each time; the log gets a "memory per idle device: N KiB"
#    line.  An idle device must own no data pages (they are allocated on
#    demand), its vmalloc share must be its ring (1 MiB, plus the guard
#    page), and its whole cost must stay below the ring plus 512 KiB.
#
# 2. global_max_data_area_mb is lowered to 4 MiB (1024 pages) and fio
#    writes and verifies (crc32c) through 4 of those devices at once, each
#    served by tools/testing/tcmu-handler and exported through tcm_loop,
#    with 16 x 128 KiB commands in flight per device: together they want
#    8 MiB of data area, twice the limit.  The module counts a data page
#    against the global limit before it allocates it and refuses (the
#    command waits, and reclaim frees idle blocks of every device) once the
#    count would pass the limit, so at every instant the pages of all
#    devices together stay within the limit.  attrib/stats data_pages of
#    the busy devices is sampled during the run; the samples are not taken
#    at one instant, so a sum may exceed the limit by what moved between
#    two reads, at most one device's in-flight needs (16 x 128 KiB = 512
#    pages) - more is a failure.  Reclaim must be seen: a device's count
#    going down during the run, or the per-device peaks adding up to more
#    than the limit.  fio must verify, nothing may time out, no ring may
#    break, and idle devices must still own no data pages.  Lowering the
#    limit once more, to 2 MiB, must reclaim idle pages down to it.
#
# 3. Everything is removed; vmalloc usage must be back at the start and
#    MemAvailable within 16 MiB of it, not counting what tmpfs files grew
#    by meanwhile (the guest's /tmp, where this and the other tests keep
#    their logs and work files, is tmpfs: Shmem, which no cache drop
#    frees).  The original limit is restored even when the test fails.

# shellcheck source=lib_dp.sh
. "$(dirname "$0")/lib_dp.sh"

dp_init
dp_require fio
[ -x "$TCMU_PYTHON" ] || command -v "$TCMU_PYTHON" > /dev/null ||
	tcmu_skip "python3 is not installed"

PARAM=/sys/module/target_core_user/parameters/global_max_data_area_mb
NDEV=64
NIO=4
HBA=181
RING_MB=1
DEV_MB=8
LIMIT_MB=4
LIMIT2_MB=2
BS_KB=128
QD=16
PAGE_SIZE=$(getconf PAGESIZE)
LIMIT_PAGES=$((LIMIT_MB * TCMU_MB / PAGE_SIZE))
LIMIT2_PAGES=$((LIMIT2_MB * TCMU_MB / PAGE_SIZE))
INFLIGHT_PAGES=$((QD * BS_KB * 1024 / PAGE_SIZE))
FIO_SIZE=$(dp_scale 24m 6m)
CONTROL="dev_size=$((64 << 20)),cmd_ring_size_mb=$RING_MB,max_data_area_mb=$DEV_MB,hw_max_sectors=$((BS_KB * 2))"

ORIG_LIMIT=$(tcmu_value "$PARAM")
[[ "$ORIG_LIMIT" =~ ^[0-9]+$ ]] || tcmu_fatal "cannot read $PARAM: $(tcmu_show "$ORIG_LIMIT")"
[ "$ORIG_LIMIT" -ge "$DEV_MB" ] ||
	tcmu_skip "global_max_data_area_mb is $ORIG_LIMIT, below the $DEV_MB MiB the devices need"

DEVS=()         # device directories
UIOS=()         # their uioN
IO_PIDS=()      # handler pids of the busy devices
IO_WWN=()       # tcm_loop wwn directories
IO_BLK=()       # sdX
SAMPLER_PID=
FIO_PID=

# ---------------------------------------------------------------------------
# Helpers

# EXIT trap: stop everything, remove everything, restore the limit.
# shellcheck disable=SC2317 # run by the trap
mem_cleanup()
{
	local i w
	[ -n "$SAMPLER_PID" ] && kill "$SAMPLER_PID" 2> /dev/null
	[ -n "$FIO_PID" ] && dp_kill_tree KILL "$FIO_PID"
	for ((i = 0; i < ${#IO_WWN[@]}; i++)); do
		w=${IO_WWN[i]}
		[ -n "$w" ] || continue
		rm -f "$w/tpgt_1/lun/lun_0/mem_link"
		rmdir "$w/tpgt_1/lun/lun_0" "$w/tpgt_1" "$w" 2> /dev/null
	done
	for i in "${IO_PIDS[@]}"; do
		[ -n "$i" ] && kill "$i" 2> /dev/null
	done
	for i in "${IO_PIDS[@]}"; do
		[ -n "$i" ] && wait "$i" 2> /dev/null
	done
	tcmu_cleanup
	echo "$ORIG_LIMIT" > "$PARAM" 2> /dev/null
}
DP_TORN_DOWN=1
trap 'mem_cleanup; dp_exit_trap' EXIT

# vmalloc'd KiB whose caller is in target_core_user.
tcmu_vmalloc_kb()
{
	awk '/\[target_core_user\]/ { s += $2 } END { print int(s / 1024) }' /proc/vmallocinfo
}

# mem_measure: MEM gets every /proc/meminfo field (kB) after the caches
# are dropped, and MEM[tcmu_vmalloc] the vmalloc KiB of the module.  The
# previous test (or this one's teardown) may still be releasing memory
# (RCU callbacks, deferred work, exiting processes): read until two
# readings a second apart agree on MemAvailable within 256 kB, 15 at most.
declare -A MEM
mem_measure()
{
	local k v _u prev="" try
	for ((try = 0; try < 15; try++)); do
		sync
		echo 3 > /proc/sys/vm/drop_caches
		sleep 1
		while read -r k v _u; do
			MEM[${k%:}]=$v
		done < /proc/meminfo
		if [ -n "$prev" ]; then
			v=$((MEM[MemAvailable] - prev))
			[ "${v#-}" -le 256 ] && break
		fi
		prev=${MEM[MemAvailable]}
	done
	MEM[tcmu_vmalloc]=$(tcmu_vmalloc_kb)
}

# The helpers below fork nothing: under TCG, and on the debug kernel above
# all, every fork costs, and they run over all 64 devices.

# stat_into VAR DEVDIR NAME: VAR gets one counter of the device's
# attrib/stats (empty, and status 1, when there is none).
stat_into()
{
	local -n _stat_out=$1
	local _stat_s
	_stat_out=
	tcmu_read _stat_s "$2/attrib/stats" || return 1
	_stat_s=$'\n'$_stat_s
	[[ "$_stat_s" == *$'\n'"$3 "* ]] || return 1
	_stat_s=${_stat_s#*$'\n'"$3 "}
	_stat_out=${_stat_s%%$'\n'*}
}

# sum_pages VAR FIRST LAST: VAR gets data_pages summed over
# DEVS[FIRST..LAST].
sum_pages()
{
	local -n _sum_out=$1
	local _sum_i _sum_n
	_sum_out=0
	for ((_sum_i = $2; _sum_i <= $3; _sum_i++)); do
		stat_into _sum_n "${DEVS[_sum_i]}" data_pages || _sum_n=0
		_sum_out=$((_sum_out + _sum_n))
	done
}

# ---------------------------------------------------------------------------
dp_section "$NDEV idle devices"

mem_measure
declare -A BASE
for k in MemAvailable Shmem Slab SUnreclaim VmallocUsed tcmu_vmalloc; do
	BASE[$k]=${MEM[$k]}
done

tcmu_mkhba $HBA || tcmu_fatal "cannot create user_$HBA"
for ((i = 0; i < NDEV; i++)); do
	DEVS+=("$TARGET_CORE/user_$HBA/m$i")
done
TCMU_CLEANUP_DEVS+=("${DEVS[@]}")
mkdir "${DEVS[@]}" || tcmu_fatal "cannot create the $NDEV device directories"
for d in "${DEVS[@]}"; do
	if ! tcmu_write "$d/control" "$CONTROL" || ! tcmu_write "$d/enable" 1; then
		fail "configure/enable ${d#"$TARGET_CORE"/}: $TCMU_ERR"
		break
	fi
done
# One pass over the uio devices (tcmu_find_uio per device would read
# every name again for each one).
declare -A UIO_OF
while read -r u n; do
	[ -n "${UIO_OF[$n]:-}" ] && UIO_OF[$n]+=" "
	UIO_OF[$n]+=$u
done < <(tcmu_all_uio)
for ((i = 0; i < ${#DEVS[@]}; i++)); do
	u=${UIO_OF[tcm-user/$HBA/m$i]:-}
	if ! [[ "$u" =~ ^uio[0-9]+$ ]]; then
		fail "user_$HBA/m$i: expected one uio device, got $(tcmu_show "$u")"
		break
	fi
	UIOS+=("$u")
done
[ ${#UIOS[@]} -eq $NDEV ] || tcmu_fatal "only ${#UIOS[@]} of $NDEV devices came up"
check_eq "exactly $NDEV tcm-user uio devices" $NDEV "${#UIO_OF[@]}"
pass "$NDEV devices enabled (cmd_ring_size_mb=$RING_MB, max_data_area_mb=$DEV_MB)"
sum_pages n 0 $((NDEV - 1))
check_eq "idle devices own no data pages" 0 "$n"

mem_measure
# Bytes per device: what MemAvailable lost, what the others gained.
avail=$(((BASE[MemAvailable] - MEM[MemAvailable]) * 1024 / NDEV))
slab=$(((MEM[Slab] - BASE[Slab]) * 1024 / NDEV))
unrecl=$(((MEM[SUnreclaim] - BASE[SUnreclaim]) * 1024 / NDEV))
vmall=$(((MEM[VmallocUsed] - BASE[VmallocUsed]) * 1024 / NDEV))
tvm=$(((MEM[tcmu_vmalloc] - BASE[tcmu_vmalloc]) * 1024 / NDEV))
echo "memory per idle device: $((avail / 1024)) KiB (MemAvailable), of which vmalloc by target_core_user $((tvm / 1024)) KiB (all vmalloc $((vmall / 1024)) KiB), slab $((slab / 1024)) KiB (unreclaimable $((unrecl / 1024)) KiB); ring ${RING_MB} MiB"
ring=$((RING_MB * TCMU_MB))
check_true "vmalloc by target_core_user per device is the ring: $tvm bytes in [$ring, $((ring + 65536))]" \
	test "$tvm" -ge "$ring" -a "$tvm" -le $((ring + 65536))
check_true "MemAvailable per idle device $avail bytes in [$((ring * 9 / 10)), $((ring + 524288))]" \
	test "$avail" -ge $((ring * 9 / 10)) -a "$avail" -le $((ring + 524288))
check_true "slab per idle device below 256 KiB ($slab bytes)" test "$slab" -le 262144

# ---------------------------------------------------------------------------
dp_section "$NIO busy devices under a ${LIMIT_MB} MiB global limit"

check_write_ok "global_max_data_area_mb=$LIMIT_MB" "$PARAM" "$LIMIT_MB"
check_eq "global_max_data_area_mb reads back" "$LIMIT_MB" "$(tcmu_value "$PARAM")"

jobs="[global]
ioengine=libaio
direct=1
rw=randwrite
bs=${BS_KB}k
iodepth=$QD
size=$FIO_SIZE
verify=crc32c
do_verify=1
verify_fatal=1
verify_state_save=0
"
ok=1
for ((i = 0; i < NIO; i++)); do
	d=${DEVS[i]}
	"$DP_HANDLER_BIN" --uio "/dev/${UIOS[i]}" --pidfile "$DP_WORK/h$i.pid" \
		--status "$DP_WORK/h$i.status" < /dev/null >> "$DP_WORK/h$i.log" 2>&1 &
	IO_PIDS+=($!)
	if ! tcmu_wait_for 10 test -s "$DP_WORK/h$i.pid"; then
		fail "handler for ${UIOS[i]} did not start"
		ok=
		break
	fi
	w=$DP_LOOPBACK/$(printf 'naa.50014050cc%06x' "$i")
	IO_WWN+=("$w")
	if ! mkdir -p "$w/tpgt_1/lun/lun_0" ||
		! tcmu_write "$w/tpgt_1/nexus" "$(printf 'naa.50014050ce%06x' "$i")" ||
		! ln -s "$d" "$w/tpgt_1/lun/lun_0/mem_link"; then
		fail "tcm_loop export of ${d#"$TARGET_CORE"/}"
		ok=
		break
	fi
	tcmu_read addr "$w/tpgt_1/address"
	addr=${addr%$'\n'}:0
	blk=
	for ((t = 0; t < 150; t++)); do
		for b in /sys/class/scsi_device/"$addr"/device/block/*; do
			[ -e "$b" ] && blk=${b##*/}
		done
		[ -n "$blk" ] && [ -b "/dev/$blk" ] && break
		sleep 0.2
	done
	if [ -z "$blk" ] || [ ! -b "/dev/$blk" ]; then
		fail "no SCSI disk for ${d#"$TARGET_CORE"/}"
		ok=
		break
	fi
	IO_BLK+=("$blk")
	jobs+="
[d$i]
filename=/dev/$blk
"
done
[ -n "$ok" ] || tcmu_fatal "the busy devices could not be set up"
tcmu_log "busy devices: ${IO_BLK[*]} (${UIOS[*]:0:NIO})"

# The sampler: data_pages of every busy device, about 100 times a second,
# until the stop file appears; then a summary.  A sweep opens the files
# first and then reads them back to back, at real-time priority, so that
# the reads are as close in time as they can be.
stats_files=()
for ((i = 0; i < NIO; i++)); do
	stats_files+=("${DEVS[i]}/attrib/stats")
done
"$TCMU_PYTHON" - "$DP_WORK/stop" "$LIMIT_PAGES" "${stats_files[@]}" > "$DP_WORK/samples" 2>&1 <<'EOF' &
import os, sys, time
stop, limit, files = sys.argv[1], int(sys.argv[2]), sys.argv[3:]


def sweep():
    fds = [os.open(f, os.O_RDONLY) for f in files]
    try:
        texts = [os.read(fd, 4096) for fd in fds]
    finally:
        for fd in fds:
            os.close(fd)
    vals = []
    for f, t in zip(files, texts):
        for line in t.decode().splitlines():
            k, _, v = line.partition(" ")
            if k == "data_pages":
                vals.append(int(v))
                break
        else:
            raise ValueError("no data_pages in " + f)
    return vals


try:
    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
except (OSError, AttributeError) as e:
    print("no real-time priority: %s" % e)


prev = None
n = over = drops = 0
peak = [0] * len(files)
maxsum = 0
while not os.path.exists(stop):
    cur = sweep()
    n += 1
    s = sum(cur)
    maxsum = max(maxsum, s)
    if s > limit:
        over += 1
        print("over the limit: %s = %d" % (cur, s))
    peak = [max(a, b) for a, b in zip(peak, cur)]
    if prev is not None:
        drops += sum(1 for a, b in zip(prev, cur) if b < a)
    prev = cur
    time.sleep(0.005)
print("SAMPLES %d MAXSUM %d OVER %d DROPS %d PEAKSUM %d PEAKS %s" % (
    n, maxsum, over, drops, sum(peak), ",".join(map(str, peak))))
EOF
SAMPLER_PID=$!

t0=$(dp_now)
printf '%s\n' "$jobs" > "$DP_WORK/mem.job"
(cd "$DP_WORK" && exec timeout -k 10 "$(dp_scale 180 300)" fio --output-format=normal mem.job) \
	> "$DP_WORK/mem.fio" 2>&1 &
FIO_PID=$!
wait "$FIO_PID"
fio_rc=$?
FIO_PID=
tcmu_log "fio took $(dp_elapsed "$t0")s"
touch "$DP_WORK/stop"
wait "$SAMPLER_PID"
SAMPLER_PID=

check_eq "fio write+verify exit status" 0 "$fio_rc" || dp_fio_log mem 20
check_eq "fio jobs with err=0" "$NIO" "$(dp_fio_okjobs mem)"
if grep -qiE 'verify.*(fail|bad)|bad magic|crc32c.*mismatch' "$DP_WORK/mem.fio"; then
	fail "fio reported verify mismatches"
	dp_fio_log mem 20
else
	pass "no verify mismatch reported"
fi

summary=$(grep '^SAMPLES ' "$DP_WORK/samples")
grep '^over the limit' "$DP_WORK/samples" | head -n 5 | sed 's/^/# /'
read -r _ n _ maxsum _ over _ drops _ peaksum _ peaks <<< "$summary"
if [ -z "$summary" ] || [ "${n:-0}" -lt 10 ]; then
	fail "the data_pages sampler did not work: $(tcmu_show "$(tail -n 3 "$DP_WORK/samples")")"
else
	tcmu_log "$n samples: largest sum $maxsum pages (limit $LIMIT_PAGES), $over above the limit, $drops drops, per-device peaks $peaks (sum $peaksum)"
	check_true "sampled data_pages sum $maxsum <= limit $LIMIT_PAGES + one device's in-flight needs $INFLIGHT_PAGES" \
		test "$maxsum" -le $((LIMIT_PAGES + INFLIGHT_PAGES))
	check_true "reclaim seen during the run ($drops drops, per-device peaks add up to $peaksum > $LIMIT_PAGES)" \
		test "$drops" -gt 0 -o "$peaksum" -gt "$LIMIT_PAGES"
fi

full=0
for ((i = 0; i < NIO; i++)); do
	d=${DEVS[i]}
	tcmu_read v "$d/attrib/stats"
	tcmu_log "m$i stats: ${v//$'\n'/ }"
	stat_into v "$d" timeouts
	check_eq "m$i: no command timed out" 0 "$v"
	stat_into v "$d" inflight
	check_eq "m$i: nothing in flight after fio" 0 "$v"
	stat_into v "$d" cmds
	check_true "m$i: commands went through (${v:-none})" test "${v:-0}" -gt 0
	stat_into v "$d" data_full
	full=$((full + ${v:-0}))
	check_true "handler of m$i still running" kill -0 "${IO_PIDS[i]}"
done
check_true "commands had to wait for data space under the limit (data_full $full)" test "$full" -gt 0
idle=0
# Idle devices are summed on their own: reclaim may still be freeing
# pages of the busy ones between two reads.
sum_pages idle "$NIO" $((NDEV - 1))
after=0
sum_pages after 0 $((NIO - 1))
check_eq "idle devices still own no data pages" 0 "$idle"
check_true "busy devices, now idle, keep at most the limit ($after pages)" test "$after" -le "$LIMIT_PAGES"

# Lower the limit below what is allocated: reclaim must free idle pages.
check_write_ok "global_max_data_area_mb=$LIMIT2_MB while $after pages are allocated" "$PARAM" "$LIMIT2_MB"
# shellcheck disable=SC2317 # called through tcmu_wait_for
under_limit2()
{
	sum_pages n 0 $((NDEV - 1))
	[ "$n" -le "$LIMIT2_PAGES" ]
}
if tcmu_wait_for 10 under_limit2; then
	pass "reclaim brought the data pages down to $n (limit $LIMIT2_PAGES)"
else
	fail "data pages still $n after lowering the limit to $LIMIT2_PAGES pages"
fi
broken=$(dp_kmsg_since "$DP_KMSG_MARK" | grep -i 'ring broken')
check_eq "kernel log: no broken ring" "" "$broken"

# ---------------------------------------------------------------------------
dp_section "teardown"

err=()
for ((i = 0; i < NIO; i++)); do
	w=${IO_WWN[i]}
	rm "$w/tpgt_1/lun/lun_0/mem_link" || err+=("unlink lun of m$i")
	rmdir "$w/tpgt_1/lun/lun_0" "$w/tpgt_1" "$w" || err+=("rmdir $w")
	tcmu_wait_for 10 test ! -e "/sys/block/${IO_BLK[i]}" || err+=("${IO_BLK[i]} still there")
done
IO_WWN=()
for ((i = 0; i < NIO; i++)); do
	kill "${IO_PIDS[i]}"
	wait "${IO_PIDS[i]}" 2> /dev/null
done
IO_PIDS=()
rmdir "${DEVS[@]}" || err+=("rmdir of the devices")
rmdir "$TARGET_CORE/user_$HBA" || err+=("rmdir user_$HBA")
if [ ${#err[@]} -eq 0 ]; then
	pass "all $NDEV devices, exports and handlers removed"
else
	fail "teardown: $(IFS=';'; echo "${err[*]}")"
fi
check_eq "no tcm-user uio device left" "" "$(tcmu_all_uio)"
check_write_ok "global_max_data_area_mb restored to $ORIG_LIMIT" "$PARAM" "$ORIG_LIMIT"

# Devices are freed after an RCU grace period: allow a moment.
# shellcheck disable=SC2317 # called through tcmu_wait_for
vm_back()
{
	[ "$(tcmu_vmalloc_kb)" -le "${BASE[tcmu_vmalloc]}" ]
}
tcmu_wait_for 10 vm_back
mem_measure
check_eq "vmalloc by target_core_user back to the start (KiB)" "${BASE[tcmu_vmalloc]}" "${MEM[tcmu_vmalloc]}"
shm=$((MEM[Shmem] - BASE[Shmem]))
lost=$((BASE[MemAvailable] - MEM[MemAvailable] - shm))
tcmu_log "MemAvailable ${BASE[MemAvailable]} kB at the start, ${MEM[MemAvailable]} kB now;" \
	"tmpfs (Shmem) grew by $shm kB, Slab by $((MEM[Slab] - BASE[Slab])) kB" \
	"(unreclaimable $((MEM[SUnreclaim] - BASE[SUnreclaim])) kB)"
check_true "MemAvailable within 16 MiB of the start ($lost kB less, tmpfs growth aside)" \
	test "$lost" -le $((16 * 1024))

tcmu_log "test took $((SECONDS - DP_T0))s"
tcmu_finish
