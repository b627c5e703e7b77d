#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Host test for tools/testing/tcmu-handler: builds the handler out of tree,
# runs its built-in self-test (plain, and with ASan/UBSan when the compiler
# has them), checks the command line, and runs the real binary end to end
# against a fake sysfs/configfs tree whose "UIO device" is a plain file laid
# out like the TCMU shared region (TCMU_HANDLER_SYSROOT test hook).
#
# Run from anywhere; exit 0 when everything passed.

set -u

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
SRC=$ROOT/tools/testing/tcmu-handler
WORK=$(mktemp -d /tmp/tcmu-handler-test.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

pass=0
fail=0
skip=0

ok()   { echo "ok - $*"; pass=$((pass + 1)); }
bad()  { echo "not ok - $*"; fail=$((fail + 1)); }
skp()  { echo "ok - $* # SKIP"; skip=$((skip + 1)); }

finish() {
	echo "tcmu-handler-selftest: $pass passed, $fail failed, $skip skipped"
	[ "$fail" -eq 0 ]
	exit
}

# ---- build ----
if make -s -C "$SRC" O="$WORK" >"$WORK/build.log" 2>&1; then
	ok "build (-Wall -Wextra -Werror)"
else
	cat "$WORK/build.log"
	bad "build"
	finish
fi
BIN=$WORK/tcmu-handler

# ---- built-in self-test ----
if timeout 600 "$BIN" --selftest >"$WORK/st.log" 2>&1; then
	ok "selftest: $(tail -n 1 "$WORK/st.log")"
else
	cat "$WORK/st.log"
	bad "selftest"
fi

if echo 'int main(void){return 0;}' |
   gcc -x c -fsanitize=address,undefined -o "$WORK/san-probe" - \
	>/dev/null 2>&1; then
	if make -s -C "$SRC" O="$WORK" sanitize >"$WORK/san.log" 2>&1; then
		ok "selftest under ASan+UBSan"
	else
		tail -n 40 "$WORK/san.log"
		bad "selftest under ASan+UBSan"
	fi
else
	skp "sanitizers not available"
fi

# ---- command line ----
expect_rc() {
	local want=$1 what=$2
	shift 2
	"$@" >"$WORK/cli.out" 2>&1
	local rc=$?
	if [ "$rc" -eq "$want" ]; then
		ok "cli: $what (exit $rc)"
	else
		cat "$WORK/cli.out"
		bad "cli: $what: exit $rc, expected $want"
	fi
}

expect_rc 0 "--help" "$BIN" --help
expect_rc 1 "no device" "$BIN"
expect_rc 1 "both --uio and --name" "$BIN" --uio /dev/uio0 --name x
expect_rc 1 "bad --fuzz seed" "$BIN" --name x --fuzz=seven
expect_rc 1 "unknown --fuzz-ops action" "$BIN" --name x --fuzz=7 \
	--fuzz-ops tail_outside,nonsense
expect_rc 1 "bad --fuzz-rate" "$BIN" --name x --fuzz=7 --fuzz-rate -1
expect_rc 1 "bad --fuzz-recover" "$BIN" --name x --fuzz=7 --fuzz-recover -2
expect_rc 1 "bad \$TCMU_FUZZ_RATE" env TCMU_FUZZ_RATE=fast "$BIN" --name x
if "$BIN" --help 2>&1 | grep -q '^  tail_unaligned '; then
	ok "cli: --help lists the fuzz actions"
else
	bad "cli: --help lists the fuzz actions"
fi
expect_rc 1 "bad --sense" "$BIN" --name x --sense 5/zz/0
expect_rc 1 "bad --ignore" "$BIN" --name x --ignore 0x100
expect_rc 1 "bad --threads" "$BIN" --name x --threads 0
expect_rc 1 "bad --short-read" "$BIN" --name x --short-read 0
expect_rc 1 "bad --wait" "$BIN" --name x --wait soon
start=$(date +%s%N)
expect_rc 1 "missing device after --wait" \
	env TCMU_HANDLER_SYSROOT="$WORK/empty" "$BIN" --name nope --wait 0.5
elapsed=$((($(date +%s%N) - start) / 1000000))
if [ "$elapsed" -ge 450 ] && [ "$elapsed" -lt 5000 ]; then
	ok "--wait 0.5 waited ${elapsed} ms"
else
	bad "--wait 0.5 waited ${elapsed} ms"
fi

# ---- end to end through a fake sysroot ----
if ! command -v python3 >/dev/null; then
	skp "end to end: python3 missing"
	finish
fi

cat >"$WORK/fake.py" <<'PYEOF'
# Plays the kernel: lays out a TCMU region in a file, queues entries,
# and checks what the handler wrote back. Layout per the uapi header.
import mmap, os, signal, struct, subprocess, sys, time

CMDR_OFF, CMDR_SIZE, DATA = 128, 8192, 65536
SIZE = CMDR_OFF + CMDR_SIZE + DATA
HEAD, TAIL = 12, 64
IOV_OFF, ENTRY_MIN = 48, 112

root, binary, mode = sys.argv[1], sys.argv[2], sys.argv[3]
uio = os.path.join(root, "sys/class/uio/uio7")
cfs = os.path.join(root, "sys/kernel/config/target/core/user_3/disk0")
for d in (os.path.join(uio, "maps/map0"), os.path.join(cfs, "attrib"),
          os.path.join(cfs, "action"), os.path.join(root, "dev")):
    os.makedirs(d, exist_ok=True)

def put(path, text):
    with open(path, "w") as f:
        f.write(text)

put(os.path.join(uio, "name"), "tcm-user/3/disk0/file/with/slashes\n")
put(os.path.join(uio, "maps/map0/size"), "0x%016x\n" % SIZE)
put(os.path.join(cfs, "attrib/dev_size"), "4194304\n")
put(os.path.join(cfs, "attrib/block_size"), "4096\n")
put(os.path.join(cfs, "attrib/hw_max_sectors"), "1024\n")
put(os.path.join(cfs, "action/free_kept_buf"), "")

region = os.path.join(root, "dev/uio7")
with open(region, "wb") as f:
    f.write(b"\0" * SIZE)
fd = os.open(region, os.O_RDWR)
m = mmap.mmap(fd, SIZE)
struct.pack_into("<HHII", m, 0, 1 if mode == "badversion" else 2, 0xf,
                 CMDR_OFF, CMDR_SIZE)

head = 0
data_next = CMDR_OFF + CMDR_SIZE
entries = {}

def cmd(cmd_id, cdb, length=0, out=None):
    global head, data_next
    iovs = []
    if length:
        # two uneven iovecs per buffer to exercise the gather/scatter
        a = length // 3 or length
        iovs.append((data_next, a))
        if length - a:
            iovs.append((data_next + a + 512, length - a))
        data_next += length + 1024
    base = max(IOV_OFF + 16 * len(iovs), ENTRY_MIN)
    size = base + ((len(cdb) + 7) & ~7)
    off = CMDR_OFF + head
    m[off:off + size] = b"\0" * size
    struct.pack_into("<IHBB", m, off, size | 1, cmd_id, 0, 0)
    struct.pack_into("<III4xQ", m, off + 8, len(iovs), 0, 0, off + base)
    for i, (o, l) in enumerate(iovs):
        struct.pack_into("<QQ", m, off + IOV_OFF + 16 * i, o, l)
    m[off + base:off + base + len(cdb)] = bytes(cdb)
    if out is not None:
        pos = 0
        for o, l in iovs:
            m[o:o + l] = out[pos:pos + l]
            pos += l
    entries[cmd_id] = (off, iovs)
    head += size

def tmr(kind, ids):
    global head
    size = (32 + 2 * len(ids) + 7) & ~7
    off = CMDR_OFF + head
    m[off:off + size] = b"\0" * size
    struct.pack_into("<IHBB", m, off, size | 2, 0, 0, 0)
    struct.pack_into("<BxxxI", m, off + 8, kind, len(ids))
    for i, v in enumerate(ids):
        struct.pack_into("<H", m, off + 32 + 2 * i, v)
    head += size

def publish():
    struct.pack_into("<I", m, HEAD, head)

def tail():
    return struct.unpack_from("<I", m, TAIL)[0]

def rsp(cmd_id):
    off = entries[cmd_id][0]
    _, got_id, _, uflags = struct.unpack_from("<IHBB", m, off)
    status, read_len = struct.unpack_from("<BxxxI", m, off + 8)
    sense = bytes(m[off + 16:off + 16 + 18])
    return got_id, uflags, status, read_len, sense

def data_in(cmd_id, n):
    out = b""
    for o, l in entries[cmd_id][1]:
        out += bytes(m[o:o + l])
    return out[:n]

def wait_tail(want, secs=10):
    end = time.time() + secs
    while time.time() < end:
        if tail() == want:
            return True
        time.sleep(0.01)
    return False

errors = []
def check(cond, what):
    if not cond:
        errors.append(what)

pattern = bytes((i * 7 + 3) & 0xff for i in range(4096))
env = dict(os.environ, TCMU_HANDLER_SYSROOT=root)
files = {k: os.path.join(root, k) for k in ("status", "pid", "tmr", "kept")}

if mode == "main":
    cmd(1, [0x2a, 0, 0, 0, 0, 3, 0, 0, 1, 0], 4096, pattern)   # WRITE(10)
    cmd(2, [0x28, 0, 0, 0, 0, 3, 0, 0, 1, 0], 4096)            # READ(10)
    tmr(5, [2, 9])
    cmd(3, [0x25] + [0] * 9, 8)                                # READ CAP(10)
    cmd(4, [0x12, 0, 0, 0, 255, 0], 255)                       # INQUIRY
    cmd(5, [0xd0] + [0] * 9)                                   # unknown
    publish()
    p = subprocess.Popen([binary, "--name", "disk0", "--wait", "5",
                          "--read-len", "--keep-buf",
                          "--kept-log", files["kept"],
                          "--status", files["status"],
                          "--pidfile", files["pid"],
                          "--tmr-log", files["tmr"]], env=env)
    check(wait_tail(head), "tail %d never reached head %d" % (tail(), head))
    end = time.time() + 5
    while not os.path.exists(files["pid"]) and time.time() < end:
        time.sleep(0.01)
    check(open(files["pid"]).read().strip() == str(p.pid), "pidfile")
    got_id, uflags, status, read_len, sense = rsp(1)
    check((got_id, status) == (1, 0), "WRITE status %d" % status)
    check(uflags & 0x4, "KEEP_BUF missing on WRITE")
    got_id, uflags, status, read_len, sense = rsp(2)
    check((got_id, status) == (2, 0), "READ status")
    check(uflags & 0x2 and read_len == 4096, "READ read_len %d" % read_len)
    check(data_in(2, 4096) == pattern, "READ data differs from WRITE")
    got_id, uflags, status, read_len, sense = rsp(3)
    last, bs = struct.unpack(">II", data_in(3, 8))
    check((last, bs) == (1023, 4096),
          "READ CAPACITY from configfs: %d/%d" % (last, bs))
    got_id, uflags, status, read_len, sense = rsp(4)
    inq = data_in(4, 36)
    check(status == 0 and inq[8:16] == b"TCMUTEST" and read_len == 36,
          "INQUIRY %r read_len %d" % (inq[8:16], read_len))
    got_id, uflags, status, read_len, sense = rsp(5)
    check(status == 2 and sense[0] == 0x70 and sense[2] == 5 and
          sense[7] == 0x0a and sense[12] == 0x20 and sense[13] == 0,
          "unknown opcode sense %r" % sense)
    check(open(files["tmr"]).read() == "TMR type=5 ids=2,9\n", "tmr log")
    check(open(files["kept"]).read().split() == ["1", "2", "3", "4", "5"],
          "kept log")
    os.kill(p.pid, signal.SIGUSR1)
    end = time.time() + 5
    while not os.path.exists(files["status"]) and time.time() < end:
        time.sleep(0.01)
    st = dict(l.strip().split("=", 1) for l in open(files["status"]))
    check(st.get("commands") == "5" and st.get("completed") == "5" and
          st.get("tmr") == "1" and st.get("op_0x28") == "1" and
          st.get("bytes_out") == "4096", "status file %r" % st)
    os.kill(p.pid, signal.SIGTERM)
    try:
        rc = p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
        rc = "hung"
    check(rc == 0, "exit after SIGTERM: %s" % rc)
    check(not os.path.exists(files["pid"]), "pidfile left behind")
elif mode == "exit-after":
    for i in range(1, 4):
        cmd(i, [0x00] * 6)                                     # TUR
    publish()
    first_end = entries[2][0] - CMDR_OFF
    rc = subprocess.run([binary, "--uio", region, "--exit-after", "1"],
                        env=env, timeout=20).returncode
    check(rc == 0, "--exit-after exit code %d" % rc)
    check(tail() == first_end, "tail %d after one completion, want %d" %
          (tail(), first_end))
elif mode == "badversion":
    rc = subprocess.run([binary, "--uio", region, "--size", "1M"],
                        env=env, timeout=20).returncode
    check(rc == 1, "mailbox version 1 accepted (exit %d)" % rc)

for e in errors:
    print("  " + e)
sys.exit(1 if errors else 0)
PYEOF

for mode in main exit-after badversion; do
	rm -rf "$WORK/root"
	mkdir -p "$WORK/root"
	if timeout 60 python3 "$WORK/fake.py" "$WORK/root" "$BIN" "$mode" \
		>"$WORK/e2e.log" 2>&1; then
		ok "end to end: $mode"
	else
		cat "$WORK/e2e.log"
		bad "end to end: $mode"
	fi
done

finish
