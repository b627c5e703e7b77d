/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * TCMU userspace ABI: the layout of the memory region a "user" backstore
 * device shares with its handler through UIO, and the generic netlink
 * family used to announce devices to handler daemons.
 *
 * Everything here is fixed ABI. Field sizes, offsets, packing and the
 * numeric values of every constant must never change.
 */
#ifndef __TARGET_CORE_USER_H
#define __TARGET_CORE_USER_H

#include <linux/types.h>
#include <linux/uio.h>

#define TCMU_VERSION "2.0"

/**
 * DOC: Shared region layout
 *
 * The region mapped through map0 of the UIO device has three parts, in
 * this order: the mailbox (struct tcmu_mailbox), the command ring that
 * starts at mailbox->cmdr_off and is mailbox->cmdr_size bytes long, and
 * the data area that fills the rest of the region.
 *
 * The kernel appends entries at cmd_head and signals the handler through
 * the UIO interrupt. The handler consumes entries starting at cmd_tail.
 * A PAD entry only fills the end of the ring: skip hdr length bytes.
 * A CMD entry carries iovecs whose iov_base values are byte offsets from
 * the start of the region, followed by the CDB at req.cdb_off (also an
 * offset from the start of the region).
 *
 * To complete a command the handler writes rsp.scsi_status (and sense
 * data or read_len as needed) into its entry, then advances cmd_tail by
 * the entry length modulo cmdr_size, and writes anything to the UIO file
 * descriptor to tell the kernel. With TCMU_MAILBOX_FLAG_CAP_OOOC set a
 * completion may be written into any entry between cmd_tail and cmd_head
 * once cmd_tail has moved past the command's original entry.
 */

#define TCMU_MAILBOX_VERSION 2
#define ALIGN_SIZE 64 /* cache line separation for cmd_tail */
#define TCMU_MAILBOX_FLAG_CAP_OOOC (1 << 0)	/* out of order completion */
#define TCMU_MAILBOX_FLAG_CAP_READ_LEN (1 << 1)	/* rsp.read_len honoured */
#define TCMU_MAILBOX_FLAG_CAP_TMR (1 << 2)	/* TMR entries in the ring */
#define TCMU_MAILBOX_FLAG_CAP_KEEP_BUF (1 << 3)	/* data kept after completion */

struct tcmu_mailbox {
	__u16 version;
	__u16 flags;
	__u32 cmdr_off;
	__u32 cmdr_size;

	__u32 cmd_head;

	/* Written by the handler; kept apart from the kernel's fields. */
	__u32 cmd_tail __attribute__((__aligned__(ALIGN_SIZE)));

} __attribute__((packed));

enum tcmu_opcode {
	TCMU_OP_PAD = 0,
	TCMU_OP_CMD,
	TCMU_OP_TMR,
};

/*
 * Entry lengths are multiples of 8, so the opcode lives in the low bits
 * of len_op.
 */
struct tcmu_cmd_entry_hdr {
	__u32 len_op;
	__u16 cmd_id;
	__u8 kflags;
#define TCMU_UFLAG_UNKNOWN_OP 0x1
#define TCMU_UFLAG_READ_LEN   0x2
#define TCMU_UFLAG_KEEP_BUF   0x4
	__u8 uflags;

} __attribute__((packed));

#define TCMU_OP_MASK 0x7

static __inline__ enum tcmu_opcode tcmu_hdr_get_op(__u32 len_op)
{
	return (enum tcmu_opcode)(len_op & TCMU_OP_MASK);
}

static __inline__ void tcmu_hdr_set_op(__u32 *len_op, enum tcmu_opcode op)
{
	*len_op = (*len_op & ~TCMU_OP_MASK) | (op & TCMU_OP_MASK);
}

static __inline__ __u32 tcmu_hdr_get_len(__u32 len_op)
{
	return len_op & ~TCMU_OP_MASK;
}

static __inline__ void tcmu_hdr_set_len(__u32 *len_op, __u32 len)
{
	*len_op = (*len_op & TCMU_OP_MASK) | len;
}

/* Same size as the SCSI midlayer's sense buffer. */
#define TCMU_SENSE_BUFFERSIZE 96

struct tcmu_cmd_entry {
	struct tcmu_cmd_entry_hdr hdr;

	union {
		struct {
			__u32 iov_cnt;
			__u32 iov_bidi_cnt;
			__u32 iov_dif_cnt;
			__u64 cdb_off;
			__u64 __pad1;
			__u64 __pad2;
			struct iovec iov[0];
		} req;
		struct {
			__u8 scsi_status;
			__u8 __pad1;
			__u16 __pad2;
			__u32 read_len;
			char sense_buffer[TCMU_SENSE_BUFFERSIZE];
		} rsp;
	};

} __attribute__((packed));

struct tcmu_tmr_entry {
	struct tcmu_cmd_entry_hdr hdr;

#define TCMU_TMR_UNKNOWN		0
#define TCMU_TMR_ABORT_TASK		1
#define TCMU_TMR_ABORT_TASK_SET		2
#define TCMU_TMR_CLEAR_ACA		3
#define TCMU_TMR_CLEAR_TASK_SET		4
#define TCMU_TMR_LUN_RESET		5
#define TCMU_TMR_TARGET_WARM_RESET	6
#define TCMU_TMR_TARGET_COLD_RESET	7
/* Reset implied by a PERSISTENT RESERVE OUT preempt */
#define TCMU_TMR_LUN_RESET_PRO		128
	__u8 tmr_type;

	__u8 __pad1;
	__u16 __pad2;
	__u32 cmd_cnt;
	__u64 __pad3;
	__u64 __pad4;
	__u16 cmd_ids[];
} __attribute__((packed));

#define TCMU_OP_ALIGN_SIZE sizeof(__u64)

/* Generic netlink family "TCM-USER", version 2, multicast group "config". */
enum tcmu_genl_cmd {
	TCMU_CMD_UNSPEC,
	TCMU_CMD_ADDED_DEVICE,
	TCMU_CMD_REMOVED_DEVICE,
	TCMU_CMD_RECONFIG_DEVICE,
	TCMU_CMD_ADDED_DEVICE_DONE,
	TCMU_CMD_REMOVED_DEVICE_DONE,
	TCMU_CMD_RECONFIG_DEVICE_DONE,
	TCMU_CMD_SET_FEATURES,
	__TCMU_CMD_MAX,
};

#define TCMU_CMD_MAX (__TCMU_CMD_MAX - 1)

enum tcmu_genl_attr {
	TCMU_ATTR_UNSPEC,
	TCMU_ATTR_DEVICE,
	TCMU_ATTR_MINOR,
	TCMU_ATTR_PAD,
	TCMU_ATTR_DEV_CFG,
	TCMU_ATTR_DEV_SIZE,
	TCMU_ATTR_WRITECACHE,
	TCMU_ATTR_CMD_STATUS,
	TCMU_ATTR_DEVICE_ID,
	TCMU_ATTR_SUPP_KERN_CMD_REPLY,
	__TCMU_ATTR_MAX,
};

#define TCMU_ATTR_MAX (__TCMU_ATTR_MAX - 1)

#endif /* __TARGET_CORE_USER_H */
