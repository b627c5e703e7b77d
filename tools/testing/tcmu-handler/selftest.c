// SPDX-License-Identifier: GPL-2.0
/*
 * tcmu-handler --selftest: run the handler core against a simulated
 * kernel. The simulation lays out an anonymous shared mapping the way
 * target_core_user does (mailbox, command ring, data area), queues
 * commands and TMRs into the ring with PAD entries at the wrap, and on
 * every kick reaps completions from its last seen tail up to cmd_tail,
 * looking each command up by the cmd_id found in the completed slot.
 * Like target_core_user it trusts nothing in the ring: it keeps its own
 * log of the entries it wrote, accepts cmd_tail only on one of their
 * boundaries, and marks the ring broken (until fk_reset) on anything
 * else, which the --fuzz tests rely on.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>

#include "tcmu-handler.h"

#define FK_BLK		4096
#define FK_IDS		512
#define FK_ORDER	4096
#define FK_LOG		8192

enum { FK_NONE, FK_OUT, FK_IN };

struct fk_cmd {
	bool inflight;
	bool done;
	bool kept;
	int dir;
	uint32_t len;
	uint32_t nblk;
	uint32_t *blk;
	uint32_t niov;
	struct th_iov *iov;
	/* what the handler answered */
	uint8_t status;
	uint8_t uflags;
	uint32_t read_len;
	uint8_t sense[TCMU_SENSE_BUFFERSIZE];
	uint8_t *in;
	uint32_t in_len;
};

/* corruption modes for the next queued command */
enum { FK_OK, FK_BAD_IOV_OFF, FK_IOV_IN_RING, FK_BAD_CDB_OFF,
       FK_TOO_MANY_IOV };

struct fk {
	uint8_t *base;
	size_t size;
	uint32_t cmdr_off;
	uint32_t cmdr_size;
	uint64_t data_off;
	uint32_t nblocks;
	uint8_t *used;
	uint32_t cursor;
	uint32_t last_cleaned;
	struct fk_cmd cmd[FK_IDS];
	uint16_t next_id;
	uint16_t order[FK_ORDER];
	uint32_t ndone;
	uint32_t pads;
	uint32_t kicks;
	uint32_t log[FK_LOG];	/* len_op of every entry, in ring order */
	uint32_t log_head, log_tail;
	bool broken;
	const char *why;	/* why the ring is broken */
	uint32_t nbroken;	/* times it broke */
	uint32_t resets;
	bool split;		/* cut every block into two odd iovecs */
	bool reverse;		/* hand out blocks in descending order */
	int corrupt;
	pthread_mutex_t mu;
};

static int checks, failures;
static int st_verbose;

#define CHECK(cond, ...)						\
	do {								\
		checks++;						\
		if (!(cond)) {						\
			failures++;					\
			fprintf(stderr, "FAIL %s:%d: %s: ", __func__,	\
				__LINE__, #cond);			\
			fprintf(stderr, __VA_ARGS__);			\
			fputc('\n', stderr);				\
		}							\
	} while (0)

static uint32_t align8(uint32_t v)
{
	return (v + 7u) & ~7u;
}

static uint32_t *fk_mb(struct fk *k, size_t off)
{
	return (uint32_t *)(k->base + off);
}

static uint32_t fk_head(struct fk *k)
{
	return __atomic_load_n(fk_mb(k, offsetof(struct tcmu_mailbox,
						 cmd_head)),
			       __ATOMIC_ACQUIRE);
}

static void fk_set_head(struct fk *k, uint32_t v)
{
	__atomic_store_n(fk_mb(k, offsetof(struct tcmu_mailbox, cmd_head)),
			 v, __ATOMIC_RELEASE);
}

static uint32_t fk_tail(struct fk *k)
{
	return __atomic_load_n(fk_mb(k, offsetof(struct tcmu_mailbox,
						 cmd_tail)),
			       __ATOMIC_ACQUIRE);
}

/* Write len_op through the ABI helpers without packed-member pointers. */
static void fk_set_len_op(void *hdr, enum tcmu_opcode op, uint32_t len)
{
	uint32_t v = 0;

	tcmu_hdr_set_op(&v, op);
	tcmu_hdr_set_len(&v, len);
	memcpy(hdr, &v, sizeof(v));
}

static int fk_init(struct fk *k, uint32_t cmdr_size, uint32_t nblocks)
{
	struct tcmu_mailbox *mb;

	memset(k, 0, sizeof(*k));
	k->cmdr_off = sizeof(struct tcmu_mailbox);
	k->cmdr_size = cmdr_size;
	k->data_off = k->cmdr_off + cmdr_size;
	k->nblocks = nblocks;
	k->size = k->data_off + (size_t)nblocks * FK_BLK;
	k->base = mmap(NULL, k->size, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (k->base == MAP_FAILED)
		return -errno;
	k->used = calloc(nblocks, 1);
	if (!k->used)
		return -ENOMEM;
	mb = (struct tcmu_mailbox *)k->base;
	mb->version = TCMU_MAILBOX_VERSION;
	mb->flags = TCMU_MAILBOX_FLAG_CAP_OOOC |
		    TCMU_MAILBOX_FLAG_CAP_READ_LEN |
		    TCMU_MAILBOX_FLAG_CAP_TMR | TCMU_MAILBOX_FLAG_CAP_KEEP_BUF;
	mb->cmdr_off = k->cmdr_off;
	mb->cmdr_size = cmdr_size;
	/* garbage in the ring must not matter */
	memset(k->base + k->cmdr_off, 0xa5, cmdr_size);
	k->next_id = 1;
	pthread_mutex_init(&k->mu, NULL);
	return 0;
}

static void fk_release(struct fk_cmd *c)
{
	free(c->blk);
	free(c->iov);
	free(c->in);
	memset(c, 0, sizeof(*c));
}

static void fk_free_data(struct fk *k, struct fk_cmd *c)
{
	uint32_t i;

	for (i = 0; i < c->nblk; i++)
		k->used[c->blk[i]] = 0;
	c->nblk = 0;
}

static void fk_fini(struct fk *k)
{
	int i;

	for (i = 0; i < FK_IDS; i++)
		fk_release(&k->cmd[i]);
	free(k->used);
	munmap(k->base, k->size);
	pthread_mutex_destroy(&k->mu);
}

static void fk_log_push(struct fk *k, uint32_t len_op)
{
	k->log[k->log_head] = len_op;
	k->log_head = (k->log_head + 1) % FK_LOG;
}

static void fk_break(struct fk *k, const char *why, uint32_t val)
{
	if (!k->broken) {
		k->nbroken++;
		k->why = why;
		if (st_verbose)
			fprintf(stderr, "fk: ring broken: %s (%u)\n", why, val);
	}
	k->broken = true;
}

static uint32_t fk_space(struct fk *k, uint32_t head)
{
	return (k->last_cleaned + k->cmdr_size - head - 1) % k->cmdr_size;
}

/* Reserve ring room for an entry of size bytes; returns its offset. */
static int fk_ring_reserve(struct fk *k, uint32_t size, uint32_t *at)
{
	uint32_t head = fk_head(k), to_end = k->cmdr_size - head, need;

	need = to_end >= size ? size : size + to_end;
	if (k->broken)
		return -EIO;
	if (size > k->cmdr_size / 2 || fk_space(k, head) < need ||
	    (k->log_head + 2 - k->log_tail + FK_LOG) % FK_LOG >= FK_LOG - 2)
		return -EAGAIN;
	if (to_end < size) {
		struct tcmu_cmd_entry_hdr *pad;

		pad = (void *)(k->base + k->cmdr_off + head);
		fk_set_len_op(pad, TCMU_OP_PAD, to_end);
		pad->cmd_id = 0;
		pad->kflags = 0;
		pad->uflags = 0;
		fk_log_push(k, to_end | TCMU_OP_PAD);
		fk_set_head(k, 0);
		head = 0;
		k->pads++;
	}
	*at = head;
	return 0;
}

static int fk_alloc_blocks(struct fk *k, struct fk_cmd *c, uint32_t n)
{
	uint32_t i, got = 0, b;

	c->blk = calloc(n ? n : 1, sizeof(*c->blk));
	if (!c->blk)
		return -ENOMEM;
	for (i = 0; i < k->nblocks && got < n; i++) {
		b = (k->cursor + i) % k->nblocks;
		if (!k->used[b])
			c->blk[got++] = b;
	}
	if (got < n) {
		free(c->blk);
		c->blk = NULL;
		return -EAGAIN;
	}
	for (i = 0; i < n; i++)
		k->used[c->blk[i]] = 1;
	k->cursor = (k->cursor + n + 1) % k->nblocks;
	if (k->reverse) {
		for (i = 0; i < n / 2; i++) {
			b = c->blk[i];
			c->blk[i] = c->blk[n - 1 - i];
			c->blk[n - 1 - i] = b;
		}
	}
	c->nblk = n;
	return 0;
}

static void fk_put_iov(uint8_t *ent, uint32_t i, uint64_t off, uint64_t len)
{
	struct iovec v = { (void *)(uintptr_t)off, (size_t)len };

	memcpy(ent + offsetof(struct tcmu_cmd_entry, req.iov) +
	       i * sizeof(v), &v, sizeof(v));
}

/* Queue a SCSI command the way the kernel does; returns its cmd_id. */
static int fk_submit(struct fk *k, const uint8_t *cdb, uint32_t cdb_len,
		     int dir, const void *out, uint32_t len)
{
	uint32_t i, nblk = (len + FK_BLK - 1) / FK_BLK, rem, base, size, at;
	uint32_t niov, iov_cnt;
	struct tcmu_cmd_entry *e;
	struct fk_cmd *c;
	uint16_t id;
	uint8_t *ent;
	int ret;

	pthread_mutex_lock(&k->mu);
	for (i = 0; i < FK_IDS - 1; i++) {
		id = (uint16_t)(k->next_id + i);
		if (id >= FK_IDS)
			id = (uint16_t)(id - (FK_IDS - 1));
		if (!k->cmd[id].inflight)
			break;
	}
	if (i == FK_IDS - 1) {
		ret = -EBUSY;
		goto out;
	}
	c = &k->cmd[id];
	fk_release(c);
	ret = fk_alloc_blocks(k, c, nblk);
	if (ret)
		goto out;

	c->iov = calloc(2 * (nblk ? nblk : 1), sizeof(*c->iov));
	niov = 0;
	rem = len;
	for (i = 0; i < nblk; i++) {
		uint64_t off = k->data_off + (uint64_t)c->blk[i] * FK_BLK;
		uint32_t seg = rem < FK_BLK ? rem : FK_BLK;

		if (k->split && seg >= 2) {
			uint32_t a = seg / 3 ? seg / 3 : 1;

			c->iov[niov++] = (struct th_iov){ off, a };
			c->iov[niov++] = (struct th_iov){ off + a, seg - a };
		} else {
			c->iov[niov++] = (struct th_iov){ off, seg };
		}
		rem -= seg;
	}
	iov_cnt = niov;
	if (k->corrupt == FK_TOO_MANY_IOV)
		iov_cnt = 1000;

	base = (uint32_t)offsetof(struct tcmu_cmd_entry, req.iov) +
	       niov * (uint32_t)sizeof(struct iovec);
	if (base < sizeof(struct tcmu_cmd_entry))
		base = sizeof(struct tcmu_cmd_entry);
	size = base + align8(cdb_len);
	ret = fk_ring_reserve(k, size, &at);
	if (ret) {
		fk_free_data(k, c);
		fk_release(c);
		goto out;
	}

	ent = k->base + k->cmdr_off + at;
	e = (struct tcmu_cmd_entry *)ent;
	memset(ent, 0, size);
	fk_set_len_op(e, TCMU_OP_CMD, size);
	e->hdr.cmd_id = id;
	e->req.iov_cnt = iov_cnt;
	for (i = 0; i < niov; i++) {
		uint64_t off = c->iov[i].off;

		if (i == 0 && k->corrupt == FK_BAD_IOV_OFF)
			off = k->size + FK_BLK;
		if (i == 0 && k->corrupt == FK_IOV_IN_RING)
			off = k->cmdr_off;
		fk_put_iov(ent, i, off, c->iov[i].len);
	}
	e->req.cdb_off = k->cmdr_off + at + base;
	if (k->corrupt == FK_BAD_CDB_OFF)
		e->req.cdb_off = k->size + 100;
	memcpy(k->base + k->cmdr_off + at + base, cdb, cdb_len);
	k->corrupt = FK_OK;

	/* Data-Out goes in, Data-In buffers start out as garbage */
	rem = 0;
	for (i = 0; i < niov; i++) {
		uint8_t *p = k->base + c->iov[i].off;

		if (dir == FK_OUT)
			memcpy(p, (const uint8_t *)out + rem, c->iov[i].len);
		else
			memset(p, 0xee, c->iov[i].len);
		rem += (uint32_t)c->iov[i].len;
	}
	c->niov = niov;
	c->dir = dir;
	c->len = len;
	c->inflight = true;
	k->next_id = (uint16_t)(id + 1 < FK_IDS ? id + 1 : 1);
	fk_log_push(k, size | TCMU_OP_CMD);
	fk_set_head(k, (at + size) % k->cmdr_size);
	ret = id;
out:
	pthread_mutex_unlock(&k->mu);
	return ret;
}

static int fk_submit_tmr(struct fk *k, uint8_t type, const uint16_t *ids,
			 uint32_t n)
{
	uint32_t size = align8((uint32_t)sizeof(struct tcmu_tmr_entry) +
			       n * 2u), at;
	struct tcmu_tmr_entry *t;
	int ret;

	pthread_mutex_lock(&k->mu);
	ret = fk_ring_reserve(k, size, &at);
	if (!ret) {
		t = (void *)(k->base + k->cmdr_off + at);
		memset(t, 0, size);
		fk_set_len_op(t, TCMU_OP_TMR, size);
		t->tmr_type = type;
		t->cmd_cnt = n;
		if (n)
			memcpy((uint8_t *)t + sizeof(*t), ids, n * 2u);
		fk_log_push(k, size | TCMU_OP_TMR);
		fk_set_head(k, (at + size) % k->cmdr_size);
	}
	pthread_mutex_unlock(&k->mu);
	return ret;
}

/* Take the completion in the CMD slot at off; false if it is bogus. */
static bool fk_reap_slot(struct fk *k, uint32_t off)
{
	struct tcmu_cmd_entry e;
	struct fk_cmd *c;
	uint32_t i, want, got;

	memcpy(&e, k->base + k->cmdr_off + off, sizeof(e));
	if (e.hdr.cmd_id == 0 || e.hdr.cmd_id >= FK_IDS ||
	    !k->cmd[e.hdr.cmd_id].inflight) {
		if (st_verbose)
			fprintf(stderr, "fk: completion for unknown cmd %u\n",
				e.hdr.cmd_id);
		fk_break(k, "completion for unknown cmd_id", e.hdr.cmd_id);
		return false;
	}
	if (k->cmd[e.hdr.cmd_id].kept) {
		fk_break(k, "second completion for kept cmd_id",
			 e.hdr.cmd_id);
		return false;
	}
	c = &k->cmd[e.hdr.cmd_id];
	c->status = e.rsp.scsi_status;
	c->uflags = e.hdr.uflags;
	c->read_len = e.rsp.read_len;
	memcpy(c->sense, e.rsp.sense_buffer, sizeof(c->sense));

	want = c->dir == FK_IN ? c->len : 0;
	if (c->dir == FK_IN && (c->uflags & TCMU_UFLAG_READ_LEN) &&
	    c->read_len && c->read_len < want)
		want = c->read_len;
	if (c->status == SAM_CHECK_CONDITION &&
	    !(c->uflags & TCMU_UFLAG_READ_LEN))
		want = 0;
	free(c->in);
	c->in = calloc(1, c->len + 1);
	for (i = 0, got = 0; i < c->niov && got < want; i++) {
		uint32_t n = (uint32_t)c->iov[i].len;

		if (n > want - got)
			n = want - got;
		memcpy(c->in + got, k->base + c->iov[i].off, n);
		got += n;
	}
	c->in_len = got;
	c->done = true;
	if (c->uflags & TCMU_UFLAG_KEEP_BUF) {
		c->kept = true;
	} else {
		fk_free_data(k, c);
		c->inflight = false;
	}
	k->order[k->ndone++ % FK_ORDER] = e.hdr.cmd_id;
	return true;
}

/*
 * What the kernel does when the handler writes to the UIO fd: cmd_tail
 * must be a boundary of an entry between the last seen tail and head;
 * the walk follows our log, never the lengths in the ring.
 */
static void fk_reap(struct fk *k)
{
	uint32_t tail, used, dist;

	pthread_mutex_lock(&k->mu);
	k->kicks++;
	tail = fk_tail(k);
	if (k->broken || tail == k->last_cleaned)
		goto out;
	if (tail >= k->cmdr_size || tail % TCMU_OP_ALIGN_SIZE) {
		fk_break(k, "cmd_tail outside the ring", tail);
		goto out;
	}
	used = (fk_head(k) + k->cmdr_size - k->last_cleaned) % k->cmdr_size;
	dist = (tail + k->cmdr_size - k->last_cleaned) % k->cmdr_size;
	if (dist > used) {
		fk_break(k, "cmd_tail beyond cmd_head", tail);
		goto out;
	}
	while (dist) {
		uint32_t len_op = k->log[k->log_tail];
		uint32_t len = tcmu_hdr_get_len(len_op);

		if (len > dist) {
			fk_break(k, "cmd_tail inside an entry", tail);
			break;
		}
		if (tcmu_hdr_get_op(len_op) == TCMU_OP_CMD &&
		    !fk_reap_slot(k, k->last_cleaned))
			break;
		k->log_tail = (k->log_tail + 1) % FK_LOG;
		k->last_cleaned = (k->last_cleaned + len) % k->cmdr_size;
		dist -= len;
	}
out:
	pthread_mutex_unlock(&k->mu);
}

/*
 * action/reset_ring: every command still owned by the handler ends
 * (BUSY for level 1, CHECK CONDITION for 2), the ring starts over empty.
 */
static void fk_reset(struct fk *k, int level)
{
	struct tcmu_mailbox *mb = (struct tcmu_mailbox *)k->base;
	int i;

	pthread_mutex_lock(&k->mu);
	for (i = 0; i < FK_IDS; i++) {
		struct fk_cmd *c = &k->cmd[i];

		if (!c->inflight)
			continue;
		if (!c->done) {
			c->status = level == 1 ? 0x08 : SAM_CHECK_CONDITION;
			c->done = true;
			c->in_len = 0;
		}
		fk_free_data(k, c);
		c->inflight = false;
		c->kept = false;
	}
	fk_set_head(k, 0);
	__atomic_store_n(fk_mb(k, offsetof(struct tcmu_mailbox, cmd_tail)),
			 0u, __ATOMIC_RELEASE);
	mb->version = TCMU_MAILBOX_VERSION;
	mb->cmdr_off = k->cmdr_off;
	mb->cmdr_size = k->cmdr_size;
	k->last_cleaned = 0;
	k->log_head = k->log_tail = 0;
	k->broken = false;
	k->why = NULL;
	k->resets++;
	pthread_mutex_unlock(&k->mu);
}

static void fk_free_kept(struct fk *k, uint16_t id)
{
	pthread_mutex_lock(&k->mu);
	if (k->cmd[id].kept) {
		fk_free_data(k, &k->cmd[id]);
		k->cmd[id].kept = false;
		k->cmd[id].inflight = false;
	}
	pthread_mutex_unlock(&k->mu);
}

static int fk_kick(struct th *h)
{
	fk_reap(h->kick_arg);
	return 0;
}

static int fk_reset_hook(struct th *h, int level)
{
	fk_reset(h->kick_arg, level);
	return 0;
}

static int fk_free_kept_hook(struct th *h, uint16_t id)
{
	struct fk *k = h->kick_arg;
	bool kept;

	pthread_mutex_lock(&k->mu);
	kept = id < FK_IDS && k->cmd[id].kept;
	pthread_mutex_unlock(&k->mu);
	if (!kept)
		return -EINVAL;
	fk_free_kept(k, id);
	return 0;
}

/* ---- test scaffolding ---- */

struct tc {
	struct fk k;
	struct th h;
};

static void opts_default(struct th_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->threads = 1;
	o->ignore_op = TH_IGNORE_OFF;
	o->sense_op = TH_OP_ANY;
	o->short_read_op = TH_OP_ANY;
	o->size = 8 << 20;
	o->block_size = 512;
	o->verbose = st_verbose;
}

static int tc_setup(struct tc *t, const struct th_opts *o,
		    uint32_t cmdr_size, uint32_t nblocks)
{
	memset(t, 0, sizeof(*t));
	if (fk_init(&t->k, cmdr_size, nblocks))
		return -1;
	t->h.opt = *o;
	t->h.file_fd = -1;
	t->h.uio_fd = -1;
	if (th_core_init(&t->h) || th_backend_open(&t->h))
		return -1;
	th_ident_init(&t->h, "selftest");
	if (th_ring_attach(&t->h, t->k.base, t->k.size))
		return -1;
	t->h.kick = fk_kick;
	t->h.kick_arg = &t->k;
	t->h.reset = fk_reset_hook;
	t->h.free_kept = fk_free_kept_hook;
	if (o->fuzz && th_fuzz_init(&t->h))
		return -1;
	return th_workers_start(&t->h) ? -1 : 0;
}

static void tc_teardown(struct tc *t)
{
	th_workers_stop(&t->h);
	if (t->h.fuzz)
		th_fuzz_fini(&t->h);
	th_backend_close(&t->h);
	th_core_fini(&t->h);
	fk_fini(&t->k);
}

/* Service the ring until the handler has nothing left to take. */
static int tc_run(struct tc *t)
{
	int r, idle = 0, rounds = 0;

	while (idle < 2 && rounds++ < 10000) {
		r = th_service(&t->h);
		if (r < 0)
			return -1;
		th_workers_wait_idle(&t->h);
		idle = r ? 0 : idle + 1;
	}
	return 0;
}

static struct fk_cmd *tc_cmd(struct tc *t, const uint8_t *cdb,
			     uint32_t cdb_len, int dir, const void *out,
			     uint32_t len)
{
	int id = fk_submit(&t->k, cdb, cdb_len, dir, out, len);

	if (id <= 0) {
		CHECK(id > 0, "submit failed: %d", id);
		return NULL;
	}
	tc_run(t);
	CHECK(t->k.cmd[id].done, "cmd %d op 0x%02x not completed", id,
	      cdb[0]);
	return t->k.cmd[id].done ? &t->k.cmd[id] : NULL;
}

static uint32_t be16(const uint8_t *p)
{
	return (uint32_t)p[0] << 8 | p[1];
}

static uint32_t be32(const uint8_t *p)
{
	return be16(p) << 16 | be16(p + 2);
}

static uint64_t be64(const uint8_t *p)
{
	return (uint64_t)be32(p) << 32 | be32(p + 4);
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = (uint8_t)v;
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, v >> 32);
	put32(p + 4, (uint32_t)v);
}

/* Build a READ/WRITE-family CDB; the length picks the CDB size. */
static uint32_t cdb_rw(uint8_t *cdb, uint8_t op, uint64_t lba, uint32_t n)
{
	memset(cdb, 0, 16);
	cdb[0] = op;
	switch (op >> 5) {
	case 0:
		cdb[1] = (lba >> 16) & 0x1f;
		cdb[2] = (uint8_t)(lba >> 8);
		cdb[3] = (uint8_t)lba;
		cdb[4] = (uint8_t)n;
		return 6;
	case 1:
		put32(cdb + 2, (uint32_t)lba);
		cdb[7] = (uint8_t)(n >> 8);
		cdb[8] = (uint8_t)n;
		return 10;
	case 5:
		put32(cdb + 2, (uint32_t)lba);
		put32(cdb + 6, n);
		return 12;
	default:
		put64(cdb + 2, lba);
		put32(cdb + 10, n);
		return 16;
	}
}

static uint32_t cdb_inquiry(uint8_t *cdb, int evpd, uint8_t page,
			    uint16_t alloc)
{
	memset(cdb, 0, 16);
	cdb[0] = 0x12;
	cdb[1] = (uint8_t)evpd;
	cdb[2] = page;
	cdb[3] = alloc >> 8;
	cdb[4] = (uint8_t)alloc;
	return 6;
}

static void fill_pattern(uint8_t *p, uint32_t len, uint32_t seed)
{
	uint32_t i, x = seed * 2654435761u + 1;

	for (i = 0; i < len; i++) {
		x = x * 1103515245u + 12345u;
		p[i] = (uint8_t)(x >> 16);
	}
}

static bool sense_is(const struct fk_cmd *c, uint8_t key, uint8_t asc,
		     uint8_t ascq)
{
	return c && c->status == SAM_CHECK_CONDITION &&
	       c->sense[0] == 0x70 && (c->sense[2] & 0xf) == key &&
	       c->sense[7] == 0x0a && c->sense[12] == asc &&
	       c->sense[13] == ascq;
}

static bool good(const struct fk_cmd *c)
{
	return c && c->status == SAM_GOOD;
}

static struct fk_cmd *do_write(struct tc *t, uint8_t op, uint64_t lba,
			       uint32_t n, const uint8_t *buf)
{
	uint8_t cdb[16];
	uint32_t l = cdb_rw(cdb, op, lba, n);
	uint32_t nb = (op >> 5) == 0 && n == 0 ? 256 : n;

	return tc_cmd(t, cdb, l, FK_OUT, buf, nb * t->h.block_size);
}

static struct fk_cmd *do_read(struct tc *t, uint8_t op, uint64_t lba,
			      uint32_t n)
{
	uint8_t cdb[16];
	uint32_t l = cdb_rw(cdb, op, lba, n);
	uint32_t nb = (op >> 5) == 0 && n == 0 ? 256 : n;

	return tc_cmd(t, cdb, l, FK_IN, NULL, nb * t->h.block_size);
}

/* ---- tests ---- */

static void test_inquiry(void)
{
	struct th_opts o;
	struct fk_cmd *c;
	struct tc t;
	uint8_t cdb[16];
	uint32_t i, l;
	bool zero = true;

	opts_default(&o);
	o.max_sectors = 2048;
	if (tc_setup(&t, &o, 64 << 10, 256)) {
		CHECK(0, "setup");
		return;
	}
	l = cdb_inquiry(cdb, 0, 0, 96);
	c = tc_cmd(&t, cdb, l, FK_IN, NULL, 96);
	CHECK(good(c), "standard INQUIRY failed");
	if (good(c)) {
		CHECK(c->in[0] == 0x00, "peripheral type %u", c->in[0]);
		CHECK(c->in[4] == 31, "additional length %u", c->in[4]);
		CHECK(!memcmp(c->in + 8, "TCMUTEST", 8), "vendor");
		CHECK(c->in[7] & 0x02, "CMDQUE not set");
		for (i = 36; i < 96; i++)
			zero &= c->in[i] == 0;
		CHECK(zero, "bytes past the INQUIRY data not zeroed");
		CHECK(!(c->uflags & TCMU_UFLAG_READ_LEN), "READ_LEN unasked");
	}

	l = cdb_inquiry(cdb, 0, 0, 8);
	c = tc_cmd(&t, cdb, l, FK_IN, NULL, 8);
	CHECK(good(c) && c->in[4] == 31, "short allocation length");

	l = cdb_inquiry(cdb, 1, 0x00, 255);
	c = tc_cmd(&t, cdb, l, FK_IN, NULL, 255);
	CHECK(good(c) && c->in[1] == 0 && be16(c->in + 2) == 4 &&
	      c->in[4] == 0x00 && c->in[5] == 0x80 && c->in[6] == 0x83 &&
	      c->in[7] == 0xb0, "VPD 0x00 contents");

	l = cdb_inquiry(cdb, 1, 0x80, 255);
	c = tc_cmd(&t, cdb, l, FK_IN, NULL, 255);
	CHECK(good(c) && c->in[1] == 0x80 &&
	      be16(c->in + 2) == strlen(t.h.serial) &&
	      !memcmp(c->in + 4, t.h.serial, strlen(t.h.serial)),
	      "VPD 0x80 contents");

	l = cdb_inquiry(cdb, 1, 0x83, 255);
	c = tc_cmd(&t, cdb, l, FK_IN, NULL, 255);
	CHECK(good(c), "VPD 0x83 failed");
	if (good(c)) {
		uint32_t plen = be16(c->in + 2), pos = 4;
		bool t10 = false, naa = false;

		CHECK(c->in[1] == 0x83 && plen > 8, "VPD 0x83 header");
		while (pos + 4 <= 4 + plen) {
			uint8_t *d = c->in + pos;

			if ((d[1] & 0x0f) == 1 && !memcmp(d + 4, "TCMUTEST", 8))
				t10 = true;
			if ((d[1] & 0x0f) == 3 && d[3] == 8 &&
			    (d[4] >> 4) == 3 && be64(d + 4) == t.h.naa)
				naa = true;
			pos += 4 + d[3];
		}
		CHECK(pos == 4 + plen, "designator lengths do not add up");
		CHECK(t10 && naa, "designators missing: t10 %d naa %d", t10,
		      naa);
	}

	l = cdb_inquiry(cdb, 1, 0xb0, 255);
	c = tc_cmd(&t, cdb, l, FK_IN, NULL, 255);
	CHECK(good(c) && c->in[1] == 0xb0 && be16(c->in + 2) == 0x3c &&
	      be32(c->in + 8) == 2048, "VPD 0xb0 contents");

	l = cdb_inquiry(cdb, 1, 0x99, 255);
	c = tc_cmd(&t, cdb, l, FK_IN, NULL, 255);
	CHECK(sense_is(c, SK_ILLEGAL_REQUEST, 0x24, 0x00), "bad VPD page");
	CHECK(c && c->in_len == 0, "data returned with CHECK CONDITION");

	l = cdb_inquiry(cdb, 0, 0x80, 255);
	c = tc_cmd(&t, cdb, l, FK_IN, NULL, 255);
	CHECK(sense_is(c, SK_ILLEGAL_REQUEST, 0x24, 0x00),
	      "page code without EVPD");

	l = cdb_inquiry(cdb, 2, 0, 255);
	c = tc_cmd(&t, cdb, l, FK_IN, NULL, 255);
	CHECK(sense_is(c, SK_ILLEGAL_REQUEST, 0x24, 0x00), "CMDDT");
	tc_teardown(&t);
}

static void test_capacity_bs(uint32_t bs, uint64_t size, const char *file)
{
	struct th_opts o;
	struct fk_cmd *c;
	struct tc t;
	uint8_t cdb[16];
	uint64_t last = size / bs - 1;

	opts_default(&o);
	o.block_size = bs;
	o.size = size;
	o.file = file;
	if (tc_setup(&t, &o, 64 << 10, 64)) {
		CHECK(0, "setup bs %u size %llu", bs,
		      (unsigned long long)size);
		tc_teardown(&t);
		return;
	}
	memset(cdb, 0, sizeof(cdb));
	cdb[0] = 0x25;
	c = tc_cmd(&t, cdb, 10, FK_IN, NULL, 8);
	CHECK(good(c) && be32(c->in) ==
	      (last > 0xffffffffull ? 0xffffffffu : last) &&
	      be32(c->in + 4) == bs, "READ CAPACITY(10) bs %u", bs);

	memset(cdb, 0, sizeof(cdb));
	cdb[0] = 0x9e;
	cdb[1] = 0x10;
	put32(cdb + 10, 32);
	c = tc_cmd(&t, cdb, 16, FK_IN, NULL, 32);
	CHECK(good(c) && be64(c->in) == last && be32(c->in + 8) == bs,
	      "READ CAPACITY(16) bs %u", bs);

	cdb[1] = 0x11;
	c = tc_cmd(&t, cdb, 16, FK_IN, NULL, 32);
	CHECK(sense_is(c, SK_ILLEGAL_REQUEST, 0x24, 0), "bad service action");
	tc_teardown(&t);
}

static void test_capacity(void)
{
	char path[] = "/tmp/tcmu-handler-cap-XXXXXX";
	int fd;

	test_capacity_bs(512, 8 << 20, NULL);
	test_capacity_bs(4096, 64 << 20, NULL);

	/* larger than READ CAPACITY(10) can describe: a sparse file */
	fd = mkstemp(path);
	CHECK(fd >= 0, "mkstemp");
	if (fd < 0)
		return;
	if (ftruncate(fd, (off_t)(3ull << 40))) {
		printf("# skip 3 TiB capacity: sparse file: %s\n",
		       strerror(errno));
	} else {
		test_capacity_bs(512, 3ull << 40, path);
	}
	close(fd);
	unlink(path);
}

static void test_read_write(bool file)
{
	static const uint8_t rops[] = { 0x08, 0x28, 0xa8, 0x88 };
	static const uint8_t wops[] = { 0x0a, 0x2a, 0xaa, 0x8a, 0x2e, 0xae,
					0x8e };
	char path[] = "/tmp/tcmu-handler-st-XXXXXX";
	uint8_t buf[256 * 512], cdb[16];
	struct th_opts o;
	struct fk_cmd *c;
	struct tc t;
	uint32_t i, j;
	int fd = -1;

	opts_default(&o);
	if (file) {
		fd = mkstemp(path);
		CHECK(fd >= 0, "mkstemp");
		if (fd < 0)
			return;
		o.file = path;
		o.size = 4 << 20;
	}
	if (tc_setup(&t, &o, 64 << 10, 256)) {
		CHECK(0, "setup");
		return;
	}
	t.k.split = true;
	t.k.reverse = true;

	for (i = 0; i < sizeof(wops); i++) {
		uint64_t lba = 100 + i * 40;

		fill_pattern(buf, 16 * 512, i);
		c = do_write(&t, wops[i], lba, 16, buf);
		CHECK(good(c), "write op 0x%02x", wops[i]);
		for (j = 0; j < sizeof(rops); j++) {
			c = do_read(&t, rops[j], lba, 16);
			CHECK(good(c) && c->in_len == 16 * 512 &&
			      !memcmp(c->in, buf, 16 * 512),
			      "read op 0x%02x after write op 0x%02x",
			      rops[j], wops[i]);
		}
		/* an unaligned slice of it */
		c = do_read(&t, 0x28, lba + 3, 5);
		CHECK(good(c) && !memcmp(c->in, buf + 3 * 512, 5 * 512),
		      "partial read");
	}

	/* 6-byte transfer length 0 means 256 blocks */
	fill_pattern(buf, sizeof(buf), 99);
	c = do_write(&t, 0x0a, 1000, 0, buf);
	CHECK(good(c), "WRITE(6) of 256 blocks");
	c = do_read(&t, 0x88, 1000, 256);
	CHECK(good(c) && !memcmp(c->in, buf, sizeof(buf)),
	      "256 block round trip");

	/* bounds */
	c = do_read(&t, 0x28, t.h.nr_blocks - 1, 2);
	CHECK(sense_is(c, SK_ILLEGAL_REQUEST, 0x21, 0), "read past the end");
	c = do_write(&t, 0x8a, t.h.nr_blocks, 1, buf);
	CHECK(sense_is(c, SK_ILLEGAL_REQUEST, 0x21, 0), "write past the end");
	c = do_read(&t, 0x88, ~0ull - 1, 4);
	CHECK(sense_is(c, SK_ILLEGAL_REQUEST, 0x21, 0), "LBA overflow");
	c = do_read(&t, 0x28, t.h.nr_blocks - 1, 1);
	CHECK(good(c), "last block");
	c = do_read(&t, 0x28, 5, 0);
	CHECK(good(c), "zero length READ(10)");

	/* verify and friends */
	cdb_rw(cdb, 0x2f, 10, 4);
	c = tc_cmd(&t, cdb, 10, FK_NONE, NULL, 0);
	CHECK(good(c), "VERIFY(10)");
	cdb_rw(cdb, 0x8f, t.h.nr_blocks, 4);
	c = tc_cmd(&t, cdb, 16, FK_NONE, NULL, 0);
	CHECK(sense_is(c, SK_ILLEGAL_REQUEST, 0x21, 0), "VERIFY(16) bounds");
	memset(cdb, 0, 16);
	cdb[0] = 0x35;
	c = tc_cmd(&t, cdb, 10, FK_NONE, NULL, 0);
	CHECK(good(c), "SYNCHRONIZE CACHE(10)");
	cdb[0] = 0x91;
	c = tc_cmd(&t, cdb, 16, FK_NONE, NULL, 0);
	CHECK(good(c), "SYNCHRONIZE CACHE(16)");

	if (file) {
		uint8_t fbuf[16 * 512];

		fill_pattern(buf, 16 * 512, 1);	/* what wops[1] wrote */
		CHECK(pread(fd, fbuf, sizeof(fbuf), 140 * 512) ==
		      (ssize_t)sizeof(fbuf) &&
		      !memcmp(fbuf, buf, sizeof(fbuf)), "file contents");
		close(fd);
		unlink(path);
	}
	CHECK(t.h.st.bytes_out > 0 && t.h.st.bytes_in > 0, "byte counters");
	tc_teardown(&t);
}

static void test_rw_ram(void)
{
	test_read_write(false);
}

static void test_rw_file(void)
{
	test_read_write(true);
}

static void test_mode_sense(void)
{
	struct th_opts o;
	struct fk_cmd *c;
	struct tc t;
	uint8_t cdb[16];

	opts_default(&o);
	if (tc_setup(&t, &o, 64 << 10, 64)) {
		CHECK(0, "setup");
		return;
	}
	memset(cdb, 0, 16);
	cdb[0] = 0x1a;
	cdb[2] = 0x08;
	cdb[4] = 255;
	c = tc_cmd(&t, cdb, 6, FK_IN, NULL, 255);
	CHECK(good(c) && c->in[0] == 4 + 8 + 20 - 1 && c->in[3] == 8 &&
	      be32(c->in + 4) == t.h.nr_blocks &&
	      be32(c->in + 8) == 512 && c->in[12] == 0x08 &&
	      c->in[13] == 0x12, "MODE SENSE(6) caching page");

	cdb[1] = 0x08;	/* DBD */
	c = tc_cmd(&t, cdb, 6, FK_IN, NULL, 255);
	CHECK(good(c) && c->in[0] == 4 + 20 - 1 && c->in[3] == 0 &&
	      c->in[4] == 0x08, "MODE SENSE(6) DBD");

	cdb[1] = 0;
	cdb[2] = 0x3f;
	c = tc_cmd(&t, cdb, 6, FK_IN, NULL, 255);
	CHECK(good(c) && c->in[0] == 4 + 8 + 20 + 12 - 1 &&
	      c->in[12] == 0x08 && c->in[32] == 0x0a, "MODE SENSE(6) all");

	cdb[4] = 4;
	c = tc_cmd(&t, cdb, 6, FK_IN, NULL, 4);
	CHECK(good(c) && c->in[0] == 4 + 8 + 20 + 12 - 1,
	      "MODE SENSE(6) header only");

	memset(cdb, 0, 16);
	cdb[0] = 0x5a;
	cdb[1] = 0x10;	/* LLBAA */
	cdb[2] = 0x08;
	cdb[8] = 255;
	c = tc_cmd(&t, cdb, 10, FK_IN, NULL, 255);
	CHECK(good(c) && be16(c->in) == 8 + 16 + 20 - 2 &&
	      (c->in[4] & 1) && be16(c->in + 6) == 16 &&
	      be64(c->in + 8) == t.h.nr_blocks &&
	      be32(c->in + 20) == 512 && c->in[24] == 0x08,
	      "MODE SENSE(10) long LBA");

	cdb[1] = 0x08;
	cdb[2] = 0x0a;
	c = tc_cmd(&t, cdb, 10, FK_IN, NULL, 255);
	CHECK(good(c) && be16(c->in) == 8 + 12 - 2 && c->in[8] == 0x0a,
	      "MODE SENSE(10) control page");

	cdb[2] = 0xc8;	/* saved values */
	c = tc_cmd(&t, cdb, 10, FK_IN, NULL, 255);
	CHECK(sense_is(c, SK_ILLEGAL_REQUEST, 0x39, 0), "saved values");
	cdb[2] = 0x1c;
	c = tc_cmd(&t, cdb, 10, FK_IN, NULL, 255);
	CHECK(sense_is(c, SK_ILLEGAL_REQUEST, 0x24, 0), "unknown page");
	tc_teardown(&t);
}

static void test_misc_ops(void)
{
	struct th_opts o;
	struct fk_cmd *c;
	struct tc t;
	uint8_t cdb[32];

	opts_default(&o);
	if (tc_setup(&t, &o, 64 << 10, 64)) {
		CHECK(0, "setup");
		return;
	}
	memset(cdb, 0, 16);
	c = tc_cmd(&t, cdb, 6, FK_NONE, NULL, 0);
	CHECK(good(c), "TEST UNIT READY");
	cdb[0] = 0x1b;
	c = tc_cmd(&t, cdb, 6, FK_NONE, NULL, 0);
	CHECK(good(c), "START STOP UNIT");
	cdb[0] = 0x03;
	cdb[4] = 252;
	c = tc_cmd(&t, cdb, 6, FK_IN, NULL, 252);
	CHECK(good(c) && c->in[0] == 0x70 && (c->in[2] & 0xf) == 0 &&
	      c->in[7] == 0x0a, "REQUEST SENSE");
	cdb[1] = 1;
	c = tc_cmd(&t, cdb, 6, FK_IN, NULL, 252);
	CHECK(good(c) && c->in[0] == 0x72, "REQUEST SENSE descriptor");

	memset(cdb, 0, 16);
	cdb[0] = 0xd0;
	c = tc_cmd(&t, cdb, 10, FK_NONE, NULL, 0);
	CHECK(sense_is(c, SK_ILLEGAL_REQUEST, 0x20, 0), "unknown opcode");
	memset(cdb, 0, sizeof(cdb));
	cdb[0] = 0x7f;	/* variable length CDB, 8 + 24 bytes */
	cdb[7] = 24;
	c = tc_cmd(&t, cdb, 32, FK_NONE, NULL, 0);
	CHECK(sense_is(c, SK_ILLEGAL_REQUEST, 0x20, 0), "variable length");
	CHECK(t.h.st.check_conditions == 2, "check_conditions %llu",
	      (unsigned long long)t.h.st.check_conditions);
	tc_teardown(&t);

	opts_default(&o);
	o.unknown_op = true;
	if (tc_setup(&t, &o, 64 << 10, 64)) {
		CHECK(0, "setup");
		return;
	}
	memset(cdb, 0, 16);
	cdb[0] = 0x42;	/* UNMAP */
	c = tc_cmd(&t, cdb, 10, FK_OUT, cdb, 8);
	CHECK(c && c->status == SAM_GOOD &&
	      (c->uflags & TCMU_UFLAG_UNKNOWN_OP), "UNKNOWN_OP flag");
	CHECK(t.h.st.unknown_op == 1, "unknown_op counter");
	tc_teardown(&t);
}

/* Many commands of varying sizes through a tiny ring: wrap and PAD. */
static void test_wrap(unsigned int threads, bool ooo, unsigned int delay)
{
	uint8_t buf[8 * 4096], cdb[16];
	int ids[64];
	struct th_opts o;
	struct tc t;
	uint32_t round, i, n, bad = 0;

	opts_default(&o);
	o.threads = threads;
	o.ooo = ooo;
	o.delay_ms = delay;
	if (tc_setup(&t, &o, 2048, 512)) {
		CHECK(0, "setup");
		return;
	}
	/* seed the disk so every read has known contents */
	for (i = 0; i < 64; i++) {
		fill_pattern(buf, 4096, 1000 + i);
		CHECK(good(do_write(&t, 0x2a, i * 8, 8, buf)), "seed %u", i);
	}
	for (round = 0; round < 40; round++) {
		t.k.split = round & 1;
		t.k.reverse = round & 2;
		for (n = 0; n < 64; n++) {
			uint32_t blk = (round * 7 + n) % 64;
			uint32_t l = cdb_rw(cdb, (n & 1) ? 0x88 : 0x28,
					    blk * 8, 8);

			ids[n] = fk_submit(&t.k, cdb, l, FK_IN, NULL, 4096);
			if (ids[n] < 0)
				break;
			ids[n] |= (int)blk << 16;
			if (round % 5 == 0 && n == 1) {
				uint16_t tid = (uint16_t)ids[0];

				fk_submit_tmr(&t.k, 1, &tid, 1);
			}
		}
		CHECK(n > 1, "ring accepted %u commands", n);
		CHECK(tc_run(&t) == 0, "ring broken in round %u", round);
		for (i = 0; i < n; i++) {
			struct fk_cmd *c = &t.k.cmd[ids[i] & 0xffff];

			fill_pattern(buf, 4096, 1000 + (ids[i] >> 16));
			if (!c->done || c->status || c->in_len != 4096 ||
			    memcmp(c->in, buf, 4096))
				bad++;
			c->done = false;
		}
	}
	CHECK(!bad, "%u bad completions (threads %u ooo %d)", bad, threads,
	      ooo);
	CHECK(!t.k.broken, "kernel side saw a broken ring");
	CHECK(t.k.pads > 0 && t.h.st.pad == t.k.pads,
	      "PAD entries: queued %u, seen %llu", t.k.pads,
	      (unsigned long long)t.h.st.pad);
	CHECK(t.k.last_cleaned == fk_head(&t.k) &&
	      fk_tail(&t.k) == fk_head(&t.k), "ring not drained");
	CHECK(t.h.st.tmr == 8, "TMR count %llu",
	      (unsigned long long)t.h.st.tmr);
	tc_teardown(&t);
}

static void test_wrap_inline(void)
{
	test_wrap(1, false, 0);
}

static void test_wrap_ooo(void)
{
	test_wrap(1, true, 0);
}

static void test_wrap_threads(void)
{
	test_wrap(4, false, 0);
	test_wrap(3, true, 1);
}

/* A batch completed newest first: completion slots get foreign ids. */
static void test_ooo_order(void)
{
	uint8_t buf[4096], cdb[16];
	struct th_opts o;
	struct tc t;
	int ids[6];
	uint32_t i, first;

	opts_default(&o);
	o.ooo = true;
	if (tc_setup(&t, &o, 64 << 10, 256)) {
		CHECK(0, "setup");
		return;
	}
	for (i = 0; i < 6; i++) {
		fill_pattern(buf, sizeof(buf), 500 + i);
		do_write(&t, 0x2a, i * 8, 8, buf);
	}
	first = t.k.ndone;
	for (i = 0; i < 6; i++) {
		uint32_t l = cdb_rw(cdb, 0x28, i * 8, 8);

		ids[i] = fk_submit(&t.k, cdb, l, FK_IN, NULL, 4096);
	}
	tc_run(&t);
	CHECK(t.k.ndone - first == 6, "completed %u of 6",
	      t.k.ndone - first);
	for (i = 0; i < 6; i++) {
		struct fk_cmd *c = &t.k.cmd[ids[i]];

		fill_pattern(buf, sizeof(buf), 500 + i);
		CHECK(c->done && good(c) && !memcmp(c->in, buf, 4096),
		      "cmd %d data", ids[i]);
		CHECK(t.k.order[(first + i) % FK_ORDER] == ids[5 - i],
		      "slot %u completed cmd %u, expected %d", i,
		      t.k.order[(first + i) % FK_ORDER], ids[5 - i]);
	}
	CHECK(!t.k.broken, "broken");
	tc_teardown(&t);
}

static void test_read_len(void)
{
	uint8_t buf[8 * 512], cdb[16];
	struct th_opts o;
	struct fk_cmd *c;
	struct tc t;
	uint32_t l;

	opts_default(&o);
	o.read_len = true;
	if (tc_setup(&t, &o, 64 << 10, 64)) {
		CHECK(0, "setup");
		return;
	}
	l = cdb_inquiry(cdb, 0, 0, 255);
	c = tc_cmd(&t, cdb, l, FK_IN, NULL, 255);
	CHECK(good(c) && (c->uflags & TCMU_UFLAG_READ_LEN) &&
	      c->read_len == 36 && c->in_len == 36, "INQUIRY read_len %u",
	      c ? c->read_len : 0);
	c = do_read(&t, 0x28, 0, 8);
	CHECK(good(c) && (c->uflags & TCMU_UFLAG_READ_LEN) &&
	      c->read_len == 4096, "READ read_len");
	c = do_write(&t, 0x2a, 0, 8, buf);
	CHECK(good(c) && !(c->uflags & TCMU_UFLAG_READ_LEN),
	      "READ_LEN on a write");
	tc_teardown(&t);

	/* short reads of READs only */
	opts_default(&o);
	o.short_read = 1000;
	if (tc_setup(&t, &o, 64 << 10, 64)) {
		CHECK(0, "setup");
		return;
	}
	fill_pattern(buf, sizeof(buf), 7);
	do_write(&t, 0x2a, 16, 8, buf);
	c = do_read(&t, 0x28, 16, 8);
	CHECK(good(c) && (c->uflags & TCMU_UFLAG_READ_LEN) &&
	      c->read_len == 1000 && c->in_len == 1000 &&
	      !memcmp(c->in, buf, 1000), "short READ(10)");
	l = cdb_inquiry(cdb, 0, 0, 255);
	c = tc_cmd(&t, cdb, l, FK_IN, NULL, 255);
	CHECK(good(c) && !(c->uflags & TCMU_UFLAG_READ_LEN),
	      "short read leaked into INQUIRY");
	CHECK(t.h.st.bytes_in == 1000 + 36, "bytes_in %llu",
	      (unsigned long long)t.h.st.bytes_in);
	tc_teardown(&t);

	/* short read aimed at one opcode */
	opts_default(&o);
	o.short_read = 20;
	o.short_read_op = 0x12;
	if (tc_setup(&t, &o, 64 << 10, 64)) {
		CHECK(0, "setup");
		return;
	}
	c = tc_cmd(&t, cdb, l, FK_IN, NULL, 255);
	CHECK(good(c) && c->read_len == 20 && c->in_len == 20,
	      "short INQUIRY");
	c = do_read(&t, 0x28, 16, 8);
	CHECK(good(c) && !(c->uflags & TCMU_UFLAG_READ_LEN),
	      "short read leaked into READ");
	tc_teardown(&t);
}

static void test_sense_inject(void)
{
	struct th_opts o;
	struct fk_cmd *c;
	struct tc t;
	uint8_t buf[512];

	opts_default(&o);
	o.sense_on = true;
	o.sense_key = 3;
	o.sense_asc = 0x11;
	o.sense_ascq = 0x01;
	o.sense_op = 0x28;
	if (tc_setup(&t, &o, 64 << 10, 64)) {
		CHECK(0, "setup");
		return;
	}
	memset(buf, 0, sizeof(buf));
	c = do_read(&t, 0x28, 0, 1);
	CHECK(sense_is(c, 3, 0x11, 0x01), "injected sense on READ(10)");
	c = do_read(&t, 0x88, 0, 1);
	CHECK(good(c), "READ(16) unaffected");
	c = do_write(&t, 0x2a, 0, 1, buf);
	CHECK(good(c), "WRITE(10) unaffected");
	tc_teardown(&t);

	o.sense_op = TH_OP_ANY;
	o.sense_key = 2;
	o.sense_asc = 0x04;
	o.sense_ascq = 0x00;
	if (tc_setup(&t, &o, 64 << 10, 64)) {
		CHECK(0, "setup");
		return;
	}
	c = do_write(&t, 0x2a, 0, 1, buf);
	CHECK(sense_is(c, 2, 0x04, 0x00), "injected sense on everything");
	tc_teardown(&t);
}

static bool file_has_line(const char *path, const char *line)
{
	char buf[256];
	bool found = false;
	FILE *f = fopen(path, "r");

	if (!f)
		return false;
	while (!found && fgets(buf, sizeof(buf), f)) {
		buf[strcspn(buf, "\n")] = '\0';
		found = !strcmp(buf, line);
	}
	fclose(f);
	return found;
}

static void test_keep_buf(void)
{
	char path[] = "/tmp/tcmu-handler-kept-XXXXXX", line[32];
	struct th_opts o;
	struct fk_cmd *c;
	struct tc t;
	int fd = mkstemp(path), id;
	uint8_t cdb[16];
	uint32_t l;

	CHECK(fd >= 0, "mkstemp");
	if (fd < 0)
		return;
	close(fd);
	opts_default(&o);
	o.keep_buf = true;
	o.kept_log = path;
	if (tc_setup(&t, &o, 64 << 10, 64)) {
		CHECK(0, "setup");
		return;
	}
	l = cdb_rw(cdb, 0x28, 0, 8);
	id = fk_submit(&t.k, cdb, l, FK_IN, NULL, 4096);
	tc_run(&t);
	c = &t.k.cmd[id];
	CHECK(good(c) && (c->uflags & TCMU_UFLAG_KEEP_BUF) && c->kept,
	      "KEEP_BUF completion");
	snprintf(line, sizeof(line), "%d", id);
	CHECK(file_has_line(path, line), "kept log lacks %s", line);
	CHECK(t.h.st.kept == 1, "kept counter");
	fk_free_kept(&t.k, (uint16_t)id);
	/* the id can be reused once freed */
	c = do_read(&t, 0x28, 0, 8);
	CHECK(good(c), "read after free");
	CHECK(!t.k.broken, "broken");
	tc_teardown(&t);
	unlink(path);
}

static void test_ignore(void)
{
	uint8_t cdb[16];
	struct th_opts o;
	struct tc t;
	int tur[2], rd[2], i, bad = 0;

	opts_default(&o);
	o.ignore_op = 0x00;
	if (tc_setup(&t, &o, 1024, 64)) {
		CHECK(0, "setup");
		return;
	}
	memset(cdb, 0, 16);
	tur[0] = fk_submit(&t.k, cdb, 6, FK_NONE, NULL, 0);
	cdb_rw(cdb, 0x28, 0, 1);
	rd[0] = fk_submit(&t.k, cdb, 10, FK_IN, NULL, 512);
	memset(cdb, 0, 16);
	tur[1] = fk_submit(&t.k, cdb, 6, FK_NONE, NULL, 0);
	cdb_rw(cdb, 0x28, 0, 1);
	rd[1] = fk_submit(&t.k, cdb, 10, FK_IN, NULL, 512);
	tc_run(&t);
	CHECK(t.k.cmd[rd[0]].done && t.k.cmd[rd[1]].done, "reads done");
	CHECK(!t.k.cmd[tur[0]].done && !t.k.cmd[tur[1]].done,
	      "ignored TURs completed");
	CHECK(t.h.st.ignored == 2, "ignored counter");
	/* the ring keeps working with two slots held forever */
	for (i = 0; i < 100; i++) {
		struct fk_cmd *c = do_read(&t, 0x28, (uint64_t)i, 1);

		bad += !good(c);
	}
	CHECK(!bad, "%d failures after ignoring", bad);
	CHECK(!t.k.broken, "broken");
	tc_teardown(&t);
}

static void test_tmr(void)
{
	char path[] = "/tmp/tcmu-handler-tmr-XXXXXX", line[64];
	uint16_t ids[3];
	uint8_t cdb[16];
	struct th_opts o;
	struct tc t;
	int fd = mkstemp(path), a, b;

	CHECK(fd >= 0, "mkstemp");
	if (fd < 0)
		return;
	close(fd);
	opts_default(&o);
	o.tmr_log = path;
	if (tc_setup(&t, &o, 4096, 64)) {
		CHECK(0, "setup");
		return;
	}
	cdb_rw(cdb, 0x28, 0, 1);
	a = fk_submit(&t.k, cdb, 10, FK_IN, NULL, 512);
	ids[0] = (uint16_t)a;
	ids[1] = 7;
	ids[2] = 300;
	fk_submit_tmr(&t.k, 5, ids, 3);
	b = fk_submit(&t.k, cdb, 10, FK_IN, NULL, 512);
	tc_run(&t);
	CHECK(t.k.cmd[a].done && t.k.cmd[b].done, "commands around a TMR");
	snprintf(line, sizeof(line), "TMR type=5 ids=%d,7,300", a);
	CHECK(file_has_line(path, line), "tmr log lacks \"%s\"", line);

	/* a lone TMR must still be moved past, and the kernel told */
	fk_submit_tmr(&t.k, 1, NULL, 0);
	tc_run(&t);
	CHECK(file_has_line(path, "TMR type=1 ids="), "empty TMR line");
	CHECK(fk_tail(&t.k) == fk_head(&t.k) &&
	      t.k.last_cleaned == fk_head(&t.k), "tail left behind a TMR");
	CHECK(t.h.st.tmr == 2, "tmr counter");
	tc_teardown(&t);
	unlink(path);
}

static void test_bad_entries(void)
{
	static const int modes[] = { FK_BAD_IOV_OFF, FK_IOV_IN_RING,
				     FK_BAD_CDB_OFF, FK_TOO_MANY_IOV };
	uint8_t cdb[16];
	struct th_opts o;
	struct fk_cmd *c;
	struct tc t;
	uint32_t i, head;
	int id;

	opts_default(&o);
	if (tc_setup(&t, &o, 4096, 64)) {
		CHECK(0, "setup");
		return;
	}
	for (i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		t.k.corrupt = modes[i];
		cdb_rw(cdb, 0x28, 0, 8);
		id = fk_submit(&t.k, cdb, 10, FK_IN, NULL, 4096);
		tc_run(&t);
		c = &t.k.cmd[id];
		CHECK(c->done && sense_is(c, SK_HARDWARE_ERROR, 0x44, 0),
		      "corruption mode %d not failed cleanly", modes[i]);
		CHECK(good(do_read(&t, 0x28, 0, 1)), "after mode %d",
		      modes[i]);
	}
	CHECK(t.h.st.bad_entries == 4, "bad_entries %llu",
	      (unsigned long long)t.h.st.bad_entries);

	/* an entry with no length: nothing sane can follow */
	head = fk_head(&t.k);
	memset(t.k.base + t.k.cmdr_off + head, 0, 8);
	fk_set_len_op(t.k.base + t.k.cmdr_off + head, TCMU_OP_CMD, 0);
	fk_set_head(&t.k, (head + 128) % t.k.cmdr_size);
	CHECK(th_service(&t.h) < 0, "zero length entry not refused");
	tc_teardown(&t);
}

/* configfs action/reset_ring zeroes head and tail under the handler. */
static void test_reset(void)
{
	struct th_cmd *stale = NULL;
	uint8_t cdb[16];
	struct th_opts o;
	struct fk_cmd *c;
	struct tc t;
	int i, id;

	opts_default(&o);
	o.ignore_op = 0x28;
	if (tc_setup(&t, &o, 4096, 64)) {
		CHECK(0, "setup");
		return;
	}
	for (i = 0; i < 3; i++) {
		cdb_rw(cdb, 0x28, 0, 1);
		fk_submit(&t.k, cdb, 10, FK_IN, NULL, 512);
	}
	tc_run(&t);
	/* one more, taken by hand so that it is in flight across the reset */
	cdb_rw(cdb, 0x88, 0, 1);
	fk_submit(&t.k, cdb, 16, FK_IN, NULL, 512);
	pthread_mutex_lock(&t.h.lock);
	CHECK(th_ring_take(&t.h, &stale) == 1, "take by hand");
	pthread_mutex_unlock(&t.h.lock);
	/* the kernel forgets everything and restarts the ring */
	fk_reset(&t.k, 2);
	for (i = 0; i < FK_IDS; i++)
		fk_release(&t.k.cmd[i]);
	memset(cdb, 0, 16);
	id = fk_submit(&t.k, cdb, 6, FK_NONE, NULL, 0);
	if (stale) {
		th_scsi_exec(&t.h, stale);
		pthread_mutex_lock(&t.h.lock);
		th_ring_sync(&t.h);
		CHECK(!th_ring_complete(&t.h, stale),
		      "completed a command from before the reset");
		pthread_mutex_unlock(&t.h.lock);
		th_cmd_free(stale);
	}
	tc_run(&t);
	c = &t.k.cmd[id];
	CHECK(good(c) && c->done, "TUR after ring reset");
	CHECK(t.h.st.resyncs == 1, "resyncs %llu",
	      (unsigned long long)t.h.st.resyncs);
	CHECK(t.h.st.dropped == 1, "dropped %llu",
	      (unsigned long long)t.h.st.dropped);
	CHECK(!t.k.broken, "broken");
	tc_teardown(&t);
}

static bool status_has(const char *path, const char *kv)
{
	return file_has_line(path, kv);
}

/* --exit-after / --crash-after in a child, then a new handler resumes. */
static void test_exit_crash(bool crash)
{
	char spath[] = "/tmp/tcmu-handler-status-XXXXXX";
	uint8_t buf[4096], cdb[16];
	struct th_opts o;
	struct tc t;
	int ids[4], i, st, fd = mkstemp(spath);
	pid_t pid;

	CHECK(fd >= 0, "mkstemp");
	if (fd < 0)
		return;
	close(fd);
	unlink(spath);
	opts_default(&o);
	if (crash)
		o.crash_after = 1;
	else
		o.exit_after = 2;
	o.status_file = spath;
	if (tc_setup(&t, &o, 64 << 10, 64)) {
		CHECK(0, "setup");
		return;
	}
	for (i = 0; i < 4; i++) {
		fill_pattern(buf, sizeof(buf), 40 + i);
		memcpy(t.h.ram + i * 4096, buf, 4096);
		cdb_rw(cdb, 0x28, i * 8, 8);
		ids[i] = fk_submit(&t.k, cdb, 10, FK_IN, NULL, 4096);
	}
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		struct rlimit rl = { 0, 0 };

		setrlimit(RLIMIT_CORE, &rl);
		th_verbose = -1;	/* keep the expected abort quiet */
		th_service(&t.h);
		_exit(99);		/* exit point not reached */
	}
	CHECK(pid > 0, "fork");
	if (pid < 0)
		goto out;
	CHECK(waitpid(pid, &st, 0) == pid, "waitpid");
	if (crash)
		CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT,
		      "child status 0x%x, wanted SIGABRT", st);
	else
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		      "child status 0x%x, wanted exit 0", st);

	/* the child kicked into its own copy of the simulation: reap here */
	fk_reap(&t.k);
	for (i = 0; i < 4; i++) {
		bool want = i < (crash ? 1 : 2);

		CHECK(t.k.cmd[ids[i]].done == want, "cmd %d done %d", i,
		      t.k.cmd[ids[i]].done);
	}
	if (!crash) {
		CHECK(status_has(spath, "completed=2"), "status file");
		unlink(spath);
	}

	/* a restarted handler picks up the rest from cmd_tail */
	t.h.opt.exit_after = 0;
	t.h.opt.crash_after = 0;
	t.h.halting = false;
	CHECK(!th_ring_attach(&t.h, t.k.base, t.k.size), "re-attach");
	tc_run(&t);
	for (i = 0; i < 4; i++) {
		struct fk_cmd *c = &t.k.cmd[ids[i]];

		fill_pattern(buf, sizeof(buf), 40 + i);
		CHECK(c->done && good(c) && !memcmp(c->in, buf, 4096),
		      "cmd %d after restart", i);
	}
	CHECK(!t.k.broken, "broken");
out:
	tc_teardown(&t);
}

static void test_exit_after(void)
{
	test_exit_crash(false);
}

static void test_crash_after(void)
{
	test_exit_crash(true);
}

static void test_status_file(void)
{
	char spath[] = "/tmp/tcmu-handler-status-XXXXXX";
	struct th_opts o;
	struct tc t;
	int fd = mkstemp(spath), i;

	CHECK(fd >= 0, "mkstemp");
	if (fd < 0)
		return;
	close(fd);
	opts_default(&o);
	o.status_file = spath;
	if (tc_setup(&t, &o, 64 << 10, 64)) {
		CHECK(0, "setup");
		return;
	}
	for (i = 0; i < 3; i++)
		do_read(&t, 0x28, 0, 2);
	th_write_status(&t.h);
	CHECK(status_has(spath, "commands=3") &&
	      status_has(spath, "completed=3") &&
	      status_has(spath, "op_0x28=3") &&
	      status_has(spath, "bytes_in=3072"), "status contents");
	tc_teardown(&t);
	unlink(spath);
}

static void test_big_transfer(void)
{
	static uint8_t buf[512 * 1024];
	struct th_opts o;
	struct fk_cmd *c;
	struct tc t;

	opts_default(&o);
	o.size = 16 << 20;
	if (tc_setup(&t, &o, 64 << 10, 512)) {
		CHECK(0, "setup");
		return;
	}
	t.k.split = true;
	t.k.reverse = true;
	/* 256 iovecs: the entry is far bigger than the minimum */
	fill_pattern(buf, sizeof(buf), 3);
	c = do_write(&t, 0x8a, 4096, sizeof(buf) / 512, buf);
	CHECK(good(c), "512 KiB write");
	c = do_read(&t, 0xa8, 4096, sizeof(buf) / 512);
	CHECK(good(c) && !memcmp(c->in, buf, sizeof(buf)), "512 KiB read");
	tc_teardown(&t);
}

/* ---- the hostile handler (--fuzz) ---- */

static void fuzz_opts(struct th_opts *o, const char *ops, uint64_t max,
		      int recover_ms)
{
	opts_default(o);
	o->fuzz = true;
	o->fuzz_seed = 20260101;
	o->fuzz_rate = 0;	/* at every chance */
	o->fuzz_ops = ops;
	o->fuzz_max = max;
	o->fuzz_recover_ms = recover_ms;
}

static int count_ops(const char *list, char *err)
{
	bool en[TH_FUZZ_MAX_OPS];
	int i, n = 0;

	memset(en, 0, sizeof(en));
	if (th_fuzz_parse_ops(list, en, err, 128))
		return -1;
	for (i = 0; i < TH_FUZZ_MAX_OPS; i++)
		n += en[i];
	return n;
}

static void test_fuzz_parse(void)
{
	char err[128];
	int all = count_ops(NULL, err);

	CHECK(all >= 30, "only %d actions", all);
	CHECK(count_ops("all", err) == all, "all");
	CHECK(count_ops("tail", err) == 7, "tail group: %d",
	      count_ops("tail", err));
	CHECK(count_ops("-drop", err) == all - 1, "-drop");
	CHECK(count_ops("all,-tail,tail_inside", err) == all - 6,
	      "all,-tail,tail_inside");
	CHECK(count_ops("tail_inside,,", err) == 1, "empty items");
	CHECK(count_ops("global", err) + count_ops("completion", err) == all,
	      "global + completion");
	CHECK(count_ops("breaking", err) > 5, "breaking");
	CHECK(count_ops("tail_inside,nosuch", err) < 0 &&
	      strstr(err, "nosuch"), "unknown name accepted (%s)", err);
	CHECK(count_ops("-", err) < 0, "bare '-' accepted");
}

/*
 * Each bad cmd_tail on its own: the simulated kernel marks the ring
 * broken for the right reason and refuses new commands; the handler
 * (told not to repair anything) keeps running; after a reset and
 * SIGUSR2 (th_resync) it serves again.
 */
static void test_fuzz_tail(void)
{
	static const struct { const char *op, *why; } cases[] = {
		{ "tail_outside", "cmd_tail outside the ring" },
		{ "tail_unaligned", "cmd_tail outside the ring" },
		{ "tail_beyond_head", "cmd_tail beyond cmd_head" },
		{ "tail_backwards", "cmd_tail beyond cmd_head" },
		{ "tail_inside", "cmd_tail inside an entry" },
		{ "tail_random", NULL },
	};
	uint8_t buf[4096], cdb[16];
	struct th_opts o;
	struct fk_cmd *c;
	struct tc t;
	unsigned int i;
	int id;

	fill_pattern(buf, sizeof(buf), 7);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		fuzz_opts(&o, cases[i].op, 1, -1);
		if (tc_setup(&t, &o, 4096, 64)) {
			CHECK(0, "setup");
			return;
		}
		/* traffic first, so that the tail is somewhere in the ring */
		cdb_rw(cdb, 0x2a, 0, 8);
		id = fk_submit(&t.k, cdb, 10, FK_OUT, buf, sizeof(buf));
		CHECK(id > 0, "%s: submit", cases[i].op);
		CHECK(tc_run(&t) == 0, "%s: the handler gave up",
		      cases[i].op);
		CHECK(th_fuzz_count(&t.h, cases[i].op) == 1,
		      "%s: done %llu times", cases[i].op,
		      (unsigned long long)th_fuzz_count(&t.h, cases[i].op));
		CHECK(t.k.broken, "%s: ring not broken", cases[i].op);
		if (cases[i].why)
			CHECK(t.k.why && !strcmp(t.k.why, cases[i].why),
			      "%s: broken because '%s'", cases[i].op,
			      t.k.why ? t.k.why : "(not)");
		CHECK(fk_submit(&t.k, cdb, 10, FK_IN, NULL, 512) == -EIO,
		      "%s: a broken ring took a new command", cases[i].op);
		fk_reset(&t.k, 1);
		th_resync = 1;
		c = do_read(&t, 0x28, 0, 8);
		CHECK(good(c), "%s: no service after the reset", cases[i].op);
		CHECK(!t.k.broken && t.h.st.resyncs == 1,
		      "%s: broken %d resyncs %llu", cases[i].op, t.k.broken,
		      (unsigned long long)t.h.st.resyncs);
		tc_teardown(&t);
	}
}

static uint64_t st_rnd(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

/* Keep the fake kernel busy with a mix of commands; errors are fine. */
static void storm_submit(struct tc *t, uint64_t *x, uint8_t *buf)
{
	uint8_t cdb[16];
	uint32_t n, len, kind = (uint32_t)(st_rnd(x) % 8);
	uint64_t lba = st_rnd(x) % 16000;

	n = 1 + (uint32_t)(st_rnd(x) % 16);
	len = n * 512;
	switch (kind) {
	case 0:
		memset(cdb, 0, 6);
		fk_submit(&t->k, cdb, 6, FK_NONE, NULL, 0);
		break;
	case 1:
		cdb_inquiry(cdb, 0, 0, 96);
		fk_submit(&t->k, cdb, 6, FK_IN, NULL, 96);
		break;
	case 2: case 3: case 4:
		fk_submit(&t->k, cdb, cdb_rw(cdb, 0x28, lba, n), FK_IN, NULL,
			  len);
		break;
	default:
		fk_submit(&t->k, cdb, cdb_rw(cdb, 0x2a, lba, n), FK_OUT, buf,
			  len);
		break;
	}
}

/*
 * Run the fuzzer for max actions against the simulated kernel. Returns
 * the action trace; the handler must never give up, and serve correctly
 * once it has done its worst.
 */
static uint64_t fuzz_storm(const char *ops, unsigned int threads,
			   uint64_t max, uint64_t seed, bool verify)
{
	static const char *const some[] = { "tail_outside", "tail_forward",
		"mailbox", "ring_scribble", "touch", "reset", "len",
		"status", "unknown_id", "repeat", "drop", "data" };
	uint8_t buf[8192], back[8192];
	uint64_t x = 88172645463325252ull, tr;
	struct th_opts o;
	struct fk_cmd *c;
	unsigned int i, rounds;
	struct tc t;

	fuzz_opts(&o, ops, max, 0);
	o.fuzz_seed = seed;
	o.threads = threads;
	if (tc_setup(&t, &o, 16384, 128)) {
		CHECK(0, "setup");
		return 0;
	}
	memset(buf, 0x5a, sizeof(buf));
	for (rounds = 0; rounds < 50000 &&
	     th_fuzz_count(&t.h, "actions") < max; rounds++) {
		for (i = 0; i < 6; i++)
			storm_submit(&t, &x, buf);
		if (th_service(&t.h) < 0) {
			CHECK(0, "the hostile handler gave up in round %u",
			      rounds);
			break;
		}
		th_workers_wait_idle(&t.h);
	}
	CHECK(th_fuzz_count(&t.h, "actions") >= max,
	      "%llu actions in %u rounds",
	      (unsigned long long)th_fuzz_count(&t.h, "actions"), rounds);
	CHECK(th_fuzz_count(&t.h, "recovers") > 0 && t.k.nbroken > 0 &&
	      t.k.resets > 0, "recovers %llu, broken %u times, resets %u",
	      (unsigned long long)th_fuzz_count(&t.h, "recovers"),
	      t.k.nbroken, t.k.resets);
	if (verify) {
		for (i = 0; i < sizeof(some) / sizeof(some[0]); i++)
			CHECK(th_fuzz_count(&t.h, some[i]) > 0,
			      "%s never happened", some[i]);
		/* done misbehaving: any repair due happens now */
		for (i = 0; i < 5; i++)
			th_service(&t.h);
		th_workers_wait_idle(&t.h);
		CHECK(!t.k.broken, "still broken (%s)", t.k.why);
		fill_pattern(buf, sizeof(buf), 99);
		c = do_write(&t, 0x2a, 2000, sizeof(buf) / 512, buf);
		CHECK(good(c), "write after the storm");
		c = do_read(&t, 0x28, 2000, sizeof(back) / 512);
		CHECK(good(c) && c->in_len == sizeof(back) &&
		      !memcmp(c->in, buf, sizeof(buf)),
		      "read back after the storm");
	}
	tr = th_fuzz_trace(&t.h);
	tc_teardown(&t);
	return tr;
}

static void test_fuzz_storm_inline(void)
{
	fuzz_storm(NULL, 1, 600, 1, true);
}

static void test_fuzz_storm_threads(void)
{
	fuzz_storm(NULL, 4, 600, 2, true);
}

/* The same seed gives the same misdeeds (inline, nothing timed). */
static void test_fuzz_seed(void)
{
	const char *ops = "-keep,-keep_twice,-uflags";
	uint64_t a = fuzz_storm(ops, 1, 200, 42, false);
	uint64_t b = fuzz_storm(ops, 1, 200, 42, false);
	uint64_t c = fuzz_storm(ops, 1, 200, 43, false);

	CHECK(a == b, "seed 42 gave traces %016llx and %016llx",
	      (unsigned long long)a, (unsigned long long)b);
	CHECK(a != c, "seeds 42 and 43 gave the same trace");
}

/* Faults on the shared region are caught where the fuzzer expects them. */
static void test_fuzz_faults(unsigned int threads)
{
	uint8_t cdb[16];
	struct th_opts o;
	struct fk_cmd *c;
	volatile uint8_t *p;
	struct tc t;
	int fd, id;

	fuzz_opts(&o, "drop", 0, 0);
	o.fuzz_rate = 1e-6;	/* enabled, but nothing due */
	o.threads = threads;
	/* the data area starts on a page boundary: 128 + 8064 */
	if (tc_setup(&t, &o, 8064, 16)) {
		CHECK(0, "setup");
		return;
	}
	fd = (int)syscall(SYS_memfd_create, "th-selftest", 0);
	CHECK(fd >= 0 && !ftruncate(fd, 4096), "memfd");
	p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(p != MAP_FAILED, "mmap");
	if (fd >= 0 && p != MAP_FAILED) {
		CHECK(th_fuzz_touch(p, true, 0x42) == 0 && p[0] == 0x42,
		      "touch of a good page");
		CHECK(th_fuzz_touch(p + 4096, false, 0) == SIGBUS,
		      "read beyond EOF not SIGBUS");
		CHECK(th_fuzz_touch(p + 4096, true, 1) == SIGBUS,
		      "write beyond EOF not SIGBUS");
		CHECK(th_fuzz_touch(p + 1, false, 0) == 0, "touch after");
		munmap((void *)p, 8192);
	}
	if (fd >= 0)
		close(fd);

	/* a READ whose data page cannot be touched: MEDIUM ERROR, no crash */
	CHECK(t.k.data_off % 4096 == 0, "data area not page aligned");
	cdb_rw(cdb, 0x28, 0, 8);
	id = fk_submit(&t.k, cdb, 10, FK_IN, NULL, 4096);
	mprotect(t.k.base + t.k.data_off, 16 * FK_BLK, PROT_NONE);
	tc_run(&t);
	mprotect(t.k.base + t.k.data_off, 16 * FK_BLK, PROT_READ | PROT_WRITE);
	c = id > 0 ? &t.k.cmd[id] : NULL;
	CHECK(c && c->done && sense_is(c, SK_MEDIUM_ERROR, 0x11, 0),
	      "fault while executing not turned into MEDIUM ERROR");
	CHECK(th_fuzz_count(&t.h, "exec_faults") == 1, "exec_faults %llu",
	      (unsigned long long)th_fuzz_count(&t.h, "exec_faults"));
	c = do_read(&t, 0x28, 0, 8);
	CHECK(good(c), "READ after the fault");
	tc_teardown(&t);
}

static void test_fuzz_faults_inline(void)
{
	test_fuzz_faults(1);
}

static void test_fuzz_faults_threads(void)
{
	test_fuzz_faults(3);
}

static const struct {
	const char *name;
	void (*fn)(void);
} tests[] = {
	{ "inquiry", test_inquiry },
	{ "capacity", test_capacity },
	{ "read_write_ram", test_rw_ram },
	{ "read_write_file", test_rw_file },
	{ "mode_sense", test_mode_sense },
	{ "misc_ops", test_misc_ops },
	{ "wrap_inline", test_wrap_inline },
	{ "wrap_ooo", test_wrap_ooo },
	{ "wrap_threads", test_wrap_threads },
	{ "ooo_order", test_ooo_order },
	{ "read_len", test_read_len },
	{ "sense_inject", test_sense_inject },
	{ "keep_buf", test_keep_buf },
	{ "ignore", test_ignore },
	{ "tmr", test_tmr },
	{ "bad_entries", test_bad_entries },
	{ "ring_reset", test_reset },
	{ "exit_after", test_exit_after },
	{ "crash_after", test_crash_after },
	{ "status_file", test_status_file },
	{ "big_transfer", test_big_transfer },
	{ "fuzz_parse", test_fuzz_parse },
	{ "fuzz_tail", test_fuzz_tail },
	{ "fuzz_storm_inline", test_fuzz_storm_inline },
	{ "fuzz_storm_threads", test_fuzz_storm_threads },
	{ "fuzz_seed", test_fuzz_seed },
	{ "fuzz_faults_inline", test_fuzz_faults_inline },
	{ "fuzz_faults_threads", test_fuzz_faults_threads },
};

int th_selftest(int verbose)
{
	unsigned int i, passed = 0, failed = 0;
	int saved = th_verbose;

	st_verbose = verbose;
	alarm(600);	/* a hang is a failure too */
	/* the bad-entry tests log errors on purpose; keep them quiet */
	th_verbose = verbose ? verbose : -1;
	for (i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		int before = failures;

		tests[i].fn();
		if (failures == before) {
			passed++;
			printf("ok %u %s\n", i + 1, tests[i].name);
		} else {
			failed++;
			printf("not ok %u %s\n", i + 1, tests[i].name);
		}
		fflush(stdout);
	}
	alarm(0);
	th_verbose = saved;
	printf("# %d checks, %d failed\n", checks, failures);
	printf("selftest: %u passed, %u failed\n", passed, failed);
	return failed ? 1 : 0;
}
