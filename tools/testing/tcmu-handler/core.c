// SPDX-License-Identifier: GPL-2.0
/*
 * tcmu-handler: the processing loop that sits between the ring and the
 * SCSI layer. Nothing here knows about the UIO file descriptor: waking up
 * is the caller's business and telling the kernel goes through h->kick,
 * so the self-test can drive the same code against a simulated kernel.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tcmu-handler.h"

volatile int th_stop;
volatile int th_resync;

struct th_pool {
	pthread_t *tids;
	unsigned int n;
	pthread_mutex_t mu;
	pthread_cond_t work;
	pthread_cond_t idle;
	struct th_cmd *head;
	struct th_cmd **tailp;
	unsigned int busy;
	bool stop;
};

void th_append_line(const char *path, const char *fmt, ...)
{
	va_list ap;
	FILE *f = fopen(path, "a");

	if (!f) {
		th_err("%s: %s\n", path, strerror(errno));
		return;
	}
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fclose(f);
}

int th_core_init(struct th *h)
{
	int ret = pthread_mutex_init(&h->lock, NULL);

	if (ret)
		return -ret;
	memset(&h->st, 0, sizeof(h->st));
	h->halting = false;
	h->pool = NULL;
	return 0;
}

void th_core_fini(struct th *h)
{
	pthread_mutex_destroy(&h->lock);
}

static void sleep_ms(unsigned int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* Tell the kernel about completions published since the last kick. */
static void kick(struct th *h)
{
	bool need;

	pthread_mutex_lock(&h->lock);
	need = h->tail_moved;
	h->tail_moved = false;
	if (need)
		h->st.kicks++;
	pthread_mutex_unlock(&h->lock);
	if (need && h->kick)
		h->kick(h);
}

static void free_kept(struct th *h, uint16_t id)
{
	char path[600];

	if (!h->cfs_dir[0]) {
		th_err("--free-kept: configfs directory unknown\n");
		return;
	}
	snprintf(path, sizeof(path), "%s/action/free_kept_buf", h->cfs_dir);
	th_append_line(path, "%u\n", id);
}

void th_write_status(struct th *h)
{
	struct th_stats s;
	char tmp[4200];
	FILE *f;
	int i;

	if (!h->opt.status_file)
		return;
	pthread_mutex_lock(&h->lock);
	s = h->st;
	pthread_mutex_unlock(&h->lock);

	snprintf(tmp, sizeof(tmp), "%s.tmp.%d", h->opt.status_file,
		 (int)getpid());
	f = fopen(tmp, "w");
	if (!f) {
		th_err("%s: %s\n", tmp, strerror(errno));
		return;
	}
	fprintf(f, "commands=%llu\n", (unsigned long long)s.commands);
	fprintf(f, "completed=%llu\n", (unsigned long long)s.completed);
	fprintf(f, "ignored=%llu\n", (unsigned long long)s.ignored);
	fprintf(f, "dropped=%llu\n", (unsigned long long)s.dropped);
	fprintf(f, "check_conditions=%llu\n",
		(unsigned long long)s.check_conditions);
	fprintf(f, "unknown_op=%llu\n", (unsigned long long)s.unknown_op);
	fprintf(f, "kept=%llu\n", (unsigned long long)s.kept);
	fprintf(f, "tmr=%llu\n", (unsigned long long)s.tmr);
	fprintf(f, "pad=%llu\n", (unsigned long long)s.pad);
	fprintf(f, "bad_entries=%llu\n", (unsigned long long)s.bad_entries);
	fprintf(f, "bytes_in=%llu\n", (unsigned long long)s.bytes_in);
	fprintf(f, "bytes_out=%llu\n", (unsigned long long)s.bytes_out);
	fprintf(f, "kicks=%llu\n", (unsigned long long)s.kicks);
	fprintf(f, "wakeups=%llu\n", (unsigned long long)s.wakeups);
	fprintf(f, "resyncs=%llu\n", (unsigned long long)s.resyncs);
	for (i = 0; i < 256; i++)
		if (s.per_op[i])
			fprintf(f, "op_0x%02x=%llu\n", i,
				(unsigned long long)s.per_op[i]);
	if (h->fuzz)
		th_fuzz_status(h, f);
	if (fclose(f) || rename(tmp, h->opt.status_file)) {
		th_err("%s: %s\n", h->opt.status_file, strerror(errno));
		unlink(tmp);
	}
}

enum halt_kind { HALT_NONE, HALT_EXIT, HALT_CRASH, HALT_REFUSED };

static void halt(struct th *h, enum halt_kind how)
{
	kick(h);
	if (how == HALT_CRASH) {
		th_err("crash point reached after %llu completions, aborting\n",
		       (unsigned long long)h->opt.crash_after);
		abort();
	}
	th_info("exit point reached after %llu completions\n",
		(unsigned long long)h->opt.exit_after);
	th_write_status(h);
	fflush(NULL);
	_exit(0);
}

/* Publish one finished command and do the bookkeeping around it. */
static enum halt_kind finish_cmd(struct th *h, struct th_cmd *c)
{
	enum halt_kind how = HALT_NONE;

	pthread_mutex_lock(&h->lock);
	if (h->halting) {
		pthread_mutex_unlock(&h->lock);
		return HALT_REFUSED;
	}
	if (h->fuzz ? th_fuzz_complete(h, c) : th_ring_complete(h, c)) {
		h->st.bytes_in += c->in_bytes;
		h->st.bytes_out += c->out_bytes;
		if (c->status == SAM_CHECK_CONDITION)
			h->st.check_conditions++;
		if (c->uflags & TCMU_UFLAG_UNKNOWN_OP)
			h->st.unknown_op++;
		if (c->uflags & TCMU_UFLAG_KEEP_BUF) {
			h->st.kept++;
			th_info("kept buffer of cmd %u\n", c->cmd_id);
			if (h->opt.kept_log)
				th_append_line(h->opt.kept_log, "%u\n",
					       c->cmd_id);
		}
		if (h->opt.exit_after && h->st.completed >= h->opt.exit_after)
			how = HALT_EXIT;
		else if (h->opt.crash_after &&
			 h->st.completed >= h->opt.crash_after)
			how = HALT_CRASH;
		if (how != HALT_NONE)
			h->halting = true;
	}
	pthread_mutex_unlock(&h->lock);
	return how;
}

/* Complete c (unless it is to be ignored), then free it. */
static void deliver(struct th *h, struct th_cmd *c, bool kick_each)
{
	enum halt_kind how;

	if (c->ignore) {
		pthread_mutex_lock(&h->lock);
		h->st.ignored++;
		pthread_mutex_unlock(&h->lock);
		th_dbg("ignoring cmd %u op 0x%02x\n", c->cmd_id, c->cdb[0]);
		th_cmd_free(c);
		return;
	}
	if (h->opt.delay_ms) {
		/* let the kernel see what is done before sleeping */
		kick(h);
		sleep_ms(h->opt.delay_ms);
	}
	how = finish_cmd(h, c);
	if (how == HALT_EXIT || how == HALT_CRASH)
		halt(h, how);
	if (kick_each)
		kick(h);
	if (how == HALT_NONE && h->opt.free_kept &&
	    (c->uflags & TCMU_UFLAG_KEEP_BUF)) {
		kick(h);
		free_kept(h, c->cmd_id);
	}
	th_cmd_free(c);
}

/* Take everything the ring holds right now; appends to *lt. */
static int take_batch(struct th *h, struct th_cmd ***lt, bool *broken)
{
	struct th_cmd *c;
	int n = 0, r;

	pthread_mutex_lock(&h->lock);
	th_ring_sync(h);
	while ((r = th_ring_take(h, &c)) > 0) {
		if (h->fuzz)
			th_fuzz_taken(h, c);
		**lt = c;
		*lt = &c->next;
		n++;
	}
	th_ring_skip_idle(h);
	*broken = h->broken;
	pthread_mutex_unlock(&h->lock);
	return n;
}

static struct th_cmd *reverse(struct th_cmd *list)
{
	struct th_cmd *c, *rev = NULL;

	while (list) {
		c = list;
		list = c->next;
		c->next = rev;
		rev = c;
	}
	return rev;
}

/* Run one command; the hostile handler guards against SIGBUS. */
void th_exec(struct th *h, struct th_cmd *c)
{
	if (h->fuzz)
		th_fuzz_exec(h, c);
	else
		th_scsi_exec(h, c);
}

static void process_inline(struct th *h, struct th_cmd *list)
{
	struct th_cmd *c;

	for (c = list; c; c = c->next)
		th_exec(h, c);

	/* with --ooo the batch completes newest first */
	if (h->opt.ooo)
		list = reverse(list);
	while (list) {
		c = list;
		list = c->next;
		deliver(h, c, false);
	}
}

static void pool_push(struct th_pool *p, struct th_cmd *list)
{
	if (!list)
		return;
	pthread_mutex_lock(&p->mu);
	*p->tailp = list;
	while (list->next)
		list = list->next;
	p->tailp = &list->next;
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->mu);
}

/*
 * One pass over the ring: take every available entry, then process the
 * commands inline or hand them to the workers, and kick the kernel once.
 * Returns the number of commands taken, or -1 when the ring is broken
 * (the hostile handler repairs it instead, or waits for SIGUSR2).
 */
int th_service(struct th *h)
{
	struct th_cmd *list = NULL, **lt = &list;
	bool broken = false;
	int n, m, i;

	if (th_resync) {
		/* someone reset the ring (action/reset_ring) and told us */
		th_resync = 0;
		th_workers_wait_idle(h);
		pthread_mutex_lock(&h->lock);
		th_info("resync requested: head %u tail %u (ours %u, take %u)\n",
			th_mb_head(h), th_mb_tail(h), h->tail, h->take);
		th_ring_restart(h);
		h->st.resyncs++;
		pthread_mutex_unlock(&h->lock);
	}
	if (h->fuzz)
		th_fuzz_tick(h);

	n = take_batch(h, &lt, &broken);
	if (h->opt.ooo && !h->pool && n > 0 && !broken) {
		/* give a burst of commands the chance to pile up */
		for (i = 0; i < 4; i++) {
			sleep_ms(1);
			m = take_batch(h, &lt, &broken);
			if (m <= 0 || broken)
				break;
			n += m;
		}
	}
	if (h->pool)
		pool_push(h->pool, h->opt.ooo ? reverse(list) : list);
	else
		process_inline(h, list);
	kick(h);
	pthread_mutex_lock(&h->lock);
	broken |= h->broken;
	pthread_mutex_unlock(&h->lock);
	if (broken && h->fuzz)
		return th_fuzz_broken(h);
	return broken ? -1 : n;
}

static void *worker(void *arg)
{
	struct th *h = arg;
	struct th_pool *p = h->pool;
	struct th_cmd *c;

	for (;;) {
		pthread_mutex_lock(&p->mu);
		while (!p->head && !p->stop)
			pthread_cond_wait(&p->work, &p->mu);
		c = p->head;
		if (!c) {
			pthread_mutex_unlock(&p->mu);
			break;
		}
		p->head = c->next;
		if (!p->head)
			p->tailp = &p->head;
		c->next = NULL;
		p->busy++;
		pthread_mutex_unlock(&p->mu);

		th_exec(h, c);
		deliver(h, c, true);

		pthread_mutex_lock(&p->mu);
		p->busy--;
		if (!p->head && !p->busy)
			pthread_cond_broadcast(&p->idle);
		pthread_mutex_unlock(&p->mu);
	}
	return NULL;
}

int th_workers_start(struct th *h)
{
	struct th_pool *p;
	sigset_t all, old;
	unsigned int i;
	int ret = 0;

	if (h->opt.threads <= 1)
		return 0;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->tids = calloc(h->opt.threads, sizeof(*p->tids));
	if (!p->tids) {
		free(p);
		return -ENOMEM;
	}
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->work, NULL);
	pthread_cond_init(&p->idle, NULL);
	p->tailp = &p->head;
	h->pool = p;

	/*
	 * Signals are for the main thread only, except faults: a blocked
	 * SIGBUS would kill the process even where --fuzz catches it.
	 */
	sigfillset(&all);
	sigdelset(&all, SIGBUS);
	sigdelset(&all, SIGSEGV);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (i = 0; i < h->opt.threads; i++) {
		ret = pthread_create(&p->tids[i], NULL, worker, h);
		if (ret)
			break;
		p->n++;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ret) {
		th_err("pthread_create: %s\n", strerror(ret));
		th_workers_stop(h);
		return -ret;
	}
	return 0;
}

void th_workers_wait_idle(struct th *h)
{
	struct th_pool *p = h->pool;

	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	while (p->head || p->busy)
		pthread_cond_wait(&p->idle, &p->mu);
	pthread_mutex_unlock(&p->mu);
}

/* Let the workers drain what they were given, then join them. */
void th_workers_stop(struct th *h)
{
	struct th_pool *p = h->pool;
	unsigned int i;

	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->stop = true;
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->mu);
	for (i = 0; i < p->n; i++)
		pthread_join(p->tids[i], NULL);
	kick(h);
	pthread_cond_destroy(&p->work);
	pthread_cond_destroy(&p->idle);
	pthread_mutex_destroy(&p->mu);
	free(p->tids);
	free(p);
	h->pool = NULL;
}
