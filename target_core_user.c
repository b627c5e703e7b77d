// SPDX-License-Identifier: GPL-2.0
/*
 * target_core_user: the LIO "user" backstore (TCMU).
 *
 * Each device exports one UIO region shared with a userspace handler:
 *
 *   +---------+----------------------------+--------------------------+
 *   | mailbox | command ring               | data area                |
 *   +---------+----------------------------+--------------------------+
 *   0         128                          ring_mb MiB                end
 *
 * The kernel appends command entries to the ring and copies Data-Out into
 * blocks of the data area. The handler answers in the ring and kicks the
 * kernel with write() on the uio file descriptor.
 *
 * Trust model: the region is writable by the handler, so nothing the
 * kernel reads back from it is believed without a check. The kernel keeps
 * its own log of every ring entry it wrote (ring_log) and its own copy of
 * the head and tail; the only values it takes from shared memory are the
 * handler's cmd_tail (validated against the log), and per completion the
 * command id, flags and response (validated against the command table).
 *
 * Sections:
 *   1. parameters and globals
 *   2. netlink
 *   3. data area: blocks, pages, copies
 *   4. command ring: queueing
 *   5. command ring: completions
 *   6. timeouts, qfull queue, TMR
 *   7. uio: open, mmap, fault, release
 *   8. device lifecycle
 *   9. configfs: control, info, attributes, actions
 *  10. global data-area reclaim
 *  11. module init/exit
 */

#define pr_fmt(fmt) "tcmu: " fmt

#include <linux/bitops.h>
#include <linux/highmem.h>
#include <linux/jiffies.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/parser.h>
#include <linux/pagemap.h>
#include <linux/sched/signal.h>
#include <linux/scatterlist.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/string.h>
#include <linux/vmalloc.h>
#include <net/genetlink.h>
#include <scsi/scsi_common.h>
#include <scsi/scsi_proto.h>
#include <target/target_core_backend.h>

#include <linux/target_core_user.h>

#include "target_core_user.h"

/* ------------------------------------------------------------------------
 * 1. Parameters and globals
 * ------------------------------------------------------------------------
 */

static struct device *tcmu_root;
static struct kmem_cache *tcmu_cmd_slab;

/* All enabled devices, walked by reclaim. */
static DEFINE_MUTEX(tcmu_devices_lock);
static LIST_HEAD(tcmu_devices);

/* Data pages allocated over all devices, and the global cap (pages). */
static atomic_t tcmu_global_pages = ATOMIC_INIT(0);
static unsigned int tcmu_global_max_pages =
	TCMU_GLOBAL_DATA_MB_DEF << (20 - PAGE_SHIFT);
static void tcmu_reclaim_fn(struct work_struct *work);
static DECLARE_WORK(tcmu_reclaim_work, tcmu_reclaim_fn);

static int tcmu_global_max_set(const char *val, const struct kernel_param *kp)
{
	unsigned int mb;
	int ret;

	ret = kstrtouint(val, 0, &mb);
	if (ret)
		return ret;
	if (!mb || mb > (UINT_MAX >> (20 - PAGE_SHIFT)))
		return -EINVAL;
	WRITE_ONCE(tcmu_global_max_pages, mb << (20 - PAGE_SHIFT));
	if (atomic_read(&tcmu_global_pages) > mb << (20 - PAGE_SHIFT))
		schedule_work(&tcmu_reclaim_work);
	return 0;
}

static int tcmu_global_max_get(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "%u\n",
			  READ_ONCE(tcmu_global_max_pages) >> (20 - PAGE_SHIFT));
}

static const struct kernel_param_ops tcmu_global_max_ops = {
	.set = tcmu_global_max_set,
	.get = tcmu_global_max_get,
};
module_param_cb(global_max_data_area_mb, &tcmu_global_max_ops, NULL, 0644);
MODULE_PARM_DESC(global_max_data_area_mb,
		 "Data area memory (MiB) over all devices before idle pages are reclaimed");

static u32 tcmu_global_max_mb(void)
{
	return READ_ONCE(tcmu_global_max_pages) >> (20 - PAGE_SHIFT);
}

/* ------------------------------------------------------------------------
 * 2. Netlink
 * ------------------------------------------------------------------------
 */

/*
 * Pending requests: a device waiting for a *_DONE reply is on
 * tcmu_nl_pending with nl_cmd set. Replies are matched by device index and
 * command; a reply that matches nothing is refused and wakes nobody.
 */
static DEFINE_MUTEX(tcmu_nl_lock);
static LIST_HEAD(tcmu_nl_pending);
static u8 tcmu_nl_daemon_replies;	/* as the daemon sent it */
static bool tcmu_nl_blocked;
static unsigned int tcmu_nl_timeout = 30;	/* seconds */

static int tcmu_nl_timeout_set(const char *val, const struct kernel_param *kp)
{
	unsigned int secs;
	int ret;

	ret = kstrtouint(val, 0, &secs);
	if (ret)
		return ret;
	if (!secs || secs > 3600)
		return -EINVAL;
	WRITE_ONCE(tcmu_nl_timeout, secs);
	return 0;
}

static const struct kernel_param_ops tcmu_nl_timeout_ops = {
	.set = tcmu_nl_timeout_set,
	.get = param_get_uint,
};
module_param_cb(netlink_timeout, &tcmu_nl_timeout_ops, &tcmu_nl_timeout, 0644);
MODULE_PARM_DESC(netlink_timeout,
		 "Seconds to wait for a netlink reply from the handler daemon (1-3600)");

/* Same words and values as upstream, which tcmu-runner's tools expect. */
static int tcmu_block_nl_set(const char *val, const struct kernel_param *kp)
{
	u8 on;

	if (kstrtou8(val, 0, &on) || on > 1) {
		pr_warn_ratelimited("block_netlink takes 0 or 1\n");
		return -EINVAL;
	}
	mutex_lock(&tcmu_nl_lock);
	tcmu_nl_blocked = on;
	mutex_unlock(&tcmu_nl_lock);
	return 0;
}

static int tcmu_block_nl_get(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "%s\n", READ_ONCE(tcmu_nl_blocked) ?
			  "blocked" : "unblocked");
}

static const struct kernel_param_ops tcmu_block_nl_ops = {
	.set = tcmu_block_nl_set,
	.get = tcmu_block_nl_get,
};
module_param_cb(block_netlink, &tcmu_block_nl_ops, NULL, 0644);
MODULE_PARM_DESC(block_netlink, "Refuse new netlink requests (1) or allow them (0)");

/*
 * Fail every pending request. Pending requests may only be failed while
 * netlink is blocked (otherwise new ones could slip in behind the reset);
 * with nothing pending the write is a harmless no-op, as upstream.
 */
static int tcmu_reset_nl_set(const char *val, const struct kernel_param *kp)
{
	struct tcmu_dev *udev, *tmp;
	u8 v;

	if (kstrtou8(val, 0, &v) || v != 1) {
		pr_warn_ratelimited("reset_netlink takes 1\n");
		return -EINVAL;
	}

	mutex_lock(&tcmu_nl_lock);
	if (!tcmu_nl_blocked && !list_empty(&tcmu_nl_pending)) {
		mutex_unlock(&tcmu_nl_lock);
		pr_warn_ratelimited("reset_netlink needs block_netlink=1 first\n");
		return -EBUSY;
	}
	list_for_each_entry_safe(udev, tmp, &tcmu_nl_pending, nl_node) {
		list_del_init(&udev->nl_node);
		udev->nl_status = -EINTR;
		complete(&udev->nl_done);
	}
	mutex_unlock(&tcmu_nl_lock);
	return 0;
}

static const struct kernel_param_ops tcmu_reset_nl_ops = {
	.set = tcmu_reset_nl_set,
};
module_param_cb(reset_netlink, &tcmu_reset_nl_ops, NULL, 0200);
MODULE_PARM_DESC(reset_netlink, "Write 1 to fail all pending netlink requests");

enum tcmu_mcgrp { TCMU_MCGRP_CONFIG };

static const struct genl_multicast_group tcmu_nl_groups[] = {
	[TCMU_MCGRP_CONFIG] = { .name = "config" },
};

static const struct nla_policy tcmu_nl_policy[TCMU_ATTR_MAX + 1] = {
	[TCMU_ATTR_DEVICE]		= { .type = NLA_STRING },
	[TCMU_ATTR_MINOR]		= { .type = NLA_U32 },
	[TCMU_ATTR_CMD_STATUS]		= { .type = NLA_S32 },
	[TCMU_ATTR_DEVICE_ID]		= { .type = NLA_U32 },
	[TCMU_ATTR_SUPP_KERN_CMD_REPLY]	= { .type = NLA_U8 },
};

static int tcmu_nl_reply(struct genl_info *info, int done_for)
{
	struct tcmu_dev *udev, *found = NULL;
	u32 dev_id;
	s32 status;

	if (!info->attrs[TCMU_ATTR_CMD_STATUS] ||
	    !info->attrs[TCMU_ATTR_DEVICE_ID]) {
		pr_warn_ratelimited("netlink reply without status or device id\n");
		return -EINVAL;
	}
	dev_id = nla_get_u32(info->attrs[TCMU_ATTR_DEVICE_ID]);
	status = nla_get_s32(info->attrs[TCMU_ATTR_CMD_STATUS]);

	mutex_lock(&tcmu_nl_lock);
	list_for_each_entry(udev, &tcmu_nl_pending, nl_node) {
		if (udev->se_dev.dev_index == dev_id) {
			found = udev;
			break;
		}
	}
	if (!found || found->nl_cmd != done_for) {
		mutex_unlock(&tcmu_nl_lock);
		pr_warn_ratelimited("netlink reply %d for device %u matches no request\n",
				    done_for, dev_id);
		return found ? -EINVAL : -ENODEV;
	}
	list_del_init(&found->nl_node);
	/* A daemon may only report success or a negative errno. */
	found->nl_status = status > 0 ? -EINVAL : status;
	complete(&found->nl_done);
	mutex_unlock(&tcmu_nl_lock);
	return 0;
}

static int tcmu_nl_added_done(struct sk_buff *skb, struct genl_info *info)
{
	return tcmu_nl_reply(info, TCMU_CMD_ADDED_DEVICE);
}

static int tcmu_nl_removed_done(struct sk_buff *skb, struct genl_info *info)
{
	return tcmu_nl_reply(info, TCMU_CMD_REMOVED_DEVICE);
}

static int tcmu_nl_reconfig_done(struct sk_buff *skb, struct genl_info *info)
{
	return tcmu_nl_reply(info, TCMU_CMD_RECONFIG_DEVICE);
}

static int tcmu_nl_set_features(struct sk_buff *skb, struct genl_info *info)
{
	struct nlattr *a = info->attrs[TCMU_ATTR_SUPP_KERN_CMD_REPLY];

	if (a) {
		WRITE_ONCE(tcmu_nl_daemon_replies, nla_get_u8(a));
		pr_info("handler daemon %s netlink replies\n",
			tcmu_nl_daemon_replies ? "sends" : "does not send");
	}
	return 0;
}

static const struct genl_small_ops tcmu_nl_ops[] = {
	{
		.cmd = TCMU_CMD_SET_FEATURES,
		.validate = GENL_DONT_VALIDATE_STRICT | GENL_DONT_VALIDATE_DUMP,
		.flags = GENL_ADMIN_PERM,
		.doit = tcmu_nl_set_features,
	},
	{
		.cmd = TCMU_CMD_ADDED_DEVICE_DONE,
		.validate = GENL_DONT_VALIDATE_STRICT | GENL_DONT_VALIDATE_DUMP,
		.flags = GENL_ADMIN_PERM,
		.doit = tcmu_nl_added_done,
	},
	{
		.cmd = TCMU_CMD_REMOVED_DEVICE_DONE,
		.validate = GENL_DONT_VALIDATE_STRICT | GENL_DONT_VALIDATE_DUMP,
		.flags = GENL_ADMIN_PERM,
		.doit = tcmu_nl_removed_done,
	},
	{
		.cmd = TCMU_CMD_RECONFIG_DEVICE_DONE,
		.validate = GENL_DONT_VALIDATE_STRICT | GENL_DONT_VALIDATE_DUMP,
		.flags = GENL_ADMIN_PERM,
		.doit = tcmu_nl_reconfig_done,
	},
};

static struct genl_family tcmu_nl_family __ro_after_init = {
	.module = THIS_MODULE,
	.name = "TCM-USER",
	.version = 2,
	.maxattr = TCMU_ATTR_MAX,
	.policy = tcmu_nl_policy,
	.mcgrps = tcmu_nl_groups,
	.n_mcgrps = ARRAY_SIZE(tcmu_nl_groups),
	.netnsok = true,
	.small_ops = tcmu_nl_ops,
	.n_small_ops = ARRAY_SIZE(tcmu_nl_ops),
	.resv_start_op = TCMU_CMD_SET_FEATURES + 1,
};

/*
 * Wait only while the daemon says it replies and the device agrees.
 * nl_reply_supported was fixed when the device was enabled (see
 * tcmu_configure_locked()), so a daemon that announces replies later does
 * not make older devices start waiting; one that stops announcing them
 * stops every wait at once, as upstream.
 */
static bool tcmu_nl_wants_reply(struct tcmu_dev *udev)
{
	return READ_ONCE(tcmu_nl_daemon_replies) && udev->nl_reply_supported > 0;
}

/* Optional attributes carried by an event. */
struct tcmu_nl_extra {
	const char *dev_cfg;
	bool has_size;
	u64 dev_size;
	bool has_wc;
	u8 wc;
};

/*
 * Send one event and, when the daemon promised replies, wait for the
 * matching *_DONE. The wait ends on the reply, on a fatal signal, or after
 * netlink_timeout seconds; the request is always unlinked before return.
 */
static int tcmu_nl_send(struct tcmu_dev *udev, enum tcmu_genl_cmd cmd,
			const struct tcmu_nl_extra *extra)
{
	struct sk_buff *skb;
	bool wait = tcmu_nl_wants_reply(udev);
	bool heard;
	void *hdr;
	long left;
	int ret;

	skb = genlmsg_new(NLMSG_GOODSIZE, GFP_KERNEL);
	if (!skb)
		return -ENOMEM;
	hdr = genlmsg_put(skb, 0, 0, &tcmu_nl_family, 0, cmd);
	if (!hdr)
		goto too_big;
	if (nla_put_string(skb, TCMU_ATTR_DEVICE, udev->uio_info.name) ||
	    nla_put_u32(skb, TCMU_ATTR_MINOR, udev->uio_info.uio_dev->minor) ||
	    nla_put_u32(skb, TCMU_ATTR_DEVICE_ID, udev->se_dev.dev_index))
		goto too_big;
	if (extra && extra->dev_cfg &&
	    nla_put_string(skb, TCMU_ATTR_DEV_CFG, extra->dev_cfg))
		goto too_big;
	if (extra && extra->has_size &&
	    nla_put_u64_64bit(skb, TCMU_ATTR_DEV_SIZE, extra->dev_size,
			      TCMU_ATTR_PAD))
		goto too_big;
	if (extra && extra->has_wc &&
	    nla_put_u8(skb, TCMU_ATTR_WRITECACHE, extra->wc))
		goto too_big;
	genlmsg_end(skb, hdr);

	if (wait) {
		mutex_lock(&tcmu_nl_lock);
		if (tcmu_nl_blocked || !list_empty(&udev->nl_node)) {
			ret = tcmu_nl_blocked ? -EAGAIN : -EBUSY;
			mutex_unlock(&tcmu_nl_lock);
			nlmsg_free(skb);
			pr_warn_ratelimited("%s: netlink event %d refused (%d)\n",
					    udev->name, cmd, ret);
			return ret;
		}
		reinit_completion(&udev->nl_done);
		udev->nl_cmd = cmd;
		udev->nl_status = -ETIMEDOUT;
		list_add_tail(&udev->nl_node, &tcmu_nl_pending);
		mutex_unlock(&tcmu_nl_lock);
	}

	ret = genlmsg_multicast_allns(&tcmu_nl_family, skb, 0,
				      TCMU_MCGRP_CONFIG);
	/*
	 * -ESRCH: nobody is subscribed, so nobody can answer and there is
	 * nothing to wait for (upstream waits anyway, forever). For a new
	 * device it is not an error: a daemon started later finds the device
	 * by scanning the UIO devices.
	 */
	heard = ret != -ESRCH;
	if (!heard && cmd == TCMU_CMD_ADDED_DEVICE)
		ret = 0;
	if (!wait)
		return ret;
	if (ret || !heard)
		goto unlink;

	left = wait_for_completion_killable_timeout(&udev->nl_done,
						    READ_ONCE(tcmu_nl_timeout) * HZ);
	if (left > 0) {
		mutex_lock(&tcmu_nl_lock);
		ret = udev->nl_status;
		mutex_unlock(&tcmu_nl_lock);
		return ret;
	}
	ret = left ? (int)left : -ETIMEDOUT;
	pr_warn_ratelimited("%s: no netlink reply to event %d (%d)\n",
			    udev->name, cmd, ret);
unlink:
	mutex_lock(&tcmu_nl_lock);
	if (!list_empty(&udev->nl_node)) {
		list_del_init(&udev->nl_node);
	} else if (!ret) {
		/* The reply raced with the timeout: take it. */
		ret = udev->nl_status;
	}
	mutex_unlock(&tcmu_nl_lock);
	return ret;

too_big:
	nlmsg_free(skb);
	return -EMSGSIZE;
}

/* ------------------------------------------------------------------------
 * 3. Data area: blocks, pages and copies
 * ------------------------------------------------------------------------
 */

static u32 tcmu_blk_pages(struct tcmu_dev *udev)
{
	return udev->pages_per_blk;
}

/* Free a command's block runs (pages stay allocated for reuse). */
static void tcmu_cmd_release_blocks(struct tcmu_cmd *cmd)
{
	struct tcmu_dev *udev = cmd->udev;
	u32 i;

	for (i = 0; i < cmd->nr_runs; i++)
		bitmap_clear(udev->blk_bitmap, cmd->runs[i].start,
			     cmd->runs[i].count);
	if (cmd->runs != cmd->inline_runs)
		kfree(cmd->runs);
	cmd->runs = cmd->inline_runs;
	cmd->nr_runs = 0;
	cmd->nr_out_runs = 0;
	cmd->nr_blocks = 0;
}

/* Make sure every page of blocks [start, start + count) exists, zeroed. */
static int tcmu_populate_blocks(struct tcmu_dev *udev, u32 start, u32 count)
{
	u32 first = start * tcmu_blk_pages(udev);
	u32 last = (start + count) * tcmu_blk_pages(udev);
	u32 i;

	for (i = first; i < last; i++) {
		struct page *page;

		if (xa_load(&udev->pages, i))
			continue;
		if (atomic_inc_return(&tcmu_global_pages) >
		    READ_ONCE(tcmu_global_max_pages)) {
			atomic_dec(&tcmu_global_pages);
			schedule_work(&tcmu_reclaim_work);
			return -ENOSPC;
		}
		/* Zeroed so a handler never sees stale kernel memory. */
		page = alloc_page(GFP_NOIO | __GFP_ZERO);
		if (!page)
			goto fail;
		if (xa_err(xa_store(&udev->pages, i, page, GFP_NOIO))) {
			__free_page(page);
			goto fail;
		}
		udev->nr_pages++;
	}
	return 0;
fail:
	atomic_dec(&tcmu_global_pages);
	return -ENOMEM;
}

/* Claim blocks for @nblocks into @cmd's runs, appended after existing. */
static int tcmu_claim(struct tcmu_dev *udev, struct tcmu_cmd *cmd, u32 nblocks)
{
	struct tcmu_run one[1], *runs;
	u32 nr, want, i;
	int ret;

	if (!nblocks)
		return 0;

	nr = tcmu_blocks_claim(udev->blk_bitmap, udev->nr_blocks, nblocks,
			       one, 1);
	if (!nr) {
		want = tcmu_blocks_count_runs(udev->blk_bitmap, udev->nr_blocks,
					      nblocks);
		if (!want)
			return -ENOSPC;
		runs = kmalloc_array(want, sizeof(*runs), GFP_NOIO);
		if (!runs)
			return -ENOMEM;
		nr = tcmu_blocks_claim(udev->blk_bitmap, udev->nr_blocks,
				       nblocks, runs, want);
		if (!nr) {
			kfree(runs);
			return -ENOSPC;
		}
	} else {
		runs = one;
	}

	/* Grow the command's run array if the inline one is too small. */
	if (cmd->nr_runs + nr > TCMU_INLINE_RUNS) {
		struct tcmu_run *big = kmalloc_array(cmd->nr_runs + nr,
						     sizeof(*big), GFP_NOIO);

		if (!big) {
			ret = -ENOMEM;
			goto unclaim;
		}
		memcpy(big, cmd->runs, cmd->nr_runs * sizeof(*big));
		if (cmd->runs != cmd->inline_runs)
			kfree(cmd->runs);
		cmd->runs = big;
	}
	for (i = 0; i < nr; i++) {
		ret = tcmu_populate_blocks(udev, runs[i].start, runs[i].count);
		if (ret)
			goto unclaim;
	}
	memcpy(cmd->runs + cmd->nr_runs, runs, nr * sizeof(*runs));
	cmd->nr_runs += nr;
	cmd->nr_blocks += nblocks;
	if (runs != one)
		kfree(runs);
	return 0;

unclaim:
	for (i = 0; i < nr; i++)
		bitmap_clear(udev->blk_bitmap, runs[i].start, runs[i].count);
	if (runs != one)
		kfree(runs);
	return ret;
}

/*
 * Walk the data area bytes described by runs [first, first + nr) and copy
 * between them and a scatterlist. @to_area selects the direction.
 */
static void tcmu_copy_runs(struct tcmu_dev *udev, const struct tcmu_run *runs,
			   u32 nr, struct scatterlist *sgl, u32 nents,
			   u32 len, bool to_area)
{
	struct sg_mapping_iter miter;
	unsigned int sg_flags = to_area ? SG_MITER_FROM_SG : SG_MITER_TO_SG;
	u32 run = 0, page_in_run = 0, page_off = 0;

	if (!len || !nr)
		return;

	sg_miter_start(&miter, sgl, nents, sg_flags | SG_MITER_ATOMIC);
	while (len && sg_miter_next(&miter)) {
		size_t sg_left = min_t(size_t, miter.length, len);
		void *sg_addr = miter.addr;

		while (sg_left && run < nr) {
			u32 pidx = runs[run].start * tcmu_blk_pages(udev) +
				   page_in_run;
			struct page *page = xa_load(&udev->pages, pidx);
			size_t chunk = min_t(size_t, sg_left,
					     PAGE_SIZE - page_off);
			void *area;

			if (WARN_ON_ONCE(!page))
				goto out;
			area = kmap_local_page(page);
			if (to_area)
				memcpy(area + page_off, sg_addr, chunk);
			else
				memcpy(sg_addr, area + page_off, chunk);
			kunmap_local(area);

			sg_addr += chunk;
			sg_left -= chunk;
			len -= chunk;
			page_off += chunk;
			if (page_off == PAGE_SIZE) {
				page_off = 0;
				if (++page_in_run ==
				    runs[run].count * tcmu_blk_pages(udev)) {
					page_in_run = 0;
					run++;
				}
			}
		}
		if (run >= nr)
			break;
	}
out:
	sg_miter_stop(&miter);
}

/*
 * Clear the first @len bytes of the blocks in @runs. Blocks go from command
 * to command without being freed, so a handler that answers with less
 * than the allocation length (an INQUIRY or MODE SENSE shorter than the
 * initiator asked for, without READ_LEN) would otherwise return bytes an
 * earlier command left behind.
 */
static void tcmu_zero_runs(struct tcmu_dev *udev, const struct tcmu_run *runs,
			   u32 nr, u32 len)
{
	u32 i, p;

	for (i = 0; i < nr && len; i++) {
		u32 first = runs[i].start * tcmu_blk_pages(udev);
		u32 pages = runs[i].count * tcmu_blk_pages(udev);

		for (p = 0; p < pages && len; p++) {
			u32 chunk = min_t(u32, len, PAGE_SIZE);
			struct page *page = xa_load(&udev->pages, first + p);

			if (page)
				memzero_page(page, 0, chunk);
			len -= chunk;
		}
	}
}

/*
 * Media reads are answered in full or fail, so their Data-In needs no
 * clearing; everything else may legitimately come back short.
 */
static bool tcmu_in_needs_zero(const u8 *cdb)
{
	switch (cdb[0]) {
	case READ_6:
	case READ_10:
	case READ_12:
	case READ_16:
		return false;
	default:
		return true;
	}
}

/* Fill @iov with one iovec per run, covering @len bytes. */
static u32 tcmu_runs_to_iov(struct tcmu_dev *udev, const struct tcmu_run *runs,
			    u32 nr, u32 len, struct iovec *iov)
{
	u32 i, n = 0;

	for (i = 0; i < nr && len; i++) {
		u32 bytes = min(len, runs[i].count * udev->blk_size);

		iov[n].iov_base = (void __user *)(uintptr_t)
			(udev->data_off + (size_t)runs[i].start * udev->blk_size);
		iov[n].iov_len = bytes;
		len -= bytes;
		n++;
	}
	return n;
}

/* ------------------------------------------------------------------------
 * 4. Command ring: queueing
 * ------------------------------------------------------------------------
 */

/*
 * Entries are published under ring_lock, but the handler is only woken
 * once the lock is dropped (tcmu_ring_unlock), or at unplug: woken while
 * we still held it, the handler would finish its work and then wait for
 * the lock in write().
 */
static void tcmu_kick(struct tcmu_dev *udev)
{
	set_bit(TCMU_DEV_KICK_PENDING, &udev->flags);
}

/*
 * Raise a pending wakeup unless a plug still holds it back. Called after
 * ring_lock is dropped and after the plug is removed; with the barrier on
 * both sides, at least one of the two sees the pending flag and the plug
 * gone.
 */
static void tcmu_flush_kick(struct tcmu_dev *udev)
{
	/* Orders our flag write (kick or plug) before reading the other. */
	smp_mb();
	if (!test_bit(TCMU_DEV_PLUGGED, &udev->flags) &&
	    test_and_clear_bit(TCMU_DEV_KICK_PENDING, &udev->flags))
		uio_event_notify(&udev->uio_info);
}

/*
 * Drop ring_lock and wake the handler for what was published under it:
 * for the paths that may put entries on the ring.
 */
static void tcmu_ring_unlock(struct tcmu_dev *udev)
{
	lockdep_assert_held(&udev->ring_lock);
	/* No wakeup for a device whose uio node is gone or not there yet. */
	if (test_bit(TCMU_DEV_DEAD, &udev->flags) || !udev->uio_info.uio_dev)
		clear_bit(TCMU_DEV_KICK_PENDING, &udev->flags);
	mutex_unlock(&udev->ring_lock);
	tcmu_flush_kick(udev);
}

/*
 * Write the mailbox fields the kernel owns and the handler only reads:
 * the constant header and cmd_head. Returns true if any of them differed,
 * i.e. a handler wrote where it must not.
 */
static bool tcmu_mb_restore(struct tcmu_dev *udev)
{
	struct tcmu_mailbox *mb = udev->mb;
	bool scribbled;

	scribbled = mb->version != TCMU_MAILBOX_VERSION ||
		    mb->flags != TCMU_MB_CAPS ||
		    mb->cmdr_off != TCMU_MB_SIZE ||
		    mb->cmdr_size != udev->ring_size ||
		    READ_ONCE(mb->cmd_head) != udev->ring_head;
	mb->version = TCMU_MAILBOX_VERSION;
	mb->flags = TCMU_MB_CAPS;
	mb->cmdr_off = TCMU_MB_SIZE;
	mb->cmdr_size = udev->ring_size;
	WRITE_ONCE(mb->cmd_head, udev->ring_head);
	return scribbled;
}

/* Record an entry in the private log and publish it by moving cmd_head. */
static void tcmu_ring_publish(struct tcmu_dev *udev, u32 len_op)
{
	udev->ring_log[udev->log_head] = len_op;
	udev->log_head = (udev->log_head + 1) % udev->log_cap;
	udev->ring_head = (udev->ring_head + tcmu_hdr_get_len(len_op)) %
			  udev->ring_size;
	/* Entry contents must be visible before the new head. */
	smp_store_release(&udev->mb->cmd_head, udev->ring_head);
}

static u32 tcmu_log_used(struct tcmu_dev *udev)
{
	return (udev->log_head + udev->log_cap - udev->log_tail) % udev->log_cap;
}

/*
 * Reserve ring room for an entry of @len bytes: writes a PAD when the
 * entry must wrap. Returns false when there is no room.
 */
static bool tcmu_ring_reserve(struct tcmu_dev *udev, u32 len)
{
	u32 pad;

	/* Two log slots: one for a PAD, one for the entry. */
	if (tcmu_log_used(udev) + 2 >= udev->log_cap)
		return false;
	if (!tcmu_ring_fit(udev->ring_head, udev->ring_tail, udev->ring_size,
			   len, &pad))
		return false;
	if (pad) {
		struct tcmu_cmd_entry_hdr *hdr = udev->ring + udev->ring_head;
		u32 len_op = pad | TCMU_OP_PAD;

		memset(hdr, 0, sizeof(*hdr));
		hdr->len_op = len_op;
		tcmu_ring_publish(udev, len_op);
	}
	return true;
}

static u32 tcmu_bidi_len(struct se_cmd *se_cmd)
{
	struct scatterlist *sg;
	u32 len = 0;
	int i;

	if (!(se_cmd->se_cmd_flags & SCF_BIDI))
		return 0;
	for_each_sg(se_cmd->t_bidi_data_sg, sg, se_cmd->t_bidi_data_nents, i)
		len += sg->length;
	return len;
}

static void tcmu_arm_timer(struct tcmu_dev *udev, struct timer_list *timer,
			   struct list_head *list)
{
	struct tcmu_cmd *first;

	if (test_bit(TCMU_DEV_DEAD, &udev->flags))
		return;
	first = list_first_entry_or_null(list, struct tcmu_cmd, node);
	if (!first)
		del_timer(timer);
	else if (!timer_pending(timer) ||
		 !tcmu_deadline_before_eq(timer->expires, first->deadline))
		mod_timer(timer, first->deadline);
}

/*
 * Try to put @cmd on the ring.
 * Return: 0 queued, -EAGAIN no room now (caller may wait in qfull),
 * -EINVAL the command can never fit, -ENOMEM out of memory.
 */
static int tcmu_try_queue(struct tcmu_dev *udev, struct tcmu_cmd *cmd)
{
	struct se_cmd *se_cmd = cmd->se_cmd;
	struct tcmu_cmd_entry *entry;
	u32 out_blocks, in_blocks, iov_cnt, cdb_len, len, head;
	u32 out_iovs, in_iovs, id;
	int ret;

	cdb_len = scsi_command_size(se_cmd->t_task_cdb);
	out_blocks = DIV_ROUND_UP(cmd->out_len, udev->blk_size);
	in_blocks = DIV_ROUND_UP(cmd->in_len, udev->blk_size);
	if ((u64)out_blocks + in_blocks > udev->nr_blocks) {
		pr_warn_ratelimited("%s: %u+%u byte command exceeds the %u byte data area\n",
				    udev->name, cmd->out_len, cmd->in_len,
				    udev->nr_blocks * udev->blk_size);
		return -EINVAL;
	}

	ret = tcmu_claim(udev, cmd, out_blocks);
	if (ret)
		goto no_data;
	cmd->nr_out_runs = cmd->nr_runs;
	ret = tcmu_claim(udev, cmd, in_blocks);
	if (ret)
		goto no_data;

	iov_cnt = cmd->nr_runs;
	len = tcmu_cmd_entry_size(iov_cnt, cdb_len);
	if (len > udev->ring_size / 2) {
		pr_warn_ratelimited("%s: %u byte entry too large for the ring\n",
				    udev->name, len);
		tcmu_cmd_release_blocks(cmd);
		return -EINVAL;
	}
	if (!tcmu_ring_reserve(udev, len)) {
		udev->stats.ring_full++;
		tcmu_cmd_release_blocks(cmd);
		return -EAGAIN;
	}

	ret = xa_alloc_cyclic(&udev->cmds, &id, cmd,
			      XA_LIMIT(TCMU_CMD_ID_MIN, TCMU_CMD_ID_MAX),
			      &udev->next_id, GFP_NOIO);
	if (ret < 0) {
		tcmu_cmd_release_blocks(cmd);
		/* All ids busy means the ring is as full as it gets. */
		return ret == -EBUSY ? -EAGAIN : ret;
	}
	cmd->id = id;

	/* Data-Out goes into the area before the handler can see the entry. */
	if (cmd->out_len)
		tcmu_copy_runs(udev, cmd->runs, cmd->nr_out_runs,
			       se_cmd->t_data_sg, se_cmd->t_data_nents,
			       cmd->out_len, true);
	if (cmd->in_len && tcmu_in_needs_zero(se_cmd->t_task_cdb))
		tcmu_zero_runs(udev, cmd->runs + cmd->nr_out_runs,
			       cmd->nr_runs - cmd->nr_out_runs, cmd->in_len);

	head = udev->ring_head;
	entry = udev->ring + head;
	memset(entry, 0, len);
	entry->hdr.cmd_id = id;
	out_iovs = tcmu_runs_to_iov(udev, cmd->runs, cmd->nr_out_runs,
				    cmd->out_len, entry->req.iov);
	in_iovs = tcmu_runs_to_iov(udev, cmd->runs + cmd->nr_out_runs,
				   cmd->nr_runs - cmd->nr_out_runs,
				   cmd->in_len, entry->req.iov + out_iovs);
	if (se_cmd->se_cmd_flags & SCF_BIDI) {
		entry->req.iov_cnt = out_iovs;
		entry->req.iov_bidi_cnt = in_iovs;
	} else {
		entry->req.iov_cnt = out_iovs + in_iovs;
	}
	entry->req.cdb_off = TCMU_MB_SIZE + head + tcmu_cmd_base_size(iov_cnt);
	memcpy((void *)udev->mb + entry->req.cdb_off, se_cmd->t_task_cdb,
	       cdb_len);
	entry->hdr.len_op = len | TCMU_OP_CMD;
	tcmu_ring_publish(udev, len | TCMU_OP_CMD);

	list_add_tail(&cmd->node, &udev->inflight);
	if (udev->cmd_time_out) {
		cmd->deadline = jiffies + udev->cmd_time_out;
		tcmu_arm_timer(udev, &udev->cmd_timer, &udev->inflight);
	}
	udev->nr_inflight++;
	udev->stats.cmds++;
	udev->stats.bytes_out += cmd->out_len;
	if (udev->nr_inflight > udev->stats.inflight_max)
		udev->stats.inflight_max = udev->nr_inflight;
	tcmu_kick(udev);
	return 0;

no_data:
	tcmu_cmd_release_blocks(cmd);
	if (ret == -ENOSPC) {
		udev->stats.data_full++;
		return -EAGAIN;
	}
	return ret;
}

static void tcmu_free_cmd(struct tcmu_cmd *cmd)
{
	tcmu_cmd_release_blocks(cmd);
	kmem_cache_free(tcmu_cmd_slab, cmd);
}

/* Put a command on the qfull queue, or refuse per qfull_time_out. */
static int tcmu_qfull_add(struct tcmu_dev *udev, struct tcmu_cmd *cmd)
{
	unsigned long tmo;

	if (!udev->qfull_time_out)
		return -ETIMEDOUT;
	if (udev->qfull_time_out > 0)
		tmo = udev->qfull_time_out;
	else if (udev->cmd_time_out)
		tmo = udev->cmd_time_out;
	else
		tmo = TCMU_CMD_TIMEOUT_DEF * HZ;
	cmd->deadline = jiffies + tmo;
	list_add_tail(&cmd->node, &udev->qfull);
	udev->stats.qfull_events++;
	tcmu_arm_timer(udev, &udev->qfull_timer, &udev->qfull);
	return 0;
}

static sense_reason_t tcmu_queue_locked(struct tcmu_dev *udev,
					struct tcmu_cmd *cmd)
{
	int ret;

	if (test_bit(TCMU_DEV_BLOCKED, &udev->flags))
		return TCM_LUN_BUSY;
	if (test_bit(TCMU_DEV_BROKEN, &udev->flags))
		return TCM_LOGICAL_UNIT_COMMUNICATION_FAILURE;

	/* FIFO: nobody overtakes commands already waiting. */
	if (list_empty(&udev->qfull)) {
		ret = tcmu_try_queue(udev, cmd);
		if (!ret)
			return TCM_NO_SENSE;
		if (ret == -EINVAL)
			return TCM_INVALID_CDB_FIELD;
		if (ret != -EAGAIN)
			return TCM_OUT_OF_RESOURCES;
	}
	if (tcmu_qfull_add(udev, cmd))
		return TCM_OUT_OF_RESOURCES;
	return TCM_NO_SENSE;
}

static sense_reason_t tcmu_execute(struct se_cmd *se_cmd)
{
	struct tcmu_dev *udev = TCMU_DEV(se_cmd->se_dev);
	struct tcmu_cmd *cmd;
	sense_reason_t sr = TCM_CHECK_CONDITION_ABORT_CMD;

	cmd = kmem_cache_zalloc(tcmu_cmd_slab, GFP_NOIO);
	if (!cmd)
		return TCM_OUT_OF_RESOURCES;
	cmd->se_cmd = se_cmd;
	cmd->udev = udev;
	cmd->runs = cmd->inline_runs;
	INIT_LIST_HEAD(&cmd->node);
	if (se_cmd->se_cmd_flags & SCF_BIDI) {
		cmd->out_len = se_cmd->data_length;
		cmd->in_len = tcmu_bidi_len(se_cmd);
	} else if (se_cmd->data_direction == DMA_TO_DEVICE) {
		cmd->out_len = se_cmd->data_length;
	} else if (se_cmd->data_direction == DMA_FROM_DEVICE) {
		cmd->in_len = se_cmd->data_length;
	}

	mutex_lock(&udev->ring_lock);
	if (!(se_cmd->transport_state & CMD_T_ABORTED))
		sr = tcmu_queue_locked(udev, cmd);
	if (sr == TCM_NO_SENSE)
		se_cmd->priv = cmd;
	tcmu_ring_unlock(udev);

	if (sr != TCM_NO_SENSE)
		tcmu_free_cmd(cmd);
	return sr;
}

static sense_reason_t tcmu_parse_cdb(struct se_cmd *se_cmd)
{
	return passthrough_parse_cdb(se_cmd, tcmu_execute);
}

static struct se_dev_plug *tcmu_plug_device(struct se_device *se_dev)
{
	struct tcmu_dev *udev = TCMU_DEV(se_dev);

	if (test_and_set_bit(TCMU_DEV_PLUGGED, &udev->flags))
		return NULL;
	return &udev->se_plug;
}

static void tcmu_unplug_device(struct se_dev_plug *se_plug)
{
	struct tcmu_dev *udev = TCMU_DEV(se_plug->se_dev);

	clear_bit(TCMU_DEV_PLUGGED, &udev->flags);
	tcmu_flush_kick(udev);
}

/* ------------------------------------------------------------------------
 * 5. Command ring: completions
 * ------------------------------------------------------------------------
 */

static void tcmu_run_qfull(struct tcmu_dev *udev, bool fail);

/* NOT READY, LOGICAL UNIT COMMUNICATION FAILURE: the handler let us down. */
static void tcmu_fail_comm(struct se_cmd *se_cmd)
{
	target_complete_cmd_with_sense(se_cmd, SAM_STAT_CHECK_CONDITION,
				       TCM_LOGICAL_UNIT_COMMUNICATION_FAILURE);
}

/*
 * Give up on a ring command: the initiator gets its answer now, while the
 * ring slot and the data blocks stay owned by the command until the
 * handler answers it or the ring is reset.
 */
static void tcmu_abandon(struct tcmu_dev *udev, struct tcmu_cmd *cmd)
{
	struct se_cmd *se_cmd = cmd->se_cmd;

	list_del_init(&cmd->node);
	udev->nr_inflight--;
	set_bit(TCMU_CMD_EXPIRED, &cmd->flags);
	if (se_cmd) {
		se_cmd->priv = NULL;
		cmd->se_cmd = NULL;
		tcmu_fail_comm(se_cmd);
	}
}

/*
 * The handler corrupted the ring: nothing more is read from it until
 * reset_ring. Its commands would only wait for cmd_time_out (or for ever
 * with 0), so they fail now, and so do those waiting for room.
 */
static void tcmu_mark_broken(struct tcmu_dev *udev, const char *why, u32 val)
{
	struct tcmu_cmd *cmd, *tmp;

	if (test_and_set_bit(TCMU_DEV_BROKEN, &udev->flags))
		return;
	pr_warn_ratelimited("%s: ring broken by handler: %s (%u); reset_ring to recover\n",
			    udev->name, why, val);
	list_for_each_entry_safe(cmd, tmp, &udev->inflight, node)
		tcmu_abandon(udev, cmd);
	tcmu_run_qfull(udev, false);
}

/*
 * Settle how @cmd ends from the handler's answer @rsp (a private copy):
 * sense data, status and the Data-In length are taken here, under
 * ring_lock, and se_cmd->priv is cleared, so that from now on only the
 * reaper reaches the command (TMR notification skips it). The data copy
 * and the completion itself are tcmu_finish_data()'s and
 * tcmu_finish_status()'s.
 *
 * Return: false if the command had been completed already (expired).
 */
static bool tcmu_settle(struct tcmu_dev *udev, struct tcmu_cmd *cmd,
			const struct tcmu_cmd_entry *rsp)
{
	struct se_cmd *se_cmd = cmd->se_cmd;
	u8 status = rsp->rsp.scsi_status;
	u32 read_len = cmd->in_len;
	bool has_len = false;

	if (!se_cmd)
		return false;
	se_cmd->priv = NULL;
	cmd->done_len = 0;
	cmd->done_with_len = false;
	cmd->done_sense = TCM_NO_SENSE;
	cmd->done_status = status;

	if (rsp->hdr.uflags & TCMU_UFLAG_UNKNOWN_OP) {
		cmd->done_sense = TCM_UNSUPPORTED_SCSI_OPCODE;
		return true;
	}

	if ((rsp->hdr.uflags & TCMU_UFLAG_READ_LEN) && cmd->in_len &&
	    rsp->rsp.read_len) {
		has_len = true;
		read_len = min(rsp->rsp.read_len, cmd->in_len);
	}

	if (status == SAM_STAT_CHECK_CONDITION) {
		transport_copy_sense_to_cmd(se_cmd, (unsigned char *)
					    rsp->rsp.sense_buffer);
		if (has_len)
			se_cmd->se_cmd_flags |= SCF_TREAT_READ_AS_NORMAL;
		else
			read_len = 0;
	}

	cmd->done_len = read_len;
	cmd->done_with_len = has_len && !(se_cmd->se_cmd_flags & SCF_BIDI);
	udev->stats.bytes_in += read_len;
	return true;
}

/*
 * Copy the Data-In settled by tcmu_settle() back to the initiator's pages.
 * Needs the command's blocks, not ring_lock: nothing else reaches a
 * settled command, and its blocks stay claimed until they are released.
 */
static void tcmu_finish_data(struct tcmu_dev *udev, struct tcmu_cmd *cmd)
{
	struct se_cmd *se_cmd = cmd->se_cmd;
	struct scatterlist *sgl = se_cmd->t_data_sg;
	u32 nents = se_cmd->t_data_nents;

	if (!cmd->done_len)	/* also 0 when a sense reason was settled */
		return;
	if (se_cmd->se_cmd_flags & SCF_BIDI) {
		sgl = se_cmd->t_bidi_data_sg;
		nents = se_cmd->t_bidi_data_nents;
	}
	tcmu_copy_runs(udev, cmd->runs + cmd->nr_out_runs,
		       cmd->nr_runs - cmd->nr_out_runs, sgl, nents,
		       cmd->done_len, false);
}

/* Hand a settled command's status to the core; its data is in place. */
static void tcmu_finish_status(struct tcmu_cmd *cmd)
{
	struct se_cmd *se_cmd = cmd->se_cmd;

	cmd->se_cmd = NULL;
	if (cmd->done_sense != TCM_NO_SENSE)
		target_complete_cmd_with_sense(se_cmd, SAM_STAT_CHECK_CONDITION,
					       cmd->done_sense);
	else if (cmd->done_with_len)
		target_complete_cmd_with_length(se_cmd, cmd->done_status,
						cmd->done_len);
	else
		target_complete_cmd(se_cmd, cmd->done_status);
}

static void tcmu_finish(struct tcmu_dev *udev, struct tcmu_cmd *cmd)
{
	tcmu_finish_data(udev, cmd);
	tcmu_finish_status(cmd);
}

/* Drop a finished command: id, list position, data and memory. */
static void tcmu_retire(struct tcmu_dev *udev, struct tcmu_cmd *cmd)
{
	xa_erase(&udev->cmds, cmd->id);
	if (!list_empty(&cmd->node)) {
		list_del_init(&cmd->node);
		udev->nr_inflight--;
	}
	tcmu_free_cmd(cmd);
}

/*
 * Handle the completion found in the CMD slot at ring offset @off. With
 * @done, an answered command is settled and moved there, for the caller
 * to finish once ring_lock is dropped (tcmu_finish_list()); without, it
 * is finished here.
 */
static bool tcmu_reap_slot(struct tcmu_dev *udev, u32 off,
			   struct list_head *done)
{
	struct tcmu_cmd_entry rsp;
	struct tcmu_cmd *cmd;
	bool keep, settled;

	/* One copy; nothing is read from the shared entry twice. */
	memcpy(&rsp, udev->ring + off, sizeof(rsp));

	cmd = xa_load(&udev->cmds, rsp.hdr.cmd_id);
	if (!cmd) {
		tcmu_mark_broken(udev, "completion for unknown cmd_id",
				 rsp.hdr.cmd_id);
		return false;
	}
	if (test_bit(TCMU_CMD_KEPT, &cmd->flags)) {
		tcmu_mark_broken(udev, "second completion for kept cmd_id",
				 rsp.hdr.cmd_id);
		return false;
	}

	keep = rsp.hdr.uflags & TCMU_UFLAG_KEEP_BUF;
	if (!list_empty(&cmd->node)) {
		list_del_init(&cmd->node);
		udev->nr_inflight--;
	}
	settled = tcmu_settle(udev, cmd, &rsp);
	if (settled && done && !keep) {
		xa_erase(&udev->cmds, cmd->id);
		/* Only Data-In still has to be read out of the blocks. */
		if (!cmd->done_len)
			tcmu_cmd_release_blocks(cmd);
		list_add_tail(&cmd->node, done);
		return true;
	}
	if (settled)
		tcmu_finish(udev, cmd);
	if (keep) {
		clear_bit(TCMU_CMD_EXPIRED, &cmd->flags);
		set_bit(TCMU_CMD_KEPT, &cmd->flags);
	} else {
		tcmu_retire(udev, cmd);
	}
	return true;
}

static void tcmu_run_tmr_queue(struct tcmu_dev *udev);

/*
 * Consume everything the handler has handed back. The new tail must land
 * on an entry boundary the kernel itself wrote, inside the region between
 * the old tail and the head; anything else breaks the device. The walk is
 * bounded by the private log, never by lengths in shared memory.
 * @done: see tcmu_reap_slot(); NULL to complete everything here.
 *
 * Return: true if ring space was freed.
 */
static bool tcmu_reap(struct tcmu_dev *udev, struct list_head *done)
{
	u32 new_tail, dist, used;
	bool freed = false;

	if (test_bit(TCMU_DEV_BROKEN, &udev->flags) || !udev->mb)
		return false;

	/* Pairs with the handler's release of cmd_tail after its writes. */
	new_tail = smp_load_acquire(&udev->mb->cmd_tail);
	if (new_tail == udev->ring_tail)
		return false;
	if (new_tail >= udev->ring_size || new_tail % TCMU_OP_ALIGN_SIZE) {
		tcmu_mark_broken(udev, "cmd_tail outside the ring", new_tail);
		return false;
	}
	used = tcmu_ring_used(udev->ring_head, udev->ring_tail,
			      udev->ring_size);
	dist = tcmu_ring_used(new_tail, udev->ring_tail, udev->ring_size);
	if (dist > used) {
		tcmu_mark_broken(udev, "cmd_tail beyond cmd_head", new_tail);
		return false;
	}

	while (dist) {
		u32 len_op = udev->ring_log[udev->log_tail];
		u32 len = tcmu_hdr_get_len(len_op);

		if (len > dist) {
			tcmu_mark_broken(udev, "cmd_tail inside an entry",
					 new_tail);
			break;
		}
		if (tcmu_hdr_get_op(len_op) == TCMU_OP_CMD) {
			if (!tcmu_reap_slot(udev, udev->ring_tail, done))
				break;
		} else if (tcmu_hdr_get_op(len_op) == TCMU_OP_TMR) {
			udev->ring_tmrs--;
		}
		udev->log_tail = (udev->log_tail + 1) % udev->log_cap;
		udev->ring_tail = (udev->ring_tail + len) % udev->ring_size;
		dist -= len;
		freed = true;
	}

	if (udev->cmd_time_out)
		tcmu_arm_timer(udev, &udev->cmd_timer, &udev->inflight);
	if (atomic_read(&tcmu_global_pages) > READ_ONCE(tcmu_global_max_pages))
		schedule_work(&tcmu_reclaim_work);
	return freed;
}

/* ------------------------------------------------------------------------
 * 6. Timeouts, qfull queue, TMR
 * ------------------------------------------------------------------------
 */

/*
 * Retry waiting commands in order; stop at the first that still does not
 * fit. With @fail, every waiting command is failed instead.
 */
static void tcmu_run_qfull(struct tcmu_dev *udev, bool fail)
{
	struct tcmu_cmd *cmd, *tmp;
	LIST_HEAD(waiting);

	if (list_empty(&udev->qfull))
		return;
	list_splice_init(&udev->qfull, &waiting);

	list_for_each_entry_safe(cmd, tmp, &waiting, node) {
		struct se_cmd *se_cmd = cmd->se_cmd;
		sense_reason_t sr = TCM_NO_SENSE;
		int ret;

		list_del_init(&cmd->node);
		if (fail) {
			sr = TCM_LUN_BUSY;
		} else if (test_bit(TCMU_DEV_BROKEN, &udev->flags)) {
			sr = TCM_LOGICAL_UNIT_COMMUNICATION_FAILURE;
		} else {
			ret = tcmu_try_queue(udev, cmd);
			if (ret == -EAGAIN) {
				/* Keep order: it and the rest wait on. */
				list_add(&cmd->node, &waiting);
				break;
			}
			if (ret == -EINVAL)
				sr = TCM_INVALID_CDB_FIELD;
			else if (ret)
				sr = TCM_OUT_OF_RESOURCES;
		}
		if (sr != TCM_NO_SENSE) {
			se_cmd->priv = NULL;
			tcmu_free_cmd(cmd);
			target_complete_cmd_with_sense(se_cmd,
						       SAM_STAT_CHECK_CONDITION,
						       sr);
		}
	}
	list_splice(&waiting, &udev->qfull);
	tcmu_arm_timer(udev, &udev->qfull_timer, &udev->qfull);
}

/* Complete ring commands whose deadline passed; they keep their slot. */
static void tcmu_expire_inflight(struct tcmu_dev *udev)
{
	struct tcmu_cmd *cmd, *tmp;

	/*
	 * cmd_time_out 0 means commands on the ring never expire; the timer
	 * may still fire for the qfull queue.
	 */
	if (!udev->cmd_time_out)
		return;

	list_for_each_entry_safe(cmd, tmp, &udev->inflight, node) {
		if (!time_after_eq(jiffies, cmd->deadline))
			break;
		udev->stats.timeouts++;
		pr_debug("%s: cmd %u timed out\n", udev->name, cmd->id);
		tcmu_abandon(udev, cmd);
	}
	tcmu_arm_timer(udev, &udev->cmd_timer, &udev->inflight);
}

static void tcmu_expire_qfull(struct tcmu_dev *udev)
{
	struct tcmu_cmd *cmd, *tmp;

	list_for_each_entry_safe(cmd, tmp, &udev->qfull, node) {
		struct se_cmd *se_cmd = cmd->se_cmd;

		if (!time_after_eq(jiffies, cmd->deadline))
			continue;
		list_del_init(&cmd->node);
		udev->stats.timeouts++;
		se_cmd->priv = NULL;
		tcmu_free_cmd(cmd);
		target_complete_cmd(se_cmd, SAM_STAT_TASK_SET_FULL);
	}
	tcmu_arm_timer(udev, &udev->qfull_timer, &udev->qfull);
}

static void tcmu_timeout_fn(struct work_struct *work)
{
	struct tcmu_dev *udev = container_of(work, struct tcmu_dev,
					     timeout_work);

	mutex_lock(&udev->ring_lock);
	tcmu_expire_inflight(udev);
	tcmu_expire_qfull(udev);
	mutex_unlock(&udev->ring_lock);
}

static void tcmu_cmd_timer_fn(struct timer_list *t)
{
	struct tcmu_dev *udev = from_timer(udev, t, cmd_timer);

	schedule_work(&udev->timeout_work);
}

static void tcmu_qfull_timer_fn(struct timer_list *t)
{
	struct tcmu_dev *udev = from_timer(udev, t, qfull_timer);

	schedule_work(&udev->timeout_work);
}

static u8 tcmu_tmr_code(enum tcm_tmreq_table tmf)
{
	switch (tmf) {
	case TMR_ABORT_TASK:
		return TCMU_TMR_ABORT_TASK;
	case TMR_ABORT_TASK_SET:
		return TCMU_TMR_ABORT_TASK_SET;
	case TMR_CLEAR_ACA:
		return TCMU_TMR_CLEAR_ACA;
	case TMR_CLEAR_TASK_SET:
		return TCMU_TMR_CLEAR_TASK_SET;
	case TMR_LUN_RESET:
		return TCMU_TMR_LUN_RESET;
	case TMR_TARGET_WARM_RESET:
		return TCMU_TMR_TARGET_WARM_RESET;
	case TMR_TARGET_COLD_RESET:
		return TCMU_TMR_TARGET_COLD_RESET;
	case TMR_LUN_RESET_PRO:
		return TCMU_TMR_LUN_RESET_PRO;
	default:
		return TCMU_TMR_UNKNOWN;
	}
}

/* Write a TMR entry; false if the ring has no room for it now. */
static bool tcmu_tmr_to_ring(struct tcmu_dev *udev, struct tcmu_tmr *tmr)
{
	u32 len = tcmu_tmr_entry_size(tmr->nr_ids);
	struct tcmu_tmr_entry *entry;

	if (len > udev->ring_size / 2)
		return true;	/* cannot ever fit: drop it */
	if (udev->ring_tmrs >= TCMU_RING_TMR_MAX ||
	    !tcmu_ring_reserve(udev, len))
		return false;
	entry = udev->ring + udev->ring_head;
	memset(entry, 0, len);
	entry->hdr.len_op = len | TCMU_OP_TMR;
	entry->tmr_type = tmr->type;
	entry->cmd_cnt = tmr->nr_ids;
	memcpy(entry->cmd_ids, tmr->ids, tmr->nr_ids * sizeof(u16));
	tcmu_ring_publish(udev, len | TCMU_OP_TMR);
	udev->ring_tmrs++;
	tcmu_kick(udev);
	return true;
}

static void tcmu_run_tmr_queue(struct tcmu_dev *udev)
{
	struct tcmu_tmr *tmr, *tmp;

	list_for_each_entry_safe(tmr, tmp, &udev->tmr_queue, node) {
		if (test_bit(TCMU_DEV_BROKEN, &udev->flags))
			break;
		if (!tcmu_tmr_to_ring(udev, tmr))
			return;
		list_del(&tmr->node);
		kfree(tmr);
	}
}

static void tcmu_drop_tmrs(struct tcmu_dev *udev)
{
	struct tcmu_tmr *tmr, *tmp;

	list_for_each_entry_safe(tmr, tmp, &udev->tmr_queue, node) {
		list_del(&tmr->node);
		kfree(tmr);
	}
}

static void tcmu_tmr_notify(struct se_device *se_dev, enum tcm_tmreq_table tmf,
			    struct list_head *aborted)
{
	struct tcmu_dev *udev = TCMU_DEV(se_dev);
	struct se_cmd *se_cmd;
	struct tcmu_tmr *tmr;
	u32 on_ring = 0;

	mutex_lock(&udev->ring_lock);

	/* Commands still waiting for room never reached the handler. */
	list_for_each_entry(se_cmd, aborted, state_list) {
		struct tcmu_cmd *cmd = se_cmd->priv;

		if (!cmd)
			continue;
		if (cmd->id) {
			on_ring++;
			continue;
		}
		list_del_init(&cmd->node);
		se_cmd->priv = NULL;
		tcmu_free_cmd(cmd);
		target_complete_cmd(se_cmd, SAM_STAT_TASK_ABORTED);
	}
	tcmu_arm_timer(udev, &udev->qfull_timer, &udev->qfull);

	if (!test_bit(TCMU_DEV_TMR_NOTIFY, &udev->flags))
		goto out;

	tmr = kmalloc(struct_size(tmr, ids, on_ring), GFP_NOIO);
	if (!tmr)
		goto out;
	tmr->type = tcmu_tmr_code(tmf);
	tmr->nr_ids = 0;
	list_for_each_entry(se_cmd, aborted, state_list) {
		struct tcmu_cmd *cmd = se_cmd->priv;

		if (cmd && cmd->id && tmr->nr_ids < on_ring)
			tmr->ids[tmr->nr_ids++] = cmd->id;
	}
	if (test_bit(TCMU_DEV_BROKEN, &udev->flags) ||
	    (list_empty(&udev->tmr_queue) && tcmu_tmr_to_ring(udev, tmr)))
		kfree(tmr);
	else
		list_add_tail(&tmr->node, &udev->tmr_queue);
out:
	tcmu_ring_unlock(udev);
}

/* ------------------------------------------------------------------------
 * 7. UIO: open, mmap, fault, release, kick
 * ------------------------------------------------------------------------
 */

static void tcmu_dev_put(struct tcmu_dev *udev);

/*
 * Complete commands settled by tcmu_reap(), outside ring_lock: copying
 * Data-In back and completing to the core no longer hold up submission.
 * The blocks that held Data-In are released in one more pass under the
 * lock, which also lets waiting commands have them, and only then is the
 * status handed to the core: an initiator that has seen its command
 * complete finds the data area as if it had been freed with the ring slot.
 */
static void tcmu_finish_list(struct tcmu_dev *udev, struct list_head *done)
{
	struct tcmu_cmd *cmd, *tmp;
	bool held = false;

	list_for_each_entry(cmd, done, node) {
		tcmu_finish_data(udev, cmd);
		held |= cmd->nr_runs != 0;
	}
	if (held) {
		mutex_lock(&udev->ring_lock);
		list_for_each_entry(cmd, done, node)
			tcmu_cmd_release_blocks(cmd);
		if (list_empty(&udev->tmr_queue))
			tcmu_run_qfull(udev, false);
		tcmu_ring_unlock(udev);
	}
	list_for_each_entry_safe(cmd, tmp, done, node) {
		list_del(&cmd->node);
		tcmu_finish_status(cmd);
		kmem_cache_free(tcmu_cmd_slab, cmd);
	}
}

static int tcmu_irqcontrol(struct uio_info *info, s32 on)
{
	struct tcmu_dev *udev = container_of(info, struct tcmu_dev, uio_info);
	LIST_HEAD(done);

	mutex_lock(&udev->ring_lock);
	if (tcmu_reap(udev, &done))
		tcmu_run_tmr_queue(udev);
	if (list_empty(&udev->tmr_queue))
		tcmu_run_qfull(udev, false);
	tcmu_ring_unlock(udev);
	tcmu_finish_list(udev, &done);
	return 0;
}

static void tcmu_map_track(struct tcmu_dev *udev, struct address_space *m,
			   int delta)
{
	int i, free_slot = -1;

	mutex_lock(&udev->map_lock);
	for (i = 0; i < TCMU_MAX_MAPPINGS; i++) {
		if (udev->maps[i].mapping == m) {
			udev->maps[i].users += delta;
			if (!udev->maps[i].users)
				udev->maps[i].mapping = NULL;
			goto out;
		}
		if (!udev->maps[i].mapping && free_slot < 0)
			free_slot = i;
	}
	if (delta > 0 && free_slot >= 0) {
		udev->maps[free_slot].mapping = m;
		udev->maps[free_slot].users = delta;
	}
out:
	mutex_unlock(&udev->map_lock);
}

static void tcmu_vma_open(struct vm_area_struct *vma)
{
	struct tcmu_dev *udev = vma->vm_private_data;

	kref_get(&udev->kref);
	tcmu_map_track(udev, vma->vm_file->f_mapping, 1);
}

static void tcmu_vma_close(struct vm_area_struct *vma)
{
	struct tcmu_dev *udev = vma->vm_private_data;

	tcmu_map_track(udev, vma->vm_file->f_mapping, -1);
	tcmu_dev_put(udev);
}

/* Is data page @dpi inside a block some command owns? */
static bool tcmu_page_owned(struct tcmu_dev *udev, u32 dpi)
{
	u32 blk = dpi / tcmu_blk_pages(udev);

	/* Pages past the last whole block belong to no block at all. */
	return blk < udev->nr_blocks && test_bit(blk, udev->blk_bitmap);
}

static vm_fault_t tcmu_vma_fault(struct vm_fault *vmf)
{
	struct tcmu_dev *udev = vmf->vma->vm_private_data;
	u64 off = (u64)vmf->pgoff << PAGE_SHIFT;
	struct page *page = NULL;
	u32 dpi;

	if (vmf->pgoff >= udev->map_pages)
		return VM_FAULT_SIGBUS;
	if (off < udev->data_off) {
		page = vmalloc_to_page((void *)udev->mb + off);
		get_page(page);
		vmf->page = page;
		return 0;
	}

	/*
	 * Data pages: looked up, referenced and locked under ring_lock, so
	 * reclaim (which takes the page lock under the same mutex before
	 * zapping) cannot free a page between lookup and PTE installation.
	 */
	dpi = (off - udev->data_off) >> PAGE_SHIFT;
	mutex_lock(&udev->ring_lock);
	if (tcmu_page_owned(udev, dpi))
		page = xa_load(&udev->pages, dpi);
	if (page) {
		get_page(page);
		lock_page(page);
	}
	mutex_unlock(&udev->ring_lock);
	if (!page) {
		pr_warn_ratelimited("%s: handler touched data page %u that no command owns\n",
				    udev->name, dpi);
		return VM_FAULT_SIGBUS;
	}
	vmf->page = page;
	return VM_FAULT_LOCKED;
}

static const struct vm_operations_struct tcmu_vm_ops = {
	.open = tcmu_vma_open,
	.close = tcmu_vma_close,
	.fault = tcmu_vma_fault,
};

static int tcmu_mmap(struct uio_info *info, struct vm_area_struct *vma)
{
	struct tcmu_dev *udev = container_of(info, struct tcmu_dev, uio_info);
	struct address_space *m = vma->vm_file->f_mapping;
	int i, ok = 0;

	if (vma->vm_pgoff || vma_pages(vma) > udev->map_pages)
		return -EINVAL;

	/* Reclaim must be able to zap every mapping: refuse untracked ones. */
	mutex_lock(&udev->map_lock);
	for (i = 0; i < TCMU_MAX_MAPPINGS; i++)
		if (udev->maps[i].mapping == m || !udev->maps[i].mapping)
			ok = 1;
	mutex_unlock(&udev->map_lock);
	if (!ok)
		return -EBUSY;

	vma->vm_flags |= VM_DONTEXPAND | VM_DONTDUMP;
	vma->vm_ops = &tcmu_vm_ops;
	vma->vm_private_data = udev;
	tcmu_vma_open(vma);
	return 0;
}

static int tcmu_open(struct uio_info *info, struct inode *inode)
{
	struct tcmu_dev *udev = container_of(info, struct tcmu_dev, uio_info);

	if (test_and_set_bit(TCMU_DEV_OPEN, &udev->flags))
		return -EBUSY;
	return 0;
}

static u32 tcmu_reset_ring_locked(struct tcmu_dev *udev, u8 level);

/*
 * The last reference to the uio file is gone: every fd is closed and every
 * mapping is unmapped (each VMA pins the file), so no page of the region is
 * visible to userspace any more. Usually this means the handler died.
 */
static int tcmu_release(struct uio_info *info, struct inode *inode)
{
	struct tcmu_dev *udev = container_of(info, struct tcmu_dev, uio_info);
	struct tcmu_cmd *cmd;
	unsigned long id;
	bool freed = false;
	u32 failed;

	mutex_lock(&udev->ring_lock);
	udev->stats.handler_exits++;

	/* Whatever the handler finished before it went counts. */
	if (tcmu_reap(udev, NULL))
		tcmu_run_tmr_queue(udev);

	if (READ_ONCE(udev->exit_policy) == TCMU_EXIT_FAIL &&
	    (!xa_empty(&udev->cmds) || udev->ring_head != udev->ring_tail ||
	     test_bit(TCMU_DEV_BROKEN, &udev->flags))) {
		/*
		 * Nobody is left to answer: bounce what the handler had taken
		 * with a retryable status now instead of after cmd_time_out,
		 * and hand a restarted handler an empty ring. An idle ring is
		 * left as it is.
		 */
		failed = tcmu_reset_ring_locked(udev, 1);
		udev->stats.exit_failed += failed;
		if (failed)
			pr_info_ratelimited("%s: handler gone, %u in-flight commands returned BUSY\n",
					    udev->name, failed);
		goto out;
	}

	/*
	 * Kept buffers belong to the handler that kept them; a new handler
	 * cannot know their ids, so they go with the old one.
	 */
	xa_for_each(&udev->cmds, id, cmd) {
		if (!test_bit(TCMU_CMD_KEPT, &cmd->flags))
			continue;
		tcmu_retire(udev, cmd);
		freed = true;
	}
	if (freed && list_empty(&udev->tmr_queue))
		tcmu_run_qfull(udev, false);
out:
	/*
	 * Nothing maps the region now, so the next handler must find the
	 * header as the kernel wrote it, whatever the last one left there.
	 */
	if (tcmu_mb_restore(udev))
		pr_warn_ratelimited("%s: handler left the mailbox header or cmd_head scribbled; restored\n",
				    udev->name);
	tcmu_ring_unlock(udev);

	clear_bit(TCMU_DEV_OPEN, &udev->flags);
	return 0;
}

/* ------------------------------------------------------------------------
 * 8. Device lifecycle
 * ------------------------------------------------------------------------
 */

struct tcmu_hba {
	u32 host_id;
};

static int tcmu_attach_hba(struct se_hba *hba, u32 host_id)
{
	struct tcmu_hba *th = kzalloc(sizeof(*th), GFP_KERNEL);

	if (!th)
		return -ENOMEM;
	th->host_id = host_id;
	hba->hba_ptr = th;
	return 0;
}

static void tcmu_detach_hba(struct se_hba *hba)
{
	kfree(hba->hba_ptr);
	hba->hba_ptr = NULL;
}

static struct se_device *tcmu_alloc_device(struct se_hba *hba, const char *name)
{
	struct tcmu_dev *udev = kzalloc(sizeof(*udev), GFP_KERNEL);

	if (!udev)
		return NULL;
	udev->name = kstrdup(name, GFP_KERNEL);
	if (!udev->name) {
		kfree(udev);
		return NULL;
	}
	kref_init(&udev->kref);
	udev->hba = hba;
	udev->se_plug.se_dev = &udev->se_dev;
	udev->ring_mb = TCMU_RING_MB_DEF;
	udev->data_mb = min_t(u32, TCMU_DATA_MB_DEF, tcmu_global_max_mb());
	udev->pages_per_blk = TCMU_PAGES_PER_BLK_DEF;
	udev->cmd_time_out = TCMU_CMD_TIMEOUT_DEF * HZ;
	udev->qfull_time_out = -1;
	mutex_init(&udev->ring_lock);
	mutex_init(&udev->map_lock);
	mutex_init(&udev->cfg_lock);
	INIT_LIST_HEAD(&udev->all_node);
	INIT_LIST_HEAD(&udev->inflight);
	INIT_LIST_HEAD(&udev->qfull);
	INIT_LIST_HEAD(&udev->tmr_queue);
	INIT_LIST_HEAD(&udev->nl_node);
	init_completion(&udev->nl_done);
	xa_init_flags(&udev->cmds, XA_FLAGS_ALLOC1);
	xa_init(&udev->pages);
	timer_setup(&udev->cmd_timer, tcmu_cmd_timer_fn, 0);
	timer_setup(&udev->qfull_timer, tcmu_qfull_timer_fn, 0);
	INIT_WORK(&udev->timeout_work, tcmu_timeout_fn);
	return &udev->se_dev;
}

static void tcmu_free_pages(struct tcmu_dev *udev)
{
	struct page *page;
	unsigned long i;

	xa_for_each(&udev->pages, i, page) {
		xa_erase(&udev->pages, i);
		__free_page(page);
		atomic_dec(&tcmu_global_pages);
	}
	udev->nr_pages = 0;
}

static void tcmu_dev_rcu_free(struct rcu_head *head)
{
	struct se_device *se_dev = container_of(head, struct se_device,
						rcu_head);
	struct tcmu_dev *udev = TCMU_DEV(se_dev);

	kfree(udev->uio_info.name);
	kfree(udev->name);
	kfree(udev);
}

/* Last reference gone: no handler mapping, no core user. */
static void tcmu_dev_release(struct kref *kref)
{
	struct tcmu_dev *udev = container_of(kref, struct tcmu_dev, kref);
	struct tcmu_cmd *cmd;
	unsigned long id;

	mutex_lock(&udev->ring_lock);
	xa_for_each(&udev->cmds, id, cmd) {
		/* Only expired or kept commands can be left here. */
		if (cmd->se_cmd)
			pr_warn_ratelimited("%s: cmd %u still active at free\n",
					    udev->name, cmd->id);
		xa_erase(&udev->cmds, id);
		list_del_init(&cmd->node);
		tcmu_free_cmd(cmd);
	}
	tcmu_drop_tmrs(udev);
	tcmu_free_pages(udev);
	mutex_unlock(&udev->ring_lock);
	xa_destroy(&udev->cmds);
	xa_destroy(&udev->pages);
	bitmap_free(udev->blk_bitmap);
	kvfree(udev->ring_log);
	vfree(udev->mb);
	call_rcu(&udev->se_dev.rcu_head, tcmu_dev_rcu_free);
}

static void tcmu_dev_put(struct tcmu_dev *udev)
{
	kref_put(&udev->kref, tcmu_dev_release);
}

static int tcmu_set_uio_name(struct tcmu_dev *udev)
{
	struct tcmu_hba *th = udev->hba->hba_ptr;
	struct uio_device *idev;
	const char *old;
	char *name;

	if (udev->dev_config[0])
		name = kasprintf(GFP_KERNEL, "tcm-user/%u/%s/%s", th->host_id,
				 udev->name, udev->dev_config);
	else
		name = kasprintf(GFP_KERNEL, "tcm-user/%u/%s", th->host_id,
				 udev->name);
	if (!name)
		return -ENOMEM;

	/*
	 * Once registered, the uio core prints the name under its info_lock
	 * (sysfs "name"); swap it under the same lock so no reader sees it
	 * freed. info_lock is taken outside ring_lock everywhere.
	 */
	idev = udev->uio_info.uio_dev;
	if (idev)
		mutex_lock(&idev->info_lock);
	old = udev->uio_info.name;
	udev->uio_info.name = name;
	if (idev)
		mutex_unlock(&idev->info_lock);
	kfree(old);
	return 0;
}

/* Entries the ring can hold at once: bounded by ids, size and TMRs. */
static u32 tcmu_log_capacity(u32 ring_size)
{
	u32 cmds = min_t(u32, TCMU_CMD_ID_MAX, ring_size / TCMU_MIN_CMD_ENTRY);

	/* + TMRs + one PAD + the always-empty slot + a PAD reservation */
	return cmds + TCMU_RING_TMR_MAX + 4;
}

static int tcmu_configure_locked(struct se_device *se_dev)
{
	struct tcmu_dev *udev = TCMU_DEV(se_dev);
	struct se_dev_attrib *da = &se_dev->dev_attrib;
	struct uio_info *info = &udev->uio_info;
	u32 block = da->hw_block_size ? da->hw_block_size : 512;
	u32 max_sectors = da->hw_max_sectors ? da->hw_max_sectors : 128;
	u64 data_bytes = (u64)udev->data_mb << 20;
	int ret;

	if (!udev->dev_size || udev->dev_size < block) {
		pr_warn_ratelimited("%s: dev_size %llu must be at least one %u byte block\n",
				    udev->name, udev->dev_size, block);
		return -EINVAL;
	}
	if ((u64)max_sectors * block > data_bytes) {
		pr_warn_ratelimited("%s: hw_max_sectors %u x %u exceeds the %u MiB data area\n",
				    udev->name, max_sectors, block,
				    udev->data_mb);
		return -EINVAL;
	}
	if (((u64)udev->pages_per_blk << PAGE_SHIFT) > data_bytes)
		return -EINVAL;
	/* Two racing writes to enable both get past the core's check. */
	if (info->uio_dev) {
		pr_warn_ratelimited("%s: already enabled\n", udev->name);
		return -EEXIST;
	}

	/* A failed earlier enable may have left buffers; reuse is unsafe if mapped. */
	if (udev->mb) {
		int i;

		for (i = 0; i < TCMU_MAX_MAPPINGS; i++)
			if (udev->maps[i].mapping)
				return -EBUSY;
		vfree(udev->mb);
		kvfree(udev->ring_log);
		bitmap_free(udev->blk_bitmap);
		udev->mb = NULL;
		udev->ring_log = NULL;
		udev->blk_bitmap = NULL;
	}

	ret = tcmu_set_uio_name(udev);
	if (ret)
		return ret;

	udev->ring_size = (udev->ring_mb << 20) - TCMU_MB_SIZE;
	udev->data_off = udev->ring_mb << 20;
	udev->blk_size = udev->pages_per_blk << PAGE_SHIFT;
	udev->nr_blocks = div_u64(data_bytes, udev->blk_size);
	udev->map_pages = (udev->data_off + data_bytes) >> PAGE_SHIFT;
	udev->log_cap = tcmu_log_capacity(udev->ring_size);

	ret = -ENOMEM;
	udev->blk_bitmap = bitmap_zalloc(udev->nr_blocks, GFP_KERNEL);
	udev->ring_log = kvcalloc(udev->log_cap, sizeof(u32), GFP_KERNEL);
	udev->mb = vzalloc(udev->ring_mb << 20);
	if (!udev->blk_bitmap || !udev->ring_log || !udev->mb)
		goto err_mem;
	udev->ring = (void *)udev->mb + TCMU_MB_SIZE;
	tcmu_mb_restore(udev);

	info->version = __stringify(TCMU_MAILBOX_VERSION);
	info->mem[0].name = "tcm-user command & data buffer";
	info->mem[0].addr = (phys_addr_t)(uintptr_t)udev->mb;
	info->mem[0].size = (u64)udev->map_pages << PAGE_SHIFT;
	info->mem[0].memtype = UIO_MEM_NONE;
	info->irq = UIO_IRQ_CUSTOM;
	info->irqcontrol = tcmu_irqcontrol;
	info->mmap = tcmu_mmap;
	info->open = tcmu_open;
	info->release = tcmu_release;

	ret = uio_register_device(tcmu_root, info);
	if (ret)
		goto err_mem;

	da->hw_block_size = block;
	da->hw_max_sectors = max_sectors;
	da->hw_queue_depth = 128;

	/*
	 * nl_reply_supported < 0 means "never wait"; otherwise it takes what
	 * the daemon announced with SET_FEATURES, as it stands right now.
	 */
	if (udev->nl_reply_supported >= 0)
		udev->nl_reply_supported = READ_ONCE(tcmu_nl_daemon_replies);

	/* The uio node may outlive configfs until the handler lets go. */
	kref_get(&udev->kref);

	ret = tcmu_nl_send(udev, TCMU_CMD_ADDED_DEVICE, NULL);
	if (ret)
		goto err_nl;

	mutex_lock(&tcmu_devices_lock);
	list_add_tail(&udev->all_node, &tcmu_devices);
	mutex_unlock(&tcmu_devices_lock);
	return 0;

err_nl:
	uio_unregister_device(info);
	info->uio_dev = NULL;
	kref_put(&udev->kref, tcmu_dev_release);	/* cannot be last */
	return ret;
err_mem:
	vfree(udev->mb);
	udev->mb = NULL;
	udev->ring = NULL;
	kvfree(udev->ring_log);
	udev->ring_log = NULL;
	bitmap_free(udev->blk_bitmap);
	udev->blk_bitmap = NULL;
	return ret;
}

static int tcmu_configure_device(struct se_device *se_dev)
{
	struct tcmu_dev *udev = TCMU_DEV(se_dev);
	int ret;

	/* Attribute writes racing with enable see all or nothing of it. */
	if (mutex_lock_killable(&udev->cfg_lock))
		return -EINTR;
	ret = tcmu_configure_locked(se_dev);
	mutex_unlock(&udev->cfg_lock);
	return ret;
}

static void tcmu_destroy_device(struct se_device *se_dev)
{
	struct tcmu_dev *udev = TCMU_DEV(se_dev);

	mutex_lock(&tcmu_devices_lock);
	list_del_init(&udev->all_node);
	mutex_unlock(&tcmu_devices_lock);

	tcmu_nl_send(udev, TCMU_CMD_REMOVED_DEVICE, NULL);

	/* After this no write() can reach irqcontrol. */
	uio_unregister_device(&udev->uio_info);
	udev->uio_info.uio_dev = NULL;

	mutex_lock(&udev->ring_lock);
	set_bit(TCMU_DEV_DEAD, &udev->flags);
	mutex_unlock(&udev->ring_lock);
	del_timer_sync(&udev->cmd_timer);
	del_timer_sync(&udev->qfull_timer);
	cancel_work_sync(&udev->timeout_work);

	tcmu_dev_put(udev);	/* the reference taken by configure */
}

static void tcmu_free_device(struct se_device *se_dev)
{
	tcmu_dev_put(TCMU_DEV(se_dev));
}

static sector_t tcmu_get_blocks(struct se_device *se_dev)
{
	struct tcmu_dev *udev = TCMU_DEV(se_dev);
	u32 bs = se_dev->dev_attrib.block_size;

	if (!bs || udev->dev_size < bs)
		return 0;
	return div_u64(udev->dev_size, bs) - 1;
}

/* ------------------------------------------------------------------------
 * 9. configfs: control, info, attributes, actions
 * ------------------------------------------------------------------------
 */

/*
 * True once enable has registered the uio device, which happens before
 * the core marks the device configured; callers hold cfg_lock.
 */
static bool tcmu_dev_live(struct tcmu_dev *udev)
{
	return udev->uio_info.uio_dev || target_dev_configured(&udev->se_dev);
}

/*
 * configfs hands a store the bytes that were written, NUL-terminated after
 * @count. The kernel's string parsers stop at the first NUL, so text after
 * an embedded NUL would be ignored without a word; control characters
 * would end up in the info text, the uio name and netlink events. Refuse
 * both. Trailing NULs and one final newline are tolerated; @multiline also
 * lets newlines separate the options of a control write.
 */
static int tcmu_input_check(struct tcmu_dev *udev, const char *attr,
			    const char *page, size_t count, bool multiline)
{
	size_t len = count, i;

	while (len && !page[len - 1])
		len--;
	if (len && page[len - 1] == '\n')
		len--;
	for (i = 0; i < len; i++) {
		unsigned char c = page[i];

		if ((c < 0x20 && !(multiline && c == '\n')) || c == 0x7f) {
			pr_warn_ratelimited("%s: %s: control character 0x%02x at offset %zu refused\n",
					    udev->name, attr, c, i);
			return -EINVAL;
		}
	}
	return 0;
}

/*
 * Parse one integer written to an attribute or action into [@min, @max].
 * Negative input is only accepted when @min is negative; the result is
 * returned as a u64 for the caller to narrow.
 */
static int tcmu_parse_num(struct tcmu_dev *udev, const char *attr,
			  const char *page, size_t count, s64 min, u64 max,
			  u64 *out)
{
	int ret = tcmu_input_check(udev, attr, page, count, false);
	u64 v;

	if (!ret && page[0] == '-') {
		s64 sv;

		ret = min < 0 ? kstrtos64(page, 0, &sv) : -EINVAL;
		if (!ret && (sv < min || sv > 0))
			ret = -EINVAL;
		v = sv;
	} else if (!ret) {
		ret = kstrtou64(page, 0, &v);
		if (!ret && (v > max || (min > 0 && v < min)))
			ret = -EINVAL;
	}
	if (ret) {
		pr_warn_ratelimited("%s: %s: refused '%*pE' (%lld..%llu)\n",
				    udev->name, attr, (int)min_t(size_t, count, 32),
				    page, min, max);
		return -EINVAL;
	}
	*out = v;
	return 0;
}

/* Actions act on the running device only. */
static int tcmu_need_enabled(struct tcmu_dev *udev, const char *action)
{
	if (target_dev_configured(&udev->se_dev))
		return 0;
	pr_warn_ratelimited("%s: %s needs an enabled device\n", udev->name,
			    action);
	return -EINVAL;
}

enum {
	TCMU_OPT_DEV_CONFIG, TCMU_OPT_DEV_SIZE, TCMU_OPT_HW_BLOCK_SIZE, TCMU_OPT_HW_MAX_SECTORS,
	TCMU_OPT_NL_REPLY_SUPPORTED, TCMU_OPT_MAX_DATA_AREA_MB, TCMU_OPT_DATA_PAGES_PER_BLK,
	TCMU_OPT_CMD_RING_SIZE_MB, TCMU_OPT_ERR,
};

static const match_table_t tcmu_control_tokens = {
	{ TCMU_OPT_DEV_CONFIG, "dev_config=%s" },
	{ TCMU_OPT_DEV_SIZE, "dev_size=%s" },
	{ TCMU_OPT_HW_BLOCK_SIZE, "hw_block_size=%s" },
	{ TCMU_OPT_HW_MAX_SECTORS, "hw_max_sectors=%s" },
	{ TCMU_OPT_NL_REPLY_SUPPORTED, "nl_reply_supported=%s" },
	{ TCMU_OPT_MAX_DATA_AREA_MB, "max_data_area_mb=%s" },
	{ TCMU_OPT_DATA_PAGES_PER_BLK, "data_pages_per_blk=%s" },
	{ TCMU_OPT_CMD_RING_SIZE_MB, "cmd_ring_size_mb=%s" },
	{ TCMU_OPT_ERR, NULL },
};

/* Everything a control write may change, staged before it is applied. */
struct tcmu_control {
	char dev_config[TCMU_CONFIG_LEN];
	u64 dev_size;
	u32 hw_block_size;
	u32 hw_max_sectors;
	int nl_reply_supported;
	u32 data_mb;
	u32 pages_per_blk;
	u32 ring_mb;
};

static int tcmu_arg_u32(substring_t *arg, u32 min, u32 max, u32 *out)
{
	char buf[16];
	u32 v;

	if (arg->to - arg->from >= sizeof(buf) || arg->to == arg->from)
		return -EINVAL;
	match_strlcpy(buf, arg, sizeof(buf));
	if (kstrtou32(buf, 0, &v) || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

static ssize_t tcmu_set_configfs_dev_params(struct se_device *se_dev,
					    const char *page, ssize_t count)
{
	struct tcmu_dev *udev = TCMU_DEV(se_dev);
	struct se_dev_attrib *da = &se_dev->dev_attrib;
	substring_t args[MAX_OPT_ARGS];
	bool enabled;
	struct tcmu_control *c;
	char *opts, *p, *cur;
	u64 data_pages;
	int ret = 0;

	ret = tcmu_input_check(udev, "control", page, count, true);
	if (ret)
		return ret;
	c = kzalloc(sizeof(*c), GFP_KERNEL);
	opts = kstrndup(page, count, GFP_KERNEL);
	if (!c || !opts) {
		ret = -ENOMEM;
		goto out;
	}
	/* enable reads the geometry under cfg_lock: never change it midway. */
	if (mutex_lock_killable(&udev->cfg_lock)) {
		ret = -EINTR;
		goto out;
	}
	enabled = tcmu_dev_live(udev);

	mutex_lock(&udev->ring_lock);
	memcpy(c->dev_config, udev->dev_config, sizeof(c->dev_config));
	c->dev_size = udev->dev_size;
	c->hw_block_size = da->hw_block_size;
	c->hw_max_sectors = da->hw_max_sectors;
	c->nl_reply_supported = udev->nl_reply_supported;
	c->data_mb = udev->data_mb;
	c->pages_per_blk = udev->pages_per_blk;
	c->ring_mb = udev->ring_mb;
	mutex_unlock(&udev->ring_lock);

	cur = opts;
	while ((p = strsep(&cur, ",\n")) != NULL) {
		int token;

		if (!*p)
			continue;
		if (enabled) {
			ret = -EINVAL;
			pr_warn_ratelimited("%s: control is read-only once enabled\n",
					    udev->name);
			break;
		}
		token = match_token(p, tcmu_control_tokens, args);
		switch (token) {
		case TCMU_OPT_DEV_CONFIG:
			if (args[0].to - args[0].from >= TCMU_CONFIG_LEN ||
			    args[0].to == args[0].from)
				ret = -EINVAL;
			else
				match_strlcpy(c->dev_config, &args[0],
					      TCMU_CONFIG_LEN);
			break;
		case TCMU_OPT_DEV_SIZE: {
			char buf[24];

			if (args[0].to - args[0].from >= sizeof(buf) ||
			    args[0].to == args[0].from) {
				ret = -EINVAL;
				break;
			}
			match_strlcpy(buf, &args[0], sizeof(buf));
			if (kstrtou64(buf, 0, &c->dev_size) || !c->dev_size)
				ret = -EINVAL;
			break;
		}
		case TCMU_OPT_HW_BLOCK_SIZE:
			ret = tcmu_arg_u32(&args[0], 512, 4096,
					   &c->hw_block_size);
			if (!ret && !is_power_of_2(c->hw_block_size))
				ret = -EINVAL;
			break;
		case TCMU_OPT_HW_MAX_SECTORS:
			ret = tcmu_arg_u32(&args[0], 1, TCMU_MAX_SECTORS_LIMIT,
					   &c->hw_max_sectors);
			break;
		case TCMU_OPT_NL_REPLY_SUPPORTED: {
			char buf[16];

			if (args[0].to - args[0].from >= sizeof(buf) ||
			    args[0].to == args[0].from) {
				ret = -EINVAL;
				break;
			}
			match_strlcpy(buf, &args[0], sizeof(buf));
			if (kstrtoint(buf, 0, &c->nl_reply_supported))
				ret = -EINVAL;
			break;
		}
		case TCMU_OPT_MAX_DATA_AREA_MB:
			ret = tcmu_arg_u32(&args[0], 1, tcmu_global_max_mb(),
					   &c->data_mb);
			break;
		case TCMU_OPT_DATA_PAGES_PER_BLK:
			ret = tcmu_arg_u32(&args[0], 1, U32_MAX >> PAGE_SHIFT,
					   &c->pages_per_blk);
			break;
		case TCMU_OPT_CMD_RING_SIZE_MB:
			ret = tcmu_arg_u32(&args[0], 1, TCMU_RING_MB_MAX,
					   &c->ring_mb);
			break;
		default:
			ret = -EINVAL;
			break;
		}
		if (ret) {
			pr_warn_ratelimited("%s: invalid control parameter '%.64s'\n",
					    udev->name, p);
			break;
		}
	}

	/* Cross-field rules, checked on the staged result. */
	data_pages = (u64)c->data_mb << (20 - PAGE_SHIFT);
	if (!ret && c->pages_per_blk > data_pages) {
		pr_warn_ratelimited("%s: data_pages_per_blk %u exceeds max_data_area_mb %u\n",
				    udev->name, c->pages_per_blk, c->data_mb);
		ret = -EINVAL;
	}
	if (!ret && c->dev_size &&
	    c->dev_size < (c->hw_block_size ? c->hw_block_size : 512)) {
		pr_warn_ratelimited("%s: dev_size %llu below the block size\n",
				    udev->name, c->dev_size);
		ret = -EINVAL;
	}
	if (ret)
		goto unlock;

	mutex_lock(&udev->ring_lock);
	memcpy(udev->dev_config, c->dev_config, sizeof(c->dev_config));
	udev->dev_size = c->dev_size;
	da->hw_block_size = c->hw_block_size;
	da->hw_max_sectors = c->hw_max_sectors;
	udev->nl_reply_supported = c->nl_reply_supported;
	udev->data_mb = c->data_mb;
	udev->pages_per_blk = c->pages_per_blk;
	udev->ring_mb = c->ring_mb;
	mutex_unlock(&udev->ring_lock);
unlock:
	mutex_unlock(&udev->cfg_lock);
out:
	kfree(opts);
	kfree(c);
	return ret ? ret : count;
}

static ssize_t tcmu_show_configfs_dev_params(struct se_device *se_dev, char *b)
{
	struct tcmu_dev *udev = TCMU_DEV(se_dev);

	int n;

	n = sprintf(b, "Config: %s Size: %llu MaxDataAreaMB: %u ",
		    udev->dev_config[0] ? udev->dev_config : "NULL",
		    udev->dev_size, udev->data_mb);
	n += sprintf(b + n, "DataPagesPerBlk: %u CmdRingSizeMB: %u\n",
		     udev->pages_per_blk, udev->ring_mb);
	return n;
}

static struct tcmu_dev *tcmu_attr_dev(struct config_item *item)
{
	struct se_dev_attrib *da = container_of(to_config_group(item),
						struct se_dev_attrib, da_group);

	return TCMU_DEV(da->da_dev);
}

static struct tcmu_dev *tcmu_action_dev(struct config_item *item)
{
	struct se_device *se_dev = container_of(to_config_group(item),
						struct se_device,
						dev_action_group);

	return TCMU_DEV(se_dev);
}

static ssize_t tcmu_cmd_time_out_show(struct config_item *item, char *page)
{
	struct tcmu_dev *udev = tcmu_attr_dev(item);

	return sysfs_emit(page, "%lu\n", udev->cmd_time_out / HZ);
}

static ssize_t tcmu_cmd_time_out_store(struct config_item *item,
				       const char *page, size_t count)
{
	struct tcmu_dev *udev = tcmu_attr_dev(item);
	u64 val;

	if (tcmu_parse_num(udev, "cmd_time_out", page, count, 0,
			   TCMU_MAX_TIMEOUT_SEC, &val))
		return -EINVAL;
	if (udev->se_dev.export_count) {
		pr_warn_ratelimited("%s: cmd_time_out cannot change while exported\n",
				    udev->name);
		return -EINVAL;
	}
	mutex_lock(&udev->ring_lock);
	udev->cmd_time_out = (unsigned long)val * HZ;
	mutex_unlock(&udev->ring_lock);
	return count;
}
CONFIGFS_ATTR(tcmu_, cmd_time_out);

static ssize_t tcmu_qfull_time_out_show(struct config_item *item, char *page)
{
	struct tcmu_dev *udev = tcmu_attr_dev(item);

	if (udev->qfull_time_out < 0)
		return sysfs_emit(page, "-1\n");
	return sysfs_emit(page, "%ld\n", udev->qfull_time_out / HZ);
}

static ssize_t tcmu_qfull_time_out_store(struct config_item *item,
					 const char *page, size_t count)
{
	struct tcmu_dev *udev = tcmu_attr_dev(item);
	u64 val;

	if (tcmu_parse_num(udev, "qfull_time_out", page, count, -1,
			   TCMU_MAX_TIMEOUT_SEC, &val))
		return -EINVAL;
	mutex_lock(&udev->ring_lock);
	udev->qfull_time_out = (s64)val < 0 ? -1 : (long)val * HZ;
	mutex_unlock(&udev->ring_lock);
	return count;
}
CONFIGFS_ATTR(tcmu_, qfull_time_out);

static ssize_t tcmu_max_data_area_mb_show(struct config_item *item, char *page)
{
	return sysfs_emit(page, "%u\n", tcmu_attr_dev(item)->data_mb);
}
CONFIGFS_ATTR_RO(tcmu_, max_data_area_mb);

static ssize_t tcmu_data_pages_per_blk_show(struct config_item *item,
					    char *page)
{
	return sysfs_emit(page, "%u\n", tcmu_attr_dev(item)->pages_per_blk);
}
CONFIGFS_ATTR_RO(tcmu_, data_pages_per_blk);

static ssize_t tcmu_cmd_ring_size_mb_show(struct config_item *item, char *page)
{
	return sysfs_emit(page, "%u\n", tcmu_attr_dev(item)->ring_mb);
}
CONFIGFS_ATTR_RO(tcmu_, cmd_ring_size_mb);

static ssize_t tcmu_dev_config_show(struct config_item *item, char *page)
{
	return sysfs_emit(page, "%s\n", tcmu_attr_dev(item)->dev_config);
}

/* Strip one trailing newline; reject empty, oversized or odd input. */
static int tcmu_attr_string(struct tcmu_dev *udev, const char *attr,
			    const char *page, size_t count, char *out,
			    size_t outlen)
{
	size_t len;

	if (tcmu_input_check(udev, attr, page, count, false))
		return -EINVAL;
	len = strnlen(page, count);
	if (len && page[len - 1] == '\n')
		len--;
	if (!len || len >= outlen) {
		pr_warn_ratelimited("%s: %s must be 1..%zu bytes\n",
				    udev->name, attr, outlen - 1);
		return -EINVAL;
	}
	memcpy(out, page, len);
	out[len] = '\0';
	return 0;
}

static ssize_t tcmu_dev_config_store(struct config_item *item,
				     const char *page, size_t count)
{
	struct tcmu_dev *udev = tcmu_attr_dev(item);
	char *cfg;
	int ret;

	cfg = kzalloc(TCMU_CONFIG_LEN, GFP_KERNEL);
	if (!cfg)
		return -ENOMEM;
	ret = tcmu_attr_string(udev, "dev_config", page, count, cfg,
			       TCMU_CONFIG_LEN);
	if (ret)
		goto out;

	if (mutex_lock_killable(&udev->cfg_lock)) {
		ret = -EINTR;
		goto out;
	}
	if (tcmu_dev_live(udev)) {
		struct tcmu_nl_extra x = { .dev_cfg = cfg };

		ret = tcmu_nl_send(udev, TCMU_CMD_RECONFIG_DEVICE, &x);
		if (ret) {
			pr_warn_ratelimited("%s: handler refused dev_config (%d)\n",
					    udev->name, ret);
			goto unlock;
		}
		strscpy(udev->dev_config, cfg, TCMU_CONFIG_LEN);
		ret = tcmu_set_uio_name(udev);
	} else {
		strscpy(udev->dev_config, cfg, TCMU_CONFIG_LEN);
	}
unlock:
	mutex_unlock(&udev->cfg_lock);
out:
	kfree(cfg);
	return ret ? ret : count;
}
CONFIGFS_ATTR(tcmu_, dev_config);

static ssize_t tcmu_dev_size_show(struct config_item *item, char *page)
{
	return sysfs_emit(page, "%llu\n", tcmu_attr_dev(item)->dev_size);
}

static ssize_t tcmu_dev_size_store(struct config_item *item, const char *page,
				   size_t count)
{
	struct tcmu_dev *udev = tcmu_attr_dev(item);
	u32 bs = udev->se_dev.dev_attrib.hw_block_size;
	u64 val;
	int ret;

	if (tcmu_parse_num(udev, "dev_size", page, count, bs ? bs : 1,
			   U64_MAX, &val))
		return -EINVAL;
	if (mutex_lock_killable(&udev->cfg_lock))
		return -EINTR;
	if (tcmu_dev_live(udev)) {
		struct tcmu_nl_extra x = { .has_size = true, .dev_size = val };

		ret = tcmu_nl_send(udev, TCMU_CMD_RECONFIG_DEVICE, &x);
		if (ret) {
			mutex_unlock(&udev->cfg_lock);
			pr_warn_ratelimited("%s: handler refused dev_size (%d)\n",
					    udev->name, ret);
			return ret;
		}
	}
	udev->dev_size = val;
	mutex_unlock(&udev->cfg_lock);
	return count;
}
CONFIGFS_ATTR(tcmu_, dev_size);

static ssize_t tcmu_nl_reply_supported_show(struct config_item *item,
					    char *page)
{
	return sysfs_emit(page, "%d\n", tcmu_attr_dev(item)->nl_reply_supported);
}

static ssize_t tcmu_nl_reply_supported_store(struct config_item *item,
					     const char *page, size_t count)
{
	struct tcmu_dev *udev = tcmu_attr_dev(item);
	u64 val;

	if (tcmu_parse_num(udev, "nl_reply_supported", page, count, S8_MIN,
			   S8_MAX, &val))
		return -EINVAL;
	udev->nl_reply_supported = (s8)val;
	return count;
}
CONFIGFS_ATTR(tcmu_, nl_reply_supported);

static ssize_t tcmu_emulate_write_cache_show(struct config_item *item,
					     char *page)
{
	struct tcmu_dev *udev = tcmu_attr_dev(item);

	return sysfs_emit(page, "%i\n",
			  udev->se_dev.dev_attrib.emulate_write_cache);
}

static ssize_t tcmu_emulate_write_cache_store(struct config_item *item,
					      const char *page, size_t count)
{
	struct tcmu_dev *udev = tcmu_attr_dev(item);
	u64 val;
	int ret;

	if (tcmu_parse_num(udev, "emulate_write_cache", page, count, 0, 1,
			   &val))
		return -EINVAL;
	if (mutex_lock_killable(&udev->cfg_lock))
		return -EINTR;
	if (tcmu_dev_live(udev)) {
		struct tcmu_nl_extra x = { .has_wc = true, .wc = val };

		ret = tcmu_nl_send(udev, TCMU_CMD_RECONFIG_DEVICE, &x);
		if (ret) {
			mutex_unlock(&udev->cfg_lock);
			pr_warn_ratelimited("%s: handler refused write cache change (%d)\n",
					    udev->name, ret);
			return ret;
		}
	}
	udev->se_dev.dev_attrib.emulate_write_cache = val;
	mutex_unlock(&udev->cfg_lock);
	return count;
}
CONFIGFS_ATTR(tcmu_, emulate_write_cache);

static ssize_t tcmu_tmr_notification_show(struct config_item *item, char *page)
{
	struct tcmu_dev *udev = tcmu_attr_dev(item);

	return sysfs_emit(page, "%i\n",
			  test_bit(TCMU_DEV_TMR_NOTIFY, &udev->flags));
}

static ssize_t tcmu_tmr_notification_store(struct config_item *item,
					   const char *page, size_t count)
{
	struct tcmu_dev *udev = tcmu_attr_dev(item);
	u64 val;

	if (tcmu_parse_num(udev, "tmr_notification", page, count, 0, 1, &val))
		return -EINVAL;
	if (val)
		set_bit(TCMU_DEV_TMR_NOTIFY, &udev->flags);
	else
		clear_bit(TCMU_DEV_TMR_NOTIFY, &udev->flags);
	return count;
}
CONFIGFS_ATTR(tcmu_, tmr_notification);

static ssize_t tcmu_handler_exit_policy_show(struct config_item *item,
					     char *page)
{
	struct tcmu_dev *udev = tcmu_attr_dev(item);

	return sysfs_emit(page, "%u\n", READ_ONCE(udev->exit_policy));
}

static ssize_t tcmu_handler_exit_policy_store(struct config_item *item,
					      const char *page, size_t count)
{
	struct tcmu_dev *udev = tcmu_attr_dev(item);
	u64 val;

	/* 0 fails what the handler held, 1 keeps it for a restarted one. */
	if (tcmu_parse_num(udev, "handler_exit_policy", page, count, 0,
			   TCMU_EXIT_KEEP, &val))
		return -EINVAL;
	WRITE_ONCE(udev->exit_policy, val);
	return count;
}
CONFIGFS_ATTR(tcmu_, handler_exit_policy);

static ssize_t tcmu_stats_show(struct config_item *item, char *page)
{
	struct tcmu_dev *udev = tcmu_attr_dev(item);
	struct tcmu_stats s;
	u32 inflight, pages;

	mutex_lock(&udev->ring_lock);
	s = udev->stats;
	inflight = udev->nr_inflight;
	pages = udev->nr_pages;
	mutex_unlock(&udev->ring_lock);

	return sysfs_emit(page,
			  "cmds %llu\nbytes_out %llu\nbytes_in %llu\nqfull_events %llu\ntimeouts %llu\nring_full %llu\ndata_full %llu\ninflight %u\ninflight_max %u\ndata_pages %u\nhandler_exits %llu\nexit_failed %llu\n",
			  s.cmds, s.bytes_out, s.bytes_in, s.qfull_events,
			  s.timeouts, s.ring_full, s.data_full, inflight,
			  s.inflight_max, pages, s.handler_exits, s.exit_failed);
}
CONFIGFS_ATTR_RO(tcmu_, stats);

static struct configfs_attribute *tcmu_own_attrs[] = {
	&tcmu_attr_cmd_time_out,
	&tcmu_attr_qfull_time_out,
	&tcmu_attr_max_data_area_mb,
	&tcmu_attr_data_pages_per_blk,
	&tcmu_attr_cmd_ring_size_mb,
	&tcmu_attr_dev_config,
	&tcmu_attr_dev_size,
	&tcmu_attr_emulate_write_cache,
	&tcmu_attr_tmr_notification,
	&tcmu_attr_nl_reply_supported,
	&tcmu_attr_handler_exit_policy,
	&tcmu_attr_stats,
	NULL,
};

static ssize_t tcmu_block_dev_show(struct config_item *item, char *page)
{
	struct tcmu_dev *udev = tcmu_action_dev(item);

	return sysfs_emit(page, "%s\n",
			  test_bit(TCMU_DEV_BLOCKED, &udev->flags) ?
			  "blocked" : "unblocked");
}

static ssize_t tcmu_block_dev_store(struct config_item *item, const char *page,
				    size_t count)
{
	struct tcmu_dev *udev = tcmu_action_dev(item);
	u64 val;

	if (tcmu_need_enabled(udev, "block_dev") ||
	    tcmu_parse_num(udev, "block_dev", page, count, 0, 1, &val))
		return -EINVAL;

	mutex_lock(&udev->ring_lock);
	if (val) {
		if (!test_and_set_bit(TCMU_DEV_BLOCKED, &udev->flags)) {
			/* Take what the handler finished, fail the waiters. */
			tcmu_reap(udev, NULL);
			tcmu_run_qfull(udev, true);
		}
	} else {
		clear_bit(TCMU_DEV_BLOCKED, &udev->flags);
	}
	mutex_unlock(&udev->ring_lock);
	return count;
}
CONFIGFS_ATTR(tcmu_, block_dev);

/*
 * Fail or bounce every command the handler holds and empty the ring.
 * Called with ring_lock held. Return: how many commands were still
 * waiting for an initiator-visible answer.
 */
static u32 tcmu_reset_ring_locked(struct tcmu_dev *udev, u8 level)
{
	struct tcmu_cmd *cmd;
	unsigned long id;
	u32 failed = 0;

	lockdep_assert_held(&udev->ring_lock);
	xa_for_each(&udev->cmds, id, cmd) {
		struct se_cmd *se_cmd = cmd->se_cmd;

		if (se_cmd) {
			se_cmd->priv = NULL;
			cmd->se_cmd = NULL;
			if (level == 1)
				target_complete_cmd(se_cmd, SAM_STAT_BUSY);
			else
				tcmu_fail_comm(se_cmd);
			failed++;
		}
		tcmu_retire(udev, cmd);
	}
	udev->nr_inflight = 0;
	udev->ring_head = 0;
	udev->ring_tail = 0;
	udev->log_head = 0;
	udev->log_tail = 0;
	udev->ring_tmrs = 0;
	WRITE_ONCE(udev->mb->cmd_tail, 0);
	/* Also repairs what a misbehaving handler may have scribbled on. */
	tcmu_mb_restore(udev);
	clear_bit(TCMU_DEV_BROKEN, &udev->flags);
	del_timer(&udev->cmd_timer);
	/* Queued TMRs name commands that no longer exist. */
	tcmu_drop_tmrs(udev);
	tcmu_run_qfull(udev, false);
	return failed;
}

static void tcmu_reset_ring(struct tcmu_dev *udev, u8 level)
{
	mutex_lock(&udev->ring_lock);
	tcmu_reset_ring_locked(udev, level);
	tcmu_ring_unlock(udev);
}

static ssize_t tcmu_reset_ring_store(struct config_item *item,
				     const char *page, size_t count)
{
	struct tcmu_dev *udev = tcmu_action_dev(item);
	u64 val;

	/* 1 answers what the handler held with BUSY, 2 with CHECK CONDITION. */
	if (tcmu_need_enabled(udev, "reset_ring") ||
	    tcmu_parse_num(udev, "reset_ring", page, count, 1, 2, &val))
		return -EINVAL;
	tcmu_reset_ring(udev, val);
	return count;
}
CONFIGFS_ATTR_WO(tcmu_, reset_ring);

static ssize_t tcmu_free_kept_buf_store(struct config_item *item,
					const char *page, size_t count)
{
	struct tcmu_dev *udev = tcmu_action_dev(item);
	struct tcmu_cmd *cmd;
	u64 id;

	if (tcmu_need_enabled(udev, "free_kept_buf") ||
	    tcmu_parse_num(udev, "free_kept_buf", page, count, TCMU_CMD_ID_MIN,
			   TCMU_CMD_ID_MAX, &id))
		return -EINVAL;

	mutex_lock(&udev->ring_lock);
	cmd = xa_load(&udev->cmds, id);
	if (!cmd || !test_bit(TCMU_CMD_KEPT, &cmd->flags)) {
		mutex_unlock(&udev->ring_lock);
		pr_warn_ratelimited("%s: free_kept_buf: cmd %llu holds no kept buffer\n",
				    udev->name, id);
		return -EINVAL;
	}
	tcmu_retire(udev, cmd);
	if (list_empty(&udev->tmr_queue))
		tcmu_run_qfull(udev, false);
	tcmu_ring_unlock(udev);
	return count;
}
CONFIGFS_ATTR_WO(tcmu_, free_kept_buf);

static struct configfs_attribute *tcmu_action_attrs[] = {
	&tcmu_attr_block_dev,
	&tcmu_attr_reset_ring,
	&tcmu_attr_free_kept_buf,
	NULL,
};

/* ------------------------------------------------------------------------
 * 10. Global data-area reclaim
 * ------------------------------------------------------------------------
 */

/* Zap every user mapping of data pages [first, last). */
static void tcmu_zap(struct tcmu_dev *udev, u32 first, u32 last)
{
	loff_t start = udev->data_off + ((loff_t)first << PAGE_SHIFT);
	loff_t len = (loff_t)(last - first) << PAGE_SHIFT;
	int i;

	mutex_lock(&udev->map_lock);
	for (i = 0; i < TCMU_MAX_MAPPINGS; i++)
		if (udev->maps[i].mapping)
			unmap_mapping_range(udev->maps[i].mapping, start, len,
					    1);
	mutex_unlock(&udev->map_lock);
}

/*
 * Free the pages of every block no command owns. Called with ring_lock
 * held. Each page is removed from the table (no new fault can find it),
 * locked (waiting out a fault that already has it), zapped from every
 * mapping, then released.
 */
static u32 tcmu_shrink_data_area(struct tcmu_dev *udev)
{
	u32 ppb = tcmu_blk_pages(udev), blk, freed = 0;
	struct page **batch;
	u32 n;

	batch = kmalloc_array(ppb, sizeof(*batch), GFP_NOIO);
	if (!batch)
		return 0;

	for (blk = 0; blk < udev->nr_blocks; blk++) {
		u32 i;

		if (test_bit(blk, udev->blk_bitmap))
			continue;
		n = 0;
		for (i = blk * ppb; i < (blk + 1) * ppb; i++) {
			struct page *page = xa_erase(&udev->pages, i);

			if (page) {
				lock_page(page);
				batch[n++] = page;
			}
		}
		if (!n)
			continue;
		tcmu_zap(udev, blk * ppb, (blk + 1) * ppb);
		for (i = 0; i < n; i++) {
			unlock_page(batch[i]);
			put_page(batch[i]);
		}
		udev->nr_pages -= n;
		atomic_sub(n, &tcmu_global_pages);
		freed += n;
	}
	kfree(batch);
	return freed;
}

static void tcmu_reclaim_fn(struct work_struct *work)
{
	struct tcmu_dev *udev;

	mutex_lock(&tcmu_devices_lock);
	list_for_each_entry(udev, &tcmu_devices, all_node) {
		mutex_lock(&udev->ring_lock);
		if (atomic_read(&tcmu_global_pages) >
		    READ_ONCE(tcmu_global_max_pages) / 2 || !list_empty(&udev->qfull))
			tcmu_shrink_data_area(udev);
		mutex_unlock(&udev->ring_lock);
	}
	/* Pages came back: let waiters on every device retry. */
	list_for_each_entry(udev, &tcmu_devices, all_node) {
		mutex_lock(&udev->ring_lock);
		if (list_empty(&udev->tmr_queue))
			tcmu_run_qfull(udev, false);
		tcmu_ring_unlock(udev);
	}
	mutex_unlock(&tcmu_devices_lock);
}

/* ------------------------------------------------------------------------
 * 11. Module init/exit
 * ------------------------------------------------------------------------
 */

static struct configfs_attribute **tcmu_all_attrs;

static struct target_backend_ops tcmu_ops = {
	.name			= "user",
	.owner			= THIS_MODULE,
	.transport_flags_default = TRANSPORT_FLAG_PASSTHROUGH,
	.transport_flags_changeable = TRANSPORT_FLAG_PASSTHROUGH_PGR |
				      TRANSPORT_FLAG_PASSTHROUGH_ALUA,
	.attach_hba		= tcmu_attach_hba,
	.detach_hba		= tcmu_detach_hba,
	.alloc_device		= tcmu_alloc_device,
	.configure_device	= tcmu_configure_device,
	.destroy_device		= tcmu_destroy_device,
	.free_device		= tcmu_free_device,
	.plug_device		= tcmu_plug_device,
	.unplug_device		= tcmu_unplug_device,
	.parse_cdb		= tcmu_parse_cdb,
	.tmr_notify		= tcmu_tmr_notify,
	.set_configfs_dev_params = tcmu_set_configfs_dev_params,
	.show_configfs_dev_params = tcmu_show_configfs_dev_params,
	.get_device_type	= sbc_get_device_type,
	.get_blocks		= tcmu_get_blocks,
	.tb_dev_action_attrs	= tcmu_action_attrs,
};

static size_t tcmu_attr_count(struct configfs_attribute **attrs)
{
	size_t n = 0;

	while (attrs[n])
		n++;
	return n;
}

/* The core's passthrough attributes followed by ours. */
static int tcmu_build_attrs(void)
{
	struct configfs_attribute **lists[] = {
		passthrough_attrib_attrs,
		passthrough_pr_attrib_attrs,
		tcmu_own_attrs,
	};
	size_t total = 1, pos = 0, i, n;

	for (i = 0; i < ARRAY_SIZE(lists); i++)
		total += tcmu_attr_count(lists[i]);
	tcmu_all_attrs = kcalloc(total, sizeof(*tcmu_all_attrs), GFP_KERNEL);
	if (!tcmu_all_attrs)
		return -ENOMEM;
	for (i = 0; i < ARRAY_SIZE(lists); i++) {
		n = tcmu_attr_count(lists[i]);
		memcpy(tcmu_all_attrs + pos, lists[i], n * sizeof(*lists[i]));
		pos += n;
	}
	tcmu_ops.tb_dev_attrib_attrs = tcmu_all_attrs;
	return 0;
}

static int __init tcmu_init(void)
{
	int ret;

	BUILD_BUG_ON(sizeof(struct tcmu_mailbox) != 128);
	BUILD_BUG_ON(sizeof(struct tcmu_cmd_entry) % TCMU_OP_ALIGN_SIZE);
	BUILD_BUG_ON(TCMU_RING_MB_MAX > 8);

	tcmu_cmd_slab = KMEM_CACHE(tcmu_cmd, 0);
	if (!tcmu_cmd_slab)
		return -ENOMEM;

	tcmu_root = root_device_register("tcm_user");
	if (IS_ERR(tcmu_root)) {
		ret = PTR_ERR(tcmu_root);
		goto err_slab;
	}
	ret = genl_register_family(&tcmu_nl_family);
	if (ret)
		goto err_root;
	ret = tcmu_build_attrs();
	if (ret)
		goto err_genl;
	ret = transport_backend_register(&tcmu_ops);
	if (ret)
		goto err_attrs;
	return 0;

err_attrs:
	kfree(tcmu_all_attrs);
err_genl:
	genl_unregister_family(&tcmu_nl_family);
err_root:
	root_device_unregister(tcmu_root);
err_slab:
	kmem_cache_destroy(tcmu_cmd_slab);
	return ret;
}

static void __exit tcmu_exit(void)
{
	target_backend_unregister(&tcmu_ops);
	cancel_work_sync(&tcmu_reclaim_work);
	kfree(tcmu_all_attrs);
	genl_unregister_family(&tcmu_nl_family);
	root_device_unregister(tcmu_root);
	/* Devices are freed through RCU; wait before the slab goes. */
	rcu_barrier();
	kmem_cache_destroy(tcmu_cmd_slab);
}

MODULE_DESCRIPTION("TCM userspace passthrough backstore (TCMU)");
MODULE_LICENSE("GPL");
module_init(tcmu_init);
module_exit(tcmu_exit);
