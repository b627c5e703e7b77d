// SPDX-License-Identifier: GPL-2.0
/*
 * tcmu_nl_listener: a minimal TCMU netlink daemon for the selftests.
 *
 * Speaks generic netlink on raw AF_NETLINK sockets (no libnl): resolves
 * the "TCM-USER" family and its "config" multicast group with
 * CTRL_CMD_GETFAMILY, prints every event it receives on one line, and
 * answers with the matching *_DONE carrying a status picked on the
 * command line.
 *
 * Usage:
 *   tcmu_nl_listener family
 *       print the family as the generic netlink controller reports it:
 *         family name=TCM-USER id=N version=N hdrsize=N maxattr=N
 *         op cmd=N flags=0xN            (one line per operation)
 *         group name=config id=N        (one line per multicast group)
 *   tcmu_nl_listener features VALUE
 *       send SET_FEATURES with SUPP_KERN_CMD_REPLY=VALUE (0..255)
 *   tcmu_nl_listener reply TYPE DEVICE_ID STATUS [--no-status] [--no-id]
 *       send one *_DONE: TYPE is added, removed, reconfig (the DONE of
 *       that event) or a raw generic netlink command number; --no-status
 *       and --no-id leave the attribute out
 *   tcmu_nl_listener listen [OPTION...]
 *       subscribe to the config group and report events until killed:
 *       -o FILE            append the report to FILE (default stdout)
 *       --ready FILE       create FILE once subscribed
 *       --features VALUE   send SET_FEATURES first (before subscribing)
 *       --reply TYPE=ST    answer events of TYPE (added, removed, reconfig
 *                          or all) with status ST (an integer, e.g. -5),
 *                          or not at all (ST "none", the default)
 *       --nth N=ST         the N-th event (counted from 1, any type) gets
 *                          ST instead (wins over --reply)
 *       --delay MS         wait MS milliseconds before each answer
 *       --decoys           before each answer, send three replies that
 *                          must be refused: the right DONE for another
 *                          device id, the wrong DONE for this id, and a
 *                          DONE without CMD_STATUS; they carry status
 *                          -ENOTTY so that one wrongly accepted shows
 *                          up in the configfs write
 *       --count N          exit after N events
 *       --max-time SEC     exit after SEC seconds (status 2)
 *
 * Report lines (values never contain spaces: bytes outside '!'..'~', '%'
 * and '\\' are written as %XX; an empty string is written as %00):
 *   ready family=ID group=ID
 *   event n=N cmd=NAME version=V device=S minor=U device_id=U
 *         [dev_cfg=S] [dev_size=U] [writecache=U] [attrK=HEX] nattrs=N
 *         uio=S          (the name in /sys/class/uio/uio<minor>/name when
 *                         the event was read, "-" when absent)
 *   reply n=N cmd=NAME device_id=U status=ST ack=ERR
 *   decoy n=N kind=wrong_id|wrong_cmd|no_status ack=ERR
 *   noreply n=N
 * ERR is 0 or the errno name (EPERM, ENODEV, ...) the kernel acked with.
 * The one-shot commands print "ack cmd=NAME ack=ERR".
 *
 * Exit status: 0 done (acked with 0 for the one-shot commands), 1 local
 * error (socket, family missing, bad usage), 2 --max-time reached, 3 the
 * kernel refused a one-shot request.
 */
/*
 * The uapi header pulls in <linux/uio.h>, whose struct iovec clashes with
 * glibc's: take the kernel's (the same layout) and tell glibc it exists.
 */
#include <linux/target_core_user.h>
#define __iovec_defined 1

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <linux/genetlink.h>
#include <linux/netlink.h>

#define FAMILY_NAME "TCM-USER"
#define GROUP_NAME "config"
#define NL_VERSION 2
#define BUF_SIZE 65536

struct family {
	uint16_t id;
	uint32_t version, hdrsize, maxattr;
	uint32_t group;
	int have_group;
};

static FILE *out;
static volatile sig_atomic_t stop;
static uint32_t seq = 1;

static const char *prog = "tcmu_nl_listener";

static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "%s: ", prog);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void emit(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfprintf(out, fmt, ap);
	va_end(ap);
	fflush(out);
}

static const char *const cmd_names[] = {
	[TCMU_CMD_UNSPEC] = "UNSPEC",
	[TCMU_CMD_ADDED_DEVICE] = "ADDED_DEVICE",
	[TCMU_CMD_REMOVED_DEVICE] = "REMOVED_DEVICE",
	[TCMU_CMD_RECONFIG_DEVICE] = "RECONFIG_DEVICE",
	[TCMU_CMD_ADDED_DEVICE_DONE] = "ADDED_DEVICE_DONE",
	[TCMU_CMD_REMOVED_DEVICE_DONE] = "REMOVED_DEVICE_DONE",
	[TCMU_CMD_RECONFIG_DEVICE_DONE] = "RECONFIG_DEVICE_DONE",
	[TCMU_CMD_SET_FEATURES] = "SET_FEATURES",
};

static const char *cmd_name(unsigned int cmd)
{
	static char buf[16];

	if (cmd < sizeof(cmd_names) / sizeof(cmd_names[0]) && cmd_names[cmd])
		return cmd_names[cmd];
	snprintf(buf, sizeof(buf), "CMD%u", cmd);
	return buf;
}

static const char *err_name(int err)
{
	static char buf[16];

	if (err < 0)
		err = -err;
	switch (err) {
	case 0: return "0";
	case EPERM: return "EPERM";
	case ENOENT: return "ENOENT";
	case ESRCH: return "ESRCH";
	case EINTR: return "EINTR";
	case EIO: return "EIO";
	case E2BIG: return "E2BIG";
	case EAGAIN: return "EAGAIN";
	case ENOMEM: return "ENOMEM";
	case EACCES: return "EACCES";
	case EFAULT: return "EFAULT";
	case EBUSY: return "EBUSY";
	case EEXIST: return "EEXIST";
	case ENODEV: return "ENODEV";
	case EINVAL: return "EINVAL";
	case ENOTTY: return "ENOTTY";
	case ERANGE: return "ERANGE";
	case EMSGSIZE: return "EMSGSIZE";
	case EPROTONOSUPPORT: return "EPROTONOSUPPORT";
	case EOPNOTSUPP: return "EOPNOTSUPP";
	case ENOBUFS: return "ENOBUFS";
	case ETIMEDOUT: return "ETIMEDOUT";
	}
	snprintf(buf, sizeof(buf), "E%d", err);
	return buf;
}

/* Write S (LEN bytes) with bytes outside '!'..'~', '%' and '\\' as %XX. */
static void put_escaped(const char *s, size_t len)
{
	size_t i;

	if (!len) {
		fputs("%00", out);	/* never an empty value */
		return;
	}
	for (i = 0; i < len; i++) {
		unsigned char c = s[i];

		if (c < '!' || c > '~' || c == '%' || c == '\\')
			fprintf(out, "%%%02X", c);
		else
			fputc(c, out);
	}
}

/* ---- message building ---------------------------------------------- */

struct msg {
	union {
		struct nlmsghdr nlh;
		char buf[4096];
	};
};

static void msg_init(struct msg *m, uint16_t type, uint16_t flags, uint8_t cmd,
		     uint8_t version)
{
	struct genlmsghdr *g;

	memset(m, 0, sizeof(*m));
	m->nlh.nlmsg_len = NLMSG_LENGTH(GENL_HDRLEN);
	m->nlh.nlmsg_type = type;
	m->nlh.nlmsg_flags = flags;
	m->nlh.nlmsg_seq = seq++;
	g = NLMSG_DATA(&m->nlh);
	g->cmd = cmd;
	g->version = version;
}

static void msg_put(struct msg *m, uint16_t type, const void *data, size_t len)
{
	struct nlattr *a;
	size_t total = NLA_HDRLEN + len;

	if (NLMSG_ALIGN(m->nlh.nlmsg_len) + NLA_ALIGN(total) > sizeof(m->buf))
		die("message too long");
	a = (struct nlattr *)(m->buf + NLMSG_ALIGN(m->nlh.nlmsg_len));
	a->nla_type = type;
	a->nla_len = total;
	memcpy((char *)a + NLA_HDRLEN, data, len);
	memset((char *)a + total, 0, NLA_ALIGN(total) - total);
	m->nlh.nlmsg_len = NLMSG_ALIGN(m->nlh.nlmsg_len) + NLA_ALIGN(total);
}

/* ---- sockets ---------------------------------------------------------- */

static int nl_open(void)
{
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
	int fd;

	fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_GENERIC);
	if (fd < 0)
		die("socket(AF_NETLINK, NETLINK_GENERIC): %s", strerror(errno));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("bind: %s", strerror(errno));
	return fd;
}

static void nl_send(int fd, struct msg *m)
{
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };	/* the kernel */
	ssize_t n;

	n = sendto(fd, m->buf, m->nlh.nlmsg_len, 0, (struct sockaddr *)&sa,
		   sizeof(sa));
	if (n < 0)
		die("sendto: %s", strerror(errno));
	if ((size_t)n != m->nlh.nlmsg_len)
		die("sendto: short write");
}

/*
 * Wait for the answer to request SEQ. For a request with NLM_F_ACK the
 * answer is an NLMSG_ERROR (error 0 = ack); a CTRL_CMD_GETFAMILY answers
 * with a message of its own, copied to REPLY. Returns 0 or -errno.
 */
static int nl_wait(int fd, uint32_t want_seq, char *reply, size_t reply_len)
{
	static char buf[BUF_SIZE];

	for (;;) {
		struct nlmsghdr *h;
		ssize_t n;

		n = recv(fd, buf, sizeof(buf), 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("recv: %s", strerror(errno));
		}
		for (h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n);
		     h = NLMSG_NEXT(h, n)) {
			if (h->nlmsg_seq != want_seq)
				continue;
			if (h->nlmsg_type == NLMSG_ERROR) {
				struct nlmsgerr *e = NLMSG_DATA(h);

				if (h->nlmsg_len < NLMSG_LENGTH(sizeof(*e)))
					die("short NLMSG_ERROR");
				return e->error;
			}
			if (reply && h->nlmsg_len <= reply_len) {
				memcpy(reply, h, h->nlmsg_len);
				return 0;
			}
		}
	}
}

/* ---- attribute walking ------------------------------------------------ */

typedef void (*attr_fn)(const struct nlattr *a, void *arg);

static void walk_attrs(const void *data, size_t len, attr_fn fn, void *arg)
{
	const struct nlattr *a = data;

	while (len >= NLA_HDRLEN && a->nla_len >= NLA_HDRLEN &&
	       a->nla_len <= len) {
		fn(a, arg);
		if ((size_t)NLA_ALIGN(a->nla_len) >= len)
			break;
		len -= NLA_ALIGN(a->nla_len);
		a = (const struct nlattr *)((const char *)a + NLA_ALIGN(a->nla_len));
	}
}

static const void *attr_data(const struct nlattr *a)
{
	return (const char *)a + NLA_HDRLEN;
}

static size_t attr_len(const struct nlattr *a)
{
	return a->nla_len - NLA_HDRLEN;
}

static uint32_t attr_u32(const struct nlattr *a)
{
	uint32_t v = 0;

	memcpy(&v, attr_data(a), attr_len(a) < 4 ? attr_len(a) : 4);
	return v;
}

/* ---- CTRL_CMD_GETFAMILY --------------------------------------------- */

struct fam_walk {
	struct family *f;
	int print;
	uint32_t op_id, op_flags;
	char grp_name[GENL_NAMSIZ];
	uint32_t grp_id;
};

static void op_attr(const struct nlattr *a, void *arg)
{
	struct fam_walk *w = arg;

	switch (a->nla_type & NLA_TYPE_MASK) {
	case CTRL_ATTR_OP_ID:
		w->op_id = attr_u32(a);
		break;
	case CTRL_ATTR_OP_FLAGS:
		w->op_flags = attr_u32(a);
		break;
	}
}

static void ops_entry(const struct nlattr *a, void *arg)
{
	struct fam_walk *w = arg;

	w->op_id = w->op_flags = 0;
	walk_attrs(attr_data(a), attr_len(a), op_attr, w);
	if (w->print)
		emit("op cmd=%u flags=0x%x\n", w->op_id, w->op_flags);
}

static void grp_attr(const struct nlattr *a, void *arg)
{
	struct fam_walk *w = arg;
	size_t n;

	switch (a->nla_type & NLA_TYPE_MASK) {
	case CTRL_ATTR_MCAST_GRP_NAME:
		n = attr_len(a) < sizeof(w->grp_name) ? attr_len(a) :
			sizeof(w->grp_name) - 1;
		memcpy(w->grp_name, attr_data(a), n);
		w->grp_name[n] = '\0';
		break;
	case CTRL_ATTR_MCAST_GRP_ID:
		w->grp_id = attr_u32(a);
		break;
	}
}

static void grps_entry(const struct nlattr *a, void *arg)
{
	struct fam_walk *w = arg;

	memset(w->grp_name, 0, sizeof(w->grp_name));
	w->grp_id = 0;
	walk_attrs(attr_data(a), attr_len(a), grp_attr, w);
	if (w->print) {
		fputs("group name=", out);
		put_escaped(w->grp_name, strlen(w->grp_name));
		emit(" id=%u\n", w->grp_id);
	}
	if (!strcmp(w->grp_name, GROUP_NAME)) {
		w->f->group = w->grp_id;
		w->f->have_group = 1;
	}
}

static void fam_attr(const struct nlattr *a, void *arg)
{
	struct fam_walk *w = arg;

	switch (a->nla_type & NLA_TYPE_MASK) {
	case CTRL_ATTR_FAMILY_ID:
		w->f->id = (uint16_t)attr_u32(a);
		break;
	case CTRL_ATTR_VERSION:
		w->f->version = attr_u32(a);
		break;
	case CTRL_ATTR_HDRSIZE:
		w->f->hdrsize = attr_u32(a);
		break;
	case CTRL_ATTR_MAXATTR:
		w->f->maxattr = attr_u32(a);
		break;
	}
}

static void fam_lists(const struct nlattr *a, void *arg)
{
	struct fam_walk *w = arg;

	switch (a->nla_type & NLA_TYPE_MASK) {
	case CTRL_ATTR_OPS:
		walk_attrs(attr_data(a), attr_len(a), ops_entry, w);
		break;
	case CTRL_ATTR_MCAST_GROUPS:
		walk_attrs(attr_data(a), attr_len(a), grps_entry, w);
		break;
	}
}

static void resolve(int fd, struct family *f, int print)
{
	static char reply[BUF_SIZE];
	struct fam_walk w = { .f = f, .print = print };
	struct nlmsghdr *h = (struct nlmsghdr *)reply;
	struct msg m;
	uint32_t s;
	int err;

	memset(f, 0, sizeof(*f));
	msg_init(&m, GENL_ID_CTRL, NLM_F_REQUEST, CTRL_CMD_GETFAMILY, 1);
	msg_put(&m, CTRL_ATTR_FAMILY_NAME, FAMILY_NAME, sizeof(FAMILY_NAME));
	s = m.nlh.nlmsg_seq;
	nl_send(fd, &m);
	err = nl_wait(fd, s, reply, sizeof(reply));
	if (err)
		die("generic netlink family %s not found: %s (%s)", FAMILY_NAME,
		    strerror(-err), err_name(err));
	if (h->nlmsg_len < NLMSG_LENGTH(GENL_HDRLEN))
		die("short CTRL_CMD_GETFAMILY answer");
	walk_attrs((char *)NLMSG_DATA(h) + GENL_HDRLEN,
		   h->nlmsg_len - NLMSG_LENGTH(GENL_HDRLEN), fam_attr, &w);
	if (print) {
		emit("family name=%s id=%u version=%u hdrsize=%u maxattr=%u\n",
		     FAMILY_NAME, f->id, f->version, f->hdrsize, f->maxattr);
	}
	walk_attrs((char *)NLMSG_DATA(h) + GENL_HDRLEN,
		   h->nlmsg_len - NLMSG_LENGTH(GENL_HDRLEN), fam_lists, &w);
	if (!f->id)
		die("no family id in the CTRL_CMD_GETFAMILY answer");
}

/* ---- requests to the family --------------------------------------- */

/* Send one request with NLM_F_ACK; return the kernel's answer (0/-errno). */
static int request(int fd, const struct family *f, uint8_t cmd, int has_status,
		   int32_t status, int has_id, uint32_t dev_id, int has_feat,
		   uint8_t feat)
{
	struct msg m;
	uint32_t s;

	msg_init(&m, f->id, NLM_F_REQUEST | NLM_F_ACK, cmd, NL_VERSION);
	if (has_status)
		msg_put(&m, TCMU_ATTR_CMD_STATUS, &status, sizeof(status));
	if (has_id)
		msg_put(&m, TCMU_ATTR_DEVICE_ID, &dev_id, sizeof(dev_id));
	if (has_feat)
		msg_put(&m, TCMU_ATTR_SUPP_KERN_CMD_REPLY, &feat, sizeof(feat));
	s = m.nlh.nlmsg_seq;
	nl_send(fd, &m);
	return nl_wait(fd, s, NULL, 0);
}

static int done_for(int event)
{
	switch (event) {
	case TCMU_CMD_ADDED_DEVICE: return TCMU_CMD_ADDED_DEVICE_DONE;
	case TCMU_CMD_REMOVED_DEVICE: return TCMU_CMD_REMOVED_DEVICE_DONE;
	case TCMU_CMD_RECONFIG_DEVICE: return TCMU_CMD_RECONFIG_DEVICE_DONE;
	}
	return -1;
}

static long parse_long(const char *s, long min, long max, const char *what)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 0);
	if (errno || end == s || *end || v < min || v > max)
		die("bad %s: '%s'", what, s);
	return v;
}

static int parse_type(const char *s)
{
	if (!strcmp(s, "added"))
		return TCMU_CMD_ADDED_DEVICE;
	if (!strcmp(s, "removed"))
		return TCMU_CMD_REMOVED_DEVICE;
	if (!strcmp(s, "reconfig"))
		return TCMU_CMD_RECONFIG_DEVICE;
	if (!strcmp(s, "all"))
		return 0;
	return -1;
}

/* ---- listen ------------------------------------------------------------ */

#define NO_REPLY INT64_MIN
#define MAX_NTH 64

struct listen_opts {
	int64_t status[4];	/* by event type 1..3; [0] unused */
	struct { long n; int64_t st; } nth[MAX_NTH];
	int n_nth;
	long delay_ms;
	long count;
	long max_time;
	int decoys;
};

struct event {
	int have_dev, have_minor, have_id, have_cfg, have_size, have_wc;
	const char *dev;
	size_t dev_len;
	const char *cfg;
	size_t cfg_len;
	uint32_t minor, dev_id;
	uint64_t size;
	uint8_t wc;
	int nattrs;
	char extra[1024];
	size_t extra_len;
};

static void event_attr(const struct nlattr *a, void *arg)
{
	struct event *e = arg;
	size_t len = attr_len(a), i;
	const unsigned char *d = attr_data(a);

	e->nattrs++;
	switch (a->nla_type & NLA_TYPE_MASK) {
	case TCMU_ATTR_DEVICE:
		e->have_dev = 1;
		e->dev = attr_data(a);
		e->dev_len = strnlen(e->dev, len);
		return;
	case TCMU_ATTR_MINOR:
		if (len != 4)
			break;
		e->have_minor = 1;
		e->minor = attr_u32(a);
		return;
	case TCMU_ATTR_DEVICE_ID:
		if (len != 4)
			break;
		e->have_id = 1;
		e->dev_id = attr_u32(a);
		return;
	case TCMU_ATTR_DEV_CFG:
		e->have_cfg = 1;
		e->cfg = attr_data(a);
		e->cfg_len = strnlen(e->cfg, len);
		return;
	case TCMU_ATTR_DEV_SIZE:
		if (len != 8)
			break;
		e->have_size = 1;
		memcpy(&e->size, d, 8);
		return;
	case TCMU_ATTR_WRITECACHE:
		if (len != 1)
			break;
		e->have_wc = 1;
		e->wc = d[0];
		return;
	}
	/* Anything else (or of an unexpected size) is shown raw. */
	if (e->extra_len + 16 + 2 * len >= sizeof(e->extra))
		return;
	e->extra_len += snprintf(e->extra + e->extra_len,
				 sizeof(e->extra) - e->extra_len, " attr%u=",
				 a->nla_type & NLA_TYPE_MASK);
	for (i = 0; i < len; i++)
		e->extra_len += snprintf(e->extra + e->extra_len,
					 sizeof(e->extra) - e->extra_len,
					 "%02x", d[i]);
	if (!len)
		e->extra_len += snprintf(e->extra + e->extra_len,
					 sizeof(e->extra) - e->extra_len, "-");
}

static void print_uio_name(uint32_t minor)
{
	char path[64], name[512];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/sys/class/uio/uio%u/name", minor);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fputs(" uio=-", out);
		return;
	}
	n = read(fd, name, sizeof(name));
	close(fd);
	if (n < 0) {
		fputs(" uio=-", out);
		return;
	}
	if (n > 0 && name[n - 1] == '\n')
		n--;
	fputs(" uio=", out);
	put_escaped(name, n);
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) && errno == EINTR && !stop)
		;
}

static void handle_event(int rfd, const struct family *f,
			 const struct listen_opts *o, long n,
			 const struct genlmsghdr *g, size_t len)
{
	struct event e;
	int64_t st = NO_REPLY;
	int i, done;

	memset(&e, 0, sizeof(e));
	walk_attrs((const char *)g + GENL_HDRLEN, len - GENL_HDRLEN,
		   event_attr, &e);

	fprintf(out, "event n=%ld cmd=%s version=%u", n, cmd_name(g->cmd),
		g->version);
	if (e.have_dev) {
		fputs(" device=", out);
		put_escaped(e.dev, e.dev_len);
	}
	if (e.have_minor)
		fprintf(out, " minor=%u", e.minor);
	if (e.have_id)
		fprintf(out, " device_id=%u", e.dev_id);
	if (e.have_cfg) {
		fputs(" dev_cfg=", out);
		put_escaped(e.cfg, e.cfg_len);
	}
	if (e.have_size)
		fprintf(out, " dev_size=%llu", (unsigned long long)e.size);
	if (e.have_wc)
		fprintf(out, " writecache=%u", e.wc);
	fprintf(out, "%s nattrs=%d", e.extra, e.nattrs);
	if (e.have_minor)
		print_uio_name(e.minor);
	else
		fputs(" uio=-", out);
	emit("\n");

	done = done_for(g->cmd);
	if (done > 0)
		st = o->status[g->cmd];
	for (i = 0; i < o->n_nth; i++)
		if (o->nth[i].n == n)
			st = o->nth[i].st;
	if (st == NO_REPLY || done < 0 || !e.have_id) {
		emit("noreply n=%ld\n", n);
		return;
	}

	if (o->delay_ms)
		sleep_ms(o->delay_ms);
	if (o->decoys) {
		int wrong = done == TCMU_CMD_RECONFIG_DEVICE_DONE ?
			TCMU_CMD_ADDED_DEVICE_DONE : TCMU_CMD_RECONFIG_DEVICE_DONE;
		int r;

		r = request(rfd, f, done, 1, -ENOTTY, 1, e.dev_id + 1000, 0, 0);
		emit("decoy n=%ld kind=wrong_id ack=%s\n", n, err_name(r));
		r = request(rfd, f, wrong, 1, -ENOTTY, 1, e.dev_id, 0, 0);
		emit("decoy n=%ld kind=wrong_cmd ack=%s\n", n, err_name(r));
		r = request(rfd, f, done, 0, 0, 1, e.dev_id, 0, 0);
		emit("decoy n=%ld kind=no_status ack=%s\n", n, err_name(r));
	}
	i = request(rfd, f, done, 1, (int32_t)st, 1, e.dev_id, 0, 0);
	emit("reply n=%ld cmd=%s device_id=%u status=%lld ack=%s\n", n,
	     cmd_name(done), e.dev_id, (long long)st, err_name(i));
}

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static int do_listen(int argc, char **argv)
{
	static char buf[BUF_SIZE];
	struct listen_opts o;
	const char *ready = NULL, *outfile = NULL;
	int features = -1, efd, rfd, i;
	struct family f;
	struct sigaction sa;
	time_t start = time(NULL);
	long n = 0;

	memset(&o, 0, sizeof(o));
	for (i = 0; i < 4; i++)
		o.status[i] = NO_REPLY;

	for (i = 0; i < argc; i++) {
		const char *arg = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(arg, "--decoys")) {
			o.decoys = 1;
			continue;
		}
		if (!val)
			die("%s needs a value", arg);
		i++;
		if (!strcmp(arg, "-o")) {
			outfile = val;
		} else if (!strcmp(arg, "--ready")) {
			ready = val;
		} else if (!strcmp(arg, "--features")) {
			features = parse_long(val, 0, 255, "--features");
		} else if (!strcmp(arg, "--reply") || !strcmp(arg, "--nth")) {
			char key[32];
			const char *eq = strchr(val, '=');
			int64_t st;

			if (!eq || (size_t)(eq - val) >= sizeof(key))
				die("%s wants KEY=STATUS, not '%s'", arg, val);
			memcpy(key, val, eq - val);
			key[eq - val] = '\0';
			st = !strcmp(eq + 1, "none") ? NO_REPLY :
				parse_long(eq + 1, INT32_MIN, INT32_MAX, "status");
			if (!strcmp(arg, "--reply")) {
				int t = parse_type(key);

				if (t < 0)
					die("bad event type '%s'", key);
				if (t == 0)
					o.status[1] = o.status[2] = o.status[3] = st;
				else
					o.status[t] = st;
			} else {
				if (o.n_nth == MAX_NTH)
					die("too many --nth");
				o.nth[o.n_nth].n = parse_long(key, 1, LONG_MAX, "--nth");
				o.nth[o.n_nth].st = st;
				o.n_nth++;
			}
		} else if (!strcmp(arg, "--delay")) {
			o.delay_ms = parse_long(val, 0, 600000, "--delay");
		} else if (!strcmp(arg, "--count")) {
			o.count = parse_long(val, 1, LONG_MAX, "--count");
		} else if (!strcmp(arg, "--max-time")) {
			o.max_time = parse_long(val, 1, 86400, "--max-time");
		} else {
			die("unknown option '%s'", arg);
		}
	}

	if (outfile) {
		out = fopen(outfile, "a");
		if (!out)
			die("%s: %s", outfile, strerror(errno));
	}

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);

	efd = nl_open();
	rfd = nl_open();
	resolve(rfd, &f, 0);
	if (!f.have_group)
		die("family %s has no '%s' group", FAMILY_NAME, GROUP_NAME);
	if (features >= 0) {
		int r = request(rfd, &f, TCMU_CMD_SET_FEATURES, 0, 0, 0, 0, 1,
				features);

		emit("ack cmd=SET_FEATURES ack=%s\n", err_name(r));
	}
	i = BUF_SIZE * 4;
	setsockopt(efd, SOL_SOCKET, SO_RCVBUF, &i, sizeof(i));
	if (setsockopt(efd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &f.group,
		       sizeof(f.group)) < 0)
		die("joining group %u: %s", f.group, strerror(errno));
	emit("ready family=%u group=%u\n", f.id, f.group);
	if (ready) {
		int fd = open(ready, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

		if (fd < 0)
			die("%s: %s", ready, strerror(errno));
		close(fd);
	}

	while (!stop) {
		struct pollfd p = { .fd = efd, .events = POLLIN };
		struct nlmsghdr *h;
		int tmo = -1;
		ssize_t len;

		if (o.max_time) {
			long left = o.max_time - (long)(time(NULL) - start);

			if (left <= 0) {
				emit("max-time reached\n");
				return 2;
			}
			tmo = left * 1000;
		}
		if (poll(&p, 1, tmo) < 0) {
			if (errno == EINTR)
				continue;
			die("poll: %s", strerror(errno));
		}
		if (!(p.revents & POLLIN))
			continue;
		len = recv(efd, buf, sizeof(buf), MSG_DONTWAIT);
		if (len < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			if (errno == ENOBUFS) {
				emit("overrun\n");
				continue;
			}
			die("recv: %s", strerror(errno));
		}
		for (h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)len);
		     h = NLMSG_NEXT(h, len)) {
			if (h->nlmsg_type != f.id ||
			    h->nlmsg_len < NLMSG_LENGTH(GENL_HDRLEN)) {
				emit("other type=%u len=%u\n", h->nlmsg_type,
				     h->nlmsg_len);
				continue;
			}
			handle_event(rfd, &f, &o, ++n, NLMSG_DATA(h),
				     h->nlmsg_len - NLMSG_HDRLEN);
			if (o.count && n >= o.count)
				stop = 1;
		}
	}
	return 0;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: %s family\n"
		"       %s features VALUE\n"
		"       %s reply added|removed|reconfig|CMD DEVICE_ID STATUS [--no-status] [--no-id]\n"
		"       %s listen [-o FILE] [--ready FILE] [--features V] [--reply TYPE=ST]...\n"
		"              [--nth N=ST]... [--delay MS] [--decoys] [--count N] [--max-time SEC]\n",
		prog, prog, prog, prog);
	exit(1);
}

int main(int argc, char **argv)
{
	struct family f;
	int fd, r;

	out = stdout;
	if (argc < 2)
		usage();

	if (!strcmp(argv[1], "listen"))
		return do_listen(argc - 2, argv + 2);

	fd = nl_open();
	if (!strcmp(argv[1], "family") && argc == 2) {
		resolve(fd, &f, 1);
		return 0;
	}
	if (!strcmp(argv[1], "features") && argc == 3) {
		uint8_t v = parse_long(argv[2], 0, 255, "feature value");

		resolve(fd, &f, 0);
		r = request(fd, &f, TCMU_CMD_SET_FEATURES, 0, 0, 0, 0, 1, v);
		emit("ack cmd=SET_FEATURES ack=%s\n", err_name(r));
		return r ? 3 : 0;
	}
	if (!strcmp(argv[1], "reply") && argc >= 5) {
		int t = parse_type(argv[2]), cmd, i, has_status = 1, has_id = 1;
		uint32_t id = parse_long(argv[3], 0, UINT32_MAX, "device id");
		int32_t st = parse_long(argv[4], INT32_MIN, INT32_MAX, "status");

		if (t > 0)
			cmd = done_for(t);
		else
			cmd = parse_long(argv[2], 0, 255, "command");
		for (i = 5; i < argc; i++) {
			if (!strcmp(argv[i], "--no-status"))
				has_status = 0;
			else if (!strcmp(argv[i], "--no-id"))
				has_id = 0;
			else
				usage();
		}
		resolve(fd, &f, 0);
		r = request(fd, &f, cmd, has_status, st, has_id, id, 0, 0);
		emit("ack cmd=%s ack=%s\n", cmd_name(cmd), err_name(r));
		return r ? 3 : 0;
	}
	usage();
	return 1;
}
