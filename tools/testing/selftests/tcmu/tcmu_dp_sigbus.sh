#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# timeout: 180
#
# The shared region seen by a process that maps it while no command is in
# flight: the mailbox and every page of the command ring are readable, but
# touching a data-area page (offset >= cmd_ring_size_mb MiB) that no
# command owns raises SIGBUS -- on a fresh device, where no data page
# exists yet, and after I/O, when pages exist but belong to no command.
# Mapping more than the region is refused, and a second process cannot
# open the UIO device while the handler has it open.  A data area whose
# pages do not divide into whole blocks has a tail of pages that belong to
# no block: they SIGBUS too (and the ownership check stays inside its
# bitmap, which KASAN watches on the debug kernel).
#
# The probes run in a Python child per access, so that the signal that
# kills it can be checked from here.

# shellcheck source=lib_dp.sh
. "$(dirname "$0")/lib_dp.sh"

dp_init
dp_require "$TCMU_PYTHON"

PAGE=$(getconf PAGESIZE)
PROBE=$DP_WORK/probe.py
cat > "$PROBE" <<'EOF'
# One access to the mapped region of a TCMU UIO device:
#   probe.py DEV SIZE ring RING_BYTES   read mailbox + every ring page
#   probe.py DEV SIZE read OFF | write OFF
#   probe.py DEV SIZE bigmap            map SIZE + one page (must fail)
#   probe.py DEV SIZE open              just open the device
import errno
import mmap
import os
import struct
import sys

dev, size, mode = sys.argv[1], int(sys.argv[2], 0), sys.argv[3]
try:
    fd = os.open(dev, os.O_RDWR)
except OSError as e:
    print("open failed: %s" % errno.errorcode.get(e.errno, e.errno))
    sys.exit(3)
if mode == "open":
    print("opened")
    sys.exit(0)
if mode == "bigmap":
    try:
        mmap.mmap(fd, size + mmap.PAGESIZE, mmap.MAP_SHARED,
                  mmap.PROT_READ | mmap.PROT_WRITE)
    except OSError as e:
        print("refused: %s" % errno.errorcode.get(e.errno, e.errno))
        sys.exit(0)
    print("mapped")
    sys.exit(1)
mem = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
if mode == "ring":
    ring = int(sys.argv[4], 0)
    version, flags, cmdr_off, cmdr_size, head = struct.unpack_from("<HHIII", mem, 0)
    (tail,) = struct.unpack_from("<I", mem, 64)
    total = 0
    for off in range(0, ring, mmap.PAGESIZE):
        total += mem[off]
    print("version=%d cmdr_off=%d cmdr_size=%d head=%d tail=%d pages=%d"
          % (version, cmdr_off, cmdr_size, head, tail, ring // mmap.PAGESIZE))
    sys.exit(0)
off = int(sys.argv[4], 0)
print("touching %d" % off, flush=True)
if mode == "read":
    value = mem[off]
else:
    mem[off] = 0x5A
print("survived")
sys.exit(0)
EOF

# probe WHAT ARGS...: run one probe; PROBE_OUT / PROBE_RC get the result.
probe()
{
	PROBE_OUT=$("$TCMU_PYTHON" "$PROBE" "/dev/$DP_UIO" "$MAPSIZE" "$@" 2>&1)
	PROBE_RC=$?
}

# expect_sigbus DESCRIPTION read|write OFFSET
expect_sigbus()
{
	probe "$2" "$3"
	if [ "$PROBE_RC" -eq $((128 + 7)) ] && [[ "$PROBE_OUT" == "touching $3"* ]] &&
		[[ "$PROBE_OUT" != *survived* ]]; then
		pass "$1: SIGBUS"
	else
		fail "$1: expected SIGBUS (exit 135), got exit $PROBE_RC: $(tcmu_show "$PROBE_OUT")"
	fi
}

RING_MB=1
DATA_MB=2
dp_create 67 dpsig "dev_size=$((16 << 20)),cmd_ring_size_mb=$RING_MB,max_data_area_mb=$DATA_MB" ||
	tcmu_finish
MAPSIZE=$(( $(tcmu_value "$UIO_CLASS/$DP_UIO/maps/map0/size") ))
RING=$((RING_MB * TCMU_MB))
check_eq "map0 is ring + data area" $(((RING_MB + DATA_MB) * TCMU_MB)) "$MAPSIZE"

# ---------------------------------------------------------------------------
dp_section "fresh device"

probe ring "$RING"
check_eq "fresh: mailbox and all ring pages readable" 0 "$PROBE_RC"
check_eq "fresh: mailbox contents" \
	"version=2 cmdr_off=128 cmdr_size=$((RING - 128)) head=0 tail=0 pages=$((RING / PAGE))" \
	"$PROBE_OUT"
expect_sigbus "fresh: read of the first data page" read "$RING"
expect_sigbus "fresh: read inside the data area" read $((RING + TCMU_MB + 100))
expect_sigbus "fresh: read of the last data page" read $((MAPSIZE - 1))
expect_sigbus "fresh: write to a data page" write $((RING + 5 * PAGE))
probe bigmap
check_eq "fresh: a map larger than the region is refused" 0 "$PROBE_RC"
tcmu_log "bigmap: $PROBE_OUT"

# ---------------------------------------------------------------------------
dp_section "after I/O"

if dp_handler_start && dp_export; then
	probe open
	check_eq "a second open while the handler runs fails (EBUSY)" \
		"open failed: EBUSY" "$PROBE_OUT"
	head -c $((1 << 20)) /dev/urandom > "$DP_WORK/data"
	dd if="$DP_WORK/data" of="$DP_DISK" bs=64k oflag=direct status=none
	dd if="$DP_DISK" of="$DP_WORK/back" bs=64k count=16 iflag=direct status=none
	check_true "1 MiB written and read back" cmp -s "$DP_WORK/data" "$DP_WORK/back"
	pages=$(dp_stat data_pages)
	check_true "data pages were allocated (${pages:-?})" test "${pages:-0}" -ge 16
	check_eq "nothing in flight" 0 "$(dp_stat inflight)"
	dp_handler_stop

	probe ring "$RING"
	check_eq "after I/O: mailbox and all ring pages readable" 0 "$PROBE_RC"
	if [[ "$PROBE_OUT" =~ head=([0-9]+)\ tail=([0-9]+) ]]; then
		check_ne "after I/O: the ring was used (head $PROBE_OUT)" 0 "${BASH_REMATCH[1]}"
		check_eq "after I/O: ring idle (head == tail)" "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}"
	else
		fail "after I/O: cannot parse $(tcmu_show "$PROBE_OUT")"
	fi
	expect_sigbus "after I/O: read of data page 0 (allocated, owned by no command)" \
		read "$RING"
	expect_sigbus "after I/O: write to data page 15" write $((RING + 15 * PAGE))
	check_eq "still nothing in flight" 0 "$(dp_stat inflight)"
fi

dp_teardown

# ---------------------------------------------------------------------------
dp_section "pages past the last whole block"

# 49 MiB is 12544 pages: 192 blocks of 65 pages cover 12480 of them, and
# the last 64 pages belong to no block at all.
PPB=65
dp_create 69 dpsig2 "dev_size=$((16 << 20)),cmd_ring_size_mb=$RING_MB,max_data_area_mb=49,data_pages_per_blk=$PPB" ||
	tcmu_finish
MAPSIZE=$(( $(tcmu_value "$UIO_CLASS/$DP_UIO/maps/map0/size") ))
check_eq "map0 is ring + 49 MiB" $(((RING_MB + 49) * TCMU_MB)) "$MAPSIZE"
tail0=$((RING + 192 * PPB * PAGE))
expect_sigbus "read of the first page past the last block" read "$tail0"
expect_sigbus "write to the last page of the region" write $((MAPSIZE - PAGE))
expect_sigbus "read of the last page of the last block" read $((tail0 - PAGE))
dp_teardown
tcmu_finish
