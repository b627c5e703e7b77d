#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""Print the mailbox of a TCMU UIO device as key=value lines.

    uio_mailbox.py /dev/uioN [SCAN_BYTES [MAP_BYTES]]

An independent reader for tcmu_uio.sh: the offsets are written out here
from the ABI description (not taken from our header), so comparing its
output with the C helper's checks the header as well as the module.
The whole region is mapped, MAP_BYTES long (default: sysfs
maps/map0/size; the upstream module refuses any other length), but only
the mailbox and the first SCAN_BYTES (default one page) are read.
Output keys: version flags cmdr_off cmdr_size cmd_head cmd_tail
ring_nonzero (non-zero bytes from cmdr_off up to SCAN_BYTES).
"""

import mmap
import os
import struct
import sys


def main():
    if len(sys.argv) < 2:
        print("usage: uio_mailbox.py /dev/uioN [SCAN_BYTES [MAP_BYTES]]",
              file=sys.stderr)
        return 2
    scan = mmap.PAGESIZE
    if len(sys.argv) > 2:
        scan = int(sys.argv[2], 0)
        if scan < 68:
            print("scan length too small", file=sys.stderr)
            return 2
    if len(sys.argv) > 3:
        length = int(sys.argv[3], 0)
    else:
        uio = os.path.basename(sys.argv[1])
        with open("/sys/class/uio/%s/maps/map0/size" % uio) as f:
            length = int(f.read().strip(), 0)
    scan = min(scan, length)

    fd = os.open(sys.argv[1], os.O_RDWR)
    try:
        mem = mmap.mmap(fd, length, mmap.MAP_SHARED,
                        mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
    finally:
        os.close(fd)

    try:
        # u16 version, u16 flags, u32 cmdr_off, u32 cmdr_size, u32 cmd_head
        version, flags, cmdr_off, cmdr_size, cmd_head = \
            struct.unpack_from("<HHIII", mem, 0)
        # u32 cmd_tail on its own 64-byte cache line
        (cmd_tail,) = struct.unpack_from("<I", mem, 64)
        print("version=%u" % version)
        print("flags=0x%x" % flags)
        print("cmdr_off=%u" % cmdr_off)
        print("cmdr_size=%u" % cmdr_size)
        print("cmd_head=%u" % cmd_head)
        print("cmd_tail=%u" % cmd_tail)
        if cmdr_off < scan:
            ring = mem[cmdr_off:scan]
            print("ring_nonzero=%u" % (len(ring) - ring.count(0)))
    finally:
        mem.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
