// SPDX-License-Identifier: GPL-2.0
/*
 * tcmu-handler: a minimal SBC disk on top of a RAM buffer or a file.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <linux/fs.h>

#include "tcmu-handler.h"

#define INQ_VENDOR	"TCMUTEST"
#define INQ_PRODUCT	"tcmu-handler    "
#define INQ_REV		"0001"

/* opcodes */
#define OP_TEST_UNIT_READY	0x00
#define OP_REQUEST_SENSE	0x03
#define OP_READ_6		0x08
#define OP_WRITE_6		0x0a
#define OP_INQUIRY		0x12
#define OP_MODE_SENSE_6		0x1a
#define OP_START_STOP_UNIT	0x1b
#define OP_READ_CAPACITY_10	0x25
#define OP_READ_10		0x28
#define OP_WRITE_10		0x2a
#define OP_WRITE_VERIFY_10	0x2e
#define OP_VERIFY_10		0x2f
#define OP_SYNC_CACHE_10	0x35
#define OP_MODE_SENSE_10	0x5a
#define OP_READ_16		0x88
#define OP_WRITE_16		0x8a
#define OP_WRITE_VERIFY_16	0x8e
#define OP_VERIFY_16		0x8f
#define OP_SYNC_CACHE_16	0x91
#define OP_SERVICE_ACTION_IN_16	0x9e
#define SAI_READ_CAPACITY_16	0x10
#define OP_READ_12		0xa8
#define OP_WRITE_12		0xaa
#define OP_WRITE_VERIFY_12	0xae
#define OP_VERIFY_12		0xaf

/* additional sense codes */
#define ASC_INVALID_OPCODE	0x20
#define ASC_LBA_OUT_OF_RANGE	0x21
#define ASC_INVALID_FIELD_CDB	0x24
#define ASC_SAVING_NOT_SUPP	0x39
#define ASC_INTERNAL_FAILURE	0x44
#define ASC_READ_ERROR		0x11
#define ASC_WRITE_ERROR		0x0c

static uint16_t get_be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get_be64(const uint8_t *p)
{
	return (uint64_t)get_be32(p) << 32 | get_be32(p + 4);
}

static void put_be16(uint8_t *p, uint16_t v)
{
	p[0] = v >> 8;
	p[1] = v & 0xff;
}

static void put_be32(uint8_t *p, uint32_t v)
{
	put_be16(p, v >> 16);
	put_be16(p + 2, v & 0xffff);
}

static void put_be64(uint8_t *p, uint64_t v)
{
	put_be32(p, v >> 32);
	put_be32(p + 4, v & 0xffffffff);
}

void th_set_sense(struct th_cmd *c, uint8_t key, uint8_t asc, uint8_t ascq)
{
	memset(c->sense, 0, sizeof(c->sense));
	c->sense[0] = 0x70;		/* current error, fixed format */
	c->sense[2] = key & 0x0f;
	c->sense[7] = TH_SENSE_LEN - 8;	/* additional sense length: 0x0a */
	c->sense[12] = asc;
	c->sense[13] = ascq;
	c->status = SAM_CHECK_CONDITION;
}

static void invalid_field(struct th_cmd *c)
{
	th_set_sense(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB, 0);
}

/* ---- backing store ---- */

int th_backend_open(struct th *h)
{
	uint64_t size = h->opt.size;

	h->file_fd = -1;
	h->ram = NULL;
	h->block_size = h->opt.block_size ? h->opt.block_size : 512;
	if (h->block_size < 512 || h->block_size & (h->block_size - 1)) {
		th_err("block size %u is not a power of two >= 512\n",
		       h->block_size);
		return -EINVAL;
	}

	if (h->opt.file) {
		struct stat sb;
		int fd = open(h->opt.file, O_RDWR | O_CREAT | O_CLOEXEC, 0644);

		if (fd < 0 || fstat(fd, &sb) < 0) {
			th_err("%s: %s\n", h->opt.file, strerror(errno));
			if (fd >= 0)
				close(fd);
			return -errno;
		}
		if (S_ISBLK(sb.st_mode)) {
			uint64_t bsz = 0;

			if (ioctl(fd, BLKGETSIZE64, &bsz) < 0) {
				th_err("%s: BLKGETSIZE64: %s\n", h->opt.file,
				       strerror(errno));
				close(fd);
				return -EIO;
			}
			if (!size || size > bsz)
				size = bsz;
		} else if (!size) {
			size = (uint64_t)sb.st_size;
		} else if ((uint64_t)sb.st_size < size &&
			   ftruncate(fd, (off_t)size) < 0) {
			th_err("%s: extend to %llu: %s\n", h->opt.file,
			       (unsigned long long)size, strerror(errno));
			close(fd);
			return -EIO;
		}
		h->file_fd = fd;
	} else if (size) {
		void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
			       -1, 0);

		if (p == MAP_FAILED) {
			th_err("cannot allocate %llu bytes of RAM store: %s\n",
			       (unsigned long long)size, strerror(errno));
			return -ENOMEM;
		}
		h->ram = p;
	}
	if (size < h->block_size) {
		th_err("device size %llu is unknown or below one block\n",
		       (unsigned long long)size);
		th_backend_close(h);
		return -EINVAL;
	}
	h->dev_size = size;
	h->nr_blocks = size / h->block_size;
	return 0;
}

void th_backend_close(struct th *h)
{
	if (h->ram)
		munmap(h->ram, h->dev_size ? h->dev_size : h->opt.size);
	h->ram = NULL;
	if (h->file_fd >= 0)
		close(h->file_fd);
	h->file_fd = -1;
}

/* 64-bit FNV-1a: enough to derive stable per-device identifiers. */
static uint64_t hash_str(const char *s)
{
	uint64_t x = 0xcbf29ce484222325ull;

	while (*s) {
		x ^= (uint8_t)*s++;
		x *= 0x100000001b3ull;
	}
	return x;
}

void th_ident_init(struct th *h, const char *src)
{
	uint64_t x = hash_str(src && *src ? src : "tcmu-handler");

	snprintf(h->serial, sizeof(h->serial), "TH%016llx",
		 (unsigned long long)x);
	/* NAA 3: locally assigned, 60 bits of our choosing */
	h->naa = 3ull << 60 | (x & ((1ull << 60) - 1));
}

/* ---- Data-In for emulated commands ---- */

static int zero_seg(uint8_t *p, uint64_t len, uint64_t pos, void *arg)
{
	(void)pos;
	(void)arg;
	memset(p, 0, len);
	return 0;
}

/*
 * Return len bytes of parameter data, cut to the allocation length. The
 * rest of the buffer (up to the allocation length) is zeroed so that no
 * stale data area contents leak to the initiator.
 */
static bool short_read_applies(const struct th *h, uint8_t op);

static void reply(struct th *h, struct th_cmd *c, const uint8_t *buf,
		  uint64_t len, uint64_t alloc)
{
	uint64_t n = len < alloc ? len : alloc;
	uint64_t total = th_data_len(c, false);

	if (short_read_applies(h, c->cdb[0]) && n > h->opt.short_read)
		n = h->opt.short_read;

	c->in_bytes = th_copy_to_cmd(h, c, buf, n);
	if (alloc > total)
		alloc = total;
	if (alloc > c->in_bytes)
		th_for_each_seg(h, c, false, c->in_bytes,
				alloc - c->in_bytes, zero_seg, NULL);
}

/* ---- commands ---- */

static void inquiry_std(struct th *h, struct th_cmd *c, uint32_t alloc)
{
	uint8_t b[36];

	memset(b, 0, sizeof(b));
	b[0] = 0x00;		/* connected, direct access block device */
	b[2] = 0x06;		/* SPC-4 */
	b[3] = 0x02;		/* response data format 2 */
	b[4] = sizeof(b) - 5;	/* additional length */
	b[7] = 0x02;		/* CMDQUE */
	memcpy(b + 8, INQ_VENDOR, 8);
	memcpy(b + 16, INQ_PRODUCT, 16);
	memcpy(b + 32, INQ_REV, 4);
	reply(h, c, b, sizeof(b), alloc);
}

static void inquiry_vpd(struct th *h, struct th_cmd *c, uint8_t page,
			uint32_t alloc)
{
	static const uint8_t pages[] = { 0x00, 0x80, 0x83, 0xb0 };
	uint8_t b[128];
	size_t len, sl = strlen(h->serial);
	uint8_t *d;

	memset(b, 0, sizeof(b));
	b[1] = page;
	switch (page) {
	case 0x00:		/* supported VPD pages */
		memcpy(b + 4, pages, sizeof(pages));
		len = 4 + sizeof(pages);
		break;
	case 0x80:		/* unit serial number */
		memcpy(b + 4, h->serial, sl);
		len = 4 + sl;
		break;
	case 0x83:		/* device identification */
		d = b + 4;
		/* T10 vendor id: ASCII, LU association, type 1 */
		d[0] = 0x02;
		d[1] = 0x01;
		d[3] = (uint8_t)(8 + sl);
		memcpy(d + 4, INQ_VENDOR, 8);
		memcpy(d + 12, h->serial, sl);
		d += 4 + 8 + sl;
		/* NAA: binary, LU association, type 3 */
		d[0] = 0x01;
		d[1] = 0x03;
		d[3] = 8;
		put_be64(d + 4, h->naa);
		d += 12;
		len = (size_t)(d - b);
		break;
	case 0xb0:		/* block limits */
		len = 4 + 0x3c;
		put_be32(b + 8, h->opt.max_sectors);	/* max transfer */
		break;
	default:
		invalid_field(c);
		return;
	}
	put_be16(b + 2, (uint16_t)(len - 4));
	reply(h, c, b, len, alloc);
}

static void inquiry(struct th *h, struct th_cmd *c)
{
	const uint8_t *cdb = c->cdb;
	uint32_t alloc = get_be16(cdb + 3);

	if (cdb[1] & 0x02) {			/* CMDDT is obsolete */
		invalid_field(c);
		return;
	}
	if (cdb[1] & 0x01)
		inquiry_vpd(h, c, cdb[2], alloc);
	else if (cdb[2])
		invalid_field(c);
	else
		inquiry_std(h, c, alloc);
}

static void read_capacity_10(struct th *h, struct th_cmd *c)
{
	uint64_t last = h->nr_blocks - 1;
	uint8_t b[8];

	put_be32(b, last > 0xffffffffull ? 0xffffffffu : (uint32_t)last);
	put_be32(b + 4, h->block_size);
	reply(h, c, b, sizeof(b), sizeof(b));
}

static void read_capacity_16(struct th *h, struct th_cmd *c)
{
	uint8_t b[32];

	memset(b, 0, sizeof(b));
	put_be64(b, h->nr_blocks - 1);
	put_be32(b + 8, h->block_size);
	reply(h, c, b, sizeof(b), get_be32(c->cdb + 10));
}

static size_t mode_page_caching(struct th *h, uint8_t *p, int pc)
{
	memset(p, 0, 20);
	p[0] = 0x08;
	p[1] = 0x12;
	if (pc != 1 && h->file_fd >= 0)
		p[2] = 0x04;	/* WCE: writes may sit in the page cache */
	return 20;
}

static size_t mode_page_control(uint8_t *p, int pc)
{
	memset(p, 0, 12);
	p[0] = 0x0a;
	p[1] = 0x0a;
	if (pc != 1)
		p[3] = 0x10;	/* unrestricted reordering */
	return 12;
}

static void mode_sense(struct th *h, struct th_cmd *c)
{
	const uint8_t *cdb = c->cdb;
	bool ten = cdb[0] == OP_MODE_SENSE_10;
	bool dbd = cdb[1] & 0x08;
	bool llbaa = ten && (cdb[1] & 0x10);
	int pc = cdb[2] >> 6;
	uint8_t page = cdb[2] & 0x3f, sub = cdb[3];
	uint32_t alloc = ten ? get_be16(cdb + 7) : cdb[4];
	size_t hdr = ten ? 8 : 4, pos, bd_len = 0;
	uint8_t b[128];

	if (pc == 3) {
		th_set_sense(c, SK_ILLEGAL_REQUEST, ASC_SAVING_NOT_SUPP, 0);
		return;
	}
	if ((page != 0x08 && page != 0x0a && page != 0x3f) ||
	    (sub != 0x00 && sub != 0xff)) {
		invalid_field(c);
		return;
	}

	memset(b, 0, sizeof(b));
	pos = hdr;
	if (!dbd) {
		if (llbaa) {
			put_be64(b + pos, h->nr_blocks);
			put_be32(b + pos + 12, h->block_size);
			bd_len = 16;
		} else {
			put_be32(b + pos, h->nr_blocks > 0xffffffffull ?
				 0xffffffffu : (uint32_t)h->nr_blocks);
			put_be32(b + pos + 4, h->block_size & 0xffffff);
			bd_len = 8;
		}
		pos += bd_len;
	}
	if (page == 0x08 || page == 0x3f)
		pos += mode_page_caching(h, b + pos, pc);
	if (page == 0x0a || page == 0x3f)
		pos += mode_page_control(b + pos, pc);

	if (ten) {
		put_be16(b, (uint16_t)(pos - 2));
		b[3] = 0x10;			/* DPOFUA */
		b[4] = bd_len == 16 ? 0x01 : 0x00;	/* LONGLBA */
		put_be16(b + 6, (uint16_t)bd_len);
	} else {
		b[0] = (uint8_t)(pos - 1);
		b[2] = 0x10;			/* DPOFUA */
		b[3] = (uint8_t)bd_len;
	}
	reply(h, c, b, pos, alloc);
}

static void request_sense(struct th *h, struct th_cmd *c)
{
	uint8_t b[TH_SENSE_LEN];

	memset(b, 0, sizeof(b));
	if (c->cdb[1] & 0x01) {		/* descriptor format */
		b[0] = 0x72;
		reply(h, c, b, 8, c->cdb[4]);
		return;
	}
	b[0] = 0x70;
	b[7] = TH_SENSE_LEN - 8;
	reply(h, c, b, sizeof(b), c->cdb[4]);
}

struct io_arg {
	struct th *h;
	uint64_t dev_off;
	bool write;
	int err;
};

static int io_seg(uint8_t *p, uint64_t len, uint64_t pos, void *arg)
{
	struct io_arg *a = arg;
	uint64_t off = a->dev_off + pos;

	if (a->h->ram) {
		if (a->write)
			memcpy(a->h->ram + off, p, len);
		else
			memcpy(p, a->h->ram + off, len);
		return 0;
	}
	while (len) {
		ssize_t r = a->write ?
			pwrite(a->h->file_fd, p, len, (off_t)off) :
			pread(a->h->file_fd, p, len, (off_t)off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			a->err = errno;
			return -1;
		}
		if (r == 0) {
			/* past the end of a short file: reads see zeroes */
			if (a->write) {
				a->err = EIO;
				return -1;
			}
			memset(p, 0, len);
			return 0;
		}
		p += r;
		off += (uint64_t)r;
		len -= (uint64_t)r;
	}
	return 0;
}

static bool short_read_applies(const struct th *h, uint8_t op)
{
	if (!h->opt.short_read)
		return false;
	if (h->opt.short_read_op != TH_OP_ANY)
		return h->opt.short_read_op == op;
	return op == OP_READ_6 || op == OP_READ_10 || op == OP_READ_12 ||
	       op == OP_READ_16;
}

/* Decode LBA and transfer length of the READ/WRITE/VERIFY families. */
static void decode_rw(const uint8_t *cdb, uint64_t *lba, uint32_t *nblk)
{
	switch (cdb[0] >> 5) {
	case 0:		/* 6-byte */
		*lba = (uint64_t)(cdb[1] & 0x1f) << 16 | get_be16(cdb + 2);
		*nblk = cdb[4] ? cdb[4] : 256;
		break;
	case 1:		/* 10-byte */
		*lba = get_be32(cdb + 2);
		*nblk = get_be16(cdb + 7);
		break;
	case 5:		/* 12-byte */
		*lba = get_be32(cdb + 2);
		*nblk = get_be32(cdb + 6);
		break;
	default:	/* 16-byte */
		*lba = get_be64(cdb + 2);
		*nblk = get_be32(cdb + 10);
		break;
	}
}

static bool lba_ok(struct th *h, struct th_cmd *c, uint64_t lba,
		   uint64_t nblk)
{
	if (lba >= h->nr_blocks || nblk > h->nr_blocks - lba) {
		th_set_sense(c, SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE, 0);
		return false;
	}
	return true;
}

static void read_write(struct th *h, struct th_cmd *c, bool write)
{
	const uint8_t *cdb = c->cdb;
	uint64_t lba, bytes, avail;
	uint32_t nblk;
	struct io_arg a;
	bool fua;

	decode_rw(cdb, &lba, &nblk);
	if (!lba_ok(h, c, lba, nblk))
		return;
	bytes = (uint64_t)nblk * h->block_size;
	avail = th_data_len(c, false);
	if (avail < bytes) {
		th_dbg("cmd %u: %llu byte transfer but %llu bytes of buffer\n",
		       c->cmd_id, (unsigned long long)bytes,
		       (unsigned long long)avail);
		bytes = avail;
	}
	if (!write && short_read_applies(h, cdb[0]) &&
	    bytes > h->opt.short_read)
		bytes = h->opt.short_read;

	a.h = h;
	a.dev_off = lba * h->block_size;
	a.write = write;
	a.err = 0;
	if (th_for_each_seg(h, c, false, 0, bytes, io_seg, &a)) {
		th_err("cmd %u: %s at lba %llu: %s\n", c->cmd_id,
		       write ? "write" : "read", (unsigned long long)lba,
		       strerror(a.err));
		th_set_sense(c, SK_MEDIUM_ERROR,
			     write ? ASC_WRITE_ERROR : ASC_READ_ERROR, 0);
		return;
	}
	if (write) {
		c->out_bytes = bytes;
		fua = cdb[0] != OP_WRITE_6 && (cdb[1] & 0x08);
		if ((fua || cdb[0] == OP_WRITE_VERIFY_10 ||
		     cdb[0] == OP_WRITE_VERIFY_12 ||
		     cdb[0] == OP_WRITE_VERIFY_16) &&
		    h->file_fd >= 0 && fdatasync(h->file_fd) < 0) {
			th_set_sense(c, SK_MEDIUM_ERROR, ASC_WRITE_ERROR, 0);
			return;
		}
	} else {
		c->in_bytes = bytes;
	}
}

static void verify(struct th *h, struct th_cmd *c)
{
	uint64_t lba;
	uint32_t nblk;

	decode_rw(c->cdb, &lba, &nblk);
	lba_ok(h, c, lba, nblk);
	/* with BYTCHK the Data-Out is simply accepted */
	c->out_bytes = th_data_len(c, false);
}

static void sync_cache(struct th *h, struct th_cmd *c)
{
	if (h->file_fd >= 0 && fdatasync(h->file_fd) < 0)
		th_set_sense(c, SK_MEDIUM_ERROR, ASC_WRITE_ERROR, 0);
}

static void exec_op(struct th *h, struct th_cmd *c)
{
	uint8_t op = c->cdb[0];

	if (c->bad) {
		th_set_sense(c, SK_HARDWARE_ERROR, ASC_INTERNAL_FAILURE, 0);
		return;
	}
	if (h->opt.ignore_op == TH_OP_ANY || h->opt.ignore_op == op) {
		/* never completed, so never performed either */
		c->ignore = true;
		return;
	}
	if (h->opt.sense_on &&
	    (h->opt.sense_op == TH_OP_ANY || h->opt.sense_op == op)) {
		th_set_sense(c, h->opt.sense_key, h->opt.sense_asc,
			     h->opt.sense_ascq);
		return;
	}

	switch (op) {
	case OP_TEST_UNIT_READY:
	case OP_START_STOP_UNIT:
		break;
	case OP_REQUEST_SENSE:
		request_sense(h, c);
		break;
	case OP_INQUIRY:
		inquiry(h, c);
		break;
	case OP_READ_CAPACITY_10:
		read_capacity_10(h, c);
		break;
	case OP_SERVICE_ACTION_IN_16:
		if ((c->cdb[1] & 0x1f) == SAI_READ_CAPACITY_16)
			read_capacity_16(h, c);
		else
			invalid_field(c);
		break;
	case OP_MODE_SENSE_6:
	case OP_MODE_SENSE_10:
		mode_sense(h, c);
		break;
	case OP_READ_6:
	case OP_READ_10:
	case OP_READ_12:
	case OP_READ_16:
		read_write(h, c, false);
		break;
	case OP_WRITE_6:
	case OP_WRITE_10:
	case OP_WRITE_12:
	case OP_WRITE_16:
	case OP_WRITE_VERIFY_10:
	case OP_WRITE_VERIFY_12:
	case OP_WRITE_VERIFY_16:
		read_write(h, c, true);
		break;
	case OP_VERIFY_10:
	case OP_VERIFY_12:
	case OP_VERIFY_16:
		verify(h, c);
		break;
	case OP_SYNC_CACHE_10:
	case OP_SYNC_CACHE_16:
		sync_cache(h, c);
		break;
	default:
		if (h->opt.unknown_op) {
			c->uflags |= TCMU_UFLAG_UNKNOWN_OP;
		} else {
			th_set_sense(c, SK_ILLEGAL_REQUEST, ASC_INVALID_OPCODE,
				     0);
		}
		break;
	}
}

void th_scsi_exec(struct th *h, struct th_cmd *c)
{
	c->status = SAM_GOOD;
	c->uflags = 0;
	c->read_len = 0;
	c->in_bytes = 0;
	c->out_bytes = 0;

	exec_op(h, c);
	if (c->ignore)
		return;
	if (c->status == SAM_GOOD && c->in_bytes &&
	    (h->opt.read_len || short_read_applies(h, c->cdb[0]))) {
		c->uflags |= TCMU_UFLAG_READ_LEN;
		c->read_len = (uint32_t)c->in_bytes;
	}
	if (h->opt.keep_buf)
		c->uflags |= TCMU_UFLAG_KEEP_BUF;
}
