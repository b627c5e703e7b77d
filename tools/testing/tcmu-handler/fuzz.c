// SPDX-License-Identifier: GPL-2.0
/*
 * tcmu-handler --fuzz: a hostile handler.
 *
 * The handler keeps serving its device, but now and then (at a mean rate
 * of --fuzz-rate per second) it does something a correct handler never
 * does, picked at random from the actions below. Global actions run in
 * the main loop between two passes over the ring; completion actions
 * replace the normal completion of the next finished command.
 *
 * When an action may have left the ring broken in the kernel's eyes (or
 * our own view of the ring no longer makes sense), the handler resets it
 * through configfs action/reset_ring after a random delay of up to
 * --fuzz-recover milliseconds, forgets every command it held and carries
 * on from the empty ring. With --fuzz-recover -1 it leaves that to
 * whoever watches the device, who resets the ring and sends SIGUSR2.
 *
 * Faults on the shared region (SIGBUS on data pages no command owns) are
 * expected here: they are caught with sigsetjmp around every access the
 * fuzzer makes on purpose and around command execution, and counted.
 *
 * All fuzzer state is protected by h->lock; global actions run in the
 * main thread only, and those that replace the mapping or the file
 * descriptor first wait until the workers are idle (only the main thread
 * hands them work).
 */
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "tcmu-handler.h"

enum fz_kind { FZ_GLOBAL, FZ_COMPL };

/* flags */
#define FZ_BREAKS	0x1	/* may break the ring: reset it afterwards */
#define FZ_DEV		0x2	/* needs the real uio device (fd, mmap) */
#define FZ_CFS		0x4	/* needs the configfs directory */

enum {
	/* global */
	OP_TAIL_OUTSIDE, OP_TAIL_UNALIGNED, OP_TAIL_BEYOND_HEAD,
	OP_TAIL_BACKWARDS, OP_TAIL_INSIDE, OP_TAIL_FORWARD, OP_TAIL_RANDOM,
	OP_HEAD, OP_MAILBOX, OP_RING_SCRIBBLE, OP_TOUCH, OP_REMAP,
	OP_PARTIAL_UNMAP, OP_BAD_MMAP, OP_REOPEN, OP_ODD_IO, OP_FORK,
	OP_RESET, OP_BLOCK, OP_FREE_KEPT_BOGUS,
	/* completion */
	OP_LEN, OP_BAD_OP, OP_UFLAGS, OP_KFLAGS, OP_STATUS, OP_READ_LEN,
	OP_UNKNOWN_ID, OP_REPEAT, OP_STALE_ID, OP_OTHER_ID, OP_DROP, OP_KEEP,
	OP_KEEP_TWICE, OP_DATA,
	OP_COUNT
};

static const struct fz_op {
	const char *name;
	enum fz_kind kind;
	unsigned int flags;
	const char *help;
} fz_ops[OP_COUNT] = {
	[OP_TAIL_OUTSIDE] = { "tail_outside", FZ_GLOBAL, FZ_BREAKS,
		"cmd_tail at or beyond the end of the ring" },
	[OP_TAIL_UNALIGNED] = { "tail_unaligned", FZ_GLOBAL, FZ_BREAKS,
		"cmd_tail not a multiple of 8" },
	[OP_TAIL_BEYOND_HEAD] = { "tail_beyond_head", FZ_GLOBAL, FZ_BREAKS,
		"cmd_tail in the free part of the ring, past cmd_head" },
	[OP_TAIL_BACKWARDS] = { "tail_backwards", FZ_GLOBAL, FZ_BREAKS,
		"cmd_tail moved back over completed entries" },
	[OP_TAIL_INSIDE] = { "tail_inside", FZ_GLOBAL, FZ_BREAKS,
		"cmd_tail in the middle of an entry" },
	[OP_TAIL_FORWARD] = { "tail_forward", FZ_GLOBAL, FZ_BREAKS,
		"cmd_tail = cmd_head without writing any completion" },
	[OP_TAIL_RANDOM] = { "tail_random", FZ_GLOBAL, FZ_BREAKS,
		"cmd_tail = 32 random bits" },
	[OP_HEAD] = { "head", FZ_GLOBAL, 0,
		"scribble on cmd_head (then put it back)" },
	[OP_MAILBOX] = { "mailbox", FZ_GLOBAL, 0,
		"scribble on version/flags/cmdr_off/cmdr_size" },
	[OP_RING_SCRIBBLE] = { "ring_scribble", FZ_GLOBAL, FZ_BREAKS,
		"random bytes over ring entries, taken or not" },
	[OP_TOUCH] = { "touch", FZ_GLOBAL, 0,
		"read or write a random data page (SIGBUS caught)" },
	[OP_REMAP] = { "remap", FZ_GLOBAL, FZ_DEV,
		"map the region again (new address or MAP_FIXED), unmap the old" },
	[OP_PARTIAL_UNMAP] = { "partial_unmap", FZ_GLOBAL, FZ_DEV,
		"unmap some pages of the region, then map it whole again" },
	[OP_BAD_MMAP] = { "bad_mmap", FZ_GLOBAL, FZ_DEV,
		"mmap with bad offset/size, MAP_PRIVATE, mremap to grow" },
	[OP_REOPEN] = { "reopen", FZ_GLOBAL, FZ_DEV,
		"close and reopen the uio device, unmap and map again" },
	[OP_ODD_IO] = { "odd_io", FZ_GLOBAL, FZ_DEV,
		"read()/write() of sizes other than 4 on the uio device" },
	[OP_FORK] = { "fork", FZ_GLOBAL, FZ_DEV,
		"a child inherits the mapping, touches it and exits" },
	[OP_RESET] = { "reset", FZ_GLOBAL, 0,
		"action/reset_ring while the ring is healthy" },
	[OP_BLOCK] = { "block", FZ_GLOBAL, FZ_CFS,
		"action/block_dev 1, then 0 a few ms later" },
	[OP_FREE_KEPT_BOGUS] = { "free_kept_bogus", FZ_GLOBAL, FZ_CFS,
		"action/free_kept_buf with ids holding no kept buffer" },
	[OP_LEN] = { "len", FZ_COMPL, 0,
		"completion slot length 0, huge or unaligned" },
	[OP_BAD_OP] = { "bad_op", FZ_COMPL, 0,
		"completion slot opcode PAD, TMR or undefined" },
	[OP_UFLAGS] = { "uflags", FZ_COMPL, 0, "random hdr.uflags" },
	[OP_KFLAGS] = { "kflags", FZ_COMPL, 0, "random hdr.kflags" },
	[OP_STATUS] = { "status", FZ_COMPL, 0,
		"random SCSI status and sense bytes" },
	[OP_READ_LEN] = { "read_len", FZ_COMPL, 0,
		"READ_LEN with 0, 1, beyond the data, or random" },
	[OP_UNKNOWN_ID] = { "unknown_id", FZ_COMPL, FZ_BREAKS,
		"completion for cmd_id 0, 65535 or random" },
	[OP_REPEAT] = { "repeat", FZ_COMPL, FZ_BREAKS,
		"the same completion in two slots" },
	[OP_STALE_ID] = { "stale_id", FZ_COMPL, FZ_BREAKS,
		"completion for an id completed before" },
	[OP_OTHER_ID] = { "other_id", FZ_COMPL, FZ_BREAKS,
		"completion under the id of another taken command" },
	[OP_DROP] = { "drop", FZ_COMPL, 0,
		"never complete the command (the kernel times it out)" },
	[OP_KEEP] = { "keep", FZ_COMPL, 0,
		"complete with KEEP_BUF (freed later through configfs)" },
	[OP_KEEP_TWICE] = { "keep_twice", FZ_COMPL, FZ_BREAKS,
		"a second completion for a kept command" },
	[OP_DATA] = { "data", FZ_COMPL, 0,
		"random bytes over the command's data before completing" },
};

_Static_assert(OP_COUNT <= TH_FUZZ_MAX_OPS, "TH_FUZZ_MAX_OPS too small");

#define FZ_IDS		64
#define FZ_REPICK_SEC	2.0

struct th_fuzz {
	uint64_t seed;
	uint64_t rng;
	bool enabled[OP_COUNT];
	double rate;
	uint64_t max;
	uint64_t done;
	int recover_ms;

	double t0;		/* start, for the log */
	double next_at;		/* when the next action is due */
	int pending;		/* op picked, waiting for a chance; -1 none */
	double pending_since;
	double recover_at;	/* ring reset scheduled; 0 none */
	uint64_t trace;		/* hash of the actions so far */

	uint64_t count[OP_COUNT];
	uint64_t recovers, recover_fail, broken_seen;
	uint64_t sigbus, touch_ok, exec_faults, unexpected;
	uint64_t reopen_busy, kept_freed;

	uint16_t done_ids[FZ_IDS];
	unsigned int nd;
	uint16_t taken_ids[FZ_IDS];
	unsigned int nt;
	uint16_t kept[FZ_IDS];
	double kept_at[FZ_IDS];
	unsigned int nkept;

	bool mb_dirty;		/* version..cmdr_size scribbled on */
	double mb_restore_at;
	uint8_t mb_saved[12];	/* version, flags, cmdr_off, cmdr_size */
	bool waiting;		/* broken on our side, waiting for SIGUSR2 */
};

/* ---- helpers ---- */

static double fz_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t splitmix(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t rnd(struct th_fuzz *f)
{
	return splitmix(&f->rng);
}

static uint32_t rnd_below(struct th_fuzz *f, uint32_t n)
{
	return n ? (uint32_t)(rnd(f) % n) : 0;
}

static double rnd_unit(struct th_fuzz *f)
{
	return (double)(rnd(f) >> 11) / (double)(1ull << 53);
}

static void trace(struct th_fuzz *f, uint64_t v)
{
	f->trace = (f->trace ^ v) * 0x100000001b3ull;
}

static void fz_log(struct th_fuzz *f, int op, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void fz_log(struct th_fuzz *f, int op, const char *fmt, ...)
{
	char buf[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	th_log(0, "fuzz #%llu %.3f %s: %s\n", (unsigned long long)f->done + 1,
	       fz_now() - f->t0, op >= 0 ? fz_ops[op].name : "-", buf);
}

static void schedule_next(struct th_fuzz *f, double now)
{
	f->next_at = f->rate > 0 ? now + 2.0 * rnd_unit(f) / f->rate : 0;
}

static void schedule_recover(struct th_fuzz *f, double now)
{
	if (f->recover_ms < 0 || f->recover_at)
		return;
	f->recover_at = now + rnd_below(f, (uint32_t)f->recover_ms + 1) /
		1000.0;
	if (!f->recover_at)
		f->recover_at = 1e-9;
}

static void push_id(uint16_t *arr, unsigned int *n, uint16_t id)
{
	if (*n < FZ_IDS) {
		arr[(*n)++] = id;
	} else {
		memmove(arr, arr + 1, (FZ_IDS - 1) * sizeof(*arr));
		arr[FZ_IDS - 1] = id;
	}
}

static void drop_id(uint16_t *arr, unsigned int *n, uint16_t id)
{
	unsigned int i;

	for (i = 0; i < *n; i++) {
		if (arr[i] == id) {
			memmove(arr + i, arr + i + 1,
				(*n - i - 1) * sizeof(*arr));
			(*n)--;
			return;
		}
	}
}

/* ---- faults ---- */

static __thread sigjmp_buf *volatile fz_env;	/* volatile: see guarded() */
static uint8_t *volatile fz_base;	/* for the report of a stray fault */
static volatile uint64_t fz_size;

static void on_fault(int sig, siginfo_t *si, void *uc)
{
	void *bt[32];
	char buf[200];
	int n;

	(void)uc;
	if (fz_env)
		siglongjmp(*fz_env, sig);
	/* not ours: say where, then die of it as without the handler */
	n = snprintf(buf, sizeof(buf),
		     "tcmu-handler[%d]: fuzz: unexpected signal %d at %p (region %p + %#llx), backtrace:\n",
		     (int)getpid(), sig, si->si_addr, (void *)fz_base,
		     (unsigned long long)fz_size);
	if (n > 0 && write(2, buf, (size_t)n) < 0)
		n = 0;
	n = backtrace(bt, 32);
	backtrace_symbols_fd(bt, n, 2);
	signal(sig, SIG_DFL);
}

static void install_fault_handler(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_fault;
	sa.sa_flags = SA_SIGINFO | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
	sigaction(SIGSEGV, &sa, NULL);
}

/*
 * Run fn(arg) with faults on the shared region caught. Returns 0, or the
 * signal number (SIGBUS, SIGSEGV) that cut it short.
 */
static int guarded(void (*fn)(void *), void *arg)
{
	sigjmp_buf env;
	sigjmp_buf *volatile prev = fz_env;
	int sig;

	sig = sigsetjmp(env, 1);
	if (!sig) {
		fz_env = &env;
		fn(arg);
	}
	fz_env = prev;
	return sig;
}

struct touch_arg {
	volatile uint8_t *p;
	bool write;
	uint8_t val;
};

static void touch_one(void *arg)
{
	struct touch_arg *t = arg;

	if (t->write)
		*t->p = t->val;
	else
		(void)*t->p;
}

/* Read or write one byte of the shared region; 0 or the signal raised. */
int th_fuzz_touch(volatile uint8_t *p, bool write, uint8_t val)
{
	struct touch_arg t = { p, write, val };

	return guarded(touch_one, &t);
}

struct fill_arg {
	struct th *h;
	const struct th_cmd *c;
	bool bidi;
	uint64_t x;
};

static int fill_seg(uint8_t *p, uint64_t len, uint64_t pos, void *arg)
{
	uint64_t *x = arg, i;

	(void)pos;
	for (i = 0; i < len; i++)
		p[i] = (uint8_t)splitmix(x);
	return 0;
}

static void fill_all(void *arg)
{
	struct fill_arg *a = arg;

	th_for_each_seg(a->h, a->c, a->bidi, 0, th_data_len(a->c, a->bidi),
			fill_seg, &a->x);
}

/* Random bytes over a command's data; returns the signal it raised. */
static int fill_cmd(struct th *h, const struct th_cmd *c, bool bidi,
		    uint64_t seed)
{
	struct fill_arg a = { h, c, bidi, seed };

	return guarded(fill_all, &a);
}

struct exec_arg {
	struct th *h;
	struct th_cmd *c;
};

static void exec_one(void *arg)
{
	struct exec_arg *a = arg;

	th_scsi_exec(a->h, a->c);
}

void th_fuzz_exec(struct th *h, struct th_cmd *c)
{
	struct exec_arg a = { h, c };
	int sig = guarded(exec_one, &a);

	if (!sig)
		return;
	pthread_mutex_lock(&h->lock);
	h->fuzz->exec_faults++;
	pthread_mutex_unlock(&h->lock);
	th_info("fuzz: signal %d while executing cmd %u\n", sig, c->cmd_id);
	c->uflags = 0;
	c->read_len = 0;
	th_set_sense(c, SK_MEDIUM_ERROR, 0x11, 0);
}

/* ---- options ---- */

void th_fuzz_usage(FILE *f)
{
	int i;

	fprintf(f, "fuzz actions (--fuzz-ops NAME,-NAME,global,completion,breaking,all):\n");
	for (i = 0; i < OP_COUNT; i++)
		fprintf(f, "  %-17s %s%s\n", fz_ops[i].name, fz_ops[i].help,
			fz_ops[i].flags & FZ_BREAKS ? " [breaks]" : "");
}

static bool group_has(const char *g, int op)
{
	if (!strcmp(g, "all"))
		return true;
	if (!strcmp(g, "global"))
		return fz_ops[op].kind == FZ_GLOBAL;
	if (!strcmp(g, "completion"))
		return fz_ops[op].kind == FZ_COMPL;
	if (!strcmp(g, "breaking"))
		return fz_ops[op].flags & FZ_BREAKS;
	if (!strcmp(g, "tail"))
		return !strncmp(fz_ops[op].name, "tail_", 5);
	return !strcmp(g, fz_ops[op].name);
}

/*
 * "a,b,-c": the named actions or groups; a list that starts with "-"
 * starts from all. Returns 0, or -1 with a message in err.
 */
int th_fuzz_parse_ops(const char *list, bool *enabled, char *err,
		      size_t errlen)
{
	char *copy, *tok, *save = NULL;
	int i, ret = 0;

	for (i = 0; i < OP_COUNT; i++)
		enabled[i] = !list || !*list || list[0] == '-';
	if (!list || !*list)
		return 0;
	copy = strdup(list);
	if (!copy) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (tok = strtok_r(copy, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		bool on = *tok != '-';
		const char *name = on ? tok : tok + 1;
		bool any = false;

		for (i = 0; i < OP_COUNT; i++) {
			if (group_has(name, i)) {
				enabled[i] = on;
				any = true;
			}
		}
		if (!any) {
			snprintf(err, errlen, "unknown fuzz action '%s'", name);
			ret = -1;
			break;
		}
	}
	free(copy);
	return ret;
}

int th_fuzz_init(struct th *h)
{
	struct th_fuzz *f;
	char err[128];
	int i, n = 0;

	f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	if (th_fuzz_parse_ops(h->opt.fuzz_ops, f->enabled, err, sizeof(err))) {
		th_err("--fuzz-ops: %s\n", err);
		free(f);
		return -1;
	}
	for (i = 0; i < OP_COUNT; i++) {
		if (!f->enabled[i])
			continue;
		if (((fz_ops[i].flags & FZ_DEV) && h->uio_fd < 0) ||
		    ((fz_ops[i].flags & FZ_CFS) && !h->cfs_dir[0]) ||
		    (i == OP_RESET && !h->reset)) {
			f->enabled[i] = false;
			continue;
		}
		n++;
	}
	if (!n) {
		th_err("--fuzz: no action left to do here\n");
		free(f);
		return -1;
	}
	f->seed = h->opt.fuzz_seed;
	f->rng = f->seed;
	f->rate = h->opt.fuzz_rate;
	f->max = h->opt.fuzz_max;
	f->recover_ms = h->opt.fuzz_recover_ms;
	f->pending = -1;
	f->trace = 0xcbf29ce484222325ull;
	f->t0 = fz_now();
	schedule_next(f, f->t0);
	h->fuzz = f;
	fz_base = h->base;
	fz_size = h->map_size;
	install_fault_handler();
	th_log(0, "fuzz: seed %llu, rate %g/s, %d actions, max %llu, recover %d ms\n",
	       (unsigned long long)f->seed, f->rate, n,
	       (unsigned long long)f->max, f->recover_ms);
	return 0;
}

void th_fuzz_fini(struct th *h)
{
	free(h->fuzz);
	h->fuzz = NULL;
}

/* ---- picking ---- */

/* Pick the next action if one is due. Lock held. */
static int pick(struct th *h, double now)
{
	struct th_fuzz *f = h->fuzz;
	int i, n = 0, k;

	if (f->max && f->done >= f->max)
		return -1;
	if (f->recover_at || h->broken)
		return -1;	/* let the ring be repaired first */
	if (f->pending >= 0 && now - f->pending_since < FZ_REPICK_SEC)
		return f->pending;
	if (f->pending < 0 && now < f->next_at)
		return -1;
	for (i = 0; i < OP_COUNT; i++)
		n += f->enabled[i];
	k = (int)rnd_below(f, (uint32_t)n);
	for (i = 0; i < OP_COUNT; i++) {
		if (!f->enabled[i])
			continue;
		if (!k--)
			break;
	}
	f->pending = i;
	f->pending_since = now;
	return i;
}

/* An action was carried out. Lock held. */
static void done(struct th *h, int op, double now)
{
	struct th_fuzz *f = h->fuzz;

	f->count[op]++;
	f->done++;
	f->pending = -1;
	trace(f, (uint64_t)op);
	schedule_next(f, now);
	if (fz_ops[op].flags & FZ_BREAKS)
		schedule_recover(f, now);
}

/* ---- configfs ---- */

static int cfs_write(struct th *h, const char *file, const char *val)
{
	char path[700];
	ssize_t n;
	int fd, ret = 0;

	snprintf(path, sizeof(path), "%s/%s", h->cfs_dir, file);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = write(fd, val, strlen(val));
	if (n < 0)
		ret = -errno;
	close(fd);
	return ret;
}

/* ---- recovery ---- */

/* Reset the ring and start over. Main thread, lock not held. */
static int recover(struct th *h, const char *why)
{
	struct th_fuzz *f = h->fuzz;
	int level, ret;

	th_workers_wait_idle(h);
	pthread_mutex_lock(&h->lock);
	level = 1 + (int)rnd_below(f, 2);
	ret = h->reset ? h->reset(h, level) : -ENOSYS;
	f->recover_at = 0;
	if (ret) {
		f->recover_fail++;
		pthread_mutex_unlock(&h->lock);
		th_err("fuzz: reset_ring %d (%s) failed: %s\n", level, why,
		       strerror(-ret));
		return ret;
	}
	th_ring_restart(h);
	f->recovers++;
	f->nkept = 0;
	f->nt = 0;
	f->mb_dirty = false;	/* the reset restored the mailbox */
	schedule_next(f, fz_now());
	trace(f, 0x1000u + (uint64_t)level);
	pthread_mutex_unlock(&h->lock);
	th_log(0, "fuzz: %.3f ring reset (level %d) after %s; head %u tail %u\n",
	       fz_now() - f->t0, level, why, th_mb_head(h), th_mb_tail(h));
	return 0;
}

/* th_service found the ring broken on our side. */
int th_fuzz_broken(struct th *h)
{
	struct th_fuzz *f = h->fuzz;
	bool first;

	pthread_mutex_lock(&h->lock);
	first = !f->waiting;
	if (first)
		f->broken_seen++;
	pthread_mutex_unlock(&h->lock);
	if (f->recover_ms >= 0 && first && !recover(h, "a broken ring"))
		return 0;
	pthread_mutex_lock(&h->lock);
	f->waiting = h->broken;
	pthread_mutex_unlock(&h->lock);
	if (first)
		th_log(0, "fuzz: ring broken on our side; waiting for SIGUSR2\n");
	return 0;
}

/* ---- global actions (main thread, lock not held) ---- */

static void raw_kick(struct th *h)
{
	if (h->kick)
		h->kick(h);
}

static uint32_t *mb_u32(struct th *h, size_t off)
{
	return (uint32_t *)(h->base + off);
}

#define MB_HEAD	offsetof(struct tcmu_mailbox, cmd_head)
#define MB_TAIL	offsetof(struct tcmu_mailbox, cmd_tail)

/*
 * Store a bad cmd_tail, kick, and put our tail back. Returns false when
 * the action does not apply right now. Lock held.
 */
static bool tail_action(struct th *h, int op)
{
	struct th_fuzz *f = h->fuzz;
	uint32_t size = h->cmdr_size, head = th_mb_head(h), v = 0, len;
	uint32_t free_bytes, k;

	if (head >= size || head % TCMU_OP_ALIGN_SIZE)
		return false;
	/* flush our own completions so the kernel's tail is ours */
	h->tail_moved = false;
	raw_kick(h);

	switch (op) {
	case OP_TAIL_OUTSIDE:
		switch (rnd_below(f, 4)) {
		case 0: v = size; break;
		case 1: v = 0xfffffff8u; break;
		case 2: v = size + 8 * (1 + rnd_below(f, 4096)); break;
		default: v = 0x80000000u; break;
		}
		break;
	case OP_TAIL_UNALIGNED:
		v = (h->tail + 1 + rnd_below(f, 7)) % size;
		if (!(v % 8))
			v = (v + 1) % size;
		break;
	case OP_TAIL_BEYOND_HEAD:
		/* the free part: from head (excluded) to our tail (excluded) */
		free_bytes = (h->tail + size - head) % size;
		if (!free_bytes)
			free_bytes = size;
		if (free_bytes < 16)
			return false;
		k = 1 + rnd_below(f, free_bytes / 8 - 1);
		v = (head + 8 * k) % size;
		break;
	case OP_TAIL_BACKWARDS:
		k = 1 + rnd_below(f, 64);
		v = (h->tail + size - (8 * k) % size) % size;
		if (v == h->tail)
			return false;
		break;
	case OP_TAIL_INSIDE:
		if (h->tail == head)
			return false;	/* no entry to land in */
		memcpy(&len, th_ring_ptr(h, h->tail), sizeof(len));
		len = tcmu_hdr_get_len(len);
		if (len <= 8 || len % 8 || len > size - h->tail)
			return false;
		v = h->tail + 8 * (1 + rnd_below(f, len / 8 - 1));
		break;
	case OP_TAIL_RANDOM:
		v = (uint32_t)rnd(f);
		break;
	case OP_TAIL_FORWARD:
		/* everything up to head "completed" as it stands */
		if (head == h->tail)
			return false;
		fz_log(f, op, "cmd_tail %u -> head %u (take %u)", h->tail, head,
		       h->take);
		th_ring_restart(h);	/* drop what we took */
		h->take = head;
		th_ring_set_tail(h, head);
		h->tail_moved = false;
		raw_kick(h);
		return true;
	}
	fz_log(f, op, "cmd_tail %u -> %u (head %u, size %u)", h->tail, v, head,
	       size);
	trace(f, v);
	th_mb_store_tail(h, v);
	raw_kick(h);
	th_mb_store_tail(h, h->tail);
	return true;
}

static bool head_action(struct th *h)
{
	struct th_fuzz *f = h->fuzz;
	uint32_t *p = mb_u32(h, MB_HEAD), old, bad;

	old = __atomic_load_n(p, __ATOMIC_ACQUIRE);
	bad = rnd_below(f, 2) ? (uint32_t)rnd(f) : old + 8;
	fz_log(f, OP_HEAD, "cmd_head %u -> %u", old, bad);
	__atomic_store_n(p, bad, __ATOMIC_RELEASE);
	raw_kick(h);
	/* put it back unless the kernel published a new head meanwhile */
	__atomic_compare_exchange_n(p, &bad, old, false, __ATOMIC_ACQ_REL,
				    __ATOMIC_ACQUIRE);
	return true;
}

static bool mailbox_action(struct th *h, double now)
{
	struct th_fuzz *f = h->fuzz;
	static const struct { size_t off, size; } fields[] = {
		{ offsetof(struct tcmu_mailbox, version), 2 },
		{ offsetof(struct tcmu_mailbox, flags), 2 },
		{ offsetof(struct tcmu_mailbox, cmdr_off), 4 },
		{ offsetof(struct tcmu_mailbox, cmdr_size), 4 },
	};
	uint8_t *mb = h->base;
	uint32_t which = 1 + rnd_below(f, 15), i;

	if (!f->mb_dirty) {
		memcpy(f->mb_saved, mb, sizeof(f->mb_saved));
		f->mb_dirty = true;
	}
	fz_log(f, OP_MAILBOX, "fields 0x%x", which);
	for (i = 0; i < 4; i++) {
		uint32_t v;

		if (!(which & (1u << i)))
			continue;
		/* little-endian: the low bytes fill a 2-byte field */
		v = (uint32_t)rnd(f);
		memcpy(mb + fields[i].off, &v, fields[i].size);
	}
	raw_kick(h);
	/* left like that for a while (or until a reset restores it) */
	f->mb_restore_at = now + rnd_below(f, 2000) / 1000.0;
	return true;
}

static bool scribble_action(struct th *h)
{
	struct th_fuzz *f = h->fuzz;
	uint32_t head = th_mb_head(h), from, span, off, n, i;
	const char *what;

	if (head >= h->cmdr_size)
		return false;
	switch (rnd_below(f, 3)) {
	case 0:		/* taken, not completed yet */
		from = h->tail;
		span = (h->take + h->cmdr_size - h->tail) % h->cmdr_size;
		what = "taken";
		break;
	case 1:		/* not taken yet */
		from = h->take;
		span = (head + h->cmdr_size - h->take) % h->cmdr_size;
		what = "untaken";
		break;
	default:	/* free */
		from = head;
		span = (h->tail + h->cmdr_size - head) % h->cmdr_size;
		what = "free";
		break;
	}
	if (!span)
		return false;
	off = (from + rnd_below(f, span)) % h->cmdr_size;
	n = 1 + rnd_below(f, 64);
	if (n > h->cmdr_size - off)
		n = h->cmdr_size - off;
	fz_log(f, OP_RING_SCRIBBLE, "%u bytes at %u (%s)", n, off, what);
	for (i = 0; i < n; i++)
		th_ring_ptr(h, off)[i] = (uint8_t)rnd(f);
	return true;
}

static bool touch_action(struct th *h)
{
	struct th_fuzz *f = h->fuzz;
	uint64_t span = h->map_size - h->data_off, off;
	bool wr = rnd_below(f, 2);
	int sig;

	if (!span)
		return false;
	off = h->data_off + (rnd(f) % span);
	sig = th_fuzz_touch(h->base + off, wr, (uint8_t)rnd(f));
	if (sig)
		f->sigbus++;
	else
		f->touch_ok++;
	fz_log(f, OP_TOUCH, "%s data page %llu: %s", wr ? "write" : "read",
	       (unsigned long long)((off - h->data_off) / 4096),
	       sig ? strsignal(sig) : "ok");
	return true;
}

static int map_region(struct th *h, void *at, int flags)
{
	void *p = mmap(at, h->map_size, PROT_READ | PROT_WRITE,
		       MAP_SHARED | flags, h->uio_fd, 0);

	if (p == MAP_FAILED)
		return -errno;
	h->base = p;
	fz_base = p;
	return 0;
}

static bool remap_action(struct th *h)
{
	struct th_fuzz *f = h->fuzz;
	uint8_t *old = h->base;
	int ret;

	if (rnd_below(f, 2)) {
		ret = map_region(h, NULL, 0);
		fz_log(f, OP_REMAP, "new mapping: %s",
		       ret ? strerror(-ret) : "ok");
		if (!ret)
			munmap(old, h->map_size);
	} else {
		ret = map_region(h, old, MAP_FIXED);
		fz_log(f, OP_REMAP, "MAP_FIXED over the old one: %s",
		       ret ? strerror(-ret) : "ok");
	}
	if (ret)
		f->unexpected++;
	return true;
}

static bool partial_unmap_action(struct th *h)
{
	struct th_fuzz *f = h->fuzz;
	uint64_t pages = h->map_size / 4096, first, n;
	int ret;

	first = rnd(f) % pages;
	n = 1 + rnd(f) % (pages - first < 64 ? pages - first : 64);
	ret = munmap(h->base + first * 4096, n * 4096) ? -errno : 0;
	fz_log(f, OP_PARTIAL_UNMAP, "pages %llu+%llu: %s",
	       (unsigned long long)first, (unsigned long long)n,
	       ret ? strerror(-ret) : "ok");
	ret = map_region(h, h->base, MAP_FIXED);
	if (ret) {
		f->unexpected++;
		th_err("fuzz: mapping the region again failed: %s\n",
		       strerror(-ret));
		ret = map_region(h, NULL, 0);
		if (ret) {
			th_err("fuzz: cannot map the region any more, exiting\n");
			_exit(6);
		}
	}
	return true;
}

static void bad_map(struct th *h, const char *what, size_t len, int prot,
		    int flags, off_t off, bool want_ok)
{
	struct th_fuzz *f = h->fuzz;
	void *p = mmap(NULL, len, prot, flags, h->uio_fd, off);
	int err = p == MAP_FAILED ? errno : 0;

	if (!err) {
		/* a private copy or an exec mapping: touch it, then drop it */
		th_fuzz_touch((uint8_t *)p, false, 0);
		if (prot & PROT_WRITE)
			th_fuzz_touch((uint8_t *)p + 64, true, 0xee);
		munmap(p, len);
	}
	if (!err != want_ok) {
		f->unexpected++;
		th_err("fuzz: bad_mmap %s: %s, expected %s\n", what,
		       err ? strerror(err) : "mapped",
		       want_ok ? "success" : "failure");
	}
	fz_log(f, OP_BAD_MMAP, "%s: %s", what, err ? strerror(err) : "mapped");
}

static bool bad_mmap_action(struct th *h)
{
	struct th_fuzz *f = h->fuzz;
	void *p;

	switch (rnd_below(f, 5)) {
	case 0:
		bad_map(h, "offset one page", h->map_size - 4096,
			PROT_READ | PROT_WRITE, MAP_SHARED, 4096, false);
		break;
	case 1:
		bad_map(h, "one page too long", h->map_size + 4096,
			PROT_READ | PROT_WRITE, MAP_SHARED, 0, false);
		break;
	case 2:
		bad_map(h, "MAP_PRIVATE", h->map_size, PROT_READ | PROT_WRITE,
			MAP_PRIVATE, 0, true);
		break;
	case 3:
		bad_map(h, "first page only", 4096, PROT_READ,
			MAP_SHARED, 0, true);
		break;
	default:
		p = mremap(h->base, h->map_size, h->map_size + 4096, 0);
		if (p != MAP_FAILED) {
			f->unexpected++;
			th_err("fuzz: mremap grew the region\n");
			mremap(p, h->map_size + 4096, h->map_size, 0);
		}
		fz_log(f, OP_BAD_MMAP, "mremap to grow: %s",
		       p == MAP_FAILED ? strerror(errno) : "grew");
		break;
	}
	return true;
}

/*
 * Close and reopen the device. The kernel sees the file released once the
 * last fd and mapping are gone (and, with handler_exit_policy 0, fails
 * what we held and empties the ring), so start over from its tail.
 */
static bool reopen_action(struct th *h)
{
	struct th_fuzz *f = h->fuzz;
	bool fd_first = rnd_below(f, 2);
	int fd = -1, i, ret;

	if (!h->uio_node)
		return false;
	if (fd_first) {
		close(h->uio_fd);
		h->uio_fd = -1;
		/* the mapping still pins the file: a second open is refused */
		fd = open(h->uio_node, O_RDWR | O_CLOEXEC);
		if (fd >= 0) {
			f->unexpected++;
			th_err("fuzz: reopen while still mapped succeeded\n");
			close(fd);
		} else if (errno == EBUSY) {
			f->reopen_busy++;
		}
		munmap(h->base, h->map_size);
	} else {
		munmap(h->base, h->map_size);
		close(h->uio_fd);
		h->uio_fd = -1;
	}
	for (i = 0; i < 200; i++) {
		fd = open(h->uio_node, O_RDWR | O_CLOEXEC);
		if (fd >= 0 || errno != EBUSY)
			break;
		usleep(10000);
	}
	if (fd < 0) {
		th_err("fuzz: reopen %s: %s; exiting\n", h->uio_node,
		       strerror(errno));
		_exit(6);
	}
	h->uio_fd = fd;
	ret = map_region(h, NULL, 0);
	if (ret) {
		th_err("fuzz: mmap after reopen: %s; exiting\n",
		       strerror(-ret));
		_exit(6);
	}
	fz_log(f, OP_REOPEN, "%s; head %u tail %u (ours were %u/%u)",
	       fd_first ? "fd closed first" : "unmapped first", th_mb_head(h),
	       th_mb_tail(h), h->tail, h->take);
	th_ring_restart(h);
	f->nkept = 0;
	f->nt = 0;
	return true;
}

static bool odd_io_action(struct th *h)
{
	static const size_t sizes[] = { 0, 1, 2, 3, 5, 7, 8, 16, 4096 };
	struct th_fuzz *f = h->fuzz;
	uint8_t buf[4096];
	size_t n = sizes[rnd_below(f, sizeof(sizes) / sizeof(sizes[0]))];
	bool wr = rnd_below(f, 2);
	ssize_t r;

	memset(buf, 0xff, sizeof(buf));
	r = wr ? write(h->uio_fd, buf, n) : read(h->uio_fd, buf, n);
	fz_log(f, OP_ODD_IO, "%s of %zu bytes: %zd%s%s", wr ? "write" : "read",
	       n, r, r < 0 ? " " : "", r < 0 ? strerror(errno) : "");
	if (r >= 0 && n) {
		f->unexpected++;
		th_err("fuzz: %s of %zu bytes on the uio device returned %zd\n",
		       wr ? "write" : "read", n, r);
	}
	return true;
}

static bool fork_action(struct th *h)
{
	struct th_fuzz *f = h->fuzz;
	uint64_t off = h->data_off + rnd(f) % (h->map_size - h->data_off);
	pid_t pid;
	int st = 0;

	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		volatile uint8_t sink;

		sink = h->base[0];
		(void)sink;
		th_fuzz_touch(h->base + off, false, 0);
		if (off & 1)
			raise(SIGKILL);
		_exit(0);
	}
	if (pid > 0)
		waitpid(pid, &st, 0);
	fz_log(f, OP_FORK, "child %d touched data page %llu, %s", (int)pid,
	       (unsigned long long)((off - h->data_off) / 4096),
	       pid < 0 ? "fork failed" :
	       WIFSIGNALED(st) ? "killed" : "exited");
	return true;
}

static bool block_action(struct th *h)
{
	struct th_fuzz *f = h->fuzz;
	int r1, r2;

	r1 = cfs_write(h, "action/block_dev", "1");
	usleep(1000 * rnd_below(f, 50));
	r2 = cfs_write(h, "action/block_dev", "0");
	fz_log(f, OP_BLOCK, "block %d, unblock %d", r1, r2);
	if (r2) {
		f->unexpected++;
		th_err("fuzz: could not unblock the device: %s\n",
		       strerror(-r2));
	}
	return true;
}

static bool free_kept_bogus_action(struct th *h)
{
	struct th_fuzz *f = h->fuzz;
	char buf[32];
	uint32_t id;
	int r;

	switch (rnd_below(f, 4)) {
	case 0: id = 0; break;
	case 1: id = 65535; break;
	case 2: id = 65536 + rnd_below(f, 1000); break;
	default:
		id = f->nt ? f->taken_ids[rnd_below(f, f->nt)] :
			     rnd_below(f, 65536);
		break;
	}
	snprintf(buf, sizeof(buf), "%u", id);
	r = cfs_write(h, "action/free_kept_buf", buf);
	fz_log(f, OP_FREE_KEPT_BOGUS, "id %u: %s", id,
	       r ? strerror(-r) : "accepted");
	return true;
}

/* Run a global action. Returns false if it does not apply now. */
static bool run_global(struct th *h, int op)
{
	struct th_fuzz *f = h->fuzz;
	double now = fz_now();
	bool ok = false;

	switch (op) {
	case OP_REMAP:
	case OP_PARTIAL_UNMAP:
	case OP_REOPEN:
	case OP_RESET:
		/* nobody may be using the mapping or the ring */
		th_workers_wait_idle(h);
		break;
	default:
		break;
	}
	if (op == OP_RESET) {
		pthread_mutex_lock(&h->lock);
		fz_log(f, op, "while healthy");
		done(h, op, now);
		pthread_mutex_unlock(&h->lock);
		recover(h, "a reset for its own sake");
		return true;
	}
	pthread_mutex_lock(&h->lock);
	switch (op) {
	case OP_TAIL_OUTSIDE:
	case OP_TAIL_UNALIGNED:
	case OP_TAIL_BEYOND_HEAD:
	case OP_TAIL_BACKWARDS:
	case OP_TAIL_INSIDE:
	case OP_TAIL_FORWARD:
	case OP_TAIL_RANDOM:
		ok = tail_action(h, op);
		break;
	case OP_HEAD: ok = head_action(h); break;
	case OP_MAILBOX: ok = mailbox_action(h, now); break;
	case OP_RING_SCRIBBLE: ok = scribble_action(h); break;
	case OP_TOUCH: ok = touch_action(h); break;
	case OP_REMAP: ok = remap_action(h); break;
	case OP_PARTIAL_UNMAP: ok = partial_unmap_action(h); break;
	case OP_BAD_MMAP: ok = bad_mmap_action(h); break;
	case OP_REOPEN: ok = reopen_action(h); break;
	case OP_ODD_IO: ok = odd_io_action(h); break;
	case OP_FORK: ok = fork_action(h); break;
	case OP_BLOCK: ok = block_action(h); break;
	case OP_FREE_KEPT_BOGUS: ok = free_kept_bogus_action(h); break;
	default: break;
	}
	if (ok)
		done(h, op, now);
	else
		f->pending = -1;	/* does not apply now: pick another */
	pthread_mutex_unlock(&h->lock);
	return ok;
}

/* Housekeeping between passes: kept buffers, the scribbled mailbox. */
static void maintain(struct th *h, double now)
{
	struct th_fuzz *f = h->fuzz;
	unsigned int i = 0;

	if (f->mb_dirty && now >= f->mb_restore_at) {
		memcpy(h->base, f->mb_saved, sizeof(f->mb_saved));
		f->mb_dirty = false;
	}
	while (i < f->nkept) {
		char buf[16];
		int r;

		if (now - f->kept_at[i] < 0.2 * (1 + i % 3)) {
			i++;
			continue;
		}
		snprintf(buf, sizeof(buf), "%u", f->kept[i]);
		r = h->free_kept ? h->free_kept(h, f->kept[i]) : -ENOSYS;
		if (!r)
			f->kept_freed++;
		th_dbg("fuzz: freeing kept cmd %u: %d\n", f->kept[i], r);
		memmove(f->kept + i, f->kept + i + 1,
			(f->nkept - i - 1) * sizeof(f->kept[0]));
		memmove(f->kept_at + i, f->kept_at + i + 1,
			(f->nkept - i - 1) * sizeof(f->kept_at[0]));
		f->nkept--;
	}
}

/* How long the main loop may sleep before the fuzzer needs it. */
int th_fuzz_poll_ms(struct th *h)
{
	struct th_fuzz *f = h->fuzz;
	double now = fz_now(), at = now + 1.0;
	unsigned int i;
	int ms;

	pthread_mutex_lock(&h->lock);
	if (f->recover_at && f->recover_at < at)
		at = f->recover_at;
	if (f->mb_dirty && f->mb_restore_at < at)
		at = f->mb_restore_at;
	for (i = 0; i < f->nkept; i++)
		if (f->kept_at[i] + 0.2 < at)
			at = f->kept_at[i] + 0.2;
	if (!f->max || f->done < f->max) {
		if (f->pending >= 0 && fz_ops[f->pending].kind == FZ_GLOBAL)
			at = now + 0.01;	/* retry soon; it did not apply */
		else if (f->pending < 0 && f->next_at < at)
			at = f->next_at;
	}
	pthread_mutex_unlock(&h->lock);
	ms = (int)((at - now) * 1000) + 1;
	return ms < 1 ? 1 : ms > 1000 ? 1000 : ms;
}

void th_fuzz_tick(struct th *h)
{
	struct th_fuzz *f = h->fuzz;
	double now = fz_now();
	bool rec;
	int op;

	pthread_mutex_lock(&h->lock);
	if (!h->broken)
		f->waiting = false;
	rec = f->recover_at && now >= f->recover_at;
	if (!rec)
		maintain(h, now);
	op = rec ? -1 : pick(h, now);
	pthread_mutex_unlock(&h->lock);
	if (rec) {
		recover(h, "a misbehaviour");
		return;
	}
	if (op >= 0 && fz_ops[op].kind == FZ_GLOBAL)
		run_global(h, op);
}

/* ---- completions (lock held) ---- */

void th_fuzz_taken(struct th *h, const struct th_cmd *c)
{
	push_id(h->fuzz->taken_ids, &h->fuzz->nt, c->cmd_id);
}

static void remember_kept(struct th_fuzz *f, uint16_t id, double now)
{
	if (f->nkept >= FZ_IDS)
		return;
	f->kept[f->nkept] = id;
	f->kept_at[f->nkept] = now;
	f->nkept++;
}

static uint8_t random_status(struct th_fuzz *f)
{
	static const uint8_t common[] = { 0x00, 0x02, 0x04, 0x08, 0x10, 0x14,
					  0x18, 0x22, 0x28, 0x30, 0x40 };

	if (rnd_below(f, 4))
		return common[rnd_below(f, sizeof(common))];
	return (uint8_t)rnd(f);
}

/*
 * Complete c, misbehaving if an action is due. Same contract as
 * th_ring_complete: true when a completion for c went to the ring.
 */
bool th_fuzz_complete(struct th *h, struct th_cmd *c)
{
	struct th_fuzz *f = h->fuzz;
	struct tcmu_cmd_entry *e;
	uint32_t slot, len, slot2, len2, next, v;
	double now;
	uint16_t id = c->cmd_id;
	bool second = false;
	int op;

	if (!th_ring_owns(h, c))
		return false;
	drop_id(f->taken_ids, &f->nt, c->cmd_id);
	now = fz_now();
	op = pick(h, now);
	if (op >= 0 && fz_ops[op].kind != FZ_COMPL)
		op = -1;
	if (op < 0)
		goto plain;

	switch (op) {
	case OP_DROP:
		fz_log(f, op, "cmd %u never completed", c->cmd_id);
		h->st.ignored++;
		done(h, op, now);
		return false;
	case OP_STALE_ID:
		if (!f->nd)
			goto not_now;
		id = f->done_ids[rnd_below(f, f->nd)];
		break;
	case OP_OTHER_ID:
		if (!f->nt)
			goto not_now;
		id = f->taken_ids[rnd_below(f, f->nt)];
		break;
	case OP_KEEP_TWICE:
		if (!f->nkept)
			goto not_now;
		id = f->kept[rnd_below(f, f->nkept)];
		second = true;
		break;
	case OP_UNKNOWN_ID:
		switch (rnd_below(f, 3)) {
		case 0: id = 0; break;
		case 1: id = 0xffff; break;
		default: id = (uint16_t)rnd(f); break;
		}
		break;
	case OP_REPEAT:
		second = true;
		break;
	case OP_UFLAGS:
		c->uflags = (uint8_t)rnd(f);
		c->read_len = (uint32_t)rnd(f);
		break;
	case OP_STATUS:
		c->status = random_status(f);
		break;
	case OP_READ_LEN:
		c->uflags |= TCMU_UFLAG_READ_LEN;
		switch (rnd_below(f, 5)) {
		case 0: c->read_len = 0; break;
		case 1: c->read_len = 1; break;
		case 2: c->read_len = (uint32_t)c->in_bytes + 1 +
				      rnd_below(f, 8192); break;
		case 3: c->read_len = 0xffffffffu; break;
		default: c->read_len = (uint32_t)rnd(f); break;
		}
		break;
	case OP_KEEP:
		c->uflags |= TCMU_UFLAG_KEEP_BUF;
		break;
	case OP_DATA:
		if (fill_cmd(h, c, false, rnd(f)) ||
		    (c->bidi_cnt && fill_cmd(h, c, true, rnd(f))))
			f->sigbus++;
		break;
	default:
		break;
	}

	if (!th_ring_rsp_slot(h, c, &slot, &len))
		return false;
	th_ring_write_rsp(h, slot, id, c);
	e = (struct tcmu_cmd_entry *)th_ring_ptr(h, slot);
	next = th_ring_advance(h, slot, len);

	switch (op) {
	case OP_STATUS: {
		uint32_t i;

		for (i = 0; i < sizeof(e->rsp.sense_buffer); i++)
			e->rsp.sense_buffer[i] = (char)rnd(f);
		if (rnd_below(f, 2))	/* a plausible header, sometimes */
			e->rsp.sense_buffer[0] = (char)(0x70 + rnd_below(f, 4));
		break;
	}
	case OP_LEN:
		switch (rnd_below(f, 4)) {
		case 0: v = 0; break;
		case 1: v = 0xfffffff8u; break;
		case 2: v = len + 8 * (1 + rnd_below(f, 64)); break;
		default: v = len | (1 + rnd_below(f, 7)); break;
		}
		v = (v & ~7u) | (v & 7u ? 0 : TCMU_OP_CMD);
		memcpy(&e->hdr.len_op, &v, sizeof(v));
		break;
	case OP_BAD_OP:
		v = len | (rnd_below(f, 2) ? 3 + rnd_below(f, 5) :
			   rnd_below(f, 2) ? TCMU_OP_PAD : TCMU_OP_TMR);
		memcpy(&e->hdr.len_op, &v, sizeof(v));
		break;
	case OP_KFLAGS:
		e->hdr.kflags = (uint8_t)rnd(f);
		break;
	default:
		break;
	}
	if (second && th_ring_next_slot(h, next, &slot2, &len2)) {
		/* REPEAT: c again; KEEP_TWICE: c's own completion */
		th_ring_write_rsp(h, slot2, c->cmd_id, c);
		next = th_ring_advance(h, slot2, len2);
	}
	if (op >= 0) {
		fz_log(f, op, "cmd %u op 0x%02x completed as id %u status 0x%02x uflags 0x%x read_len %u%s",
		       c->cmd_id, c->cdb[0], id, c->status, c->uflags,
		       c->read_len, second ? " (twice)" : "");
		trace(f, id);
		done(h, op, now);
	}
	if (c->uflags & TCMU_UFLAG_KEEP_BUF)
		remember_kept(f, c->cmd_id, now);
	th_ring_set_tail(h, next);
	h->st.completed++;
	push_id(f->done_ids, &f->nd, c->cmd_id);
	return true;

not_now:
	f->pending = -1;	/* pick another next time */
plain:
	if (!th_ring_complete(h, c))
		return false;
	if (c->uflags & TCMU_UFLAG_KEEP_BUF)
		remember_kept(f, c->cmd_id, now);
	push_id(f->done_ids, &f->nd, c->cmd_id);
	return true;
}

/* ---- reporting ---- */

/* The counters th_fuzz_status writes as fuzz_NAME and th_fuzz_count reads. */
static const struct {
	const char *name;
	size_t off;
} fz_counters[] = {
#define FZ_COUNTER(x) { #x, offsetof(struct th_fuzz, x) }
	{ "actions", offsetof(struct th_fuzz, done) },
	FZ_COUNTER(recovers), FZ_COUNTER(recover_fail),
	FZ_COUNTER(broken_seen), FZ_COUNTER(sigbus), FZ_COUNTER(touch_ok),
	FZ_COUNTER(exec_faults), FZ_COUNTER(unexpected),
	FZ_COUNTER(reopen_busy), FZ_COUNTER(kept_freed),
#undef FZ_COUNTER
};

#define FZ_NCOUNTERS (sizeof(fz_counters) / sizeof(fz_counters[0]))

static uint64_t counter_at(const struct th_fuzz *f, unsigned int i)
{
	return *(const uint64_t *)((const char *)f + fz_counters[i].off);
}

void th_fuzz_status(struct th *h, FILE *out)
{
	struct th_fuzz *f = h->fuzz;
	unsigned int i;

	pthread_mutex_lock(&h->lock);
	fprintf(out, "fuzz_seed=%llu\n", (unsigned long long)f->seed);
	for (i = 0; i < FZ_NCOUNTERS; i++)
		fprintf(out, "fuzz_%s=%llu\n", fz_counters[i].name,
			(unsigned long long)counter_at(f, i));
	fprintf(out, "fuzz_trace=%016llx\n", (unsigned long long)f->trace);
	for (i = 0; i < OP_COUNT; i++)
		fprintf(out, "fuzz_%s=%llu\n", fz_ops[i].name,
			(unsigned long long)f->count[i]);
	pthread_mutex_unlock(&h->lock);
}

/* A counter by name (an action, or "actions", "recovers", ...). */
uint64_t th_fuzz_count(struct th *h, const char *name)
{
	struct th_fuzz *f = h->fuzz;
	uint64_t v = 0;
	unsigned int i;

	pthread_mutex_lock(&h->lock);
	for (i = 0; i < FZ_NCOUNTERS; i++)
		if (!strcmp(name, fz_counters[i].name))
			v = counter_at(f, i);
	for (i = 0; i < OP_COUNT; i++)
		if (!strcmp(name, fz_ops[i].name))
			v = f->count[i];
	pthread_mutex_unlock(&h->lock);
	return v;
}

uint64_t th_fuzz_trace(struct th *h)
{
	return h->fuzz->trace;
}
