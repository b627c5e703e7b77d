// SPDX-License-Identifier: GPL-2.0
/*
 * tcmu_mailbox - print the mailbox of a TCMU UIO device as key=value lines.
 *
 *   tcmu_mailbox /dev/uioN [SCAN_BYTES [MAP_BYTES]]
 *
 * Maps map0 shared and read/write the way a handler daemon does: the whole
 * region, MAP_BYTES long (default: the size in sysfs maps/map0/size; the
 * upstream module refuses a mapping of any other length).  Prints the
 * mailbox fields through the structure in our uapi header, plus
 * "ring_nonzero", the number of non-zero bytes from cmdr_off up to
 * SCAN_BYTES (default: one page; a freshly enabled device has an empty,
 * zeroed ring).  Only the mailbox and ring pages are touched: data area
 * pages have no backing until a command owns them.
 *
 * Built against include/uapi/linux/target_core_user.h, so the compile-time
 * checks below also pin the header's mailbox layout to the ABI.
 *
 * Run without arguments (as the kselftest runner would) it reports a skip:
 * it is a helper for tcmu_uio.sh, not a test of its own.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/target_core_user.h>

#define KSFT_SKIP 4

_Static_assert(offsetof(struct tcmu_mailbox, version) == 0, "version @0");
_Static_assert(offsetof(struct tcmu_mailbox, flags) == 2, "flags @2");
_Static_assert(offsetof(struct tcmu_mailbox, cmdr_off) == 4, "cmdr_off @4");
_Static_assert(offsetof(struct tcmu_mailbox, cmdr_size) == 8, "cmdr_size @8");
_Static_assert(offsetof(struct tcmu_mailbox, cmd_head) == 12, "cmd_head @12");
_Static_assert(offsetof(struct tcmu_mailbox, cmd_tail) == 64, "cmd_tail @64");
_Static_assert(TCMU_MAILBOX_VERSION == 2, "mailbox version 2");

static int parse_size(const char *s, size_t *out)
{
	unsigned long long v;
	char *end;

	errno = 0;
	v = strtoull(s, &end, 0);
	while (*end == '\n')
		end++;
	if (errno || end == s || *end || v == 0 || v > SIZE_MAX)
		return -1;
	*out = (size_t)v;
	return 0;
}

/* Read maps/map0/size of the UIO device behind a /dev/uioN path. */
static int sysfs_map_size(const char *dev, size_t *out)
{
	const char *base = strrchr(dev, '/');
	char path[256], buf[64];
	ssize_t n;
	int fd;

	base = base ? base + 1 : dev;
	snprintf(path, sizeof(path), "/sys/class/uio/%s/maps/map0/size", base);
	fd = open(path, O_RDONLY);
	if (fd < 0) {
		fprintf(stderr, "open %s: %s\n", path, strerror(errno));
		return -1;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	if (parse_size(buf, out)) {
		fprintf(stderr, "bad size in %s: %s", path, buf);
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	const volatile struct tcmu_mailbox *mb;
	size_t scan = (size_t)sysconf(_SC_PAGESIZE);
	unsigned long nonzero = 0;
	unsigned char *map;
	size_t len, i;
	int fd;

	if (argc < 2) {
		printf("SKIP: tcmu_mailbox is a helper: tcmu_mailbox /dev/uioN [SCAN_BYTES [MAP_BYTES]]\n");
		return KSFT_SKIP;
	}
	if (argc > 2 && (parse_size(argv[2], &scan) || scan < sizeof(*mb))) {
		fprintf(stderr, "bad scan length %s\n", argv[2]);
		return 2;
	}
	if (argc > 3) {
		if (parse_size(argv[3], &len)) {
			fprintf(stderr, "bad map length %s\n", argv[3]);
			return 2;
		}
	} else if (sysfs_map_size(argv[1], &len)) {
		return 1;
	}
	if (scan > len)
		scan = len;

	fd = open(argv[1], O_RDWR);
	if (fd < 0) {
		fprintf(stderr, "open %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	/* map0 is selected by offset 0 (map N lives at N * page size). */
	map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED) {
		fprintf(stderr, "mmap %s (%zu bytes): %s\n", argv[1], len,
			strerror(errno));
		close(fd);
		return 1;
	}

	mb = (const volatile struct tcmu_mailbox *)map;
	printf("version=%u\n", (unsigned int)mb->version);
	printf("flags=0x%x\n", (unsigned int)mb->flags);
	printf("cmdr_off=%u\n", (unsigned int)mb->cmdr_off);
	printf("cmdr_size=%u\n", (unsigned int)mb->cmdr_size);
	printf("cmd_head=%u\n", (unsigned int)mb->cmd_head);
	printf("cmd_tail=%u\n", (unsigned int)mb->cmd_tail);

	if (mb->cmdr_off < scan) {
		for (i = mb->cmdr_off; i < scan; i++)
			nonzero += map[i] != 0;
		printf("ring_nonzero=%lu\n", nonzero);
	}

	munmap(map, len);
	close(fd);
	return 0;
}
