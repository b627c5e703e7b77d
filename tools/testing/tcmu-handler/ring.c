// SPDX-License-Identifier: GPL-2.0
/*
 * tcmu-handler: command ring handling.
 *
 * Two cursors walk the ring behind the kernel's cmd_head:
 *
 *   take  - the next entry the handler has not looked at yet. Taking a
 *           CMD entry copies its cmd_id, iovecs and CDB into a private
 *           struct th_cmd; PAD and TMR entries are consumed on the spot.
 *   tail  - the value last stored in mailbox->cmd_tail. Every CMD entry
 *           between tail and take has been taken but its slot has not
 *           been used for a completion yet.
 *
 * The kernel reads completions from the entries between its own last seen
 * tail and cmd_tail, skipping PAD and TMR entries and finding the command
 * through hdr.cmd_id of each CMD entry. So a completion does not have to go
 * into the entry the command arrived in: the handler writes the finished
 * command's cmd_id and response into the first CMD slot at tail, keeps
 * that slot's len_op, and moves tail past it. Commands finishing in any
 * order fill the slots in ring order; since a command is always taken
 * before anything completes into its slot, no request data is lost.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "tcmu-handler.h"

#define ENTRY_IOV_OFF	offsetof(struct tcmu_cmd_entry, req.iov)
#define IOV_SIZE	sizeof(struct iovec)

static uint32_t *mb_field(const struct th *h, size_t off)
{
	return (uint32_t *)(h->base + off);
}

uint32_t th_mb_head(const struct th *h)
{
	return __atomic_load_n(mb_field(h, offsetof(struct tcmu_mailbox,
						     cmd_head)),
			       __ATOMIC_ACQUIRE);
}

uint32_t th_mb_tail(const struct th *h)
{
	return __atomic_load_n(mb_field(h, offsetof(struct tcmu_mailbox,
						     cmd_tail)),
			       __ATOMIC_ACQUIRE);
}

static void mb_store_tail(struct th *h, uint32_t v)
{
	__atomic_store_n(mb_field(h, offsetof(struct tcmu_mailbox, cmd_tail)),
			 v, __ATOMIC_RELEASE);
}

static uint8_t *ring_at(const struct th *h, uint32_t off)
{
	return h->base + h->cmdr_off + off;
}

static uint32_t ring_load_u32(const struct th *h, uint32_t off)
{
	uint32_t v;

	memcpy(&v, ring_at(h, off), sizeof(v));
	return v;
}

/* Bytes from a to b going forward around the ring. */
static uint32_t ring_dist(const struct th *h, uint32_t a, uint32_t b)
{
	return (b + h->cmdr_size - a) % h->cmdr_size;
}

static uint32_t ring_advance(const struct th *h, uint32_t pos, uint32_t len)
{
	return (uint32_t)(((uint64_t)pos + len) % h->cmdr_size);
}

int th_ring_attach(struct th *h, void *base, uint64_t map_size)
{
	struct tcmu_mailbox *mb = base;
	uint32_t head, tail;

	if (map_size < sizeof(*mb)) {
		th_err("map of %llu bytes cannot hold the mailbox\n",
		       (unsigned long long)map_size);
		return -EINVAL;
	}
	if (mb->version != TCMU_MAILBOX_VERSION) {
		th_err("mailbox version %u, expected %u\n", mb->version,
		       TCMU_MAILBOX_VERSION);
		return -EPROTO;
	}
	h->base = base;
	h->map_size = map_size;
	h->mb_flags = mb->flags;
	h->cmdr_off = mb->cmdr_off;
	h->cmdr_size = mb->cmdr_size;

	if (h->cmdr_off < sizeof(*mb) || h->cmdr_off % TCMU_OP_ALIGN_SIZE ||
	    h->cmdr_size < 2 * sizeof(struct tcmu_cmd_entry) ||
	    h->cmdr_size % TCMU_OP_ALIGN_SIZE ||
	    (uint64_t)h->cmdr_off + h->cmdr_size > map_size) {
		th_err("bad ring geometry: cmdr_off %u cmdr_size %u map %llu\n",
		       h->cmdr_off, h->cmdr_size,
		       (unsigned long long)map_size);
		return -EPROTO;
	}
	h->data_off = (uint64_t)h->cmdr_off + h->cmdr_size;

	head = th_mb_head(h);
	tail = th_mb_tail(h);
	if (head >= h->cmdr_size || tail >= h->cmdr_size ||
	    head % TCMU_OP_ALIGN_SIZE || tail % TCMU_OP_ALIGN_SIZE) {
		th_err("bad ring cursors: head %u tail %u\n", head, tail);
		return -EPROTO;
	}
	h->take = tail;
	h->tail = tail;
	h->broken = false;
	h->tail_moved = false;

	th_info("ring: map %llu bytes, flags 0x%x, cmdr_off %u cmdr_size %u, head %u tail %u\n",
		(unsigned long long)map_size, h->mb_flags, h->cmdr_off,
		h->cmdr_size, head, tail);
	if (h->opt.ooo && !(h->mb_flags & TCMU_MAILBOX_FLAG_CAP_OOOC))
		th_err("warning: kernel does not advertise CAP_OOOC\n");
	if ((h->opt.read_len || h->opt.short_read) &&
	    !(h->mb_flags & TCMU_MAILBOX_FLAG_CAP_READ_LEN))
		th_err("warning: kernel does not advertise CAP_READ_LEN\n");
	if (h->opt.keep_buf && !(h->mb_flags & TCMU_MAILBOX_FLAG_CAP_KEEP_BUF))
		th_err("warning: kernel does not advertise CAP_KEEP_BUF\n");
	return 0;
}

/*
 * Notice a ring reset done behind our back (configfs action/reset_ring sets
 * head and tail to 0): our tail no longer matches the mailbox, or the
 * entries we think we took are not between tail and head any more. Start
 * over from the kernel's tail; commands taken before are dropped.
 * Called with h->lock held.
 */
void th_ring_sync(struct th *h)
{
	uint32_t mtail = th_mb_tail(h);
	uint32_t head = th_mb_head(h);

	if (h->broken)
		return;
	if (head >= h->cmdr_size || head % TCMU_OP_ALIGN_SIZE) {
		th_err("kernel cmd_head %u is not a valid ring offset\n", head);
		h->broken = true;
		return;
	}
	if (mtail == h->tail &&
	    ring_dist(h, h->tail, h->take) <= ring_dist(h, h->tail, head))
		return;
	if (mtail >= h->cmdr_size || mtail % TCMU_OP_ALIGN_SIZE) {
		th_err("kernel cmd_tail %u is not a valid ring offset\n",
		       mtail);
		h->broken = true;
		return;
	}
	th_err("ring was reset (tail %u->%u, take %u, head %u); dropping taken commands\n",
	       h->tail, mtail, h->take, head);
	h->gen++;
	h->st.resyncs++;
	h->tail = mtail;
	h->take = mtail;
}

unsigned int th_cdb_len(const uint8_t *cdb)
{
	/* CDB length by group code (top three bits of the opcode). */
	static const uint8_t group_len[8] = { 6, 10, 10, 12, 16, 12, 10, 10 };

	if (cdb[0] == 0x7f)	/* variable length: 8 + additional length */
		return 8u + cdb[7];
	return group_len[cdb[0] >> 5];
}

void th_cmd_free(struct th_cmd *c)
{
	if (!c)
		return;
	free(c->iov);
	free(c);
}

/* Copy the CDB of a command; it must lie inside the ring. */
static bool take_cdb(struct th *h, struct th_cmd *c, uint64_t cdb_off)
{
	uint64_t ring_end = h->data_off;
	uint8_t head8[8];
	unsigned int len;

	if (cdb_off < h->cmdr_off || cdb_off >= ring_end ||
	    ring_end - cdb_off < 6) {
		th_err("cmd %u: cdb_off %llu outside the ring\n", c->cmd_id,
		       (unsigned long long)cdb_off);
		return false;
	}
	memset(head8, 0, sizeof(head8));
	memcpy(head8, h->base + cdb_off,
	       ring_end - cdb_off < 8 ? ring_end - cdb_off : 8);
	len = th_cdb_len(head8);
	if (len > ring_end - cdb_off) {
		th_err("cmd %u: CDB of %u bytes runs off the ring\n",
		       c->cmd_id, len);
		return false;
	}
	c->cdb_len = len;
	memcpy(c->cdb, h->base + cdb_off, len < TH_CDB_MAX ? len : TH_CDB_MAX);
	return true;
}

/* Copy the request out of a CMD entry of length len at ring offset pos. */
static struct th_cmd *take_cmd(struct th *h, uint32_t pos, uint32_t len)
{
	const uint8_t *ent = ring_at(h, pos);
	struct tcmu_cmd_entry e;
	struct th_cmd *c;
	uint64_t n, need, i;

	memcpy(&e, ent, sizeof(e));
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->cmd_id = e.hdr.cmd_id;
	c->gen = h->gen;
	c->seq = h->seq++;

	n = (uint64_t)e.req.iov_cnt + e.req.iov_bidi_cnt + e.req.iov_dif_cnt;
	need = ENTRY_IOV_OFF + n * IOV_SIZE;
	if (need > len) {
		th_err("cmd %u: %llu iovecs do not fit a %u byte entry\n",
		       c->cmd_id, (unsigned long long)n, len);
		c->bad = true;
		goto out;
	}
	c->iov_cnt = e.req.iov_cnt;
	c->bidi_cnt = e.req.iov_bidi_cnt;
	n = (uint64_t)c->iov_cnt + c->bidi_cnt;
	if (n) {
		c->iov = calloc(n, sizeof(*c->iov));
		if (!c->iov) {
			th_err("cmd %u: out of memory for %llu iovecs\n",
			       c->cmd_id, (unsigned long long)n);
			c->iov_cnt = c->bidi_cnt = 0;
			c->bad = true;
			goto out;
		}
	}
	for (i = 0; i < n; i++) {
		struct iovec v;
		uint64_t off, l;

		memcpy(&v, ent + ENTRY_IOV_OFF + i * IOV_SIZE, sizeof(v));
		off = (uint64_t)(uintptr_t)v.iov_base;
		l = v.iov_len;
		if (off < h->data_off || off > h->map_size ||
		    l > h->map_size - off) {
			th_err("cmd %u: iovec %llu (off %llu len %llu) outside the data area\n",
			       c->cmd_id, (unsigned long long)i,
			       (unsigned long long)off, (unsigned long long)l);
			c->bad = true;
		}
		c->iov[i].off = off;
		c->iov[i].len = l;
	}
	if (c->bad) {
		/* never touch memory described by a bad entry */
		c->iov_cnt = c->bidi_cnt = 0;
	}
out:
	if (!take_cdb(h, c, e.req.cdb_off)) {
		c->bad = true;
		c->cdb_len = 0;
		memset(c->cdb, 0, sizeof(c->cdb));
	}
	return c;
}

static void log_tmr(struct th *h, uint32_t pos, uint32_t len)
{
	const uint8_t *ent = ring_at(h, pos);
	struct tcmu_tmr_entry t;
	uint32_t cnt, i, fit;
	char *line;
	size_t cap, used;

	memcpy(&t, ent, sizeof(t));
	cnt = t.cmd_cnt;
	fit = (len - sizeof(t)) / sizeof(uint16_t);
	if (cnt > fit) {
		th_err("TMR entry claims %u ids, only %u fit\n", cnt, fit);
		h->st.bad_entries++;
		cnt = fit;
	}
	cap = 64 + (size_t)cnt * 6;
	line = malloc(cap);
	if (!line)
		return;
	used = (size_t)snprintf(line, cap, "TMR type=%u ids=", t.tmr_type);
	for (i = 0; i < cnt; i++) {
		uint16_t id;

		memcpy(&id, ent + sizeof(t) + i * sizeof(id), sizeof(id));
		used += (size_t)snprintf(line + used, cap - used, "%s%u",
					 i ? "," : "", id);
	}
	th_info("%s\n", line);
	if (h->opt.tmr_log)
		th_append_line(h->opt.tmr_log, "%s\n", line);
	free(line);
}

/*
 * Take the next CMD entry between take and cmd_head. PAD and TMR entries
 * on the way are consumed. Returns 1 with *out set, 0 when the ring holds
 * nothing more, -1 when the ring is unusable. Called with h->lock held.
 */
int th_ring_take(struct th *h, struct th_cmd **out)
{
	*out = NULL;

	for (;;) {
		uint32_t head, pos = h->take, to_end, avail, len_op, len;
		struct th_cmd *c;

		if (h->broken)
			return -1;
		head = th_mb_head(h);
		if (head >= h->cmdr_size || head % TCMU_OP_ALIGN_SIZE) {
			th_err("kernel cmd_head %u is not a valid ring offset\n",
			       head);
			h->broken = true;
			return -1;
		}
		if (pos == head)
			return 0;

		to_end = h->cmdr_size - pos;
		avail = ring_dist(h, pos, head);
		len_op = ring_load_u32(h, pos);
		len = tcmu_hdr_get_len(len_op);
		if (!len || len % TCMU_OP_ALIGN_SIZE || len > to_end ||
		    len > avail) {
			th_err("entry at %u: length %u invalid (to end %u, to head %u)\n",
			       pos, len, to_end, avail);
			h->st.bad_entries++;
			h->broken = true;
			return -1;
		}

		switch (tcmu_hdr_get_op(len_op)) {
		case TCMU_OP_PAD:
			th_dbg("PAD at %u, %u bytes\n", pos, len);
			h->st.pad++;
			h->take = ring_advance(h, pos, len);
			continue;
		case TCMU_OP_TMR:
			if (len < sizeof(struct tcmu_tmr_entry)) {
				th_err("TMR entry at %u too short (%u)\n",
				       pos, len);
				h->st.bad_entries++;
			} else {
				log_tmr(h, pos, len);
			}
			h->st.tmr++;
			h->take = ring_advance(h, pos, len);
			continue;
		case TCMU_OP_CMD:
			break;
		default:
			th_err("entry at %u: unknown opcode %u\n", pos,
			       tcmu_hdr_get_op(len_op));
			h->st.bad_entries++;
			h->broken = true;
			return -1;
		}

		/*
		 * The slot must be able to hold a response, whichever command
		 * it ends up completing.
		 */
		if (len < sizeof(struct tcmu_cmd_entry)) {
			th_err("CMD entry at %u too short (%u)\n", pos, len);
			h->st.bad_entries++;
			h->broken = true;
			return -1;
		}
		c = take_cmd(h, pos, len);
		if (!c) {
			/* leave it on the ring and try again later */
			th_err("out of memory taking entry at %u\n", pos);
			return 0;
		}
		h->take = ring_advance(h, pos, len);
		h->st.commands++;
		h->st.per_op[c->cdb[0]]++;
		if (c->bad)
			h->st.bad_entries++;
		th_dbg("take cmd %u op 0x%02x at %u len %u iov %u+%u\n",
		       c->cmd_id, c->cdb[0], pos, len, c->iov_cnt,
		       c->bidi_cnt);
		*out = c;
		return 1;
	}
}

/*
 * Length of the already taken entry at pos, checked again: the ring is
 * shared memory, and walking it with a length someone scribbled over would
 * loop forever. Returns 0 (and marks the ring broken) if it is unusable.
 */
static uint32_t taken_len(struct th *h, uint32_t pos, uint32_t len_op)
{
	uint32_t len = tcmu_hdr_get_len(len_op);

	if (!len || len % TCMU_OP_ALIGN_SIZE ||
	    len > ring_dist(h, pos, h->take)) {
		th_err("entry at %u changed under us (len_op 0x%x)\n", pos,
		       len_op);
		h->broken = true;
		return 0;
	}
	return len;
}

/* Advance tail over PAD/TMR entries that were already taken. Lock held. */
void th_ring_skip_idle(struct th *h)
{
	uint32_t t = h->tail;

	while (t != h->take) {
		uint32_t len_op = ring_load_u32(h, t), len;

		if (tcmu_hdr_get_op(len_op) == TCMU_OP_CMD)
			break;
		len = taken_len(h, t, len_op);
		if (!len)
			break;
		t = ring_advance(h, t, len);
	}
	if (t != h->tail) {
		h->tail = t;
		mb_store_tail(h, t);
		h->tail_moved = true;
	}
}

/*
 * Find the first CMD slot at or after from (and before take), skipping
 * PAD and TMR entries already taken. On success *slot and *len describe
 * it; on failure the ring is marked broken. Called with h->lock held.
 */
bool th_ring_next_slot(struct th *h, uint32_t from, uint32_t *slot,
		       uint32_t *len)
{
	uint32_t len_op, l, t = from;

	for (;;) {
		if (t == h->take)
			return false;
		len_op = ring_load_u32(h, t);
		l = taken_len(h, t, len_op);
		if (!l)
			return false;
		if (tcmu_hdr_get_op(len_op) == TCMU_OP_CMD)
			break;
		t = ring_advance(h, t, l);
	}
	if (l < sizeof(struct tcmu_cmd_entry)) {
		th_err("slot at %u too short for a response (%u)\n", t, l);
		h->broken = true;
		return false;
	}
	*slot = t;
	*len = l;
	return true;
}

/* Write the response of c, under the id given, into the slot at off. */
void th_ring_write_rsp(struct th *h, uint32_t off, uint16_t id,
		       const struct th_cmd *c)
{
	struct tcmu_cmd_entry *e = (struct tcmu_cmd_entry *)ring_at(h, off);

	e->hdr.cmd_id = id;
	e->hdr.uflags = c->uflags;
	e->rsp.scsi_status = c->status;
	e->rsp.__pad1 = 0;
	e->rsp.__pad2 = 0;
	e->rsp.read_len = c->read_len;
	memset(e->rsp.sense_buffer, 0, sizeof(e->rsp.sense_buffer));
	if (c->status == SAM_CHECK_CONDITION)
		memcpy(e->rsp.sense_buffer, c->sense, TH_SENSE_LEN);
}

/* Move our tail (and mailbox cmd_tail) to t. Called with h->lock held. */
void th_ring_set_tail(struct th *h, uint32_t t)
{
	h->tail = t;
	mb_store_tail(h, t);
	h->tail_moved = true;
}

/* Store any value in mailbox cmd_tail; our own tail stays put. */
void th_mb_store_tail(struct th *h, uint32_t v)
{
	mb_store_tail(h, v);
}

/* Forget every taken command and carry on from the mailbox's cmd_tail. */
void th_ring_restart(struct th *h)
{
	uint32_t t = th_mb_tail(h);

	if (t >= h->cmdr_size || t % TCMU_OP_ALIGN_SIZE)
		t = 0;
	h->gen++;
	h->tail = t;
	h->take = t;
	h->broken = false;
	h->tail_moved = false;
}

uint32_t th_ring_advance(const struct th *h, uint32_t pos, uint32_t len)
{
	return ring_advance(h, pos, len);
}

uint8_t *th_ring_ptr(const struct th *h, uint32_t off)
{
	return ring_at(h, off);
}

/*
 * May c still be completed: its ring generation was not reset and the
 * ring is sound? Called with h->lock held.
 */
bool th_ring_owns(struct th *h, const struct th_cmd *c)
{
	if (c->gen != h->gen) {
		h->st.dropped++;
		return false;
	}
	return !h->broken;
}

/*
 * The CMD slot the next response goes to; false (and the ring marked
 * broken) if there is none. Called with h->lock held.
 */
bool th_ring_rsp_slot(struct th *h, const struct th_cmd *c, uint32_t *slot,
		      uint32_t *len)
{
	if (th_ring_next_slot(h, h->tail, slot, len))
		return true;
	if (!h->broken) {
		/* cannot happen: every taken command owns a slot */
		th_err("no ring slot left to complete cmd %u\n", c->cmd_id);
		h->broken = true;
	}
	return false;
}

/*
 * Publish the response of c in the next free CMD slot and move cmd_tail
 * past it. Returns false when the command belongs to a ring generation
 * that has been reset. Called with h->lock held.
 */
bool th_ring_complete(struct th *h, struct th_cmd *c)
{
	uint32_t slot, len;

	if (!th_ring_owns(h, c) || !th_ring_rsp_slot(h, c, &slot, &len))
		return false;
	th_ring_write_rsp(h, slot, c->cmd_id, c);
	th_dbg("complete cmd %u in slot %u status 0x%02x uflags 0x%x read_len %u\n",
	       c->cmd_id, slot, c->status, c->uflags, c->read_len);
	th_ring_set_tail(h, ring_advance(h, slot, len));
	h->st.completed++;
	return true;
}

/* Total bytes described by the main (or the BIDI Data-In) iovecs. */
uint64_t th_data_len(const struct th_cmd *c, bool bidi_in)
{
	uint32_t first = bidi_in ? c->iov_cnt : 0;
	uint32_t cnt = bidi_in ? c->bidi_cnt : c->iov_cnt;
	uint64_t sum = 0;
	uint32_t i;

	for (i = 0; i < cnt; i++)
		sum += c->iov[first + i].len;
	return sum;
}

/*
 * Walk the bytes [off, off + len) of a command's data stream and hand each
 * contiguous piece of the shared region to fn, with its position relative
 * to off. Stops early when the iovecs end or fn returns non-zero.
 */
int th_for_each_seg(struct th *h, const struct th_cmd *c, bool bidi_in,
		    uint64_t off, uint64_t len, th_seg_fn fn, void *arg)
{
	uint32_t first = bidi_in ? c->iov_cnt : 0;
	uint32_t cnt = bidi_in ? c->bidi_cnt : c->iov_cnt;
	uint64_t pos = 0;
	uint32_t i;

	for (i = 0; i < cnt && len; i++) {
		const struct th_iov *v = &c->iov[first + i];
		uint64_t skip, n;
		int ret;

		if (off >= v->len) {
			off -= v->len;
			continue;
		}
		skip = off;
		off = 0;
		n = v->len - skip;
		if (n > len)
			n = len;
		/* bounds were checked when the command was taken */
		ret = fn(h->base + v->off + skip, n, pos, arg);
		if (ret)
			return ret;
		pos += n;
		len -= n;
	}
	return 0;
}

struct copy_arg {
	uint8_t *buf;
	uint64_t done;
	bool to_cmd;
};

static int copy_seg(uint8_t *p, uint64_t len, uint64_t pos, void *arg)
{
	struct copy_arg *a = arg;

	if (a->to_cmd)
		memcpy(p, a->buf + pos, len);
	else
		memcpy(a->buf + pos, p, len);
	a->done += len;
	return 0;
}

uint64_t th_copy_to_cmd(struct th *h, const struct th_cmd *c,
			const void *src, uint64_t len)
{
	struct copy_arg a = { (uint8_t *)src, 0, true };

	th_for_each_seg(h, c, false, 0, len, copy_seg, &a);
	return a.done;
}

uint64_t th_copy_from_cmd(struct th *h, const struct th_cmd *c,
			  void *dst, uint64_t len)
{
	struct copy_arg a = { dst, 0, false };

	th_for_each_seg(h, c, false, 0, len, copy_seg, &a);
	return a.done;
}
