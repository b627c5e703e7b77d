/* SPDX-License-Identifier: GPL-2.0 */
/*
 * tcmu-handler: a small userspace handler for the TCMU ring, written for
 * the target_core_user selftests and benchmarks. Shared declarations.
 */
#ifndef TCMU_HANDLER_H
#define TCMU_HANDLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>
#include <pthread.h>
#include <sys/uio.h>

/*
 * The ABI header pulls in <linux/uio.h>, whose struct iovec clashes with
 * glibc's (same layout). Take glibc's and mark the kernel's as seen.
 */
#define __LINUX_UIO_H
/* Must resolve to include/uapi/linux/target_core_user.h (see Makefile). */
#include <linux/target_core_user.h>

#define TH_CDB_MAX	32	/* longest CDB we keep a copy of */
#define TH_SENSE_LEN	18	/* fixed-format sense we produce */
#define TH_OP_ANY	(-1)	/* "every opcode" for per-opcode options */

/* One data segment of a command: an offset into the shared region. */
struct th_iov {
	uint64_t off;
	uint64_t len;
};

/*
 * A command taken off the ring. Everything the handler needs is copied out
 * of the ring entry when the command is taken, because the entry itself
 * may later be overwritten by the completion of some other command.
 */
struct th_cmd {
	struct th_cmd *next;
	uint64_t gen;		/* ring generation when taken */
	uint64_t seq;		/* take order, for logs */
	uint16_t cmd_id;
	uint8_t cdb[TH_CDB_MAX];
	uint32_t cdb_len;
	uint32_t iov_cnt;	/* main data segments */
	uint32_t bidi_cnt;	/* Data-In segments of a BIDI command */
	struct th_iov *iov;	/* iov_cnt + bidi_cnt entries */
	bool bad;		/* entry failed validation */

	/* Response, filled by the SCSI layer. */
	uint8_t status;
	uint8_t uflags;
	uint32_t read_len;
	uint8_t sense[TH_SENSE_LEN];
	uint64_t in_bytes;	/* Data-In bytes produced */
	uint64_t out_bytes;	/* Data-Out bytes consumed */
	bool ignore;		/* take, but never complete */
};

struct th_opts {
	const char *uio_path;
	const char *name;
	double wait_sec;
	uint64_t size;
	const char *file;
	uint32_t block_size;
	bool ooo;
	unsigned int delay_ms;
	unsigned int threads;
	bool sense_on;
	uint8_t sense_key, sense_asc, sense_ascq;
	int sense_op;		/* TH_OP_ANY or an opcode */
	bool read_len;
	uint32_t short_read;	/* 0: off */
	int short_read_op;	/* TH_OP_ANY means READ(6/10/12/16) */
	bool keep_buf;
	const char *kept_log;
	bool free_kept;
	int ignore_op;		/* -2: off, TH_OP_ANY: all, else an opcode */
	uint64_t exit_after;	/* 0: off */
	uint64_t crash_after;	/* 0: off */
	const char *status_file;
	const char *tmr_log;
	const char *pidfile;
	bool unknown_op;
	int verbose;
	uint32_t max_sectors;	/* 0: not reported */
	const char *serial_src;	/* string the serial/NAA ids derive from */

	/* --fuzz: the hostile handler (fuzz.c) */
	bool fuzz;
	uint64_t fuzz_seed;
	double fuzz_rate;	/* misbehaviours per second; 0: at every chance */
	const char *fuzz_ops;	/* which ones (NULL: all) */
	uint64_t fuzz_max;	/* stop misbehaving after this many; 0: never */
	int fuzz_recover_ms;	/* reset a broken ring within; <0: never */
};

#define TH_IGNORE_OFF	(-2)

struct th_stats {
	uint64_t commands;	/* CMD entries taken */
	uint64_t completed;	/* completions written to the ring */
	uint64_t ignored;
	uint64_t dropped;	/* taken before a ring reset, never completed */
	uint64_t tmr;
	uint64_t pad;
	uint64_t bad_entries;
	uint64_t check_conditions;
	uint64_t unknown_op;
	uint64_t kept;
	uint64_t bytes_in;	/* Data-In (to the initiator) */
	uint64_t bytes_out;	/* Data-Out (from the initiator) */
	uint64_t kicks;
	uint64_t wakeups;
	uint64_t resyncs;
	uint64_t per_op[256];
};

struct th;
struct th_pool;
struct th_fuzz;
typedef int (*th_kick_fn)(struct th *h);
/* action/reset_ring LEVEL; 0 or -errno */
typedef int (*th_reset_fn)(struct th *h, int level);
/* action/free_kept_buf ID; 0 or -errno */
typedef int (*th_free_kept_fn)(struct th *h, uint16_t id);

/* The handler state; independent of how the shared region was obtained. */
struct th {
	struct th_opts opt;

	/* shared region */
	uint8_t *base;
	uint64_t map_size;
	uint32_t cmdr_off;
	uint32_t cmdr_size;
	uint64_t data_off;
	uint16_t mb_flags;

	/* ring cursors, protected by lock */
	pthread_mutex_t lock;
	uint32_t take;		/* next entry to take */
	uint32_t tail;		/* next completion slot; last cmd_tail stored */
	uint64_t gen;
	bool broken;
	uint64_t seq;
	bool tail_moved;	/* tail stored since the last kick */

	/* backing store */
	uint8_t *ram;
	int file_fd;
	uint64_t dev_size;
	uint32_t block_size;
	uint64_t nr_blocks;

	struct th_stats st;
	bool halting;		/* exit/crash point reached: complete no more */
	struct th_pool *pool;	/* worker threads, NULL when inline */

	/* transport */
	int uio_fd;
	const char *uio_node;	/* path of the uio device, for reopening */
	th_kick_fn kick;
	void *kick_arg;
	th_reset_fn reset;	/* NULL: the ring cannot be reset from here */
	th_free_kept_fn free_kept;
	char cfs_dir[512];	/* configfs device dir, "" if unknown */

	struct th_fuzz *fuzz;	/* NULL unless --fuzz */

	/* identity */
	uint64_t naa;
	char serial[24];
};

/* logging (tcmu-handler.c): level 0 errors, 1 info, 2 per command */
void th_log(int level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
extern int th_verbose;
#define th_err(...)	th_log(0, __VA_ARGS__)
#define th_info(...)	th_log(1, __VA_ARGS__)
#define th_dbg(...)	th_log(2, __VA_ARGS__)

/* ring.c */
int th_ring_attach(struct th *h, void *base, uint64_t map_size);
int th_ring_take(struct th *h, struct th_cmd **out);
bool th_ring_complete(struct th *h, struct th_cmd *c);
bool th_ring_owns(struct th *h, const struct th_cmd *c);
bool th_ring_rsp_slot(struct th *h, const struct th_cmd *c, uint32_t *slot,
		      uint32_t *len);
bool th_ring_next_slot(struct th *h, uint32_t from, uint32_t *slot,
		       uint32_t *len);
void th_ring_write_rsp(struct th *h, uint32_t off, uint16_t id,
		       const struct th_cmd *c);
void th_ring_set_tail(struct th *h, uint32_t t);
void th_ring_restart(struct th *h);
uint32_t th_ring_advance(const struct th *h, uint32_t pos, uint32_t len);
uint8_t *th_ring_ptr(const struct th *h, uint32_t off);
void th_mb_store_tail(struct th *h, uint32_t v);
void th_ring_skip_idle(struct th *h);
void th_ring_sync(struct th *h);
void th_cmd_free(struct th_cmd *c);
uint32_t th_mb_head(const struct th *h);
uint32_t th_mb_tail(const struct th *h);

/* data movement between the shared region and a flat buffer */
uint64_t th_data_len(const struct th_cmd *c, bool bidi_in);
typedef int (*th_seg_fn)(uint8_t *p, uint64_t len, uint64_t pos, void *arg);
int th_for_each_seg(struct th *h, const struct th_cmd *c, bool bidi_in,
		    uint64_t off, uint64_t len, th_seg_fn fn, void *arg);
uint64_t th_copy_to_cmd(struct th *h, const struct th_cmd *c,
			const void *src, uint64_t len);
uint64_t th_copy_from_cmd(struct th *h, const struct th_cmd *c,
			  void *dst, uint64_t len);

/* scsi.c */
void th_scsi_exec(struct th *h, struct th_cmd *c);
void th_set_sense(struct th_cmd *c, uint8_t key, uint8_t asc, uint8_t ascq);
unsigned int th_cdb_len(const uint8_t *cdb);
int th_backend_open(struct th *h);
void th_backend_close(struct th *h);
void th_ident_init(struct th *h, const char *src);

/* core loop pieces (core.c) */
int th_core_init(struct th *h);
void th_core_fini(struct th *h);
int th_service(struct th *h);
int th_workers_start(struct th *h);
void th_workers_stop(struct th *h);
void th_workers_wait_idle(struct th *h);
void th_write_status(struct th *h);
void th_append_line(const char *path, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
extern volatile int th_stop;
extern volatile int th_resync;	/* SIGUSR2: the ring was reset outside */
void th_exec(struct th *h, struct th_cmd *c);

/* fuzz.c */
#define TH_FUZZ_MAX_OPS	64	/* room for th_fuzz_parse_ops' result */
int th_fuzz_init(struct th *h);
void th_fuzz_fini(struct th *h);
int th_fuzz_parse_ops(const char *list, bool *enabled, char *err,
		      size_t errlen);
void th_fuzz_tick(struct th *h);
int th_fuzz_poll_ms(struct th *h);
void th_fuzz_taken(struct th *h, const struct th_cmd *c);
bool th_fuzz_complete(struct th *h, struct th_cmd *c);
void th_fuzz_exec(struct th *h, struct th_cmd *c);
int th_fuzz_broken(struct th *h);
void th_fuzz_status(struct th *h, FILE *f);
uint64_t th_fuzz_count(struct th *h, const char *name);
uint64_t th_fuzz_trace(struct th *h);
int th_fuzz_touch(volatile uint8_t *p, bool write, uint8_t val);
void th_fuzz_usage(FILE *f);

/* selftest.c */
int th_selftest(int verbose);

/* sense keys and codes used here */
#define SK_NO_SENSE		0x0
#define SK_NOT_READY		0x2
#define SK_MEDIUM_ERROR		0x3
#define SK_HARDWARE_ERROR	0x4
#define SK_ILLEGAL_REQUEST	0x5

#define SAM_GOOD		0x00
#define SAM_CHECK_CONDITION	0x02

#endif /* TCMU_HANDLER_H */
