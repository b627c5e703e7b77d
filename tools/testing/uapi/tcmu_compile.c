// SPDX-License-Identifier: GPL-2.0
/*
 * Usability probe for target_core_user.h: the header comes first and
 * alone, and everything it declares is used the way an application
 * would. Compiled as C and as C++ with warnings as errors.
 *
 *   -DTCMU_HDR='"/path/to/target_core_user.h"'  or  -DTCMU_HDR='<...>'
 */
#ifndef TCMU_HDR
#define TCMU_HDR <linux/target_core_user.h>
#endif
#include TCMU_HDR

#include <string.h>

int tcmu_probe(void);

int tcmu_probe(void)
{
	struct tcmu_mailbox mb;
	struct tcmu_cmd_entry ent;
	struct tcmu_tmr_entry tmr;
	enum tcmu_opcode op;
	enum tcmu_genl_cmd gcmd = TCMU_CMD_SET_FEATURES;
	enum tcmu_genl_attr gattr = TCMU_ATTR_SUPP_KERN_CMD_REPLY;
	const char *version = TCMU_VERSION;
	__u32 len_op = 0;
	int sum = 0;

	memset(&mb, 0, sizeof(mb));
	memset(&ent, 0, sizeof(ent));
	memset(&tmr, 0, sizeof(tmr));

	tcmu_hdr_set_op(&len_op, TCMU_OP_CMD);
	tcmu_hdr_set_len(&len_op, (__u32)(TCMU_OP_ALIGN_SIZE * 16));
	op = tcmu_hdr_get_op(len_op);
	ent.hdr.len_op = len_op;
	ent.hdr.uflags = TCMU_UFLAG_UNKNOWN_OP | TCMU_UFLAG_READ_LEN |
			 TCMU_UFLAG_KEEP_BUF;
	ent.req.iov_cnt = 1;
	ent.req.cdb_off = sizeof(mb);
	ent.rsp.sense_buffer[TCMU_SENSE_BUFFERSIZE - 1] = 0x70;
	tmr.tmr_type = TCMU_TMR_LUN_RESET_PRO;
	tmr.cmd_cnt = TCMU_TMR_TARGET_COLD_RESET;

	mb.version = TCMU_MAILBOX_VERSION;
	mb.flags = TCMU_MAILBOX_FLAG_CAP_OOOC | TCMU_MAILBOX_FLAG_CAP_READ_LEN |
		   TCMU_MAILBOX_FLAG_CAP_TMR | TCMU_MAILBOX_FLAG_CAP_KEEP_BUF;

	sum += (int)tcmu_hdr_get_len(ent.hdr.len_op);
	sum += op == TCMU_OP_CMD ? 1 : 0;
	sum += mb.version + mb.flags + ent.hdr.uflags + tmr.tmr_type;
	sum += (int)tmr.cmd_cnt + (int)ent.req.iov_cnt;
	sum += ent.rsp.sense_buffer[TCMU_SENSE_BUFFERSIZE - 1];
	sum += gcmd == TCMU_CMD_MAX ? 1 : 0;
	sum += gattr == TCMU_ATTR_MAX ? 1 : 0;
	sum += version[0] + ALIGN_SIZE + TCMU_OP_MASK + TCMU_TMR_UNKNOWN;
	return sum;
}

int main(void)
{
	return tcmu_probe() > 0 ? 0 : 1;
}
