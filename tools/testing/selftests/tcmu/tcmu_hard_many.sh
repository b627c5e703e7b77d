#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# timeout: 600
#
# Many devices, one after the other: 1000 user devices are created,
# configured, enabled and removed again in sequence (spread over four
# hbas), all from one python3 process so that the time goes to the kernel
# and not to fork/exec under TCG.  Every device must get exactly one UIO
# node with the right name and a /dev entry, and both must be gone as soon
# as its directory is removed.  Afterwards no tcm-user UIO device and no
# configfs directory may be left, the vmalloc space the module used must be
# back to what it was, and kmemleak (where the kernel has it) must find
# nothing from the code under test.
#
# The count is TCMU_HARD_MANY (default 1000).  The test only lowers it when
# the pace so far (checked every 50 devices) shows that the full count
# would not fit in TCMU_HARD_MANY_BUDGET seconds (default 300), and then
# says so in the log.  On the debug kernel the loop alone takes about that
# long; its own kmemleak scan (two full scans, minutes under TCG) is then
# left to the kmemleak_clean check run_tests.sh makes after the last test,
# which also names leaks from the code under test whatever their age; the
# log says which one applies.  TCMU_HARD_MANY_KMEMLEAK=1 forces the scan
# here, =0 skips it.

# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

tcmu_setup
[ -x "$TCMU_PYTHON" ] || command -v "$TCMU_PYTHON" > /dev/null ||
	tcmu_skip "python3 is not installed"

COUNT=${TCMU_HARD_MANY:-1000}
BUDGET=${TCMU_HARD_MANY_BUDGET:-300}
HBAS=(191 192 193 194)
T0=$SECONDS

for h in "${HBAS[@]}"; do
	[ -e "$(tcmu_hba_path "$h")" ] && tcmu_fatal "user_$h exists before the test"
	# Removed by the EXIT trap if the loop dies half way.
	TCMU_CLEANUP_HBAS+=("$(tcmu_hba_path "$h")")
done
check_eq "no tcm-user uio device before the test" "" "$(tcmu_all_uio)"

# vmalloc'd bytes whose caller is in target_core_user (the rings).
tcmu_vmalloc_bytes()
{
	awk '/\[target_core_user\]/ { s += $2 } END { print s + 0 }' /proc/vmallocinfo
}
# MemAvailable and Shmem after dropping the caches, in kB.  The test's
# logs and work files are on tmpfs (Shmem), which no cache drop returns:
# their growth is not the module's.
mem_available()
{
	sync
	echo 3 > /proc/sys/vm/drop_caches
	awk '/^MemAvailable:/ { a = $2 } /^Shmem:/ { s = $2 }
	     END { print a + 0, s + 0 }' /proc/meminfo
}
VM_BEFORE=$(tcmu_vmalloc_bytes)
read -r MEM_BEFORE SHM_BEFORE < <(mem_available)

# The loop.  Prints "PASS: ..."/"FAIL: ..." lines, "# ..." progress, and
# "# done" at the very end.
many()
{
	"$TCMU_PYTHON" - "$COUNT" "$BUDGET" "$TARGET_CORE" "${HBAS[@]}" <<'EOF'
import errno, os, sys, time

count, budget, core = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
hbas = [int(h) for h in sys.argv[4:]]
fails = 0
MAXFAIL = 20


def fail(msg):
    global fails
    fails += 1
    if fails <= MAXFAIL:
        print("FAIL: " + msg, flush=True)


def write(path, data):
    fd = os.open(path, os.O_WRONLY)
    try:
        n = os.write(fd, data)
        if n != len(data):
            raise OSError(errno.EIO, "short write %d of %d" % (n, len(data)))
    finally:
        os.close(fd)


def uios():
    """{uio name: uioN} of every tcm-user device."""
    found = {}
    for u in os.listdir("/sys/class/uio"):
        try:
            with open("/sys/class/uio/%s/name" % u, "rb") as f:
                n = f.read().rstrip(b"\n")
        except OSError:
            continue
        if n.startswith(b"tcm-user/"):
            found.setdefault(n, []).append(u)
    return found


for h in hbas:
    os.mkdir("%s/user_%d" % (core, h))

t0 = time.monotonic()
done = 0
minors = set()
for i in range(count):
    h = hbas[i % len(hbas)]
    name = "d%d" % i
    d = "%s/user_%d/%s" % (core, h, name)
    cfg = b"many/%d" % i
    uname = b"tcm-user/%d/%s/%s" % (h, name.encode(), cfg)
    try:
        os.mkdir(d)
    except OSError as e:
        fail("mkdir %s: %s" % (d, e))
        break
    try:
        write(d + "/control", b"dev_config=" + cfg +
              b",dev_size=1048576,cmd_ring_size_mb=1,max_data_area_mb=1")
        write(d + "/enable", b"1")
        u = uios()
        if list(u) != [uname] or len(u[uname]) != 1:
            fail("device %d: uio devices %r, expected exactly %r" % (i, u, uname))
        else:
            uio = u[uname][0]
            minors.add(uio)
            if not os.path.exists("/dev/" + uio):
                fail("device %d: /dev/%s missing" % (i, uio))
            with open(d + "/info", "rb") as f:
                info = f.read()
            if b"Config: " + cfg + b" Size: 1048576 " not in info:
                fail("device %d: info %r" % (i, info))
    except OSError as e:
        fail("device %d: %s" % (i, e))
    try:
        os.rmdir(d)
    except OSError as e:
        fail("rmdir %s: %s" % (d, e))
        break
    left = uios()
    if left:
        fail("device %d: uio left after rmdir: %r" % (i, left))
    done = i + 1
    el = time.monotonic() - t0
    if done % 50 == 0 and count > done:
        projected = el / done * count
        if projected > budget:
            new = max(done, int(budget / (el / done)))
            print("# at %.0f ms per device the %d devices would take about %.0fs, more "
                  "than the %.0fs budget: scaled down to %d devices" % (
                      1000 * el / done, count, projected, budget, new), flush=True)
            print("SCALED: %d" % new, flush=True)
            count = new
    if done % 100 == 0:
        print("# %d devices created, enabled and removed in %.1fs" % (done, el), flush=True)
    if done >= count:
        break

el = time.monotonic() - t0
for h in hbas:
    try:
        os.rmdir("%s/user_%d" % (core, h))
    except OSError as e:
        fail("rmdir user_%d: %s" % (h, e))
if fails > MAXFAIL:
    print("FAIL: ... %d failures in all" % fails)
if not fails:
    print("PASS: %d devices created, enabled (one uio node each, right name, "
          "/dev entry, info) and removed (uio gone at once) in %.1fs, %.1f ms each, "
          "%d distinct uio minors" % (done, el, 1000 * el / max(done, 1), len(minors)))
print("DONE: %d" % done)
print("# done", flush=True)
EOF
}

done_flag=
n_done=0
scaled=
while IFS= read -r line; do
	case "$line" in
	PASS:*) pass "${line#PASS: }" ;;
	FAIL:*) fail "${line#FAIL: }" ;;
	SCALED:*) scaled=${line#SCALED: } ;;
	DONE:*) n_done=${line#DONE: } ;;
	"# done") done_flag=1 ;;
	*) echo "$line" ;;
	esac
done < <(many 2>&1)
[ -n "$done_flag" ] || fail "the python loop did not run to the end"
if [ -n "$scaled" ]; then
	tcmu_log "NOTE: scaled down from $COUNT to $scaled devices to fit the time budget"
	check_eq "devices done (scaled count)" "$scaled" "$n_done"
else
	check_eq "devices done" "$COUNT" "$n_done"
fi

# Nothing may be left.
check_eq "no tcm-user uio device left" "" "$(tcmu_all_uio)"
left=
for h in "${HBAS[@]}"; do
	[ -e "$(tcmu_hba_path "$h")" ] && left+=" user_$h"
done
check_eq "no configfs directory left" "" "$left"
left=$(find "$TARGET_CORE" -maxdepth 2 -path "*/user_19[1-4]*" 2> /dev/null)
check_eq "no user_19x entry anywhere under target/core" "" "$left"

# The rings are vmalloc'd: all of them must be gone (freed after an RCU
# grace period, so allow a moment).
# shellcheck disable=SC2317 # called through tcmu_wait_for
vm_back()
{
	[ "$(tcmu_vmalloc_bytes)" -le "$VM_BEFORE" ]
}
if tcmu_wait_for 10 vm_back; then
	pass "vmalloc space of target_core_user back to $VM_BEFORE bytes"
else
	fail "vmalloc space of target_core_user: $(tcmu_vmalloc_bytes) bytes, $VM_BEFORE before the test"
	grep '\[target_core_user\]' /proc/vmallocinfo | head -n 5 | sed 's/^/#   /'
fi
read -r mem_after shm_after < <(mem_available)
shm=$((shm_after - SHM_BEFORE))
lost=$((MEM_BEFORE - mem_after - shm))
tcmu_log "MemAvailable: ${MEM_BEFORE} kB before, ${mem_after} kB after;" \
	"tmpfs (Shmem) grew by $shm kB"
# A leaked 1 MiB ring per device would show as ~1 GiB.  MemAvailable
# itself moves by up to ~17 MiB either way over this test (per-CPU page
# lists, slab), so allow 64 MiB; small leaks are kmemleak's to find.
msg="MemAvailable within 64 MiB of the start after $n_done devices"
check_true "$msg ($lost kB less, tmpfs growth aside)" test "$lost" -le $((64 * 1024))

want_scan=${TCMU_HARD_MANY_KMEMLEAK:-}
if [ -z "$want_scan" ]; then
	want_scan=1
	[ $((SECONDS - T0)) -gt 200 ] && want_scan=0
fi
if tcmu_kmemleak_available && [ "$want_scan" == 0 ]; then
	tcmu_log "kmemleak: the loop took $((SECONDS - T0))s, so the scan is left to run_tests.sh's final kmemleak_clean (TCMU_HARD_MANY_KMEMLEAK=1 forces it here)"
elif tcmu_kmemleak_available; then
	age=$((SECONDS - T0 + 5))
	ours=0
	others=0
	if tcmu_kmemleak_scan; then
		tcmu_kmemleak_report "$age" ours others
		check_eq "kmemleak: unreferenced objects from the code under test" 0 "$ours"
		tcmu_log "kmemleak: $others other unreferenced object(s) younger than ${age}s (judged by run_tests.sh)"
	else
		fail "kmemleak is present but refuses to scan"
	fi
else
	tcmu_log "no kmemleak in this kernel: leaks checked through vmalloc and MemAvailable only"
fi
tcmu_log "test took $((SECONDS - T0))s"
tcmu_finish
