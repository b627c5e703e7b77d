#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""Print the mailbox of a TCMU UIO device as key=value lines.

    uio_mailbox.py /dev/uioN [BYTES]

An independent reader for tcmu_uio.sh: the offsets are written out here
from the ABI description (not taken from our header), so comparing its
output with the C helper's checks the header as well as the module.
Output keys: version flags cmdr_off cmdr_size cmd_head cmd_tail
ring_nonzero (non-zero bytes from cmdr_off to the end of the mapping).
"""

import mmap
import os
import struct
import sys


def main():
    if len(sys.argv) < 2:
        print("usage: uio_mailbox.py /dev/uioN [BYTES]", file=sys.stderr)
        return 2
    length = mmap.PAGESIZE
    if len(sys.argv) > 2:
        length = int(sys.argv[2], 0)
        if length < 68:
            print("length too small", file=sys.stderr)
            return 2

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
        if cmdr_off < length:
            ring = mem[cmdr_off:length]
            print("ring_nonzero=%u" % (len(ring) - ring.count(0)))
    finally:
        mem.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
