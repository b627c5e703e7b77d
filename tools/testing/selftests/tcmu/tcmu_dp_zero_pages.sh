#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# timeout: 180
#
# Data-area pages must be zeroed before a handler can see them, or the
# handler would read whatever the kernel had in that memory before.
#
# First a throw-away device is filled with random data through the ring
# and removed, so that freed pages full of data are around.  Then a fresh
# device is served by a small handler written here in Python: for every
# Data-In command it looks at each data-area page the command's iovecs
# touch, and the first time a page is handed out it must be all zero --
# before the handler writes anything.  The handler answers the SCSI
# commands sd needs to attach the disk and returns 0x5a bytes for every
# READ; the test reads 1 MiB in one command (the whole data area) and a
# bit more through sd and checks the initiator got the handler's bytes.

# shellcheck source=lib_dp.sh
. "$(dirname "$0")/lib_dp.sh"

dp_init
dp_require "$TCMU_PYTHON" cmp tr

MINI=$DP_WORK/mini_handler.py
RESULT=$DP_WORK/result
cat > "$MINI" <<'EOF'
# A minimal TCMU handler for the zero-page check.
#   mini_handler.py /dev/uioN MAP_SIZE RESULT_FILE NR_BLOCKS
# Serves a NR_BLOCKS x 512 byte disk whose reads return 0x5a bytes (writes
# are accepted and dropped).  RESULT_FILE is rewritten after every batch:
# cmds, datain, checked (pages seen for the first time and inspected),
# nonzero (of those, pages that were not all zero), first_op/first_ok/
# first_idx (the first Data-In command, whether its pages were clean, and
# its place among all commands), bad.
import mmap
import os
import select
import signal
import struct
import sys

dev, size, result, nblocks = (sys.argv[1], int(sys.argv[2], 0), sys.argv[3],
                              int(sys.argv[4]))
PAGE = mmap.PAGESIZE
WRITES = {0x0a, 0x2a, 0x8a, 0xaa, 0x2e, 0x8e, 0xae}
stop = False


def on_term(signum, frame):
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_term)
fd = os.open(dev, os.O_RDWR)
mem = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
version, flags, cmdr_off, cmdr_size = struct.unpack_from("<HHII", mem, 0)
data_off = cmdr_off + cmdr_size
seen = set()
st = {"cmds": 0, "datain": 0, "checked": 0, "nonzero": 0, "first_op": -1,
      "first_ok": -1, "first_idx": -1, "reads": 0, "bad": 0}


def save():
    with open(result + ".tmp", "w") as f:
        for k, v in st.items():
            f.write("%s=%d\n" % (k, v))
    os.rename(result + ".tmp", result)


def pages_of(iovs):
    for base, length in iovs:
        if base < data_off or base + length > size:
            st["bad"] += 1
            continue
        p = base - base % PAGE
        while p < base + length:
            yield p
            p += PAGE


def check_new_pages(iovs):
    clean = True
    for p in pages_of(iovs):
        if p in seen:
            continue
        seen.add(p)
        st["checked"] += 1
        if mem[p:p + PAGE].count(0) != PAGE:
            st["nonzero"] += 1
            clean = False
    return clean


def put(iovs, data):
    pos = 0
    for base, length in iovs:
        n = min(length, len(data) - pos)
        if n <= 0:
            break
        mem[base:base + n] = data[pos:pos + n]
        pos += n


def sense(key, asc, ascq):
    s = bytearray(18)
    s[0], s[2], s[7], s[12], s[13] = 0x70, key, 10, asc, ascq
    return bytes(s)


def execute(cdb, iovs, total):
    """Return (status, sense bytes or None); fills Data-In."""
    op = cdb[0]
    if op == 0x12:                          # INQUIRY
        alloc = cdb[3] << 8 | cdb[4]
        if cdb[1] & 1:
            if cdb[2] != 0:
                return 2, sense(5, 0x24, 0)
            d = bytes([0, 0, 0, 1, 0])      # supported VPD pages: 0 only
        else:
            d = bytearray(36)
            d[2], d[3], d[4], d[7] = 6, 2, 31, 2
            d[8:36] = b"TCMUZEROzero-page check 0001"
        put(iovs, bytes(d)[:alloc])
        return 0, None
    if op == 0x25:                          # READ CAPACITY(10)
        put(iovs, struct.pack(">II", nblocks - 1, 512))
        return 0, None
    if op == 0x9e and cdb[1] & 0x1f == 0x10:    # READ CAPACITY(16)
        alloc = struct.unpack(">I", cdb[10:14])[0]
        put(iovs, (struct.pack(">QI", nblocks - 1, 512) + bytes(20))[:alloc])
        return 0, None
    if op in (0x00, 0x35, 0x91):            # TEST UNIT READY, SYNC CACHE
        return 0, None
    if op in (0x08, 0x28, 0x88, 0xa8):      # READ
        st["reads"] += 1
        put(iovs, b"\x5a" * total)
        return 0, None
    if op in WRITES:
        return 0, None
    return 2, sense(5, 0x20, 0)             # INVALID COMMAND OPERATION CODE


def serve_one(ent):
    # tcmu_cmd_entry: 8 byte header, then req: iov_cnt, iov_bidi_cnt,
    # iov_dif_cnt (u32 each), cdb_off (u64, 8 byte aligned: offset 24),
    # two u64 pads, iovecs from offset 48 (u64 base, u64 length)
    iov_cnt, bidi_cnt = struct.unpack_from("<II", mem, ent + 8)
    (cdb_off,) = struct.unpack_from("<Q", mem, ent + 24)
    iovs = [struct.unpack_from("<QQ", mem, ent + 48 + 16 * i)
            for i in range(iov_cnt + bidi_cnt)]
    cdb = bytes(mem[cdb_off:cdb_off + 16])
    total = sum(length for _, length in iovs)
    st["cmds"] += 1
    if cdb[0] in WRITES:
        # the kernel copied the Data-Out in: not ours to judge
        seen.update(pages_of(iovs))
    elif total:
        st["datain"] += 1
        clean = check_new_pages(iovs)
        if st["first_op"] < 0:
            st["first_op"], st["first_ok"] = cdb[0], int(clean)
            st["first_idx"] = st["cmds"]
    status, sns = execute(cdb, iovs, total)
    # the response overlays the request: uflags, status, read_len, sense
    mem[ent + 7] = 0
    struct.pack_into("<BBHI", mem, ent + 8, status, 0, 0, 0)
    mem[ent + 16:ent + 112] = (sns or b"").ljust(96, b"\0")


take = struct.unpack_from("<I", mem, 64)[0]
save()
while not stop:
    ready, _, _ = select.select([fd], [], [], 0.5)
    if ready:
        os.read(fd, 4)
    (head,) = struct.unpack_from("<I", mem, 12)
    moved = False
    while take != head and not stop:
        ent = cmdr_off + take
        (len_op,) = struct.unpack_from("<I", mem, ent)
        length, op = len_op & ~7, len_op & 7
        if length == 0 or length > cmdr_size - take:
            st["bad"] += 1
            stop = True
            break
        if op == 1:
            serve_one(ent)
        take = (take + length) % cmdr_size
        moved = True
    if moved:
        struct.pack_into("<I", mem, 64, take)
        os.write(fd, b"\0\0\0\0")
        save()
save()
EOF

# With init_on_alloc the page allocator zeroes every page anyway, which
# would hide a missing __GFP_ZERO here (the Debian kernel has it on, the
# debug kernel off); say which case this run is.
tcmu_log "$(dmesg | grep -m1 -o 'mem auto-init:.*' || echo 'mem auto-init: unknown')"

# result_value KEY
result_value()
{
	sed -n "s/^$1=//p" "$RESULT" 2>/dev/null
}

# ---------------------------------------------------------------------------
dp_section "leave freed pages full of data behind"

if dp_create 69 dpdirty "dev_size=$((16 << 20)),cmd_ring_size_mb=1,max_data_area_mb=4,hw_max_sectors=2048" &&
	dp_handler_start && dp_export; then
	# 4 MiB at a time: sd sends it as several 1 MiB commands at once,
	# which between them use most of the 4 MiB data area.
	head -c $((8 << 20)) /dev/urandom > "$DP_WORK/junk"
	dd if="$DP_WORK/junk" of="$DP_DISK" bs=4M oflag=direct status=none
	dd if="$DP_DISK" of=/dev/null bs=4M count=2 iflag=direct status=none
	rm -f "$DP_WORK/junk"
	check_true "dirty device: data pages in use ($(dp_stat data_pages))" \
		dp_stat_above data_pages 511
fi
dp_teardown

# ---------------------------------------------------------------------------
dp_section "fresh device, Python handler"

NBLOCKS=$((16 << 11))
dp_create 70 dpzero "dev_size=$((NBLOCKS * 512)),cmd_ring_size_mb=1,max_data_area_mb=1,hw_max_sectors=2048" ||
	tcmu_finish
MAPSIZE=$(( $(tcmu_value "$UIO_CLASS/$DP_UIO/maps/map0/size") ))
"$TCMU_PYTHON" "$MINI" "/dev/$DP_UIO" "$MAPSIZE" "$RESULT" "$NBLOCKS" \
	> "$DP_WORK/mini.log" 2>&1 &
MINI_PID=$!
dp_bg_add "$MINI_PID"
if ! tcmu_wait_for 10 test -s "$RESULT"; then
	sed 's/^/#   mini: /' "$DP_WORK/mini.log"
	tcmu_fatal "the Python handler did not start"
fi
dp_export || { sed 's/^/#   mini: /' "$DP_WORK/mini.log"; tcmu_finish; }

# A 1 MiB READ (one command) needs every page of the 1 MiB data area,
# then some smaller ones that reuse pages.
dd if="$DP_DISK" of="$DP_WORK/read" bs=1M count=1 skip=2 iflag=direct status=none
dd if="$DP_DISK" bs=64k count=4 skip=80 iflag=direct status=none >> "$DP_WORK/read"
head -c $((5 << 18)) /dev/zero | tr '\0' 'Z' > "$DP_WORK/expect"
check_true "the initiator got the handler's 0x5a bytes" cmp -s "$DP_WORK/expect" "$DP_WORK/read"

kill -TERM "$MINI_PID"
check_true "the Python handler stopped" tcmu_wait_for 5 dp_pid_gone "$MINI_PID"
wait "$MINI_PID"
mini_rc=$?
DP_BG_PIDS=()
check_eq "the Python handler exited cleanly" 0 "$mini_rc" ||
	sed 's/^/#   mini: /' "$DP_WORK/mini.log"
tcmu_log "Python handler: $(tr '\n' ' ' < "$RESULT")"

check_eq "every ring entry made sense" 0 "$(result_value bad)"
check_true "READs were served ($(result_value reads))" test "$(result_value reads)" -ge 5
first_op=$(result_value first_op)
check_eq "the very first command on the device carried Data-In" 1 "$(result_value first_idx)"
tcmu_log "first Data-In command: opcode $(printf '0x%02x' "${first_op:-0}")"
check_eq "the first Data-In command's pages were all zero" 1 "$(result_value first_ok)"
checked=$(result_value checked)
check_eq "every page of the data area was inspected" \
	$((TCMU_MB / $(getconf PAGESIZE))) "$checked"
check_eq "no page was handed out with old contents" 0 "$(result_value nonzero)"

dp_teardown
tcmu_finish
