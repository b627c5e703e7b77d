#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""A minimal TCMU handler that checks every ring entry the kernel writes.

    tcmu_ring_inspect.py --uio /dev/uioN --dev CONFIGFS_DEV_DIR
                         --summary FILE [--keep-lba FIRST,COUNT]

It serves a RAM disk of attrib/dev_size bytes (INQUIRY, TEST UNIT READY,
READ CAPACITY(10), READ(10), WRITE(10); CHECK CONDITION / ILLEGAL REQUEST
for anything else) straight off the mmap'd region, with the layout written
out here from the ABI description, independently of our C handler and of
the kernel's header.  For every entry it checks what the design document
("Ring protocol", "Data area") promises:

  * entries are 8-byte aligned, never straddle the end of the ring, and
    follow each other without gaps; a PAD entry covers exactly the rest of
    the ring and appears only when the next entry would not have fit;
  * a CMD entry is as long as its iovecs and CDB need (rounded to 8 bytes,
    at least the size of the response), its CDB lies inside the entry after
    the iovecs, iov_bidi_cnt and iov_dif_cnt are 0 for these commands;
  * iovecs point into the data area at block boundaries, cover exactly the
    transfer length, never overlap each other or blocks still held by kept
    commands, and adjacent blocks are merged into one iovec;
  * when a command is the only one on the ring, its blocks are exactly the
    ones the documented policy picks: the lowest contiguous run if one
    exists, else the lowest free blocks;
  * cmd_ids are in 1..65535, never reused while held, allocated cyclically.

Writes that land in LBAs FIRST..FIRST+COUNT-1 (--keep-lba) are completed
with TCMU_UFLAG_KEEP_BUF.  Once as many commands are kept as the data area
has blocks, the kept buffers on odd blocks are freed through
action/free_kept_buf, which leaves every other block free: a later
multi-block command must then get one iovec per free block.

The summary file gets "key value" lines (commands, pads, wraps, ...),
rewritten after every batch; violations are printed as "FAIL: ..." lines
(the first 20) and counted in the summary.  SIGTERM ends it cleanly.
"""

import argparse
import mmap
import os
import select
import signal
import struct
import sys

PAD, CMD, TMR = 0, 1, 2
HDR = struct.Struct("<IHBB")            # len_op, cmd_id, kflags, uflags
# The request is not packed inside the packed entry: cdb_off is 8-byte
# aligned, after 4 bytes of padding.
REQ = struct.Struct("<IIIxxxxQQQ")      # iov_cnt, bidi, dif, cdb_off, pads
REQ_OFF = HDR.size                      # 8
IOV_OFF = REQ_OFF + REQ.size            # 48: the iovec array
IOV = struct.Struct("<QQ")              # iov_base, iov_len
RSP_SIZE = 1 + 1 + 2 + 4 + 96           # status, pads, read_len, sense
ENTRY_MIN = HDR.size + RSP_SIZE         # 112: sizeof(struct tcmu_cmd_entry)
KEEP_BUF = 0x4
SECTOR = 512


def read_attr(dev, name):
    with open(os.path.join(dev, name)) as f:
        return f.read().strip()


class Inspector:
    def __init__(self, args):
        self.args = args
        self.dev = args.dev
        uio = os.path.basename(args.uio)
        with open("/sys/class/uio/%s/maps/map0/size" % uio) as f:
            self.map_size = int(f.read().strip(), 0)
        self.fd = os.open(args.uio, os.O_RDWR)
        self.mem = mmap.mmap(self.fd, self.map_size, mmap.MAP_SHARED,
                             mmap.PROT_READ | mmap.PROT_WRITE)
        _ver, _flags, self.cmdr_off, self.cmdr_size = \
            struct.unpack_from("<HHII", self.mem, 0)
        ring_mb = int(read_attr(self.dev, "attrib/cmd_ring_size_mb"))
        self.data_off = ring_mb << 20
        self.blk = int(read_attr(self.dev, "attrib/data_pages_per_blk")) * \
            mmap.PAGESIZE
        self.nblocks = (self.map_size - self.data_off) // self.blk
        self.disk = bytearray(int(read_attr(self.dev, "attrib/dev_size")))
        self.tail = struct.unpack_from("<I", self.mem, 64)[0]
        self.kept = {}          # cmd_id -> list of blocks
        self.last_id = None
        self.fails = 0
        self.stop = False
        self.stats = dict(commands=0, pads=0, wraps=0, kept=0, freed=0,
                          multi_iov=0, max_iov=0, exact_alloc=0,
                          bytes_out=0, bytes_in=0, checks=0, violations=0)
        keep = args.keep_lba.split(",") if args.keep_lba else ["0", "0"]
        self.keep_first, self.keep_count = int(keep[0]), int(keep[1])
        self.fragmented = False

    # -- reporting ---------------------------------------------------------

    def check(self, ok, what):
        self.stats["checks"] += 1
        if ok:
            return True
        self.stats["violations"] += 1
        self.fails += 1
        if self.fails <= 20:
            print("FAIL: %s" % what, flush=True)
        return False

    def write_summary(self):
        tmp = self.args.summary + ".tmp"
        with open(tmp, "w") as f:
            for k in sorted(self.stats):
                f.write("%s %d\n" % (k, self.stats[k]))
        os.replace(tmp, self.args.summary)

    # -- data area ---------------------------------------------------------

    def held_blocks(self, extra=()):
        held = set()
        for blocks in self.kept.values():
            held.update(blocks)
        for blocks in extra:
            held.update(blocks)
        return held

    def expected_blocks(self, held, need):
        """The documented policy: lowest contiguous run, else lowest free."""
        free = [b for b in range(self.nblocks) if b not in held]
        run = 0
        for b in range(self.nblocks):
            run = run + 1 if b not in held else 0
            if run == need:
                return list(range(b - need + 1, b + 1))
        return free[:need] if len(free) >= need else None

    def gather(self, iovs, length):
        out = bytearray()
        for base, ln in iovs:
            out += self.mem[base:base + ln]
        return bytes(out[:length])

    def scatter(self, iovs, data):
        pos = 0
        for base, ln in iovs:
            chunk = data[pos:pos + ln]
            self.mem[base:base + len(chunk)] = chunk
            pos += ln

    # -- one command -------------------------------------------------------

    def sense(self, off, key, asc):
        sb = bytearray(18)
        sb[0], sb[2], sb[7], sb[12] = 0x70, key, 10, asc
        struct.pack_into("<BBHI", self.mem, self.cmdr_off + off + 8,
                         2, 0, 0, 0)
        self.mem[self.cmdr_off + off + 16:self.cmdr_off + off + 16 + 18] = sb

    def handle(self, off, length, batch_blocks, alone):
        base = self.cmdr_off + off
        _lo, cmd_id, _kf, _uf = HDR.unpack_from(self.mem, base)
        iov_cnt, bidi, dif, cdb_off, _p1, _p2 = REQ.unpack_from(self.mem,
                                                                base + REQ_OFF)
        where = "entry @%d id %d" % (off, cmd_id)
        self.stats["commands"] += 1

        # cmd_id: in range, not held, cyclic after the previous one.
        held_ids = set(self.kept)
        self.check(1 <= cmd_id <= 0xffff, "%s: cmd_id out of range" % where)
        self.check(cmd_id not in held_ids and cmd_id not in batch_blocks,
                   "%s: cmd_id still held by another command" % where)
        if self.last_id is not None:
            nxt = self.last_id % 0xffff + 1
            busy = held_ids | set(batch_blocks)
            while nxt in busy and nxt != self.last_id:
                nxt = nxt % 0xffff + 1
            self.check(cmd_id == nxt, "%s: cmd_id not the next free id after %d (%d)"
                       % (where, self.last_id, nxt))
        self.last_id = cmd_id

        # Layout of the entry.
        self.check(bidi == 0 and dif == 0,
                   "%s: iov_bidi_cnt %d / iov_dif_cnt %d" % (where, bidi, dif))
        self.check(iov_cnt <= (length - IOV_OFF) // IOV.size,
                   "%s: %d iovecs do not fit in %d bytes" % (where, iov_cnt, length))
        iov_cnt = min(iov_cnt, max(0, (length - IOV_OFF) // IOV.size))
        iov_end = IOV_OFF + iov_cnt * IOV.size
        cdb_rel = cdb_off - base
        ok_cdb = self.check(max(iov_end, 0) <= cdb_rel < length,
                            "%s: cdb_off %d outside the entry after its iovecs"
                            % (where, cdb_off))
        if not ok_cdb:
            self.sense(off, 0x05, 0x24)
            return
        cdb = bytes(self.mem[cdb_off:cdb_off + min(16, length - cdb_rel)])
        op = cdb[0]
        cdb_len = {0: 6, 1: 10, 2: 10, 4: 16, 5: 12}.get(op >> 5, 6)
        need = max(ENTRY_MIN, max(iov_end, cdb_rel) + cdb_len)
        self.check(cdb_rel + cdb_len <= length,
                   "%s: CDB of %d bytes runs past the entry" % (where, cdb_len))
        self.check(length == (need + 7) & ~7,
                   "%s: length %d, expected %d for %d iovecs and a %d byte CDB"
                   % (where, length, (need + 7) & ~7, iov_cnt, cdb_len))

        # iovecs: inside the data area, block aligned, merged, no overlap.
        iovs, blocks = [], []
        for i in range(iov_cnt):
            b, ln = IOV.unpack_from(self.mem, base + IOV_OFF + i * IOV.size)
            iovs.append((b, ln))
            inside = self.data_off <= b and b + ln <= self.map_size and ln > 0
            if not self.check(inside and (b - self.data_off) % self.blk == 0,
                              "%s: iov %d {%d, %d} not a block run of the data area"
                              % (where, i, b, ln)):
                self.sense(off, 0x05, 0x24)
                return
            first = (b - self.data_off) // self.blk
            blocks += range(first, first + (ln + self.blk - 1) // self.blk)
            if i + 1 < iov_cnt:
                self.check(ln % self.blk == 0,
                           "%s: iov %d of %d bytes is not whole blocks" % (where, i, ln))
            if i:
                pb, pl = iovs[i - 1]
                self.check(pb + pl != b, "%s: iov %d continues iov %d (not merged)"
                           % (where, i, i - 1))
        self.check(len(set(blocks)) == len(blocks),
                   "%s: iovecs overlap each other" % where)
        others = self.held_blocks(batch_blocks.values())
        self.check(not others & set(blocks),
                   "%s: blocks %s still held by other commands"
                   % (where, sorted(others & set(blocks))[:8]))
        batch_blocks[cmd_id] = blocks
        total = sum(ln for _b, ln in iovs)
        self.stats["max_iov"] = max(self.stats["max_iov"], iov_cnt)
        if iov_cnt > 1:
            self.stats["multi_iov"] += 1
        if alone and blocks:
            exp = self.expected_blocks(self.held_blocks(), len(blocks))
            if self.check(exp == sorted(blocks),
                          "%s: got blocks %s, the documented policy picks %s"
                          % (where, blocks[:20], (exp or [])[:20])):
                self.stats["exact_alloc"] += 1

        # The command itself.
        status, uflags = 0, 0
        if op == 0x00:                                  # TEST UNIT READY
            pass
        elif op == 0x12 and not cdb[1] & 1:             # standard INQUIRY
            inq = bytearray(36)
            inq[2], inq[3], inq[4] = 0x04, 0x02, 31     # SPC-2: no VPD probing
            inq[8:16] = b"TCMUTEST"
            inq[16:32] = b"ring inspector  "
            inq[32:36] = b"0001"
            self.scatter(iovs, bytes(inq[:total]))
        elif op == 0x25:                                # READ CAPACITY(10)
            self.scatter(iovs, struct.pack(">II", len(self.disk) // SECTOR - 1,
                                           SECTOR))
        elif op in (0x28, 0x2a):                        # READ(10), WRITE(10)
            lba, nblk = struct.unpack_from(">IxH", cdb, 2)
            start, ln = lba * SECTOR, nblk * SECTOR
            self.check(total == ln, "%s: iovecs cover %d bytes, transfer is %d"
                       % (where, total, ln))
            if start + ln > len(self.disk):
                self.sense(off, 0x05, 0x21)
                return
            if op == 0x2a:
                self.disk[start:start + ln] = self.gather(iovs, ln)
                self.stats["bytes_out"] += ln
                if self.keep_first <= lba < self.keep_first + self.keep_count:
                    uflags = KEEP_BUF
            else:
                self.scatter(iovs, bytes(self.disk[start:start + ln]))
                self.stats["bytes_in"] += ln
        else:
            self.sense(off, 0x05, 0x20)                 # INVALID OPCODE
            return
        self.mem[base + 7] = uflags
        struct.pack_into("<BBHI", self.mem, base + 8, status, 0, 0, 0)
        if uflags & KEEP_BUF:
            self.kept[cmd_id] = blocks
            self.stats["kept"] += 1

    def free_odd_kept(self):
        """Leave every other block free: free kept buffers on odd blocks."""
        path = os.path.join(self.dev, "action/free_kept_buf")
        for cmd_id, blocks in sorted(self.kept.items()):
            if all(b % 2 for b in blocks):
                fd = os.open(path, os.O_WRONLY)
                try:
                    os.write(fd, b"%d" % cmd_id)
                finally:
                    os.close(fd)
                del self.kept[cmd_id]
                self.stats["freed"] += 1
        self.fragmented = True

    # -- the ring ----------------------------------------------------------

    def batch(self):
        head = struct.unpack_from("<I", self.mem, 12)[0]   # cmd_head
        if not self.check(head < self.cmdr_size and head % 8 == 0,
                          "cmd_head %d outside the ring" % head):
            return False
        entries, off = [], self.tail
        while off != head:
            len_op = struct.unpack_from("<I", self.mem, self.cmdr_off + off)[0]
            op, length = len_op & 7, len_op & ~7
            ok = self.check(length >= 8 and off + length <= self.cmdr_size,
                            "entry @%d: length %d straddles the end (ring %d)"
                            % (off, length, self.cmdr_size))
            if not ok:
                return False
            entries.append((off, op, length))
            off = (off + length) % self.cmdr_size
            if off == 0:
                self.stats["wraps"] += 1
        ncmd = sum(1 for e in entries if e[1] == CMD)
        batch_blocks = {}
        for i, (off, op, length) in enumerate(entries):
            if op == PAD:
                self.stats["pads"] += 1
                self.check(off + length == self.cmdr_size,
                           "PAD @%d of %d does not end at the ring end" % (off, length))
                if i + 1 < len(entries):
                    nlen = entries[i + 1][2]
                    self.check(nlen > length and entries[i + 1][0] == 0,
                               "PAD @%d of %d before an entry of %d that would have fit"
                               % (off, length, nlen))
            elif op == CMD:
                self.handle(off, length, batch_blocks, ncmd == 1)
            else:
                self.check(False, "entry @%d: opcode %d unexpected" % (off, op))
        # Hand everything back: the tail release comes after the responses.
        self.tail = head
        struct.pack_into("<I", self.mem, 64, head)
        os.write(self.fd, struct.pack("<I", 1))
        if (not self.fragmented and self.keep_count and
                len(self.kept) >= self.nblocks):
            self.free_odd_kept()
        return True

    def run(self):
        signal.signal(signal.SIGTERM, self.on_term)
        # Ready: the test waits for the summary file.
        self.write_summary()
        while not self.stop:
            try:
                r, _w, _x = select.select([self.fd], [], [], 0.5)
            except InterruptedError:
                continue
            if r:
                os.read(self.fd, 4)
            if not self.batch():
                break
            self.write_summary()
        self.write_summary()
        return 1 if self.fails else 0

    def on_term(self, _sig, _frm):
        self.stop = True


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--uio", required=True)
    ap.add_argument("--dev", required=True)
    ap.add_argument("--summary", required=True)
    ap.add_argument("--keep-lba", default="")
    args = ap.parse_args()
    return Inspector(args).run()


if __name__ == "__main__":
    sys.exit(main())
