// SPDX-License-Identifier: GPL-2.0
/*
 * tcmu-handler: a self-contained userspace handler for a TCMU ("user")
 * backstore, talking to the kernel through the raw UIO device and its
 * shared memory region only. Meant for tests and benchmarks: the SCSI
 * side is a plain disk, and a set of options makes it misbehave on
 * purpose (out-of-order completion, delays, injected sense, short reads,
 * kept buffers, commands never completed, sudden exit or crash), and
 * --fuzz turns it into a hostile handler (fuzz.c).
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "tcmu-handler.h"

#define UIO_SYSFS	"%s/sys/class/uio"
#define CFS_CORE	"%s/sys/kernel/config/target/core"
#define NAME_PREFIX	"tcm-user/"

int th_verbose;
static volatile sig_atomic_t want_status;

/*
 * Test hook: TCMU_HANDLER_SYSROOT=DIR reads sysfs, configfs and /dev below
 * DIR, so the real main path can run on a host without a TCMU device (the
 * "device" is then a regular file laid out like the shared region).
 */
static const char *sysroot = "";

void th_log(int level, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	if (level > th_verbose)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fprintf(stderr, "tcmu-handler[%d]: %s", (int)getpid(), buf);
}

static void usage(FILE *f)
{
	fprintf(f,
"usage: tcmu-handler (--uio /dev/uioN | --name NAME) [options]\n"
"       tcmu-handler --selftest [-v]\n"
"\n"
"device:\n"
"  --uio PATH            UIO device node to serve\n"
"  --name NAME           find the uio device of TCMU device NAME\n"
"  --wait SEC            wait up to SEC seconds for the device, and for a\n"
"                        previous handler to let go of it (default 0)\n"
"storage:\n"
"  --size BYTES          device size (k/m/g/t suffixes); default: configfs\n"
"  --file PATH           file or block device backing store (default RAM)\n"
"  --block-size N        logical block size; default: configfs, else 512\n"
"  --max-sectors N       max transfer (blocks) in VPD 0xb0; default configfs\n"
"behaviour (opcodes and sense values are hexadecimal):\n"
"  --ooo                 complete each batch in reverse order\n"
"  --delay-ms N          sleep N ms before each completion\n"
"  --threads N           N worker threads (default 1: inline)\n"
"  --sense K/ASC/ASCQ[:OP]  fail every command (or opcode OP) with this sense\n"
"  --read-len            report TCMU_UFLAG_READ_LEN/read_len on Data-In\n"
"  --short-read N[:OP]   return at most N bytes for READs (or opcode OP)\n"
"  --keep-buf            complete with TCMU_UFLAG_KEEP_BUF\n"
"  --kept-log FILE       append kept cmd_ids to FILE, one per line\n"
"  --free-kept           free kept buffers through configfs right away\n"
"  --unknown-op          flag unsupported opcodes TCMU_UFLAG_UNKNOWN_OP\n"
"  --ignore OP|all       take such commands but never complete them\n"
"  --exit-after N        _exit(0) right after the N-th completion\n"
"  --crash-after N       abort() right after the N-th completion\n"
"  --fuzz[=SEED]         hostile handler: misbehave at random while serving\n"
"                        (seed printed; default from the clock, or\n"
"                        $TCMU_FUZZ_SEED); see --help for the actions\n"
"  --fuzz-rate N         misbehaviours per second (default 5; 0: at every\n"
"                        chance; $TCMU_FUZZ_RATE)\n"
"  --fuzz-ops LIST       actions or groups to use, -NAME to leave one out\n"
"                        (default all; $TCMU_FUZZ_OPS)\n"
"  --fuzz-max N          stop misbehaving after N actions ($TCMU_FUZZ_MAX)\n"
"  --fuzz-recover MS     reset a ring we may have broken within MS ms\n"
"                        (default 300; -1: never, wait for SIGUSR2;\n"
"                        $TCMU_FUZZ_RECOVER_MS)\n"
"reporting:\n"
"  --status FILE         write counters to FILE on exit and on SIGUSR1\n"
"  --tmr-log FILE        append \"TMR type=N ids=a,b\" per TMR entry\n"
"  --pidfile FILE        write our pid once the ring is mapped\n"
"  -v, --verbose         more logging to stderr (repeat for per command)\n"
"  --foreground          stay in the foreground (always the case)\n"
"  --selftest            run the built-in tests against a simulated ring\n"
"signals: SIGTERM/SIGINT stop, SIGUSR1 writes --status, SIGUSR2 tells us\n"
"the ring was reset (action/reset_ring) and to start over from it\n");
	if (f == stdout)
		th_fuzz_usage(f);
}

enum {
	O_UIO = 256, O_NAME, O_WAIT, O_SIZE, O_FILE, O_BS, O_MAXSEC, O_OOO,
	O_DELAY, O_THREADS, O_SENSE, O_READLEN, O_SHORT, O_KEEP, O_KEPTLOG,
	O_FREEKEPT, O_UNKNOWN, O_IGNORE, O_EXIT, O_CRASH, O_FUZZ, O_STATUS,
	O_TMRLOG, O_PIDFILE, O_FG, O_SELFTEST, O_FUZZ_RATE, O_FUZZ_OPS,
	O_FUZZ_MAX, O_FUZZ_RECOVER,
};

static const struct option long_opts[] = {
	{ "uio", required_argument, NULL, O_UIO },
	{ "name", required_argument, NULL, O_NAME },
	{ "wait", required_argument, NULL, O_WAIT },
	{ "size", required_argument, NULL, O_SIZE },
	{ "file", required_argument, NULL, O_FILE },
	{ "block-size", required_argument, NULL, O_BS },
	{ "max-sectors", required_argument, NULL, O_MAXSEC },
	{ "ooo", no_argument, NULL, O_OOO },
	{ "delay-ms", required_argument, NULL, O_DELAY },
	{ "threads", required_argument, NULL, O_THREADS },
	{ "sense", required_argument, NULL, O_SENSE },
	{ "read-len", no_argument, NULL, O_READLEN },
	{ "short-read", required_argument, NULL, O_SHORT },
	{ "keep-buf", no_argument, NULL, O_KEEP },
	{ "kept-log", required_argument, NULL, O_KEPTLOG },
	{ "free-kept", no_argument, NULL, O_FREEKEPT },
	{ "unknown-op", no_argument, NULL, O_UNKNOWN },
	{ "ignore", required_argument, NULL, O_IGNORE },
	{ "exit-after", required_argument, NULL, O_EXIT },
	{ "crash-after", required_argument, NULL, O_CRASH },
	{ "fuzz", optional_argument, NULL, O_FUZZ },
	{ "fuzz-rate", required_argument, NULL, O_FUZZ_RATE },
	{ "fuzz-ops", required_argument, NULL, O_FUZZ_OPS },
	{ "fuzz-max", required_argument, NULL, O_FUZZ_MAX },
	{ "fuzz-recover", required_argument, NULL, O_FUZZ_RECOVER },
	{ "status", required_argument, NULL, O_STATUS },
	{ "tmr-log", required_argument, NULL, O_TMRLOG },
	{ "pidfile", required_argument, NULL, O_PIDFILE },
	{ "verbose", no_argument, NULL, 'v' },
	{ "foreground", no_argument, NULL, O_FG },
	{ "selftest", no_argument, NULL, O_SELFTEST },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static const char *opt_name(int val)
{
	const struct option *lo;

	for (lo = long_opts; lo->name; lo++)
		if (lo->val == val)
			return lo->name;
	return "?";
}

static int parse_u64(const char *s, uint64_t *out, bool suffix)
{
	unsigned long long v;
	char *end;

	if (!s || !*s || *s == '-')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno)
		return -1;
	if (suffix && *end) {
		unsigned int shift;

		switch (*end) {
		case 'k': case 'K': shift = 10; break;
		case 'm': case 'M': shift = 20; break;
		case 'g': case 'G': shift = 30; break;
		case 't': case 'T': shift = 40; break;
		default: return -1;
		}
		if (v > (ULLONG_MAX >> shift))
			return -1;
		v <<= shift;
		end++;
	}
	if (*end)
		return -1;
	*out = v;
	return 0;
}

static int parse_u32(const char *s, uint32_t *out)
{
	uint64_t v;

	if (parse_u64(s, &v, false) || v > UINT32_MAX)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

/* A hexadecimal byte, "0x" optional. Stops at *end. */
static int parse_hex8(const char *s, char **end, uint8_t *out)
{
	unsigned long v;

	if (!isxdigit((unsigned char)*s))
		return -1;
	v = strtoul(s, end, 16);
	if (v > 0xff)
		return -1;
	*out = (uint8_t)v;
	return 0;
}

static int parse_opcode(const char *s, int *op)
{
	uint8_t v;
	char *end;

	if (parse_hex8(s, &end, &v) || *end)
		return -1;
	*op = v;
	return 0;
}

/* KEY/ASC/ASCQ[:OPCODE], all hex */
static int parse_sense(const char *s, struct th_opts *o)
{
	char *end;

	if (parse_hex8(s, &end, &o->sense_key) || *end != '/' ||
	    o->sense_key > 0xf)
		return -1;
	if (parse_hex8(end + 1, &end, &o->sense_asc) || *end != '/')
		return -1;
	if (parse_hex8(end + 1, &end, &o->sense_ascq))
		return -1;
	o->sense_op = TH_OP_ANY;
	if (*end == ':')
		return parse_opcode(end + 1, &o->sense_op);
	return *end ? -1 : 0;
}

static int parse_short_read(char *s, struct th_opts *o)
{
	char *colon = strchr(s, ':');
	uint64_t v;

	o->short_read_op = TH_OP_ANY;
	if (colon) {
		*colon = '\0';
		if (parse_opcode(colon + 1, &o->short_read_op))
			return -1;
	}
	if (parse_u64(s, &v, true) || !v || v > UINT32_MAX)
		return -1;
	o->short_read = (uint32_t)v;
	return 0;
}

static int read_sysfs(const char *path, char *buf, size_t len)
{
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		buf[--n] = '\0';
	return 0;
}

static int read_sysfs_u64(const char *path, uint64_t *v)
{
	char buf[64];

	if (read_sysfs(path, buf, sizeof(buf)))
		return -1;
	return parse_u64(buf, v, false);
}

struct dev_info {
	char uio[64];		/* "uioN" */
	char node[PATH_MAX];	/* "/dev/uioN" */
	bool tcmu;		/* name follows the tcm-user format */
	unsigned int hba;
	char name[256];		/* TCMU device name */
};

/* Split "tcm-user/<hba>/<name>[/<config>]". */
static bool parse_uio_name(const char *s, struct dev_info *di)
{
	const char *p, *slash;
	char *end;
	unsigned long hba;
	size_t len;

	if (strncmp(s, NAME_PREFIX, strlen(NAME_PREFIX)))
		return false;
	p = s + strlen(NAME_PREFIX);
	if (!isdigit((unsigned char)*p))
		return false;
	hba = strtoul(p, &end, 10);
	if (*end != '/' || hba > UINT_MAX)
		return false;
	p = end + 1;
	slash = strchr(p, '/');
	len = slash ? (size_t)(slash - p) : strlen(p);
	if (!len || len >= sizeof(di->name))
		return false;
	memcpy(di->name, p, len);
	di->name[len] = '\0';
	di->hba = (unsigned int)hba;
	di->tcmu = true;
	return true;
}

static int describe_uio(const char *uio, struct dev_info *di)
{
	char path[PATH_MAX], name[1024];

	memset(di, 0, sizeof(*di));
	snprintf(di->uio, sizeof(di->uio), "%s", uio);
	snprintf(di->node, sizeof(di->node), "%s/dev/%s", sysroot, uio);
	snprintf(path, sizeof(path), UIO_SYSFS "/%s/name", sysroot, uio);
	if (read_sysfs(path, name, sizeof(name)))
		return -1;
	parse_uio_name(name, di);
	return 0;
}

static int find_by_name(const char *want, struct dev_info *di)
{
	struct dirent *de;
	char path[PATH_MAX];
	int found = 0;
	DIR *d;

	snprintf(path, sizeof(path), UIO_SYSFS, sysroot);
	d = opendir(path);

	if (!d)
		return -1;
	while ((de = readdir(d))) {
		struct dev_info cand;

		if (strncmp(de->d_name, "uio", 3))
			continue;
		if (describe_uio(de->d_name, &cand) || !cand.tcmu ||
		    strcmp(cand.name, want))
			continue;
		if (found++)
			th_err("several uio devices carry name %s; using %s\n",
			       want, di->uio);
		else
			*di = cand;
	}
	closedir(d);
	return found ? 0 : -1;
}

static int map_size_of(const struct dev_info *di, uint64_t *size)
{
	char path[PATH_MAX], buf[64];
	unsigned long long v;
	char *end;

	snprintf(path, sizeof(path), UIO_SYSFS "/%s/maps/map0/size", sysroot,
		 di->uio);
	if (read_sysfs(path, buf, sizeof(buf)))
		return -1;
	errno = 0;
	v = strtoull(buf, &end, 16);
	if (errno || *end || !v)
		return -1;
	*size = v;
	return 0;
}

/* Create the device node from sysfs when devtmpfs did not. */
static void ensure_node(const struct dev_info *di)
{
	char path[PATH_MAX], buf[32];
	unsigned int ma, mi;

	if (!access(di->node, F_OK))
		return;
	snprintf(path, sizeof(path), UIO_SYSFS "/%s/dev", sysroot, di->uio);
	if (read_sysfs(path, buf, sizeof(buf)) ||
	    sscanf(buf, "%u:%u", &ma, &mi) != 2)
		return;
	if (mknod(di->node, S_IFCHR | 0600, makedev(ma, mi)))
		th_err("mknod %s: %s\n", di->node, strerror(errno));
}

static double now_sec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int find_device(const struct th_opts *o, struct dev_info *di,
		       uint64_t *map_size)
{
	double deadline = now_sec() + o->wait_sec;

	for (;;) {
		bool ok;

		if (o->uio_path) {
			const char *b = strrchr(o->uio_path, '/');

			ok = !describe_uio(b ? b + 1 : o->uio_path, di);
			if (ok)
				snprintf(di->node, sizeof(di->node), "%s",
					 o->uio_path);
		} else {
			ok = !find_by_name(o->name, di);
		}
		if (ok && !map_size_of(di, map_size)) {
			if (!o->uio_path)
				ensure_node(di);
			if (!access(di->node, R_OK | W_OK))
				return 0;
		}
		if (th_stop || now_sec() >= deadline)
			break;
		usleep(100 * 1000);
	}
	th_err("device %s not found\n", o->uio_path ? o->uio_path : o->name);
	return -1;
}

/* Fill in what the command line left open from the device's configfs. */
static void configfs_defaults(struct th *h, const struct dev_info *di)
{
	char path[PATH_MAX + 64], buf[4096];
	uint64_t v;

	if (!di->tcmu)
		return;
	snprintf(h->cfs_dir, sizeof(h->cfs_dir), CFS_CORE "/user_%u/%s",
		 sysroot, di->hba, di->name);
	if (access(h->cfs_dir, F_OK)) {
		th_info("no configfs directory %s\n", h->cfs_dir);
		h->cfs_dir[0] = '\0';
		return;
	}
	if (!h->opt.size && !h->opt.file) {
		snprintf(path, sizeof(path), "%s/attrib/dev_size", h->cfs_dir);
		if (!read_sysfs_u64(path, &v) && v) {
			h->opt.size = v;
		} else {
			char *p;

			snprintf(path, sizeof(path), "%s/info", h->cfs_dir);
			if (!read_sysfs(path, buf, sizeof(buf)) &&
			    (p = strstr(buf, "Size: ")))
				h->opt.size = strtoull(p + 6, NULL, 10);
		}
	}
	if (!h->opt.block_size) {
		snprintf(path, sizeof(path), "%s/attrib/block_size",
			 h->cfs_dir);
		if (read_sysfs_u64(path, &v) || !v || v > UINT32_MAX) {
			snprintf(path, sizeof(path), "%s/attrib/hw_block_size",
				 h->cfs_dir);
			if (read_sysfs_u64(path, &v) || v > UINT32_MAX)
				v = 0;
		}
		h->opt.block_size = (uint32_t)v;
	}
	if (!h->opt.max_sectors) {
		snprintf(path, sizeof(path), "%s/attrib/hw_max_sectors",
			 h->cfs_dir);
		if (!read_sysfs_u64(path, &v) && v <= UINT32_MAX)
			h->opt.max_sectors = (uint32_t)v;
	}
}

static int uio_kick(struct th *h)
{
	uint32_t zero = 0;

	if (write(h->uio_fd, &zero, sizeof(zero)) != sizeof(zero)) {
		th_err("kick: write: %s\n", strerror(errno));
		return -1;
	}
	return 0;
}

static void on_stop(int sig)
{
	(void)sig;
	th_stop = 1;
}

static void on_usr1(int sig)
{
	(void)sig;
	want_status = 1;
}

static void on_usr2(int sig)
{
	(void)sig;
	th_resync = 1;
}

static void setup_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	/* no SA_RESTART: a signal must cut poll() short */
	sa.sa_handler = on_stop;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	sa.sa_handler = on_usr2;
	sigaction(SIGUSR2, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
}

static int cfs_action(struct th *h, const char *name, unsigned int val)
{
	char path[700], buf[16];
	int fd, n, ret = 0;

	if (!h->cfs_dir[0])
		return -ENOENT;
	snprintf(path, sizeof(path), "%s/action/%s", h->cfs_dir, name);
	n = snprintf(buf, sizeof(buf), "%u", val);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (write(fd, buf, (size_t)n) != n)
		ret = -errno;
	close(fd);
	return ret;
}

static int cfs_reset_ring(struct th *h, int level)
{
	return cfs_action(h, "reset_ring", (unsigned int)level);
}

static int cfs_free_kept(struct th *h, uint16_t id)
{
	return cfs_action(h, "free_kept_buf", id);
}

/* Read a number option; the environment variable fills in defaults. */
static int parse_fuzz_opt(int which, const char *arg, struct th_opts *o)
{
	char *end;
	long l;

	switch (which) {
	case O_FUZZ:
		if (!arg || !*arg) {
			o->fuzz_seed = (uint64_t)time(NULL) * 1000003u ^
				       (uint64_t)getpid();
			return 0;
		}
		return parse_u64(arg, &o->fuzz_seed, false);
	case O_FUZZ_RATE:
		o->fuzz_rate = strtod(arg, &end);
		return end == arg || *end || !(o->fuzz_rate >= 0) ||
		       o->fuzz_rate > 1e6;
	case O_FUZZ_OPS:
		o->fuzz_ops = arg;
		return 0;
	case O_FUZZ_MAX:
		return parse_u64(arg, &o->fuzz_max, false);
	case O_FUZZ_RECOVER:
		errno = 0;
		l = strtol(arg, &end, 0);
		if (errno || end == arg || *end || l < -1 || l > 3600000)
			return -1;
		o->fuzz_recover_ms = (int)l;
		return 0;
	}
	return -1;
}

static int fuzz_env_defaults(struct th_opts *o)
{
	static const struct { const char *env; int opt; } map[] = {
		{ "TCMU_FUZZ_RATE", O_FUZZ_RATE },
		{ "TCMU_FUZZ_OPS", O_FUZZ_OPS },
		{ "TCMU_FUZZ_MAX", O_FUZZ_MAX },
		{ "TCMU_FUZZ_RECOVER_MS", O_FUZZ_RECOVER },
	};
	unsigned int i;

	o->fuzz_rate = 5;
	o->fuzz_recover_ms = 300;
	for (i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		const char *v = getenv(map[i].env);

		if (v && *v && parse_fuzz_opt(map[i].opt, v, o)) {
			th_err("invalid %s: %s\n", map[i].env, v);
			return -1;
		}
	}
	return 0;
}

static int write_pidfile(const char *path)
{
	char tmp[PATH_MAX];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (!f)
		return -1;
	fprintf(f, "%d\n", (int)getpid());
	if (fclose(f) || rename(tmp, path))
		return -1;
	return 0;
}

/* Returns the process exit status. */
static int serve(struct th *h, const struct dev_info *di)
{
	int rc = 0;

	while (!th_stop) {
		struct pollfd pfd = { .fd = h->uio_fd, .events = POLLIN };
		int r;

		/*
		 * Look at the ring first: entries may be waiting from before
		 * we opened the device, and timeouts get a look too.
		 */
		if (th_service(h) < 0) {
			th_err("command ring is broken, giving up\n");
			rc = 3;
			break;
		}
		if (want_status) {
			want_status = 0;
			th_write_status(h);
		}
		r = poll(&pfd, 1, h->fuzz ? th_fuzz_poll_ms(h) : 1000);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			th_err("poll: %s\n", strerror(errno));
			rc = 1;
			break;
		}
		if (r > 0 && (pfd.revents & (POLLERR | POLLHUP | POLLNVAL))) {
			th_info("%s went away\n", di->node);
			break;
		}
		if (r > 0 && (pfd.revents & POLLIN)) {
			uint32_t count;
			ssize_t n = read(h->uio_fd, &count, sizeof(count));

			if (n < 0 && errno != EINTR && errno != EAGAIN) {
				th_info("%s: read: %s; device gone\n",
					di->node, strerror(errno));
				break;
			}
			pthread_mutex_lock(&h->lock);
			h->st.wakeups++;
			pthread_mutex_unlock(&h->lock);
		}
	}
	return rc;
}

int main(int argc, char **argv)
{
	struct th h;
	struct th_opts *o = &h.opt;
	struct dev_info di;
	bool selftest = false;
	uint64_t map_size = 0, v;
	double t_start;
	void *map;
	int c, rc;

	t_start = now_sec();
	memset(&h, 0, sizeof(h));
	h.file_fd = -1;
	h.uio_fd = -1;
	o->threads = 1;
	o->ignore_op = TH_IGNORE_OFF;
	o->sense_op = TH_OP_ANY;
	o->short_read_op = TH_OP_ANY;
	if (fuzz_env_defaults(o))
		return 1;

	while ((c = getopt_long(argc, argv, "vh", long_opts, NULL)) != -1) {
		int bad = 0;

		switch (c) {
		case O_UIO: o->uio_path = optarg; break;
		case O_NAME: o->name = optarg; break;
		case O_WAIT: {
			char *end;

			o->wait_sec = strtod(optarg, &end);
			bad = end == optarg || *end || !(o->wait_sec >= 0);
			break;
		}
		case O_SIZE: bad = parse_u64(optarg, &o->size, true); break;
		case O_FILE: o->file = optarg; break;
		case O_BS: bad = parse_u32(optarg, &o->block_size); break;
		case O_MAXSEC: bad = parse_u32(optarg, &o->max_sectors); break;
		case O_OOO: o->ooo = true; break;
		case O_DELAY:
			bad = parse_u64(optarg, &v, false) || v > 3600000;
			o->delay_ms = (unsigned int)v;
			break;
		case O_THREADS:
			bad = parse_u64(optarg, &v, false) || !v || v > 256;
			o->threads = (unsigned int)v;
			break;
		case O_SENSE:
			bad = parse_sense(optarg, o);
			o->sense_on = true;
			break;
		case O_READLEN: o->read_len = true; break;
		case O_SHORT: bad = parse_short_read(optarg, o); break;
		case O_KEEP: o->keep_buf = true; break;
		case O_KEPTLOG: o->kept_log = optarg; break;
		case O_FREEKEPT: o->free_kept = true; break;
		case O_UNKNOWN: o->unknown_op = true; break;
		case O_IGNORE:
			if (!strcmp(optarg, "all"))
				o->ignore_op = TH_OP_ANY;
			else
				bad = parse_opcode(optarg, &o->ignore_op);
			break;
		case O_EXIT:
			bad = parse_u64(optarg, &o->exit_after, false) ||
			      !o->exit_after;
			break;
		case O_CRASH:
			bad = parse_u64(optarg, &o->crash_after, false) ||
			      !o->crash_after;
			break;
		case O_FUZZ:
			o->fuzz = true;
			if (!optarg && getenv("TCMU_FUZZ_SEED"))
				optarg = getenv("TCMU_FUZZ_SEED");
			bad = parse_fuzz_opt(c, optarg, o);
			break;
		case O_FUZZ_RATE:
		case O_FUZZ_OPS:
		case O_FUZZ_MAX:
		case O_FUZZ_RECOVER:
			bad = parse_fuzz_opt(c, optarg, o);
			break;
		case O_STATUS: o->status_file = optarg; break;
		case O_TMRLOG: o->tmr_log = optarg; break;
		case O_PIDFILE: o->pidfile = optarg; break;
		case 'v': th_verbose++; o->verbose++; break;
		case O_FG: break;
		case O_SELFTEST: selftest = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 1;
		}
		if (bad) {
			th_err("invalid argument for --%s: %s\n",
			       opt_name(c), optarg);
			return 1;
		}
	}
	if (optind < argc) {
		usage(stderr);
		return 1;
	}
	if (selftest)
		return th_selftest(th_verbose) ? 1 : 0;
	if (o->fuzz_ops) {
		bool en[TH_FUZZ_MAX_OPS];
		char err[128];

		if (th_fuzz_parse_ops(o->fuzz_ops, en, err, sizeof(err))) {
			th_err("--fuzz-ops: %s\n", err);
			return 1;
		}
	}
	if (!!o->uio_path == !!o->name) {
		th_err("exactly one of --uio and --name is required\n");
		usage(stderr);
		return 1;
	}

	if (getenv("TCMU_HANDLER_SYSROOT"))
		sysroot = getenv("TCMU_HANDLER_SYSROOT");
	setup_signals();
	if (find_device(o, &di, &map_size))
		return 1;
	configfs_defaults(&h, &di);
	if (th_backend_open(&h))
		return 1;
	if (di.tcmu) {
		char ident[300];

		snprintf(ident, sizeof(ident), "%u/%s", di.hba, di.name);
		th_ident_init(&h, ident);
	} else {
		th_ident_init(&h, di.node);
	}

	/*
	 * With a fake root, kicks must not land on the mapped bytes. A device
	 * still held by another handler refuses the open (EBUSY): with --wait
	 * we stand by until it lets go.
	 */
	for (c = 0;; c++) {
		h.uio_fd = open(di.node, O_RDWR | O_CLOEXEC |
				(*sysroot ? O_APPEND : 0));
		if (h.uio_fd >= 0 || errno != EBUSY || th_stop ||
		    now_sec() >= t_start + o->wait_sec)
			break;
		if (!c)
			th_err("%s is busy, standing by\n", di.node);
		usleep(5 * 1000);
	}
	if (h.uio_fd < 0) {
		th_err("%s: %s\n", di.node, strerror(errno));
		return 1;
	}
	map = mmap(NULL, map_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		   h.uio_fd, 0);
	if (map == MAP_FAILED) {
		th_err("mmap %s (%llu bytes): %s\n", di.node,
		       (unsigned long long)map_size, strerror(errno));
		return 1;
	}
	if (th_core_init(&h) || th_ring_attach(&h, map, map_size))
		return 1;
	h.kick = uio_kick;
	h.reset = cfs_reset_ring;
	h.free_kept = cfs_free_kept;
	h.uio_node = di.node;
	if (o->fuzz && th_fuzz_init(&h))
		return 1;
	th_info("serving %s (%s) size %llu block %u, %s store\n", di.node,
		di.tcmu ? di.name : "?", (unsigned long long)h.dev_size,
		h.block_size, h.file_fd >= 0 ? "file" : "RAM");

	if (th_workers_start(&h))
		return 1;
	if (o->pidfile && write_pidfile(o->pidfile)) {
		th_err("%s: %s\n", o->pidfile, strerror(errno));
		return 1;
	}

	rc = serve(&h, &di);

	th_workers_stop(&h);
	th_write_status(&h);
	if (o->pidfile)
		unlink(o->pidfile);
	munmap(h.base, h.map_size);
	close(h.uio_fd);
	th_backend_close(&h);
	if (h.fuzz)
		th_fuzz_fini(&h);
	th_core_fini(&h);
	return rc;
}
