// SPDX-License-Identifier: GPL-2.0
/*
 * KUnit tests for the pure helpers of target_core_user: ring space and
 * wrap arithmetic, entry sizing, the data-area block allocator and
 * deadline ordering. They need no device and no target core.
 */
#include <kunit/test.h>
#include <linux/bitmap.h>
#include <linux/jiffies.h>
#include <linux/module.h>
#include <linux/target_core_user.h>

#include "target_core_user.h"

static void tcmu_test_ring_space(struct kunit *test)
{
	const u32 size = 4096;

	KUNIT_EXPECT_EQ(test, tcmu_ring_used(0, 0, size), 0U);
	KUNIT_EXPECT_EQ(test, tcmu_ring_free(0, 0, size), size - 1);
	KUNIT_EXPECT_EQ(test, tcmu_ring_used(100, 40, size), 60U);
	/* Head wrapped below tail. */
	KUNIT_EXPECT_EQ(test, tcmu_ring_used(16, 4000, size), 112U);
	KUNIT_EXPECT_EQ(test, tcmu_ring_free(16, 4000, size), size - 113);
	/* One byte always stays free: a full ring is never "empty". */
	KUNIT_EXPECT_EQ(test, tcmu_ring_free(4095, 0, size), 0U);
}

static void tcmu_test_entry_sizes(struct kunit *test)
{
	u32 iovs, cdb;

	/* An entry always has room for the response. */
	KUNIT_EXPECT_EQ(test, tcmu_cmd_base_size(0),
			(u32)sizeof(struct tcmu_cmd_entry));
	for (iovs = 0; iovs < 300; iovs++) {
		u32 base = tcmu_cmd_base_size(iovs);

		KUNIT_EXPECT_EQ(test, base % TCMU_OP_ALIGN_SIZE, 0U);
		KUNIT_EXPECT_GE(test, base,
				(u32)(offsetof(struct tcmu_cmd_entry, req.iov) +
				      iovs * sizeof(struct iovec)));
		for (cdb = 6; cdb <= 32; cdb += 2) {
			u32 len = tcmu_cmd_entry_size(iovs, cdb);

			KUNIT_EXPECT_EQ(test, len % TCMU_OP_ALIGN_SIZE, 0U);
			KUNIT_EXPECT_GE(test, len, base + cdb);
			KUNIT_EXPECT_LT(test, len, base + cdb + 8);
		}
	}
	KUNIT_EXPECT_EQ(test, tcmu_tmr_entry_size(0),
			(u32)sizeof(struct tcmu_tmr_entry));
	KUNIT_EXPECT_EQ(test, tcmu_tmr_entry_size(3) % 8, 0U);
	KUNIT_EXPECT_GE(test, tcmu_tmr_entry_size(3),
			(u32)sizeof(struct tcmu_tmr_entry) + 6);
}

static void tcmu_test_ring_fit(struct kunit *test)
{
	const u32 size = 1024;
	u32 pad;

	/* Fits before the end: no PAD. */
	KUNIT_EXPECT_TRUE(test, tcmu_ring_fit(0, 0, size, 128, &pad));
	KUNIT_EXPECT_EQ(test, pad, 0U);
	/* Exactly up to the end is allowed when the tail is elsewhere. */
	KUNIT_EXPECT_TRUE(test, tcmu_ring_fit(896, 512, size, 128, &pad));
	KUNIT_EXPECT_EQ(test, pad, 0U);
	/* Does not fit before the end: PAD the rest, start at 0. */
	KUNIT_EXPECT_TRUE(test, tcmu_ring_fit(960, 512, size, 128, &pad));
	KUNIT_EXPECT_EQ(test, pad, 64U);
	/* PAD plus entry larger than the free space: refused. */
	KUNIT_EXPECT_FALSE(test, tcmu_ring_fit(960, 100, size, 128, &pad));
	/* The last free byte is never used. */
	KUNIT_EXPECT_FALSE(test, tcmu_ring_fit(0, 128, size, 128, &pad));
	KUNIT_EXPECT_TRUE(test, tcmu_ring_fit(0, 136, size, 128, &pad));
	/* Head behind tail after a wrap. */
	KUNIT_EXPECT_TRUE(test, tcmu_ring_fit(64, 512, size, 440, &pad));
	KUNIT_EXPECT_FALSE(test, tcmu_ring_fit(64, 512, size, 448, &pad));
}

static void tcmu_test_blocks_contiguous(struct kunit *test)
{
	DECLARE_BITMAP(map, 64);
	struct tcmu_run runs[8];

	bitmap_zero(map, 64);
	KUNIT_EXPECT_EQ(test, tcmu_blocks_claim(map, 64, 10, runs, 8), 1U);
	KUNIT_EXPECT_EQ(test, runs[0].start, 0U);
	KUNIT_EXPECT_EQ(test, runs[0].count, 10U);
	KUNIT_EXPECT_EQ(test, bitmap_weight(map, 64), 10U);
	KUNIT_EXPECT_EQ(test, tcmu_blocks_claim(map, 64, 54, runs, 8), 1U);
	KUNIT_EXPECT_EQ(test, runs[0].start, 10U);
	/* Full: nothing changes. */
	KUNIT_EXPECT_EQ(test, tcmu_blocks_claim(map, 64, 1, runs, 8), 0U);
	KUNIT_EXPECT_EQ(test, bitmap_weight(map, 64), 64U);
	/* Zero or oversize requests are refused. */
	bitmap_zero(map, 64);
	KUNIT_EXPECT_EQ(test, tcmu_blocks_claim(map, 64, 0, runs, 8), 0U);
	KUNIT_EXPECT_EQ(test, tcmu_blocks_claim(map, 64, 65, runs, 8), 0U);
	KUNIT_EXPECT_EQ(test, bitmap_weight(map, 64), 0U);
}

static void tcmu_test_blocks_fragmented(struct kunit *test)
{
	DECLARE_BITMAP(map, 32);
	struct tcmu_run runs[8];
	u32 i, nr, total = 0;

	/* Every other block in use: 16 free, no run longer than 1. */
	bitmap_zero(map, 32);
	for (i = 0; i < 32; i += 2)
		set_bit(i, map);
	KUNIT_EXPECT_EQ(test, tcmu_blocks_count_runs(map, 32, 5), 5U);
	/* Too few runs allowed: refused, map unchanged. */
	KUNIT_EXPECT_EQ(test, tcmu_blocks_claim(map, 32, 5, runs, 4), 0U);
	KUNIT_EXPECT_EQ(test, bitmap_weight(map, 32), 16U);
	nr = tcmu_blocks_claim(map, 32, 5, runs, 8);
	KUNIT_EXPECT_EQ(test, nr, 5U);
	for (i = 0; i < nr; i++) {
		KUNIT_EXPECT_EQ(test, runs[i].start, 2 * i + 1);
		total += runs[i].count;
	}
	KUNIT_EXPECT_EQ(test, total, 5U);
	KUNIT_EXPECT_EQ(test, bitmap_weight(map, 32), 21U);
	/* More than is free: refused. */
	KUNIT_EXPECT_EQ(test, tcmu_blocks_claim(map, 32, 12, runs, 8), 0U);
	KUNIT_EXPECT_EQ(test, tcmu_blocks_count_runs(map, 32, 12), 0U);
}

static void tcmu_test_blocks_merge(struct kunit *test)
{
	DECLARE_BITMAP(map, 32);
	struct tcmu_run runs[8];

	/* Free: 0-3, 8-15 (hole 4-7 used, 16-31 used). Need 10. */
	bitmap_fill(map, 32);
	bitmap_clear(map, 0, 4);
	bitmap_clear(map, 8, 8);
	KUNIT_EXPECT_EQ(test, tcmu_blocks_claim(map, 32, 10, runs, 8), 2U);
	KUNIT_EXPECT_EQ(test, runs[0].start, 0U);
	KUNIT_EXPECT_EQ(test, runs[0].count, 4U);
	KUNIT_EXPECT_EQ(test, runs[1].start, 8U);
	KUNIT_EXPECT_EQ(test, runs[1].count, 6U);
	KUNIT_EXPECT_EQ(test, bitmap_weight(map, 32), 30U);
}

static void tcmu_test_deadlines(struct kunit *test)
{
	unsigned long now = jiffies;

	KUNIT_EXPECT_TRUE(test, tcmu_deadline_before_eq(now, now));
	KUNIT_EXPECT_TRUE(test, tcmu_deadline_before_eq(now, now + 1));
	KUNIT_EXPECT_FALSE(test, tcmu_deadline_before_eq(now + 1, now));
	/* Across the jiffies wrap. */
	KUNIT_EXPECT_TRUE(test, tcmu_deadline_before_eq(ULONG_MAX - 5, 5));
	KUNIT_EXPECT_FALSE(test, tcmu_deadline_before_eq(5, ULONG_MAX - 5));
}

static struct kunit_case tcmu_test_cases[] = {
	KUNIT_CASE(tcmu_test_ring_space),
	KUNIT_CASE(tcmu_test_entry_sizes),
	KUNIT_CASE(tcmu_test_ring_fit),
	KUNIT_CASE(tcmu_test_blocks_contiguous),
	KUNIT_CASE(tcmu_test_blocks_fragmented),
	KUNIT_CASE(tcmu_test_blocks_merge),
	KUNIT_CASE(tcmu_test_deadlines),
	{}
};

static struct kunit_suite tcmu_test_suite = {
	.name = "target_core_user",
	.test_cases = tcmu_test_cases,
};

kunit_test_suite(tcmu_test_suite);

MODULE_DESCRIPTION("KUnit tests for target_core_user helpers");
MODULE_LICENSE("GPL");
