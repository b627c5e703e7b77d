// SPDX-License-Identifier: GPL-2.0
/*
 * tcmu_mailbox - print the mailbox of a TCMU UIO device as key=value lines.
 *
 *   tcmu_mailbox /dev/uioN [BYTES]
 *
 * Maps the first BYTES (default: one page) of map0 shared and read/write,
 * the way a handler daemon does, and prints the mailbox fields through the
 * structure in our uapi header, plus "ring_nonzero", the number of
 * non-zero bytes between cmdr_off and the end of the mapping (a freshly
 * enabled device has an empty, zeroed ring).
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

int main(int argc, char **argv)
{
	const volatile struct tcmu_mailbox *mb;
	size_t len = (size_t)sysconf(_SC_PAGESIZE);
	unsigned long nonzero = 0;
	unsigned char *map;
	size_t i;
	int fd;

	if (argc < 2) {
		printf("SKIP: tcmu_mailbox is a helper: tcmu_mailbox /dev/uioN [BYTES]\n");
		return KSFT_SKIP;
	}
	if (argc > 2) {
		char *end;

		errno = 0;
		len = strtoul(argv[2], &end, 0);
		if (errno || *end || len < sizeof(*mb)) {
			fprintf(stderr, "bad length %s\n", argv[2]);
			return 2;
		}
	}

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

	if (mb->cmdr_off < len) {
		for (i = mb->cmdr_off; i < len; i++)
			nonzero += map[i] != 0;
		printf("ring_nonzero=%lu\n", nonzero);
	}

	munmap(map, len);
	close(fd);
	return 0;
}
