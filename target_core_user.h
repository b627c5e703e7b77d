/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Internal definitions of the TCMU ("user") backstore.
 *
 * The helpers at the end of this file are pure arithmetic on ring offsets
 * and data-area bitmaps. They touch no device state, so the KUnit suite can
 * exercise them without a device.
 */
#ifndef TARGET_CORE_USER_INTERNAL_H
#define TARGET_CORE_USER_INTERNAL_H

#include <linux/bitmap.h>
#include <linux/kernel.h>
#include <linux/kref.h>
#include <linux/list.h>
#include <linux/mutex.h>
#include <linux/timer.h>
#include <linux/types.h>
#include <linux/uio_driver.h>
#include <linux/workqueue.h>
#include <linux/xarray.h>
#include <target/target_core_base.h>
/* The uapi layouts must be included before this header. */

/* Geometry limits and defaults (sizes in MiB unless noted). */
#define TCMU_RING_MB_DEF		8
#define TCMU_RING_MB_MAX		8
#define TCMU_DATA_MB_DEF		1024
#define TCMU_GLOBAL_DATA_MB_DEF		2048
#define TCMU_PAGES_PER_BLK_DEF		1
#define TCMU_CONFIG_LEN			256
#define TCMU_MAX_SECTORS_LIMIT		65535
#define TCMU_CMD_TIMEOUT_DEF		30	/* seconds */
#define TCMU_MAX_TIMEOUT_SEC		(60 * 60 * 24)	/* one day */

/* The mailbox sits at offset 0; the ring follows it. */
#define TCMU_MB_SIZE			((u32)sizeof(struct tcmu_mailbox))
#define TCMU_MB_CAPS			(TCMU_MAILBOX_FLAG_CAP_OOOC | \
					 TCMU_MAILBOX_FLAG_CAP_READ_LEN | \
					 TCMU_MAILBOX_FLAG_CAP_TMR | \
					 TCMU_MAILBOX_FLAG_CAP_KEEP_BUF)

/* Command ids are 16 bit on the ring; 0 is never used. */
#define TCMU_CMD_ID_MIN			1
#define TCMU_CMD_ID_MAX			0xffff

/* TMR entries allowed on the ring at once; more wait in a queue. */
#define TCMU_RING_TMR_MAX		64

/* Smallest ring entry that can carry a command (room for the response). */
#define TCMU_MIN_CMD_ENTRY		((u32)sizeof(struct tcmu_cmd_entry))

/* Device flag bits (tcmu_dev.flags). */
enum {
	TCMU_DEV_OPEN,		/* a handler has the uio node open */
	TCMU_DEV_BROKEN,	/* the handler violated the ring protocol */
	TCMU_DEV_BLOCKED,	/* action/block_dev: new commands get BUSY */
	TCMU_DEV_TMR_NOTIFY,	/* attrib/tmr_notification */
	TCMU_DEV_PLUGGED,	/* the core is submitting a batch */
	TCMU_DEV_KICK_PENDING,	/* a wakeup was deferred by the plug */
	TCMU_DEV_DEAD,		/* destroy_device has begun */
};

/* Command flag bits (tcmu_cmd.flags). */
enum {
	TCMU_CMD_EXPIRED,	/* completed to the initiator by a timeout */
	TCMU_CMD_KEPT,		/* completed with KEEP_BUF, data still held */
};

/* A run of contiguous data blocks. */
struct tcmu_run {
	u32 start;
	u32 count;
};

#define TCMU_INLINE_RUNS		4

/**
 * struct tcmu_cmd - one SCSI command owned by the backstore
 * @se_cmd: the core's command; NULL once completed to the initiator
 * @udev: owning device
 * @node: position on the inflight or qfull list, or on a reaper's list of
 *	answered commands it completes after dropping ring_lock
 * @deadline: jiffies at which the command times out (if armed)
 * @flags: TCMU_CMD_* bits
 * @id: ring command id (0 while queued in qfull)
 * @out_len: Data-Out byte count copied into the data area
 * @in_len: Data-In byte count expected back
 * @nr_out_runs: runs holding Data-Out (the first runs)
 * @nr_runs: total runs in @runs
 * @nr_blocks: total blocks held
 * @runs: block runs, Data-Out first, then Data-In
 * @inline_runs: storage for @runs when few are needed
 * @done_len: Data-In bytes to return, settled from the handler's answer
 * @done_sense: sense reason to complete with instead of @done_status
 * @done_status: SCSI status the handler answered
 * @done_with_len: complete with an explicit length (TCMU_UFLAG_READ_LEN)
 */
struct tcmu_cmd {
	struct se_cmd *se_cmd;
	struct tcmu_dev *udev;
	struct list_head node;
	unsigned long deadline;
	unsigned long flags;
	u16 id;
	u32 out_len;
	u32 in_len;
	u16 nr_out_runs;
	u16 nr_runs;
	u32 nr_blocks;
	struct tcmu_run *runs;
	struct tcmu_run inline_runs[TCMU_INLINE_RUNS];
	u32 done_len;
	sense_reason_t done_sense;
	u8 done_status;
	bool done_with_len;
};

/* A task management notification waiting for ring space. */
struct tcmu_tmr {
	struct list_head node;
	u8 type;
	u32 nr_ids;
	u16 ids[];
};

/* Live mappings of the uio region, by address_space. */
#define TCMU_MAX_MAPPINGS		4
struct tcmu_mapping {
	struct address_space *mapping;
	unsigned int users;
};

/* Per-device counters (read through attrib/stats). */
struct tcmu_stats {
	u64 cmds;
	u64 bytes_out;
	u64 bytes_in;
	u64 qfull_events;
	u64 timeouts;
	u64 ring_full;
	u64 data_full;
	u64 handler_exits;
	u64 exit_failed;
	u32 inflight_max;
};

/* What happens to in-flight commands when the handler goes away. */
enum tcmu_exit_policy {
	TCMU_EXIT_FAIL = 0,	/* complete them with BUSY, empty the ring */
	TCMU_EXIT_KEEP = 1,	/* leave them for a restarted handler */
};

/**
 * struct tcmu_dev - a "user" backstore device
 *
 * Everything from @ring_lock down to @stats is protected by @ring_lock
 * unless noted.
 */
struct tcmu_dev {
	struct se_device se_dev;
	struct se_dev_plug se_plug;
	struct kref kref;
	struct list_head all_node;	/* tcmu_devices, under tcmu_devices_lock */
	char *name;
	struct se_hba *hba;
	unsigned long flags;

	/* Configuration; fixed once the device is enabled. */
	u64 dev_size;
	char dev_config[TCMU_CONFIG_LEN];
	int nl_reply_supported;
	u32 ring_mb;
	u32 data_mb;
	u32 pages_per_blk;
	unsigned long cmd_time_out;	/* jiffies, 0 = never */
	long qfull_time_out;		/* jiffies, -1 = use cmd_time_out */
	u8 exit_policy;			/* enum tcmu_exit_policy */

	/* Derived geometry (valid once enabled). */
	u32 ring_size;			/* bytes of ring after the mailbox */
	u32 data_off;			/* byte offset of the data area */
	u32 blk_size;			/* bytes per data block */
	u32 nr_blocks;			/* blocks in the data area */
	u32 map_pages;			/* pages in the whole region */

	struct uio_info uio_info;
	/* dev_config/dev_size/write cache changes and the uio name */
	struct mutex cfg_lock;
	struct mutex ring_lock;		/* ring, commands, data area */

	/* Ring state; the mailbox fields are written, never trusted. */
	struct tcmu_mailbox *mb;
	void *ring;
	u32 ring_head;			/* next byte the kernel writes */
	u32 ring_tail;			/* oldest byte the handler still owns */
	u32 *ring_log;			/* len_op of every entry, in ring order */
	u32 log_cap;
	u32 log_head;
	u32 log_tail;
	u32 ring_tmrs;			/* TMR entries on the ring */

	/* Commands. */
	struct xarray cmds;		/* id -> tcmu_cmd */
	u32 next_id;
	u32 nr_inflight;
	struct list_head inflight;	/* by deadline, for the ring timer */
	struct list_head qfull;		/* waiting for ring or data space */
	struct list_head tmr_queue;	/* TMRs waiting for ring space */

	/* Data area. */
	unsigned long *blk_bitmap;	/* blocks owned by commands */
	struct xarray pages;		/* data page index -> struct page */
	u32 nr_pages;			/* pages allocated to this device */

	/* Mappings of the region (map_lock nests inside ring_lock). */
	struct mutex map_lock;
	struct tcmu_mapping maps[TCMU_MAX_MAPPINGS];

	struct timer_list cmd_timer;
	struct timer_list qfull_timer;
	struct work_struct timeout_work;

	struct tcmu_stats stats;

	/* Netlink request currently waiting for a reply. */
	struct list_head nl_node;
	struct completion nl_done;
	int nl_cmd;
	int nl_status;
};

static inline struct tcmu_dev *TCMU_DEV(struct se_device *se_dev)
{
	return container_of(se_dev, struct tcmu_dev, se_dev);
}

/* ------------------------------------------------------------------------
 * Pure helpers (unit tested by KUnit)
 * ------------------------------------------------------------------------
 */

/* Bytes of ring between @tail and @head, modulo @size. */
static inline u32 tcmu_ring_used(u32 head, u32 tail, u32 size)
{
	return head >= tail ? head - tail : size - tail + head;
}

/*
 * Bytes that may still be written. One byte always stays free so that
 * head == tail can only mean "empty".
 */
static inline u32 tcmu_ring_free(u32 head, u32 tail, u32 size)
{
	return size - tcmu_ring_used(head, tail, size) - 1;
}

/* Size of the fixed part of a CMD entry: header, request and iovecs. */
static inline u32 tcmu_cmd_base_size(u32 iov_cnt)
{
	size_t req = offsetof(struct tcmu_cmd_entry, req.iov) +
		     (size_t)iov_cnt * sizeof(struct iovec);

	return round_up(max_t(size_t, req, sizeof(struct tcmu_cmd_entry)),
			TCMU_OP_ALIGN_SIZE);
}

/* Full CMD entry length: base, then the CDB, 8-byte aligned. */
static inline u32 tcmu_cmd_entry_size(u32 iov_cnt, u32 cdb_len)
{
	return round_up(tcmu_cmd_base_size(iov_cnt) + cdb_len,
			TCMU_OP_ALIGN_SIZE);
}

/* Length of a TMR entry listing @nr_ids command ids. */
static inline u32 tcmu_tmr_entry_size(u32 nr_ids)
{
	return round_up(sizeof(struct tcmu_tmr_entry) + nr_ids * sizeof(u16),
			TCMU_OP_ALIGN_SIZE);
}

/**
 * tcmu_ring_fit - decide where an entry of @len bytes goes
 * @head: current head offset
 * @tail: current tail offset
 * @size: ring size in bytes (a multiple of 8)
 * @len: entry length (a multiple of 8)
 * @pad: set to the PAD length needed before the entry (0 if none)
 *
 * An entry never straddles the end of the ring: if it does not fit
 * between @head and the end, the rest of the ring is filled with a PAD
 * entry and the entry starts at offset 0.
 *
 * Return: true if the entry (and its PAD) fits in the free space.
 */
static inline bool tcmu_ring_fit(u32 head, u32 tail, u32 size, u32 len,
				 u32 *pad)
{
	u32 to_end = size - head;
	u32 need = len;

	*pad = 0;
	if (len > to_end) {
		*pad = to_end;
		need += to_end;
	}
	return need <= tcmu_ring_free(head, tail, size);
}

/**
 * tcmu_blocks_claim - find and mark @need free blocks in @map
 * @map: bitmap of blocks in use
 * @nbits: blocks in the data area
 * @need: blocks wanted (>= 1)
 * @runs: output runs, lowest first
 * @max_runs: capacity of @runs
 *
 * A single contiguous run is preferred so that the command gets one iovec;
 * otherwise the lowest free blocks are taken, merged into runs. Keeping
 * allocations low leaves the top of the data area idle, where reclaim can
 * take it.
 *
 * Return: the number of runs written, or 0 (and @map unchanged) when
 * fewer than @need blocks are free or more than @max_runs runs would be
 * needed.
 */
static inline u32 tcmu_blocks_claim(unsigned long *map, u32 nbits, u32 need,
				    struct tcmu_run *runs, u32 max_runs)
{
	unsigned long start;
	u32 nr = 0, got = 0, bit = 0;

	if (!need || need > nbits || !max_runs)
		return 0;

	start = bitmap_find_next_zero_area(map, nbits, 0, need, 0);
	if (start < nbits) {
		bitmap_set(map, start, need);
		runs[0].start = start;
		runs[0].count = need;
		return 1;
	}

	while (got < need) {
		u32 end;

		bit = find_next_zero_bit(map, nbits, bit);
		if (bit >= nbits || nr == max_runs)
			goto undo;
		end = find_next_bit(map, nbits, bit);
		end = min(end, bit + (need - got));
		runs[nr].start = bit;
		runs[nr].count = end - bit;
		got += end - bit;
		nr++;
		bit = end;
	}
	for (got = 0; got < nr; got++)
		bitmap_set(map, runs[got].start, runs[got].count);
	return nr;
undo:
	return 0;
}

/* Number of runs the scattered path could need for @need blocks. */
static inline u32 tcmu_blocks_count_runs(const unsigned long *map, u32 nbits,
					 u32 need)
{
	u32 nr = 0, got = 0, bit = 0, end;

	while (got < need) {
		bit = find_next_zero_bit(map, nbits, bit);
		if (bit >= nbits)
			return 0;
		end = find_next_bit(map, nbits, bit);
		end = min(end, bit + (need - got));
		got += end - bit;
		nr++;
		bit = end;
	}
	return nr;
}

/* True if deadline @a is due no later than @b (jiffies wrap safe). */
static inline bool tcmu_deadline_before_eq(unsigned long a, unsigned long b)
{
	return time_before_eq(a, b);
}

#endif /* TARGET_CORE_USER_INTERNAL_H */
