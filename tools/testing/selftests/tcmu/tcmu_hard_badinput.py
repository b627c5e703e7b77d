#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""
Bad configfs input for one user device (helper of tcmu_hard_badinput.sh).

    tcmu_hard_badinput.py --dev DIR --phase disabled|enabled|exported
                          [--seed N] [--random N] [--uio uioN --hba H --name N]
                          [--final-control TEXT] [--restore FILE=VALUE]...
                          [--race SECONDS] [--fast] [--only FILE,...]
                          [--global-max MB]

Every writable file of the device that the backstore owns (control,
attrib/*, action/*) gets a fixed table of boundary values and --random
values drawn from a PRNG seeded with --seed.  Each value is handed to the
kernel in one write(2); before and after, every readable file under DIR
is read (the snapshot; files under alua/, statistics/ and wwn/, which no
write here may change, are read once per file under test instead).  A
model of the documented rules
(Documentation/target/tcmu-design.rst, the kstrto*() conventions of the
kernel for the number syntax) classifies each value:

  valid    the write must return its length, and the snapshot must show
           exactly the new value (in the documented format) and nothing
           else changed;
  invalid  the write must fail with EINVAL and the snapshot must be
           unchanged;
  either   a form the rules leave open (a leading '+', trailing NUL
           bytes, duplicate control keys, ...): both outcomes are fine,
           but an accepted value must read back right, and a refusal must
           be EINVAL with nothing changed.

A NUL byte followed by more data is always invalid: configfs hands the
store a NUL-terminated buffer, so whatever follows the NUL would be
silently dropped.  A dev_config may not contain a newline (apart from one
trailing newline, which is stripped) or any other control character: the
value ends up in the info text, the UIO name and netlink events.  control
refuses control characters too, except newlines between its pairs.

The core's own attributes (emulate_pr, alua_support, ...) follow
kstrtobool(), the core's rules, and are only held to those.

Once the device is enabled, dev_config, dev_size and emulate_write_cache
are sent to the handler daemon as a netlink RECONFIG event; a listener
joins the TCM-USER "config" group (and announces that it sends no
replies), so such a write must succeed and the event must carry the new
value.

Output: "PASS: ..." and "FAIL: ..." lines as lib.sh prints them, "# ..."
for information, and a last line "# done" when the helper ran to the end.
Exit status 0 when nothing failed, 1 otherwise, 2 on a usage error.
"""

import argparse
import errno
import os
import random
import re
import socket
import struct
import sys
import threading
import time

VALID, INVALID, EITHER = "valid", "invalid", "either"
U64_MAX = (1 << 64) - 1
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
PAGE_SHIFT = PAGE_SIZE.bit_length() - 1
# configfs copies at most PAGE_SIZE - 1 bytes into the store buffer.
STORE_MAX = PAGE_SIZE - 1
HEXDIGITS = b"0123456789abcdefABCDEF"
MAX_TIMEOUT = 24 * 60 * 60      # seconds; cmd_time_out, qfull_time_out
CONFIG_LEN = 256                # dev_config buffer, NUL included
RING_MB_MAX = 8
MAX_SECTORS_LIMIT = 65535

FAILS = 0
PASSES = 0
VIOLATIONS = {}                 # rule -> files where the kernel broke it
MAX_FAIL_LINES = 60
FAIL_LINES = 0


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def note(msg):
    out("# " + msg)


def passed(msg):
    global PASSES
    PASSES += 1
    out("PASS: " + msg)


def failed(msg, detail=()):
    global FAILS, FAIL_LINES
    FAILS += 1
    FAIL_LINES += 1
    if FAIL_LINES <= MAX_FAIL_LINES:
        out("FAIL: " + msg)
        for d in detail:
            out("#   " + d)
    elif FAIL_LINES == MAX_FAIL_LINES + 1:
        out("FAIL: (further failures are only counted)")


def show(data, limit=70):
    """A short printable form of a byte string."""
    if len(data) > limit:
        return "%r...(%d bytes)" % (data[:limit], len(data))
    return repr(data)


# ---------------------------------------------------------------------------
# The kernel's number syntax (lib/kstrtox.c conventions): optional sign,
# radix prefix when base is 0, digits, at most one trailing newline.

def _kstrtoull(s, base):
    if base == 0:
        if s[:1] == b"0":
            if s[1:2] in (b"x", b"X") and s[2:3] != b"" and s[2:3] in HEXDIGITS:
                base = 16
            else:
                base = 8
        else:
            base = 10
    if base == 16 and s[:1] == b"0" and s[1:2] in (b"x", b"X"):
        s = s[2:]
    i = 0
    val = 0
    while i < len(s):
        c = s[i]
        lc = c | 0x20
        if 0x30 <= c <= 0x39:
            d = c - 0x30
        elif 0x61 <= lc <= 0x66:
            d = lc - 0x61 + 10
        else:
            break
        if d >= base:
            break
        val = val * base + d
        i += 1
    if val > U64_MAX or i == 0:
        return None
    rest = s[i:]
    if rest[:1] == b"\n":
        rest = rest[1:]
    if rest:
        return None
    return val


def kstrtoull(s, base):
    if s[:1] == b"+":
        s = s[1:]
    return _kstrtoull(s, base)


def kstrtoll(s, base):
    if s[:1] == b"-":
        t = _kstrtoull(s[1:], base)
        if t is None or t > (1 << 63):
            return None
        return -t
    t = kstrtoull(s, base)
    if t is None or t > (1 << 63) - 1:
        return None
    return t


def kstrto(s, base, kind):
    """kstrtou8/s8/u16/u32/s32/u64 on a C string; None on any error."""
    bits = int(kind[1:])
    if kind[0] == "u":
        v = kstrtoull(s, base)
        if v is None or v >= (1 << bits):
            return None
        return v
    v = kstrtoll(s, base)
    if v is None or not -(1 << (bits - 1)) <= v < (1 << (bits - 1)):
        return None
    return v


def kstrtobool(s):
    c0 = s[:1]
    if c0 in (b"y", b"Y", b"t", b"T", b"1"):
        return True
    if c0 in (b"n", b"N", b"f", b"F", b"0"):
        return False
    if c0 in (b"o", b"O"):
        if s[1:2] in (b"n", b"N"):
            return True
        if s[1:2] in (b"f", b"F"):
            return False
    return None


# Bytes every store of ours refuses (the design doc, "Configuration"):
# control characters and DEL. A final newline is stripped before the
# check, and control may also use newlines between its pairs.
CONTROL_CHARS = re.compile(rb"[\x00-\x1f\x7f]")


def store_view(data):
    """What a store() function sees: (C string, nul_junk, trailing_nul)."""
    d = data[:STORE_MAX]
    i = d.find(b"\0")
    if i < 0:
        return d, False, False
    junk = d[i:].strip(b"\0") != b""
    return d[:i], junk, not junk


# ---------------------------------------------------------------------------
# Outcome of a write according to the rules

class Outcome:
    def __init__(self, cls, why="", state=None, files=None, event=None,
                 errnos=(errno.EINVAL,)):
        self.cls = cls          # VALID / INVALID / EITHER
        self.why = why          # reason, for messages
        self.state = state or {}    # model fields that change
        self.files = files or {}    # other files that change (path -> bytes)
        self.event = event      # (netlink attribute, value) once enabled
        self.errnos = errnos    # acceptable errors


def violation(why, rel):
    """Remember which rule a file broke, for the summary at the end."""
    VIOLATIONS.setdefault(re.sub(r"-?\d+", "N", why), set()).add(rel)


def refused(why, errnos=(errno.EINVAL,)):
    return Outcome(INVALID, why, errnos=errnos)


def number(data, base, kind, lo, hi, strict=True):
    """Classify a number write; returns (Outcome-or-None, value)."""
    s, junk, tnul = store_view(data)
    if strict and junk:
        return refused("data after a NUL byte"), None
    v = kstrto(s, base, kind)
    if v is None:
        return refused("not a %s number (base %d)" % (kind, base)), None
    if not lo <= v <= hi:
        return refused("%d outside %d..%d" % (v, lo, hi)), None
    cls = VALID
    why = "%d" % v
    if s[:1] == b"+" or s[:2] == b"-+" or tnul:
        cls = EITHER
        why += " (sign or trailing NUL)"
    return Outcome(cls, why), v


# ---------------------------------------------------------------------------
# The device model

CONTROL_KEYS = (b"dev_config", b"dev_size", b"hw_block_size", b"hw_max_sectors",
                b"nl_reply_supported", b"max_data_area_mb",
                b"data_pages_per_blk", b"cmd_ring_size_mb")

# Attributes of the backstore: (kind, min, max) for plain numbers.
OWN_NUMBERS = {
    "attrib/cmd_time_out": ("u32", 0, MAX_TIMEOUT),
    "attrib/qfull_time_out": ("s32", -1, MAX_TIMEOUT),
    "attrib/nl_reply_supported": ("s8", -128, 127),
    "attrib/emulate_write_cache": ("u8", 0, 1),
    "attrib/tmr_notification": ("u8", 0, 1),
    "attrib/handler_exit_policy": ("u8", 0, 1),
}
OWN_SPECIAL = ("control", "attrib/dev_config", "attrib/dev_size",
               "action/block_dev", "action/reset_ring", "action/free_kept_buf")
# Attributes of the target core (kstrtobool()).
CORE_BOOLS = ("attrib/emulate_pr", "attrib/enforce_pr_isids",
              "attrib/force_pr_aptpl", "attrib/alua_support",
              "attrib/pgr_support")

# Netlink attribute numbers (include/uapi/linux/target_core_user.h).
TCMU_CMD_RECONFIG_DEVICE = 3
TCMU_CMD_SET_FEATURES = 7
TCMU_ATTR_DEVICE = 1
TCMU_ATTR_MINOR = 2
TCMU_ATTR_DEV_CFG = 4
TCMU_ATTR_DEV_SIZE = 5
TCMU_ATTR_WRITECACHE = 6
TCMU_ATTR_DEVICE_ID = 8
TCMU_ATTR_SUPP_KERN_CMD_REPLY = 9


# Files that no write here may change: read once per batch of writes
# instead of after every write (they are half of the directory).
COLD_DIRS = ("alua", "statistics", "wwn")
# pr/* shows what emulate_pr and pgr_support select.
PR_KEYS = ("attrib/emulate_pr", "attrib/pgr_support")


class Device:
    def __init__(self, path, phase, global_max_mb, uio=None, hba=None,
                 name=None):
        self.path = path
        self.phase = phase
        self.enabled = phase != "disabled"
        self.exported = phase == "exported"
        self.global_max_mb = global_max_mb
        self.uio = uio
        self.hba = hba
        self.name = name
        self.files = []         # readable files, relative paths
        self.writable = []      # writable files under attrib/ and action/
        self.readonly = []      # the others there
        for root, _dirs, names in os.walk(path):
            for n in names:
                full = os.path.join(root, n)
                rel = os.path.relpath(full, path)
                mode = os.stat(full).st_mode
                if mode & 0o444:
                    self.files.append(rel)
                if rel.split("/")[0] in ("attrib", "action"):
                    if mode & 0o222:
                        self.writable.append(rel)
                    else:
                        self.readonly.append(rel)
        self.files.sort()
        self.writable.sort()
        self.readonly.sort()
        self.hot = [f for f in self.files if f.split("/")[0] not in COLD_DIRS]
        self.cold = [f for f in self.files if f.split("/")[0] in COLD_DIRS]
        self.snap = self.snapshot()
        self.cold_snap = self.snapshot(self.cold)
        self.state = {}
        self.fast = False
        self.pr_views = {}
        self.learn_pr(self.snap)

    def read(self, rel):
        try:
            fd = os.open(os.path.join(self.path, rel), os.O_RDONLY)
        except OSError as e:
            return b"<open: %s>" % errno.errorcode.get(e.errno, "?").encode()
        try:
            chunks = []
            while True:
                b = os.read(fd, 65536)
                if not b:
                    break
                chunks.append(b)
            return b"".join(chunks)
        except OSError as e:
            return b"<read: %s>" % errno.errorcode.get(e.errno, "?").encode()
        finally:
            os.close(fd)

    def snapshot(self, files=None):
        return {f: self.read(f) for f in (self.hot if files is None else files)}

    def watch(self, rel):
        """With --fast: the files read after each write to @rel (what the
        rules may change, and info); the rest is compared once per batch."""
        w = {"info", rel}
        if rel == "control":
            w.update("attrib/" + a for a in (
                "dev_config", "dev_size", "max_data_area_mb", "data_pages_per_blk",
                "cmd_ring_size_mb", "nl_reply_supported", "hw_block_size",
                "hw_max_sectors"))
        elif rel in PR_KEYS:
            w.update(f for f in self.hot if f.startswith("pr/"))
        elif rel.startswith("action/"):
            w.update(("action/block_dev", "attrib/stats"))
        return [f for f in self.hot if f in w]

    @staticmethod
    def pr_key(snap):
        return tuple(snap.get(k) for k in PR_KEYS)

    def learn_pr(self, snap):
        self.pr_views.setdefault(self.pr_key(snap), {
            k: v for k, v in snap.items() if k.startswith("pr/")})

    def write(self, rel, data):
        """One write(2); returns (count, None) or (None, errno)."""
        try:
            fd = os.open(os.path.join(self.path, rel), os.O_WRONLY)
        except OSError as e:
            return None, e.errno
        try:
            return os.write(fd, data), None
        except OSError as e:
            return None, e.errno
        finally:
            os.close(fd)

    # -- the model's view of the files that depend on several fields --------

    def load_state(self, snap):
        """Take the model fields from a snapshot."""
        def num(f):
            return int(snap[f].strip())
        cfg = snap["attrib/dev_config"]
        st = {
            "cfg": cfg[:-1] if cfg.endswith(b"\n") else cfg,
            "size": num("attrib/dev_size"),
            "mb": num("attrib/max_data_area_mb"),
            "ppb": num("attrib/data_pages_per_blk"),
            "ring": num("attrib/cmd_ring_size_mb"),
            "nl": num("attrib/nl_reply_supported"),
            "hwbs": num("attrib/hw_block_size"),
            "hwms": num("attrib/hw_max_sectors"),
        }
        return st

    def render(self, st, base):
        """Files that follow from model state @st, taking the rest of
        info's first line from snapshot @base."""
        f = {
            "attrib/dev_config": st["cfg"] + b"\n",
            "attrib/dev_size": b"%d\n" % st["size"],
            "attrib/max_data_area_mb": b"%d\n" % st["mb"],
            "attrib/data_pages_per_blk": b"%d\n" % st["ppb"],
            "attrib/cmd_ring_size_mb": b"%d\n" % st["ring"],
            "attrib/nl_reply_supported": b"%d\n" % st["nl"],
        }
        info = base["info"]
        first = info.split(b"\n", 1)[0]
        if not self.enabled:
            f["attrib/hw_block_size"] = b"%d\n" % st["hwbs"]
            f["attrib/hw_max_sectors"] = b"%d\n" % st["hwms"]
            first = re.sub(rb"HwMaxSectors: \d+", b"HwMaxSectors: %d" % st["hwms"],
                           first)
        f["info"] = (first + b"\n        Config: " + (st["cfg"] or b"NULL") +
                     b" Size: %d MaxDataAreaMB: %d DataPagesPerBlk: %d CmdRingSizeMB: %d\n"
                     % (st["size"], st["mb"], st["ppb"], st["ring"]))
        return f

    def uio_name(self, cfg):
        n = b"tcm-user/%d/%s" % (self.hba, self.name.encode())
        if cfg:
            n += b"/" + cfg
        return n

    def read_uio_name(self):
        try:
            with open("/sys/class/uio/%s/name" % self.uio, "rb") as f:
                return f.read().rstrip(b"\n")
        except OSError as e:
            return b"<%s>" % errno.errorcode.get(e.errno, "?").encode()

    # -- the rules -----------------------------------------------------------

    def rule(self, rel, data):
        if data == b"":
            # configfs itself refuses a write of nothing (EFAULT).
            return refused("empty write", (errno.EINVAL, errno.EFAULT))
        if rel == "control":
            return self.rule_control(data)
        if rel == "attrib/dev_config":
            return self.rule_dev_config(data)
        if rel == "attrib/dev_size":
            return self.rule_dev_size(data)
        if rel in OWN_NUMBERS:
            kind, lo, hi = OWN_NUMBERS[rel]
            o, v = number(data, 0, kind, lo, hi)
            if v is None:
                return o
            if rel == "attrib/cmd_time_out" and self.exported:
                return refused("cmd_time_out while exported")
            if rel == "attrib/nl_reply_supported":
                o.state = {"nl": v}
            else:
                o.files = {rel: b"%d\n" % v}
            if rel == "attrib/emulate_write_cache" and self.enabled:
                o.event = (TCMU_ATTR_WRITECACHE, v)
            return o
        if rel.startswith("action/"):
            return self.rule_action(rel, data)
        if rel in CORE_BOOLS:
            s, _junk, _tnul = store_view(data)
            v = kstrtobool(s)
            if v is None:
                return refused("not a kstrtobool() value")
            if rel == "attrib/force_pr_aptpl" and self.exported:
                return refused("force_pr_aptpl while exported")
            return Outcome(VALID, "core bool %d" % v,
                           files={rel: b"%d\n" % v})
        return None

    def rule_dev_config(self, data):
        s, junk, tnul = store_view(data)
        if junk:
            return refused("data after a NUL byte")
        v = s[:-1] if s.endswith(b"\n") else s
        if not v:
            return refused("empty dev_config")
        if len(v) >= CONFIG_LEN:
            return refused("%d bytes, longer than %d" % (len(v), CONFIG_LEN - 1))
        if b"\n" in v:
            return refused("dev_config with a newline inside")
        if CONTROL_CHARS.search(v):
            return refused("dev_config with a control character")
        o = Outcome(EITHER if tnul else VALID, "%d bytes" % len(v),
                    state={"cfg": v})
        if self.enabled:
            o.event = (TCMU_ATTR_DEV_CFG, v)
        return o

    def rule_dev_size(self, data):
        o, v = number(data, 0, "u64", 1, U64_MAX)
        if v is None:
            return o
        bs = self.state["hwbs"]
        if v < (bs or 512):
            if bs:
                return refused("dev_size below hw_block_size %d" % bs)
            # No block size yet: refused now or at enable, both fine.
            o.cls = EITHER
        o.state = {"size": v}
        if self.enabled:
            o.event = (TCMU_ATTR_DEV_SIZE, v)
        return o

    def rule_action(self, rel, data):
        if not self.enabled:
            return refused("action before enable")
        if rel == "action/free_kept_buf":
            return refused("no kept buffer exists")
        if rel == "action/block_dev":
            o, v = number(data, 0, "u8", 0, 1)
            if v is not None:
                o.files = {rel: b"blocked\n" if v else b"unblocked\n"}
            return o
        if rel == "action/reset_ring":
            o, _v = number(data, 0, "u8", 1, 2)
            return o
        return None

    def rule_control(self, data):
        s, junk, tnul = store_view(data)
        if junk:
            return refused("data after a NUL byte")
        body = s[:-1] if s.endswith(b"\n") else s
        if CONTROL_CHARS.search(body.replace(b"\n", b"")):
            return refused("control character in control")
        tokens = [t for t in re.split(rb"[,\n]", s) if t]
        if not tokens:
            return Outcome(EITHER, "separators only")
        if self.enabled:
            return refused("control after enable")
        st = dict(self.state)
        either = tnul
        seen = set()
        pages_per_mb = (1 << 20) >> PAGE_SHIFT
        for t in tokens:
            m = re.match(rb"(" + rb"|".join(CONTROL_KEYS) + rb")=(.+)\Z", t, re.S)
            if not m:
                return refused("not a key=value pair: %s" % show(t, 40))
            key, val = m.group(1), m.group(2)
            if key in seen:
                either = True
            seen.add(key)
            if key == b"dev_config":
                if len(val) >= CONFIG_LEN:
                    return refused("dev_config of %d bytes" % len(val))
                st["cfg"] = val
                continue
            kind, lo, hi, field, maxlen = {
                b"dev_size": ("u64", 1, U64_MAX, "size", 23),
                b"hw_block_size": ("u32", 512, 4096, "hwbs", 15),
                b"hw_max_sectors": ("u32", 1, MAX_SECTORS_LIMIT, "hwms", 15),
                b"nl_reply_supported": ("s32", -(1 << 31), (1 << 31) - 1, "nl", 15),
                b"max_data_area_mb": ("u32", 1, self.global_max_mb, "mb", 15),
                b"data_pages_per_blk": ("u32", 1, 0xffffffff >> PAGE_SHIFT, "ppb", 15),
                b"cmd_ring_size_mb": ("u32", 1, RING_MB_MAX, "ring", 15),
            }[key]
            v = kstrto(val, 0, kind)
            if v is None:
                return refused("%s: not a %s number (base 0)" % (key.decode(), kind))
            if not lo <= v <= hi:
                return refused("%s=%d outside %d..%d" % (key.decode(), v, lo, hi))
            if key == b"hw_block_size" and v & (v - 1):
                return refused("hw_block_size %d not a power of two" % v)
            if val[:1] == b"+" or len(val) > maxlen:
                either = True
            st[field] = v
        if st["ppb"] > st["mb"] * pages_per_mb:
            return refused("data_pages_per_blk %d above the %d MiB data area"
                           % (st["ppb"], st["mb"]))
        if st["size"] and st["size"] < (st["hwbs"] or 512):
            return refused("dev_size %d below the block size" % st["size"])
        changed = {k: v for k, v in st.items() if self.state[k] != v}
        return Outcome(EITHER if either else VALID, "control", state=changed)


# ---------------------------------------------------------------------------
# Netlink: listen to TCM-USER "config" events

class Netlink:
    NETLINK_GENERIC = 16
    GENL_ID_CTRL = 0x10
    CTRL_CMD_GETFAMILY = 3
    CTRL_ATTR_FAMILY_ID = 1
    CTRL_ATTR_FAMILY_NAME = 2
    CTRL_ATTR_MCAST_GROUPS = 7
    SOL_NETLINK = 270
    NETLINK_ADD_MEMBERSHIP = 1

    def __init__(self):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW,
                                  self.NETLINK_GENERIC)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind((0, 0))
        self.seq = 1
        self.family = None
        self.group = None
        self.lock = threading.Lock()

    @staticmethod
    def attrs(buf):
        a = {}
        off = 0
        while off + 4 <= len(buf):
            ln, typ = struct.unpack_from("=HH", buf, off)
            if ln < 4:
                break
            a[typ & 0x3fff] = buf[off + 4:off + ln]
            off += (ln + 3) & ~3
        return a

    @staticmethod
    def attr(typ, payload):
        ln = 4 + len(payload)
        return struct.pack("=HH", ln, typ) + payload + b"\0" * (((ln + 3) & ~3) - ln)

    def send(self, msgtype, cmd, version, payload, flags=1):
        self.seq += 1
        body = struct.pack("=BBH", cmd, version, 0) + payload
        hdr = struct.pack("=IHHII", 16 + len(body), msgtype, flags, self.seq, 0)
        self.sock.send(hdr + body)

    def messages(self, block):
        """Yield (nlmsg type, genl cmd, attrs) of what is queued."""
        try:
            buf = self.sock.recv(1 << 20, 0 if block else socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        off = 0
        while off + 16 <= len(buf):
            ln, typ, _flags, _seq, _pid = struct.unpack_from("=IHHII", buf, off)
            if ln < 16:
                break
            if typ == 2:        # NLMSG_ERROR
                err = struct.unpack_from("=i", buf, off + 16)[0]
                yield typ, None, {"error": err}
            elif ln >= 20:
                cmd = buf[off + 16]
                yield typ, cmd, self.attrs(buf[off + 20:off + ln])
            off += (ln + 3) & ~3

    def setup(self):
        self.sock.settimeout(5)
        self.send(self.GENL_ID_CTRL, self.CTRL_CMD_GETFAMILY, 1,
                  self.attr(self.CTRL_ATTR_FAMILY_NAME, b"TCM-USER\0"))
        for typ, _cmd, a in self.messages(True):
            if typ == 2:
                raise OSError(-a["error"], "CTRL_CMD_GETFAMILY TCM-USER")
            self.family = struct.unpack("=H", a[self.CTRL_ATTR_FAMILY_ID][:2])[0]
            groups = self.attrs(a.get(self.CTRL_ATTR_MCAST_GROUPS, b""))
            for g in groups.values():
                ga = self.attrs(g)
                if ga.get(1, b"").rstrip(b"\0") == b"config":
                    self.group = struct.unpack("=I", ga[2][:4])[0]
        if self.family is None or self.group is None:
            raise OSError(errno.ENOENT, "TCM-USER family or its config group")
        self.sock.setsockopt(self.SOL_NETLINK, self.NETLINK_ADD_MEMBERSHIP,
                             self.group)
        # A daemon that sends no replies: no write waits for one.
        self.send(self.family, TCMU_CMD_SET_FEATURES, 2,
                  self.attr(TCMU_ATTR_SUPP_KERN_CMD_REPLY, b"\0"), flags=1 | 4)
        for typ, _cmd, a in self.messages(True):
            if typ == 2 and a["error"]:
                raise OSError(-a["error"], "TCMU_CMD_SET_FEATURES")
        self.sock.settimeout(None)

    def drain(self):
        """Every TCM-USER event queued now."""
        evs = []
        with self.lock:
            while True:
                got = list(self.messages(False))
                if not got:
                    break
                evs += [(cmd, a) for typ, cmd, a in got if typ == self.family]
        return evs


# ---------------------------------------------------------------------------
# Inputs

NUMBER_EDGES = [0, 1, 2, 7, 8, 9, 127, 128, 255, 256, 511, 512, 513, 1023,
                1024, 2047, 2048, 2049, 4095, 4096, 4097, 65535, 65536,
                86399, 86400, 86401, (1 << 20), (1 << 31) - 1, 1 << 31,
                (1 << 32) - 1, 1 << 32, (1 << 63) - 1, 1 << 63, U64_MAX,
                U64_MAX + 1, 10 ** 20, 10 ** 30]


def fixed_numbers(lo, hi):
    """Boundary inputs for a number attribute with range lo..hi."""
    vals = [b"", b"\n", b"\n\n", b" ", b"\t", b" \n", b"\0", b"\0\0", b"0",
            b"1", b"-1", b"-0", b"+1", b"+0", b"-+1", b"+-1", b"++1", b"--1",
            b"1\n", b"1\n\n", b"1\r\n", b" 1", b"1 ", b"\t1", b"1\t", b"1x",
            b"x1", b"1.0", b"1e3", b"1,", b",1", b"1=", b"=1", b"0x", b"0X",
            b"0x1", b"0X1", b"0x1g", b"0xG", b"0b1", b"00", b"01", b"07",
            b"08", b"010", b"0o7", b"1\0", b"1\0\0\0", b"1\n\0", b"1\0junk",
            b"1\0\n", b"\x001", b"\xff", b"\xff\xfe\xfd", b"\xef\xbc\x91",
            b"\xd9\xa1", b"one", b"true", b"y", b"on", b"null", b"-",
            b"+", b"2147483647", b"2147483648", b"-2147483648",
            b"-2147483649", b"4294967295", b"4294967296",
            b"18446744073709551615", b"18446744073709551616",
            b"-9223372036854775808", b"-9223372036854775809",
            b"99999999999999999999999999999999", b"0xffffffff",
            b"0x100000000", b"0xffffffffffffffff", b"0x10000000000000000",
            b"0" * 100 + b"1", b"1" * (STORE_MAX - 1) + b"\n",
            b"9" * STORE_MAX, b"9" * PAGE_SIZE, b"1" + b" " * 5000,
            b"0" * 5000 + b"1", b"1\n" + b"x" * 5000]
    for v in (lo - 1, lo, lo + 1, hi - 1, hi, hi + 1):
        vals += [b"%d" % v, b"%d\n" % v]
        if v >= 0:
            vals += [b"0x%x" % v, b"0%o" % v]
    return vals


def fixed_strings():
    """Boundary inputs for dev_config."""
    return [b"", b"\n", b"\n\n", b" ", b"a", b"a\n", b"a\n\n", b"\na", b"a\nb",
            b"a\0", b"a\0\0", b"a\0b", b"\0a", b"a b", b"a,b", b"a=b",
            b"file//var/tmp/x.img", b"rbd/pool/img;osd_op_timeout=30",
            b"\xff\xfe\x01\x7f", b"%s%n%x", b"c" * 254, b"c" * 255,
            b"c" * 255 + b"\n", b"c" * 256, b"c" * 256 + b"\n",
            b"c" * 1000, b"c" * (STORE_MAX - 1) + b"\n", b"c" * STORE_MAX,
            b"c" * PAGE_SIZE, b"c" * 5000, b"c" * 254 + b"\0" + b"x" * 3000]


def fixed_control(global_max):
    v = [b"", b"\n", b",", b",,,", b"\n,\n", b" ", b"\t", b"\0", b"=", b"==",
         b"abc", b"=1", b"dev_size", b"dev_size=", b"dev_size==1",
         b"dev_size:1048576", b"DEV_SIZE=1048576", b"dev_size =1048576",
         b"dev_size= 1048576", b" dev_size=1048576", b"dev_size=1048576 ",
         b"dev_sizes=1048576", b"dev_siz=1048576", b"foo=1", b"foo",
         b"dev_size=1048576,foo=1", b"foo=1,dev_size=1048576",
         b"dev_size=1048576,", b",dev_size=1048576", b"dev_size=1048576,,",
         b"dev_size=1048576\n", b"dev_size=1048576\n\n",
         b"dev_size=1048576\r\n", b"dev_size=1048576;cmd_ring_size_mb=2",
         b"dev_size=1048576,dev_size=2097152",
         b"dev_size=2097152,dev_size=0", b"dev_size=0,dev_size=2097152",
         b"dev_size=1048576\0", b"dev_size=1048576\0foo=1",
         b"dev_size=1048576\0,dev_size=2",
         b"dev_config=a\0b", b"dev_config=with space",
         b"dev_config=a=b", b"dev_config=" + b"c" * 255,
         b"dev_config=" + b"c" * 256, b"dev_config=" + b"c" * 5000,
         b"dev_config=\xff\xfe", b"dev_config=x\ndev_size=1048576",
         b"x" * 300, b"x" * STORE_MAX, b"x" * 5000,
         b"dev_size=1048576," * 300,
         b"dev_size=1048576" + b"," * 5000,
         b"," * (STORE_MAX - 16) + b"dev_size=1048576",
         b"," * (STORE_MAX - 15) + b"dev_size=1048576",
         b"max_data_area_mb=%d" % global_max,
         b"max_data_area_mb=%d" % (global_max + 1),
         b"max_data_area_mb=4096", b"max_data_area_mb=4294967295",
         b"max_data_area_mb=4294967296",
         b"max_data_area_mb=1,data_pages_per_blk=256",
         b"max_data_area_mb=1,data_pages_per_blk=257",
         b"data_pages_per_blk=1048575", b"data_pages_per_blk=1048576",
         b"cmd_ring_size_mb=4096", b"cmd_ring_size_mb=8",
         b"cmd_ring_size_mb=9", b"hw_block_size=4096,dev_size=4095",
         b"hw_block_size=4096,dev_size=4096", b"hw_block_size=8192",
         b"hw_block_size=3072", b"hw_block_size=0x200",
         b"nl_reply_supported=-1", b"nl_reply_supported=+5",
         b"dev_size=+1048576", b"dev_size=0x100000", b"dev_size=0100000",
         b"dev_size=" + b"0" * 30 + b"1048576"]
    edges = [b"", b"-1", b"0", b"1", b"2147483647", b"2147483648",
             b"-2147483648", b"-2147483649", b"4294967295", b"4294967296",
             b"18446744073709551615", b"18446744073709551616", b"0x10",
             b"010", b"1x", b" 1", b"1 ", b"+1", b"-0", b"abc"]
    for k in CONTROL_KEYS:
        for e in edges:
            v.append(k + b"=" + e)
    return v


class Gen:
    def __init__(self, rng, global_max):
        self.rng = rng
        self.global_max = global_max

    def integer(self, lo, hi):
        r = self.rng
        c = r.random()
        if c < 0.35:
            v = r.randint(lo, hi)
        elif c < 0.55:
            v = r.choice((lo, hi)) + r.randint(-3, 3)
        elif c < 0.8:
            v = r.choice(NUMBER_EDGES)
        else:
            v = r.getrandbits(r.randint(1, 70))
        if r.random() < 0.12:
            v = -v
        return v

    def form(self, v, base0=True):
        r = self.rng
        c = r.random()
        sign = b"-" if v < 0 else b""
        a = abs(v)
        if base0 and c < 0.15:
            s = sign + r.choice((b"0x", b"0X")) + (b"%x" % a if r.random() < 0.5 else b"%X" % a)
        elif base0 and c < 0.25:
            s = sign + b"0%o" % a
        elif c < 0.3:
            s = sign + b"0" * r.randint(1, 20) + b"%d" % a
        elif c < 0.35:
            s = b"+" + b"%d" % v
        else:
            s = b"%d" % v
        return s

    def decorate(self, s, allow_nl=True):
        r = self.rng
        c = r.random()
        if c < 0.30 and allow_nl:
            return s + b"\n"
        if c < 0.80:
            return s
        if r.random() < 0.7:
            return s + r.choice((b"\n\n", b" ", b"\t", b"x", b"\0", b"\0junk",
                                 b"\r", b"\0\0"))
        return r.choice((b" ", b"\t", b"\0", b"x")) + s

    def blob(self, maxlen=24):
        r = self.rng
        return bytes(r.getrandbits(8) for _ in range(r.randint(0, maxlen)))

    def text(self, maxlen=24):
        r = self.rng
        alphabet = b"0123456789abcdefxX+- \t\n,=.\0"
        return bytes(r.choice(alphabet) for _ in range(r.randint(1, maxlen)))

    def long(self):
        r = self.rng
        n = r.choice((STORE_MAX - 1, STORE_MAX, PAGE_SIZE, PAGE_SIZE + 1,
                      r.randint(300, 6000)))
        fill = r.choice((b"9", b"0", b" ", b",", b"c", b"\n", b"\0"))
        return (r.choice((b"", b"1", b"dev_size=1048576,")) + fill * n)[:n]

    def number_input(self, lo, hi):
        r = self.rng
        c = r.random()
        if c < 0.72:
            return self.decorate(self.form(self.integer(lo, hi)))
        if c < 0.86:
            return self.blob()
        if c < 0.97:
            return self.text()
        return self.long()

    def string_input(self):
        r = self.rng
        c = r.random()
        if c < 0.5:
            n = r.choice((r.randint(1, 40), r.randint(240, 270)))
            s = bytes(r.randint(0x20, 0x7e) for _ in range(n))
        elif c < 0.8:
            s = bytes(r.randint(1, 255) for _ in range(r.randint(1, 300)))
        elif c < 0.95:
            s = self.blob(300)
        else:
            s = self.long()
        return self.decorate(s)

    def control_input(self):
        r = self.rng
        if r.random() < 0.08:
            return r.choice((self.blob(64), self.text(64), self.long()))
        parts = []
        for _ in range(r.randint(1, 4)):
            c = r.random()
            if c < 0.82:
                key = r.choice(CONTROL_KEYS)
            elif c < 0.9:
                key = r.choice(CONTROL_KEYS)
                i = r.randrange(len(key))
                key = key[:i] + r.choice((b"", b" ", b"X", key[i:i + 1].upper())) + key[i + 1:]
            else:
                key = self.text(12).replace(b",", b"").replace(b"\n", b"")
            sep = b"=" if r.random() < 0.95 else r.choice((b"", b":", b" =", b"=="))
            if key == b"dev_config":
                val = bytes(r.randint(0x21, 0x7e) for _ in range(
                    r.choice((r.randint(0, 20), r.randint(250, 260)))))
                val = val.replace(b",", b"_")
            else:
                lo, hi = {
                    b"dev_size": (512, 1 << 40),
                    b"hw_block_size": (512, 4096),
                    b"hw_max_sectors": (1, 65535),
                    b"nl_reply_supported": (-(1 << 31), (1 << 31) - 1),
                    b"max_data_area_mb": (1, self.global_max),
                    b"data_pages_per_blk": (1, 512),
                    b"cmd_ring_size_mb": (1, 8),
                }.get(key, (0, 100))
                if key == b"hw_block_size" and r.random() < 0.6:
                    v = r.choice((512, 1024, 2048, 4096))
                else:
                    v = self.integer(lo, hi)
                val = self.form(v, base0=r.random() < 0.1)
            parts.append(key + sep + val)
        joiners = [r.choice((b",", b",", b"\n", b",,", b", ")) for _ in parts]
        s = b""
        for p, j in zip(parts, joiners):
            s += p + j
        s = s[:-len(joiners[-1])]
        if r.random() < 0.2:
            s += r.choice((b",", b"\n", b",\n", b"\0", b"\0junk=1", b" "))
        if r.random() < 0.05:
            s = r.choice((b",", b"\n")) + s
        return s


# ---------------------------------------------------------------------------
# The run

class Runner:
    def __init__(self, dev, nl):
        self.dev = dev
        self.nl = nl
        self.stats = {}
        self.uio_minor = None
        self.dev_index = None
        if dev.enabled:
            self.uio_minor = int(dev.uio[3:])
            self.dev_index = int(dev.read("statistics/scsi_dev/indx").strip() or -1)

    def expect_files(self, o, before):
        """Expected snapshot if the write applies, the model state, and a
        prefix of files whose content is not known yet (or None)."""
        exp = dict(before)
        st = dict(self.dev.state)
        st.update(o.state)
        exp.update(self.dev.render(st, before))
        exp.update(o.files)
        free = None
        key = self.dev.pr_key(exp)
        if key != self.dev.pr_key(before):
            if key in self.dev.pr_views:
                exp.update(self.dev.pr_views[key])
            else:
                free = "pr/"
        return exp, st, free

    @staticmethod
    def same(exp, got, free):
        if free is None:
            return exp == got
        return ({k: v for k, v in exp.items() if not k.startswith(free)} ==
                {k: v for k, v in got.items() if not k.startswith(free)})

    @staticmethod
    def diff(a, b):
        lines = []
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                lines.append("%s: expected %s, got %s" % (k, show(a.get(k, b"<none>"), 110),
                                                           show(b.get(k, b"<none>"), 110)))
        return lines

    def check_event(self, rel, data, o, applied, evs):
        """The netlink events a write produced."""
        if not self.nl:
            return True
        want = o.event if applied else None
        if want is None:
            if evs:
                failed("%s %s: %s: unexpected netlink event(s) %s" % (
                    self.dev.phase, rel, show(data), [e[0] for e in evs]))
                return False
            return True
        if len(evs) != 1 or evs[0][0] != TCMU_CMD_RECONFIG_DEVICE:
            failed("%s %s: %s: expected one RECONFIG_DEVICE event, got %s" % (
                self.dev.phase, rel, show(data), [e[0] for e in evs]))
            return False
        a = evs[0][1]
        typ, val = want
        got = a.get(typ)
        if typ == TCMU_ATTR_DEV_CFG:
            ok = got is not None and got.rstrip(b"\0") == val
        elif typ == TCMU_ATTR_DEV_SIZE:
            ok = got is not None and len(got) >= 8 and struct.unpack("=Q", got[:8])[0] == val
        else:
            ok = got is not None and got[:1] == bytes([val])
        problems = []
        if not ok:
            problems.append("attribute %d is %s, expected %r" % (typ, show(got or b"<none>"), val))
        name = a.get(TCMU_ATTR_DEVICE, b"").rstrip(b"\0")
        if name != self.dev.uio_name(self.dev.state["cfg"]):
            problems.append("DEVICE %s, expected %s" % (show(name), show(self.dev.uio_name(self.dev.state["cfg"]))))
        minor = a.get(TCMU_ATTR_MINOR)
        if minor is None or struct.unpack("=I", minor[:4])[0] != self.uio_minor:
            problems.append("MINOR %s, expected %d" % (show(minor or b"<none>"), self.uio_minor))
        did = a.get(TCMU_ATTR_DEVICE_ID)
        if did is None or struct.unpack("=I", did[:4])[0] != self.dev_index:
            problems.append("DEVICE_ID %s, expected %s" % (show(did or b"<none>"), self.dev_index))
        if problems:
            failed("%s %s: %s: RECONFIG event wrong" % (self.dev.phase, rel, show(data)), problems)
            return False
        return True

    def one(self, rel, data):
        dev = self.dev
        o = dev.rule(rel, data)
        st = self.stats.setdefault(rel, {"writes": 0, "applied": 0, "refused": 0,
                                         "either": 0, "fails": 0})
        st["writes"] += 1
        before = dev.snap
        if o is None:
            o = Outcome(EITHER, "no model for this file")
        exp, newstate, free = self.expect_files(o, before)
        n, err = dev.write(rel, data)
        if dev.fast:
            after = dict(before)
            after.update(dev.snapshot(dev.watch(rel)))
        else:
            after = dev.snapshot()
        evs = self.nl.drain() if self.nl else []
        ok = True
        want_n = min(len(data), STORE_MAX)
        what = "%s %s: %s (%s, %s)" % (dev.phase, rel, show(data), o.cls, o.why)
        if err is None:
            st["applied"] += 1
            if o.cls == INVALID:
                violation("accepted: " + o.why, rel)
                failed("%s: accepted (returned %d), expected %s" % (
                    what, n, "/".join(errno.errorcode[e] for e in o.errnos)),
                    self.diff(before, after))
                ok = False
            elif n != want_n:
                failed("%s: write returned %d, expected %d" % (what, n, want_n))
                ok = False
            elif o.why == "no model for this file":
                changed = [k for k in after if after[k] != before.get(k) and k != rel]
                if changed:
                    failed("%s: other files changed: %s" % (what, changed))
                    ok = False
            elif not self.same(exp, after, free):
                failed("%s: accepted, but the device does not show the value" % what,
                       self.diff(exp, after))
                ok = False
            if o.cls == EITHER:
                st["either"] += 1
        else:
            st["refused"] += 1
            if o.cls == VALID:
                violation("refused: " + o.why, rel)
                failed("%s: refused with %s, expected success" % (
                    what, errno.errorcode.get(err, err)))
                ok = False
            elif err not in o.errnos:
                failed("%s: refused with %s, expected %s" % (
                    what, errno.errorcode.get(err, err),
                    "/".join(errno.errorcode[e] for e in o.errnos)))
                ok = False
            if after != before:
                failed("%s: refused, but the device changed" % what,
                       self.diff(before, after))
                ok = False
        # An accepted invalid value is reported once, not again for the
        # event it sent.
        if ok and not self.check_event(rel, data, o, err is None, evs):
            ok = False
        if err is None and ok and "cfg" in o.state and dev.enabled:
            name = dev.read_uio_name()
            if name != dev.uio_name(newstate["cfg"]):
                failed("%s: uio name %s, expected %s" % (
                    what, show(name), show(dev.uio_name(newstate["cfg"]))))
                ok = False
        if not ok:
            st["fails"] += 1
        # Continue from what the device shows, so one problem is reported
        # once and does not spoil every later comparison.
        dev.snap = after
        dev.state = dev.load_state(after)
        if err is None:
            dev.learn_pr(after)
        return ok

    def check_cold(self, what):
        if self.dev.fast:
            hot = self.dev.snapshot()
            if hot != self.dev.snap:
                failed("%s %s: files not read after each write changed" % (
                    self.dev.phase, what), self.diff(self.dev.snap, hot))
                self.dev.snap = hot
                self.dev.state = self.dev.load_state(hot)
        cold = self.dev.snapshot(self.dev.cold)
        if cold != self.dev.cold_snap:
            failed("%s %s: files that no write may touch changed" % (self.dev.phase, what),
                   self.diff(self.dev.cold_snap, cold))
            self.dev.cold_snap = cold

    def run(self, rel, inputs):
        t0 = time.monotonic()
        for data in inputs:
            self.one(rel, data)
        self.check_cold("writes to " + rel)
        st = self.stats[rel]
        msg = "%s %s: %d writes (%d applied, %d refused, %d of the open cases applied) in %.1fs" % (
            self.dev.phase, rel, st["writes"], st["applied"], st["refused"],
            st["either"], time.monotonic() - t0)
        if st["fails"]:
            note(msg + ", %d wrong" % st["fails"])
        else:
            passed(msg)

    def probe_readonly(self, rel):
        before = self.dev.snap
        n, err = self.dev.write(rel, b"1")
        after = self.dev.snapshot()
        self.dev.snap = after
        if err is None:
            failed("%s %s is read-only but a write returned %d" % (self.dev.phase, rel, n))
        elif after != before:
            failed("%s %s: refused write changed the device" % (self.dev.phase, rel),
                   self.diff(before, after))
        else:
            passed("%s %s is read-only: write refused with %s" % (
                self.dev.phase, rel, errno.errorcode.get(err, err)))


def race(dev, nl, seconds):
    """Concurrent writers of dev_config and dev_size and readers of the
    UIO name; afterwards the name must match the attribute."""
    stop = time.monotonic() + seconds
    counts = {"a": 0, "b": 0, "size": 0, "reads": 0, "events": 0}
    errors = []
    size = dev.state["size"]

    def writer(tag):
        i = 0
        while time.monotonic() < stop:
            if tag == "size":
                rel, val = "attrib/dev_size", b"%d" % size
            else:
                rel, val = "attrib/dev_config", b"race-%s-%d" % (tag.encode(), i)
            n, err = dev.write(rel, val)
            if err is not None:
                errors.append("%s %s: %s" % (rel, val, errno.errorcode.get(err, err)))
            counts[tag] += 1
            i += 1

    def reader():
        while time.monotonic() < stop:
            dev.read_uio_name()
            dev.read("info")
            counts["reads"] += 1

    def drainer():
        while time.monotonic() < stop + 0.5:
            counts["events"] += len(nl.drain())
            time.sleep(0.01)

    threads = [threading.Thread(target=f, args=a) for f, a in (
        (writer, ("a",)), (writer, ("b",)), (writer, ("size",)),
        (reader, ()), (drainer, ()))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    counts["events"] += len(nl.drain())
    note("race: %d + %d dev_config writes, %d dev_size writes, %d reads, %d events" % (
        counts["a"], counts["b"], counts["size"], counts["reads"], counts["events"]))
    if errors:
        failed("race: %d writes failed, first: %s" % (len(errors), errors[0]))
    else:
        passed("race: every concurrent write succeeded")
    writes = counts["a"] + counts["b"] + counts["size"]
    if counts["events"] == writes:
        passed("race: one RECONFIG event per write (%d)" % writes)
    else:
        failed("race: %d RECONFIG events for %d writes" % (counts["events"], writes))
    cfg = dev.read("attrib/dev_config").rstrip(b"\n")
    name = dev.read_uio_name()
    if name == dev.uio_name(cfg):
        passed("race: uio name matches dev_config afterwards (%s)" % show(cfg))
    else:
        failed("race: uio name %s does not match dev_config %s" % (show(name), show(cfg)))
    info = dev.read("info")
    if b"Config: " + cfg + b" Size:" in info:
        passed("race: info shows the final dev_config")
    else:
        failed("race: info %s does not show dev_config %s" % (show(info, 200), show(cfg)))
    dev.snap = dev.snapshot()
    dev.state = dev.load_state(dev.snap)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dev", required=True)
    ap.add_argument("--phase", required=True, choices=("disabled", "enabled", "exported"))
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--random", type=int, default=40)
    ap.add_argument("--uio")
    ap.add_argument("--hba", type=int)
    ap.add_argument("--name")
    ap.add_argument("--final-control", default=None)
    ap.add_argument("--restore", action="append", default=[],
                    help="FILE=VALUE written (and checked) at the end")
    ap.add_argument("--race", type=float, default=0)
    ap.add_argument("--fast", action="store_true",
                    help="after each write read only the files it may change; "
                    "compare all files once per file under test")
    ap.add_argument("--global-max", type=int, default=None,
                    help="global_max_data_area_mb (default: the module's)")
    ap.add_argument("--only", default=None,
                    help="comma separated files: test only these")
    args = ap.parse_args()
    if args.phase != "disabled" and not (args.uio and args.hba is not None and args.name):
        ap.error("--uio, --hba and --name are needed once enabled")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    # Every phase and file draws from its own stream: adding inputs to one
    # does not change the others.
    note("phase %s, seed %d (TCMU_HARD_SEED=%d repeats it), %d random inputs per file"
         % (args.phase, seed, seed, args.random))

    global_max = args.global_max
    if global_max is None:
        with open("/sys/module/target_core_user/parameters/global_max_data_area_mb") as f:
            global_max = int(f.read())
    dev = Device(args.dev, args.phase, global_max, args.uio, args.hba, args.name)
    note("%d readable files in the snapshot; writable: %s; read-only: %s" % (
        len(dev.files), " ".join(dev.writable), " ".join(dev.readonly)))
    dev.state = dev.load_state(dev.snap)
    dev.fast = args.fast
    if dev.fast:
        note("--fast: after each write only the files it may change (and info) are read; "
             "every file is compared after each file under test")

    # The model must reproduce what the device shows before anything.
    exp = dict(dev.snap)
    exp.update(dev.render(dev.state, dev.snap))
    d = Runner.diff(exp, dev.snap)
    if d:
        failed("%s: the model does not match the device's initial state" % args.phase, d)
        out("# done")
        return 1
    passed("%s: model matches the initial state (info and attributes)" % args.phase)

    nl = None
    run = Runner(dev, nl)
    if dev.enabled:
        nl = Netlink()
        try:
            nl.setup()
        except OSError as e:
            failed("netlink listener: %s" % e)
            out("# done")
            return 1
        nl.drain()
        run.nl = nl
        passed("netlink: listening to TCM-USER group %d (family %d), no replies announced"
               % (nl.group, nl.family))
        note("device index %d, %s" % (run.dev_index, dev.uio))

    targets = ["control"] + [w for w in dev.writable]
    if args.only:
        only = args.only.split(",")
        note("only %s in this phase" % " ".join(only))
        targets = [t for t in targets if t in only]
    for rel in targets:
        rng = random.Random("%d/%s/%s" % (seed, args.phase, rel))
        gen = Gen(rng, global_max)
        if rel == "control":
            inputs = fixed_control(global_max)
            inputs += [gen.control_input() for _ in range(args.random * 3)]
        elif rel == "attrib/dev_config":
            inputs = fixed_strings()
            inputs += [gen.string_input() for _ in range(args.random)]
        else:
            if rel in OWN_NUMBERS:
                _k, lo, hi = OWN_NUMBERS[rel]
            elif rel == "attrib/dev_size":
                lo, hi = 1, U64_MAX
            elif rel == "action/reset_ring":
                lo, hi = 1, 2
            elif rel == "action/free_kept_buf":
                lo, hi = 1, 65535
            else:
                lo, hi = 0, 1
            inputs = fixed_numbers(lo, hi)
            if rel in CORE_BOOLS:
                inputs += [b"y", b"Y", b"n", b"N", b"t", b"f", b"on", b"On",
                           b"off", b"oFF", b"o", b"ox", b"yes", b"no", b"2",
                           b"1junk", b"\n1"]
            inputs += [gen.number_input(lo, hi) for _ in range(args.random)]
        if rel not in OWN_NUMBERS and rel not in OWN_SPECIAL and rel not in CORE_BOOLS:
            note("%s: no model for this file: only EINVAL-or-success and "
                 "no side effects are checked" % rel)
        run.run(rel, inputs)
        if rel == "attrib/nl_reply_supported" and dev.enabled:
            # A value > 0 makes every later RECONFIG wait for a reply this
            # listener never sends (as upstream): put 0 back.
            run.one(rel, b"0")

    for rel in dev.readonly:
        if not args.only or rel in args.only.split(","):
            run.probe_readonly(rel)

    if args.race and nl:
        race(dev, nl, args.race)
        run.check_cold("concurrent writes")

    # Leave the device in a known state for the next phase.
    if args.final_control is not None:
        before_ok = FAILS
        run.one("control", args.final_control.encode())
        if FAILS == before_ok:
            passed("%s: final control %s accepted and shown" % (args.phase, args.final_control))
    for r in args.restore:
        rel, val = r.split("=", 1)
        n, err = dev.write(rel, val.encode())
        if err is not None:
            failed("%s: restoring %s=%s: %s" % (args.phase, rel, val, errno.errorcode.get(err, err)))
    if nl:
        nl.drain()

    for why in sorted(VIOLATIONS):
        note("rule broken by the kernel: %s: %s" % (why, " ".join(sorted(VIOLATIONS[why]))))
    total = sum(s["writes"] for s in run.stats.values())
    note("%s: %d writes in all, %d failed checks" % (args.phase, total, FAILS))
    out("# done")
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
