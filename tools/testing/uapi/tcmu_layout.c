// SPDX-License-Identifier: GPL-2.0
/*
 * Print a canonical description of the TCMU userspace ABI as seen through
 * one copy of target_core_user.h: sizes, offsets and alignments of every
 * struct and member, the value and type of every constant, the signatures
 * of the inline helpers and what they compute. Built once against the
 * distribution's header and once against ours; the two outputs must be
 * identical.
 *
 * The header is chosen on the command line:
 *   -DTCMU_HDR='"/path/to/target_core_user.h"'  or
 *   -DTCMU_HDR='<linux/target_core_user.h>'
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#ifndef TCMU_HDR
#error "define TCMU_HDR to the header under test"
#endif
#include TCMU_HDR

#define TYPE_NAME(x) _Generic((x),					\
	char: "char",							\
	signed char: "signed char",					\
	unsigned char: "unsigned char",					\
	short: "short",							\
	unsigned short: "unsigned short",				\
	int: "int",							\
	unsigned int: "unsigned int",					\
	long: "long",							\
	unsigned long: "unsigned long",					\
	long long: "long long",						\
	unsigned long long: "unsigned long long",			\
	default: "other")

#define SCALAR_SIGN(x) ((__typeof__(x))-1 < (__typeof__(x))0 ?	\
			"signed" : "unsigned")

#define STRUCT(T)							\
	printf("struct %s size=%zu align=%zu\n", #T,			\
	       sizeof(struct T), (size_t)_Alignof(struct T))

#define MEMBER_POS(T, m)						\
	printf("  %s.%s offset=%zu", #T, #m, offsetof(struct T, m))

/* a scalar member: size, alignment, type and signedness */
#define SCALAR(T, m)							\
	do {								\
		MEMBER_POS(T, m);					\
		printf(" size=%zu align=%zu type=%s sign=%s\n",		\
		       sizeof(((struct T *)0)->m),			\
		       (size_t)__alignof__(((struct T *)0)->m),		\
		       TYPE_NAME(((struct T *)0)->m),			\
		       SCALAR_SIGN(((struct T *)0)->m));		\
	} while (0)

/* an aggregate member (struct, union or fixed array) */
#define AGGR(T, m)							\
	do {								\
		MEMBER_POS(T, m);					\
		printf(" size=%zu align=%zu\n",				\
		       sizeof(((struct T *)0)->m),			\
		       (size_t)__alignof__(((struct T *)0)->m));	\
	} while (0)

/* an array with no fixed size: offset and element layout */
#define FLEX(T, m)							\
	do {								\
		MEMBER_POS(T, m);					\
		printf(" elem_size=%zu elem_align=%zu\n",		\
		       sizeof(((struct T *)0)->m[0]),			\
		       (size_t)__alignof__(((struct T *)0)->m[0]));	\
	} while (0)

#define CONST(c)							\
	printf("const %s = %lld type=%s size=%zu\n", #c, (long long)(c), \
	       TYPE_NAME(c), sizeof(c))

#define ENUMV(c)							\
	printf("enum %s = %lld\n", #c, (long long)(c))

#define SIG(fn, type)							\
	printf("sig %s %s\n", #fn,					\
	       _Generic(&fn, type: #type, default: "other"))

static uint64_t mix(uint64_t h, uint64_t v)
{
	h ^= v;
	h *= 0x100000001b3ull;
	return h;
}

static void dump_layout(void)
{
	STRUCT(tcmu_mailbox);
	SCALAR(tcmu_mailbox, version);
	SCALAR(tcmu_mailbox, flags);
	SCALAR(tcmu_mailbox, cmdr_off);
	SCALAR(tcmu_mailbox, cmdr_size);
	SCALAR(tcmu_mailbox, cmd_head);
	SCALAR(tcmu_mailbox, cmd_tail);

	STRUCT(tcmu_cmd_entry_hdr);
	SCALAR(tcmu_cmd_entry_hdr, len_op);
	SCALAR(tcmu_cmd_entry_hdr, cmd_id);
	SCALAR(tcmu_cmd_entry_hdr, kflags);
	SCALAR(tcmu_cmd_entry_hdr, uflags);

	STRUCT(tcmu_cmd_entry);
	AGGR(tcmu_cmd_entry, hdr);
	AGGR(tcmu_cmd_entry, req);
	SCALAR(tcmu_cmd_entry, req.iov_cnt);
	SCALAR(tcmu_cmd_entry, req.iov_bidi_cnt);
	SCALAR(tcmu_cmd_entry, req.iov_dif_cnt);
	SCALAR(tcmu_cmd_entry, req.cdb_off);
	SCALAR(tcmu_cmd_entry, req.__pad1);
	SCALAR(tcmu_cmd_entry, req.__pad2);
	FLEX(tcmu_cmd_entry, req.iov);
	printf("  tcmu_cmd_entry.req.iov[1] offset=%zu\n",
	       offsetof(struct tcmu_cmd_entry, req.iov[1]));
	AGGR(tcmu_cmd_entry, rsp);
	SCALAR(tcmu_cmd_entry, rsp.scsi_status);
	SCALAR(tcmu_cmd_entry, rsp.__pad1);
	SCALAR(tcmu_cmd_entry, rsp.__pad2);
	SCALAR(tcmu_cmd_entry, rsp.read_len);
	AGGR(tcmu_cmd_entry, rsp.sense_buffer);
	printf("  tcmu_cmd_entry.rsp.sense_buffer elem type=%s\n",
	       TYPE_NAME(((struct tcmu_cmd_entry *)0)->rsp.sense_buffer[0]));

	STRUCT(tcmu_tmr_entry);
	AGGR(tcmu_tmr_entry, hdr);
	SCALAR(tcmu_tmr_entry, tmr_type);
	SCALAR(tcmu_tmr_entry, __pad1);
	SCALAR(tcmu_tmr_entry, __pad2);
	SCALAR(tcmu_tmr_entry, cmd_cnt);
	SCALAR(tcmu_tmr_entry, __pad3);
	SCALAR(tcmu_tmr_entry, __pad4);
	FLEX(tcmu_tmr_entry, cmd_ids);
	printf("  tcmu_tmr_entry.cmd_ids elem type=%s\n",
	       TYPE_NAME(((struct tcmu_tmr_entry *)0)->cmd_ids[0]));

	/* the iovec the ring carries comes in through the header too */
	STRUCT(iovec);
	SCALAR(iovec, iov_len);
	printf("  iovec.iov_base offset=%zu size=%zu\n",
	       offsetof(struct iovec, iov_base),
	       sizeof(((struct iovec *)0)->iov_base));

	printf("enum tcmu_opcode size=%zu align=%zu sign=%s\n",
	       sizeof(enum tcmu_opcode), (size_t)_Alignof(enum tcmu_opcode),
	       SCALAR_SIGN((enum tcmu_opcode)0));
	printf("enum tcmu_genl_cmd size=%zu sign=%s\n",
	       sizeof(enum tcmu_genl_cmd), SCALAR_SIGN((enum tcmu_genl_cmd)0));
	printf("enum tcmu_genl_attr size=%zu sign=%s\n",
	       sizeof(enum tcmu_genl_attr),
	       SCALAR_SIGN((enum tcmu_genl_attr)0));
}

static void dump_constants(void)
{
	printf("const TCMU_VERSION = \"%s\" size=%zu\n", TCMU_VERSION,
	       sizeof(TCMU_VERSION));
	CONST(TCMU_MAILBOX_VERSION);
	CONST(ALIGN_SIZE);
	CONST(TCMU_MAILBOX_FLAG_CAP_OOOC);
	CONST(TCMU_MAILBOX_FLAG_CAP_READ_LEN);
	CONST(TCMU_MAILBOX_FLAG_CAP_TMR);
	CONST(TCMU_MAILBOX_FLAG_CAP_KEEP_BUF);
	CONST(TCMU_UFLAG_UNKNOWN_OP);
	CONST(TCMU_UFLAG_READ_LEN);
	CONST(TCMU_UFLAG_KEEP_BUF);
	CONST(TCMU_OP_MASK);
	CONST(TCMU_SENSE_BUFFERSIZE);
	CONST(TCMU_TMR_UNKNOWN);
	CONST(TCMU_TMR_ABORT_TASK);
	CONST(TCMU_TMR_ABORT_TASK_SET);
	CONST(TCMU_TMR_CLEAR_ACA);
	CONST(TCMU_TMR_CLEAR_TASK_SET);
	CONST(TCMU_TMR_LUN_RESET);
	CONST(TCMU_TMR_TARGET_WARM_RESET);
	CONST(TCMU_TMR_TARGET_COLD_RESET);
	CONST(TCMU_TMR_LUN_RESET_PRO);
	CONST(TCMU_OP_ALIGN_SIZE);
	CONST(TCMU_CMD_MAX);
	CONST(TCMU_ATTR_MAX);

	ENUMV(TCMU_OP_PAD);
	ENUMV(TCMU_OP_CMD);
	ENUMV(TCMU_OP_TMR);

	ENUMV(TCMU_CMD_UNSPEC);
	ENUMV(TCMU_CMD_ADDED_DEVICE);
	ENUMV(TCMU_CMD_REMOVED_DEVICE);
	ENUMV(TCMU_CMD_RECONFIG_DEVICE);
	ENUMV(TCMU_CMD_ADDED_DEVICE_DONE);
	ENUMV(TCMU_CMD_REMOVED_DEVICE_DONE);
	ENUMV(TCMU_CMD_RECONFIG_DEVICE_DONE);
	ENUMV(TCMU_CMD_SET_FEATURES);
	ENUMV(__TCMU_CMD_MAX);

	ENUMV(TCMU_ATTR_UNSPEC);
	ENUMV(TCMU_ATTR_DEVICE);
	ENUMV(TCMU_ATTR_MINOR);
	ENUMV(TCMU_ATTR_PAD);
	ENUMV(TCMU_ATTR_DEV_CFG);
	ENUMV(TCMU_ATTR_DEV_SIZE);
	ENUMV(TCMU_ATTR_WRITECACHE);
	ENUMV(TCMU_ATTR_CMD_STATUS);
	ENUMV(TCMU_ATTR_DEVICE_ID);
	ENUMV(TCMU_ATTR_SUPP_KERN_CMD_REPLY);
	ENUMV(__TCMU_ATTR_MAX);
}

static void dump_helpers(void)
{
	static const __u32 samples[] = {
		0, 1, 2, 3, 7, 8, 9, 15, 16, 0x70, 0x71, 0x72, 0x77, 0x80,
		0x1000, 0x1001, 0x7ff8, 0x7fff, 0xfff8, 0x10000, 0x10002,
		0x7ffffff8, 0x80000000, 0x80000001, 0xfffffff8, 0xfffffff9,
		0xffffffff,
	};
	static const __u32 lens[] = {
		0, 8, 16, 112, 120, 4096, 0x7ffff0, 0xfffffff8, 3, 0xffffffff,
	};
	const size_t ns = sizeof(samples) / sizeof(samples[0]);
	const size_t nl = sizeof(lens) / sizeof(lens[0]);
	uint64_t h = 0xcbf29ce484222325ull, x = 1;
	size_t i, j;
	int op;

	SIG(tcmu_hdr_get_op, enum tcmu_opcode (*)(__u32));
	SIG(tcmu_hdr_set_op, void (*)(__u32 *, enum tcmu_opcode));
	SIG(tcmu_hdr_get_len, __u32 (*)(__u32));
	SIG(tcmu_hdr_set_len, void (*)(__u32 *, __u32));

	for (i = 0; i < ns; i++)
		printf("get 0x%08x op=%d len=0x%08x\n", samples[i],
		       (int)tcmu_hdr_get_op(samples[i]),
		       tcmu_hdr_get_len(samples[i]));
	for (i = 0; i < ns; i++) {
		printf("set_op 0x%08x:", samples[i]);
		for (op = 0; op < 10; op++) {
			__u32 v = samples[i];

			tcmu_hdr_set_op(&v, (enum tcmu_opcode)op);
			printf(" %x", v);
		}
		printf("\n");
	}
	for (i = 0; i < ns; i++) {
		printf("set_len 0x%08x:", samples[i]);
		for (j = 0; j < nl; j++) {
			__u32 v = samples[i];

			tcmu_hdr_set_len(&v, lens[j]);
			printf(" %x", v);
		}
		printf("\n");
	}
	/* and a long pseudo-random run, folded into one number */
	for (i = 0; i < 200000; i++) {
		__u32 v, a, b;

		x = x * 6364136223846793005ull + 1442695040888963407ull;
		a = (__u32)(x >> 32);
		b = (__u32)x;
		v = a;
		h = mix(h, (uint64_t)tcmu_hdr_get_op(a));
		h = mix(h, tcmu_hdr_get_len(a));
		tcmu_hdr_set_op(&v, (enum tcmu_opcode)(b & 0xf));
		h = mix(h, v);
		tcmu_hdr_set_len(&v, b);
		h = mix(h, v);
	}
	printf("helpers random run hash=%016llx\n", (unsigned long long)h);
}

int main(void)
{
	dump_layout();
	dump_constants();
	dump_helpers();
	return 0;
}
