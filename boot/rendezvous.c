/*
 * Bootstrap by TCP rendezvous: DSM_RANK, DSM_NODES and
 * DSM_BOOTSTRAP=host:port. Rank 0 listens there, every other rank connects
 * and announces itself; rank 0 checks that they form one job and sends
 * every node the address list and a fresh cluster id. Runs once on the
 * initialising thread; nothing here is on a hot path.
 *
 * The TCP exchange (version DSM__BOOT_VERSION): each node sends rank 0 a
 * hello; rank 0 answers every node with the address list, or with an
 * error when the job cannot form. The messages are the records of
 * boot/boot.rpc, encoded and decoded by the codecs net/rpcgen.py generates
 * from it (every length bounded by its MAX); on the stream each is
 *   u32 len, boot_hdr (magic, version, type), the type's record
 * and only the u32 length prefix, which says how much to read before
 * anything can be decoded, is written here (common/le.h). A reader bounds
 * len by the largest message it expects before it reads the rest.
 * The fingerprint hashes the program path, DSM_HEAP_SIZE and DSM_BASE, so
 * nodes of different programs or heap layouts refuse to form one job.
 */
#include "boot-internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "boot_rpc.h"
#include "common.h"
#include "fnv.h"
#include "le.h"

#define BOOT_MAGIC 0x424d5344u /* "DSMB" in memory order */
#define T_HELLO 1
#define T_LIST 2
#define T_ERROR 3
#define C_CONFIG 1
#define C_TIMEOUT 2
#define C_PROTO 3

/* ---- messages (boot/boot.rpc) ---------------------------------------------- */

#define HDR_SIZE DSM_RPC_BOOT_HDR_SIZE_MAX
/* Where a message's record starts: after the u32 length and the header. */
#define MSG_HDR (4 + HDR_SIZE)
/* The largest lengths (after the u32 prefix) a reader accepts. */
#define HELLO_BODY_MAX (HDR_SIZE + DSM_RPC_BOOT_HELLO_SIZE_MAX)
#define ERROR_BODY_MAX (HDR_SIZE + DSM_RPC_BOOT_ERROR_SIZE_MAX)
#define LIST_BODY_MAX(nodes) \
	(HDR_SIZE + DSM_RPC_BOOT_LIST_SIZE_MIN + (size_t)(nodes) * DSM_RPC_BOOT_ADDR_SIZE_MAX)

_Static_assert(DSM_RPC_BOOT_HDR_SIZE_MIN == 8 && HDR_SIZE == 8,
	       "the header has one layout in every version");
_Static_assert(DSM_RPC_BOOT_HELLO_ADDR_MAX == DSM__BOOT_ADDR_MAX &&
		       DSM_RPC_BOOT_ADDR_ADDR_MAX == DSM__BOOT_ADDR_MAX,
	       "boot.rpc's address bound is DSM__BOOT_ADDR_MAX");
_Static_assert(DSM_RPC_BOOT_ERROR_TEXT_MAX == DSM__BOOT_ERR_MAX,
	       "boot.rpc's error text bound is DSM__BOOT_ERR_MAX");
_Static_assert(DSM_RPC_BOOT_LIST_ADDRS_MAX == DSM__BOOT_NODES_MAX * DSM_RPC_BOOT_ADDR_SIZE_MAX,
	       "a list holds the address of every node of the largest job");

/* The string s as a bytes field: at most max bytes of it (longer text is cut). */
static struct dsm__bytes str_bytes(const char *s, size_t max)
{
	return (struct dsm__bytes){ (const uint8_t *)s, (uint32_t)strnlen(s, max) };
}

/* A decoded string field into out[outsz], NUL-terminated. 0, or DSM_EPROTO
 * when it does not fit or holds a NUL. */
static int get_str(struct dsm__bytes b, char *out, size_t outsz)
{
	if (b.len >= outsz || (b.len && memchr(b.ptr, '\0', b.len)))
		return DSM_EPROTO;
	if (b.len)
		memcpy(out, b.ptr, b.len);
	out[b.len] = '\0';
	return 0;
}

/*
 * Frame a message of the given type whose record an encoder put at
 * buf + MSG_HDR: k is what the encoder returned (bytes, or a negative
 * code). Writes the u32 length and the header in front. Returns the whole
 * message's length, or k when it is negative.
 */
static int frame(uint8_t *buf, uint16_t type, int k)
{
	const struct dsm_rpc_boot_hdr h = { BOOT_MAGIC, DSM__BOOT_VERSION, type };

	if (k < 0)
		return k;
	dsm__put_le32(buf, (uint32_t)(HDR_SIZE + (size_t)k));
	if (dsm_rpc_boot_hdr_encode(&h, buf + 4, HDR_SIZE) != HDR_SIZE)
		return DSM_EPROTO; /* cannot happen: the header has a fixed size */
	return MSG_HDR + k;
}

/* ---- helpers -------------------------------------------------------------- */

/* Hash of what must be equal at every node of a job. */
static uint64_t job_fingerprint(void)
{
	static const char *const vars[] = { "DSM_HEAP_SIZE", "DSM_BASE" };
	uint64_t h = DSM__FNV1A64_INIT;
	char exe[4096];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe));

	if (n > 0)
		h = dsm__fnv1a64(h, exe, (size_t)n);
	for (size_t i = 0; i < DSM__ARRAY_SIZE(vars); i++) {
		const char *v = dsm__env_str(vars[i]);

		h = dsm__fnv1a64(h, "\0", 1);
		if (v)
			h = dsm__fnv1a64(h, v, strlen(v));
	}
	return h;
}

static int remaining_ms(int64_t deadline)
{
	int64_t left = (deadline - dsm__now_ns() + 999999) / 1000000; /* round up */

	return left <= 0 ? 0 : left > 1000000 ? 1000000 : (int)left;
}

/* Write all of buf before the deadline. 0, DSM_ETIMEDOUT or DSM_ESYS. */
static int send_all(int fd, const uint8_t *buf, size_t len, int64_t deadline)
{
	while (len) {
		ssize_t k = send(fd, buf, len, MSG_NOSIGNAL);

		if (k > 0) {
			buf += k;
			len -= (size_t)k;
			continue;
		}
		if (k < 0 && errno != EAGAIN && errno != EINTR)
			return DSM_ESYS;
		struct pollfd p = { .fd = fd, .events = POLLOUT };

		if (poll(&p, 1, remaining_ms(deadline)) == 0)
			return DSM_ETIMEDOUT;
	}
	return 0;
}

/* Read exactly len bytes before the deadline. 0, DSM_ETIMEDOUT,
 * DSM_ECLOSED (EOF) or DSM_ESYS. */
static int recv_all(int fd, uint8_t *buf, size_t len, int64_t deadline)
{
	while (len) {
		ssize_t k = recv(fd, buf, len, 0);

		if (k > 0) {
			buf += k;
			len -= (size_t)k;
			continue;
		}
		if (k == 0)
			return DSM_ECLOSED;
		if (errno != EAGAIN && errno != EINTR)
			return DSM_ESYS;
		struct pollfd p = { .fd = fd, .events = POLLIN };

		if (poll(&p, 1, remaining_ms(deadline)) == 0)
			return DSM_ETIMEDOUT;
	}
	return 0;
}

/* ---- TCP rendezvous: rank 0 ------------------------------------------------ */

struct conn {
	int fd;
	size_t got;
	uint8_t buf[4 + HELLO_BODY_MAX];
	int rank;                    /* accepted rank, -1 before */
};

/* Send an error message (best effort, bounded by the deadline) and close. */
static void send_error(struct conn *c, uint32_t code, const char *text, int64_t deadline)
{
	const struct dsm_rpc_boot_error m = { code, str_bytes(text, DSM__BOOT_ERR_MAX) };
	uint8_t buf[MSG_HDR + DSM_RPC_BOOT_ERROR_SIZE_MAX];
	int n = frame(buf, T_ERROR, dsm_rpc_boot_error_encode(&m, buf + MSG_HDR,
							      sizeof(buf) - MSG_HDR));

	if (n > 0)
		send_all(c->fd, buf, (size_t)n, deadline);
	close(c->fd);
	c->fd = -1;
}

struct server {
	unsigned nodes;
	uint64_t fp;
	char **addrs;                /* [nodes], NULL until that rank arrived */
	unsigned arrived;            /* valid hellos */
	unsigned seen;               /* hellos decoded, valid or not */
	bool failed;
	char why[DSM__BOOT_ERR_MAX + 1];
	struct conn *c;
	unsigned nc, cap;
	int64_t deadline;
};

/* The job cannot form: tell every accepted node, remember the first reason. */
static void server_fail(struct server *s, const char *why)
{
	char msg[DSM__BOOT_ERR_MAX + 64];

	DSM__ERR("DSM_BOOTSTRAP: %s", why);
	if (!s->failed)
		snprintf(s->why, sizeof(s->why), "%s", why);
	s->failed = true;
	snprintf(msg, sizeof(msg), "bootstrap failed at rank 0: %s", s->why);
	for (unsigned i = 0; i < s->nc; i++)
		if (s->c[i].fd >= 0 && s->c[i].rank >= 0)
			send_error(&s->c[i], C_CONFIG, msg, s->deadline);
}

/* A complete hello in c->buf: validate it against the job. */
static void server_hello(struct server *s, struct conn *c, size_t body)
{
	const uint8_t *p = c->buf + 4, *end = p + body;
	char addr[DSM__BOOT_ADDR_MAX + 1], host[DSM__BOOT_ADDR_MAX + 1], why[DSM__BOOT_ERR_MAX + 1];
	struct dsm_rpc_boot_hdr h;
	struct dsm_rpc_boot_hello m;
	uint32_t rank, nodes;
	unsigned port;

	s->seen++;
	if (dsm_rpc_boot_hdr_decode_next(&h, &p, end) != 1 || h.magic != BOOT_MAGIC) {
		DSM__WARN("DSM_BOOTSTRAP: dropped a connection that is not a libdsm node");
		s->seen--;
		close(c->fd);
		c->fd = -1;
		return;
	}
	if (h.version != DSM__BOOT_VERSION) {
		snprintf(why, sizeof(why), "bootstrap protocol version %u at a node, %u at rank 0 "
			 "(different libdsm versions)", h.version, DSM__BOOT_VERSION);
		server_fail(s, why);
		send_error(c, C_CONFIG, why, s->deadline);
		return;
	}
	if (h.type != T_HELLO || dsm_rpc_boot_hello_decode(&m, p, (size_t)(end - p)) < 0 ||
	    get_str(m.addr, addr, sizeof(addr)) < 0 ||
	    dsm__parse_hostport(addr, host, sizeof(host), &port) < 0) {
		snprintf(why, sizeof(why), "malformed hello from a node");
		server_fail(s, why);
		send_error(c, C_PROTO, why, s->deadline);
		return;
	}
	rank = m.rank;
	nodes = m.nodes;
	if (nodes != s->nodes)
		snprintf(why, sizeof(why), "DSM_NODES differs: %u here, %u at rank %u",
			 s->nodes, nodes, rank);
	else if (rank >= s->nodes)
		snprintf(why, sizeof(why), "rank %u out of range (DSM_NODES=%u)", rank, s->nodes);
	else if (rank == 0 || s->addrs[rank])
		snprintf(why, sizeof(why), "rank %u claimed by two nodes", rank);
	else if (m.fingerprint != s->fp)
		snprintf(why, sizeof(why), "different program or heap layout at rank %u "
			 "(program path, DSM_HEAP_SIZE or DSM_BASE differ from rank 0)", rank);
	else
		why[0] = '\0';
	if (why[0]) {
		server_fail(s, why);
		send_error(c, C_CONFIG, why, s->deadline);
		return;
	}
	if (s->failed) {
		char msg[DSM__BOOT_ERR_MAX + 64];

		snprintf(msg, sizeof(msg), "bootstrap failed at rank 0: %s", s->why);
		send_error(c, C_CONFIG, msg, s->deadline);
		return;
	}
	s->addrs[rank] = strdup(addr);
	if (!s->addrs[rank]) {
		server_fail(s, "rank 0 is out of memory");
		send_error(c, C_CONFIG, "rank 0 is out of memory", s->deadline);
		return;
	}
	c->rank = (int)rank;
	s->arrived++;
	DSM__DEBUG("DSM_BOOTSTRAP: rank %u at %s (%u of %u)", rank, addr, s->arrived + 1, s->nodes);
}

/* Read what is there on c; decode a hello once it is complete. */
static void server_read(struct server *s, struct conn *c)
{
	for (;;) {
		size_t want = 4, body = 0;
		ssize_t k;

		if (c->got >= 4) {
			body = dsm__get_le32(c->buf);
			if (body < HDR_SIZE || body > HELLO_BODY_MAX) {
				DSM__WARN("DSM_BOOTSTRAP: dropped a connection with a %zu-byte message",
					  body);
				close(c->fd);
				c->fd = -1;
				return;
			}
			want = 4 + body;
		}
		if (c->got == want && body) {
			server_hello(s, c, body);
			return;
		}
		k = recv(c->fd, c->buf + c->got, want - c->got, 0);
		if (k > 0) {
			c->got += (size_t)k;
			continue;
		}
		if (k < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		close(c->fd); /* EOF or error before a complete hello */
		c->fd = -1;
		return;
	}
}

static int server_accept(struct server *s, int lfd)
{
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		unsigned i;

		if (fd < 0)
			return errno == EAGAIN || errno == EINTR || errno == ECONNABORTED ? 0 : DSM_ESYS;
		for (i = 0; i < s->nc && s->c[i].fd >= 0; i++)
			;
		if (i == s->nc) {
			if (s->nc == s->cap) {
				close(fd); /* more connections than the job has nodes: refuse */
				continue;
			}
			s->nc++;
		}
		s->c[i].fd = fd;
		s->c[i].got = 0;
		s->c[i].rank = -1;
	}
}

/* All nodes arrived: send each the list and the cluster id. */
static int server_send_list(struct server *s, uint32_t cluster)
{
	struct dsm_rpc_boot_list m = { .cluster = cluster, .nodes = s->nodes };
	uint8_t *addrs, *buf;
	size_t alen = 0, used = 0;
	int e = 0, n;

	/* the addresses: one boot_addr record per rank, back to back */
	for (unsigned r = 0; r < s->nodes; r++)
		alen += dsm_rpc_boot_addr_size(&(struct dsm_rpc_boot_addr){
			str_bytes(s->addrs[r], DSM__BOOT_ADDR_MAX) });
	addrs = malloc(alen);
	if (!addrs)
		return DSM_ENOMEM;
	for (unsigned r = 0; r < s->nodes; r++) {
		const struct dsm_rpc_boot_addr a = { str_bytes(s->addrs[r], DSM__BOOT_ADDR_MAX) };

		if ((n = dsm_rpc_boot_addr_encode(&a, addrs + used, alen - used)) < 0) {
			e = n;
			goto fail_addrs;
		}
		used += (size_t)n;
	}
	m.addrs = (struct dsm__bytes){ addrs, (uint32_t)used };
	buf = malloc(MSG_HDR + dsm_rpc_boot_list_size(&m));
	if (!buf) {
		e = DSM_ENOMEM;
		goto fail_addrs;
	}
	n = frame(buf, T_LIST, dsm_rpc_boot_list_encode(&m, buf + MSG_HDR,
							 dsm_rpc_boot_list_size(&m)));
	if (n < 0) {
		e = n;
		goto fail_list;
	}
	for (unsigned i = 0; i < s->nc; i++) {
		if (s->c[i].fd < 0 || s->c[i].rank < 0)
			continue;
		if (send_all(s->c[i].fd, buf, (size_t)n, s->deadline) < 0 && !e) {
			DSM__ERR("DSM_BOOTSTRAP: cannot send the address list to rank %d", s->c[i].rank);
			e = DSM_ESYS;
		}
	}
fail_list:
	free(buf);
fail_addrs:
	free(addrs);
	return e;
}

static int boot_rank0(struct dsm__net_cfg *cfg, const char *bs, struct in_addr bip, unsigned bport,
		      int64_t deadline)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr = bip, .sin_port = htons((uint16_t)bport) };
	struct server s = { .nodes = cfg->nodes, .fp = job_fingerprint(), .deadline = deadline };
	struct pollfd *p = NULL;
	unsigned *map = NULL;
	const char *dh = dsm__env_str("DSM_HOST");
	struct in_addr ip = bip;
	char addr[64];
	unsigned port;
	int lfd, ufd, e, one = 1;
	uint32_t cluster = 0;

	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (lfd < 0)
		return DSM_ESYS;
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(lfd, SOMAXCONN) < 0) {
		e = errno == EADDRINUSE ? 1 : DSM_EADDR; /* 1: someone is rank 0 already */
		if (e < 0)
			DSM__ERR("DSM_BOOTSTRAP: cannot listen on %s: %s", bs, strerror(errno));
		close(lfd);
		return e;
	}
	if (dh && (e = dsm__boot_resolve4(dh, &ip)) < 0) {
		DSM__ERR("DSM_HOST: cannot resolve '%s'", dh);
		goto fail_udp;
	}
	if (!dh && ip.s_addr == htonl(INADDR_ANY))
		ip.s_addr = htonl(INADDR_LOOPBACK); /* set DSM_HOST for a cluster */
	ufd = dsm__boot_hold_udp_port(ip, &port);
	if (ufd < 0) {
		e = ufd;
		goto fail_udp;
	}
	snprintf(addr, sizeof(addr), "%s:%u", inet_ntoa(ip), port);
	s.cap = s.nodes + 16;
	s.c = calloc(s.cap, sizeof(*s.c));
	s.addrs = calloc(s.nodes, sizeof(char *));
	p = calloc(s.cap + 1, sizeof(*p));
	map = calloc(s.cap + 1, sizeof(*map));
	if (!s.c || !s.addrs || !p || !map || !(s.addrs[0] = strdup(addr))) {
		e = DSM_ENOMEM;
		goto fail_alloc;
	}
	DSM__DEBUG("DSM_BOOTSTRAP: rank 0 listening on %s for %u nodes", bs, s.nodes);
	while (s.failed ? s.seen < s.nodes - 1 : s.arrived < s.nodes - 1) {
		unsigned np = 0;
		int left = remaining_ms(deadline);

		if (!left)
			break;
		p[np].fd = lfd;
		p[np++].events = POLLIN;
		for (unsigned i = 0; i < s.nc; i++) {
			if (s.c[i].fd < 0 || s.c[i].rank >= 0)
				continue;
			map[np] = i;
			p[np].fd = s.c[i].fd;
			p[np++].events = POLLIN;
		}
		if (poll(p, np, left) < 0 && errno != EINTR) {
			e = DSM_ESYS;
			goto fail_loop;
		}
		for (unsigned k = 1; k < np; k++)
			if (p[k].revents)
				server_read(&s, &s.c[map[k]]);
		if (p[0].revents && (e = server_accept(&s, lfd)) < 0)
			goto fail_loop;
	}
	if (s.failed) {
		e = DSM_ECONFIG;
		goto fail_loop;
	}
	if (s.arrived < s.nodes - 1) {
		char miss[200] = "", msg[DSM__BOOT_ERR_MAX + 64];
		size_t off = 0;

		for (unsigned r = 1; r < s.nodes && off < sizeof(miss) - 16; r++)
			if (!s.addrs[r])
				off += (size_t)snprintf(miss + off, sizeof(miss) - off, "%s%u",
							off ? ", " : "", r);
		snprintf(msg, sizeof(msg), "rank 0 timed out after %d ms (DSM_CONNECT_TIMEOUT_MS) "
			 "waiting for ranks %s", cfg->connect_timeout_ms, miss);
		DSM__ERR("DSM_BOOTSTRAP: %s", msg);
		for (unsigned i = 0; i < s.nc; i++)
			if (s.c[i].fd >= 0)
				send_error(&s.c[i], C_TIMEOUT, msg, dsm__now_ns() + 200000000);
		e = DSM_ETIMEDOUT;
		goto fail_loop;
	}
	while (!cluster)
		if (getrandom(&cluster, sizeof(cluster), 0) != sizeof(cluster))
			cluster = (uint32_t)dsm__now_ns() ^ (uint32_t)getpid() << 16;
	if ((e = server_send_list(&s, cluster)))
		goto fail_loop;
	cfg->addrs = s.addrs;
	s.addrs = NULL;
	dsm__boot_set_cluster(cfg, cluster);
	e = 0;
fail_loop:
fail_alloc:
	for (unsigned i = 0; i < s.nc; i++)
		if (s.c[i].fd >= 0)
			close(s.c[i].fd);
	free(s.c);
	free(p);
	free(map);
	if (s.addrs)
		for (unsigned r = 0; r < s.nodes; r++)
			free(s.addrs[r]);
	free(s.addrs);
	close(ufd);
fail_udp:
	close(lfd);
	return e;
}

/* ---- TCP rendezvous: every other rank ------------------------------------- */

/* Connect to rank 0, retrying until the deadline. fd or DSM_ETIMEDOUT. */
static int connect_rank0(const char *bs, struct in_addr bip, unsigned bport, int timeout_ms,
			 int64_t deadline)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr = bip, .sin_port = htons((uint16_t)bport) };
	int last = 0;

	for (;;) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		int left = remaining_ms(deadline);

		if (fd < 0)
			return DSM_ESYS;
		if (!left) {
			close(fd);
			break;
		}
		if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
			return fd;
		if (errno == EINPROGRESS) {
			struct pollfd p = { .fd = fd, .events = POLLOUT };
			int err = 0;
			socklen_t el = sizeof(err);

			if (poll(&p, 1, DSM__MIN(left, 1000)) == 1 &&
			    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0 && !err)
				return fd;
			last = err ? err : ETIMEDOUT;
		} else {
			last = errno;
		}
		close(fd);
		usleep((useconds_t)DSM__MIN(remaining_ms(deadline), 50) * 1000);
	}
	DSM__ERR("DSM_BOOTSTRAP: rank 0 at %s not reachable within %d ms "
		 "(DSM_CONNECT_TIMEOUT_MS; last error: %s)", bs, timeout_ms,
		 last ? strerror(last) : "none");
	return DSM_ETIMEDOUT;
}

/* Decode rank 0's answer (list or error) into cfg. */
static int client_answer(struct dsm__net_cfg *cfg, const uint8_t *body, size_t len,
			 const char *mine)
{
	const uint8_t *p = body, *end = body + len, *ap, *aend;
	char text[DSM__BOOT_ERR_MAX + 1], a[DSM__BOOT_ADDR_MAX + 1], host[DSM__BOOT_ADDR_MAX + 1];
	struct dsm_rpc_boot_hdr h;
	struct dsm_rpc_boot_error err;
	struct dsm_rpc_boot_list list;
	struct dsm_rpc_boot_addr ad;
	unsigned port;
	int e;

	if (dsm_rpc_boot_hdr_decode_next(&h, &p, end) != 1 || h.magic != BOOT_MAGIC)
		goto proto;
	if (h.version != DSM__BOOT_VERSION) {
		DSM__ERR("DSM_BOOTSTRAP: rank 0 speaks bootstrap protocol version %u, this node %u "
			 "(different libdsm versions)", h.version, DSM__BOOT_VERSION);
		return DSM_EPROTO;
	}
	if (h.type == T_ERROR) {
		if (dsm_rpc_boot_error_decode(&err, p, (size_t)(end - p)) < 0 ||
		    get_str(err.text, text, sizeof(text)) < 0)
			goto proto;
		DSM__ERR("DSM_BOOTSTRAP: %s", text);
		return err.code == C_TIMEOUT ? DSM_ETIMEDOUT
		       : err.code == C_PROTO ? DSM_EPROTO : DSM_ECONFIG;
	}
	if (h.type != T_LIST || dsm_rpc_boot_list_decode(&list, p, (size_t)(end - p)) < 0 ||
	    list.nodes != cfg->nodes)
		goto proto;
	cfg->addrs = calloc(list.nodes, sizeof(char *));
	if (!cfg->addrs)
		return DSM_ENOMEM;
	ap = list.addrs.ptr;
	aend = ap + list.addrs.len;
	for (unsigned i = 0; i < list.nodes; i++) {
		if (dsm_rpc_boot_addr_decode_next(&ad, &ap, aend) != 1 ||
		    get_str(ad.addr, a, sizeof(a)) < 0 ||
		    dsm__parse_hostport(a, host, sizeof(host), &port) < 0 ||
		    (i == cfg->rank && strcmp(a, mine)))
			goto proto;
		if (!(cfg->addrs[i] = strdup(a))) {
			e = DSM_ENOMEM;
			goto fail;
		}
	}
	if (ap != aend) /* more addresses than nodes */
		goto proto;
	dsm__boot_set_cluster(cfg, list.cluster);
	return 0;
proto:
	DSM__ERR("DSM_BOOTSTRAP: malformed answer from rank 0 (not libdsm %d, or corrupted)",
		 DSM__BOOT_VERSION);
	e = DSM_EPROTO;
fail:
	dsm__net_cfg_fini(cfg);
	return e;
}

static int boot_client(struct dsm__net_cfg *cfg, const char *bs, struct in_addr bip, unsigned bport,
		       int64_t t0)
{
	int64_t tmo = (int64_t)cfg->connect_timeout_ms * 1000000;
	const char *dh = dsm__env_str("DSM_HOST");
	uint8_t hello[MSG_HDR + DSM_RPC_BOOT_HELLO_SIZE_MAX], *body = NULL;
	struct dsm_rpc_boot_hello m;
	struct sockaddr_in la;
	socklen_t ll = sizeof(la);
	struct in_addr ip;
	char addr[64];
	unsigned port;
	size_t blen;
	uint8_t lenb[4];
	int fd, ufd, e, n;

	fd = connect_rank0(bs, bip, bport, cfg->connect_timeout_ms, t0 + tmo);
	if (fd < 0)
		return fd;
	/* announce DSM_HOST, else the address that reaches rank 0 */
	if (dh) {
		if ((e = dsm__boot_resolve4(dh, &ip)) < 0) {
			DSM__ERR("DSM_HOST: cannot resolve '%s'", dh);
			goto fail_udp;
		}
	} else if (getsockname(fd, (struct sockaddr *)&la, &ll) == 0) {
		ip = la.sin_addr;
	} else {
		e = DSM_ESYS;
		goto fail_udp;
	}
	ufd = dsm__boot_hold_udp_port(ip, &port);
	if (ufd < 0) {
		e = ufd;
		goto fail_udp;
	}
	snprintf(addr, sizeof(addr), "%s:%u", inet_ntoa(ip), port);
	m = (struct dsm_rpc_boot_hello){ cfg->rank, cfg->nodes, job_fingerprint(),
					 str_bytes(addr, DSM__BOOT_ADDR_MAX) };
	n = frame(hello, T_HELLO, dsm_rpc_boot_hello_encode(&m, hello + MSG_HDR,
							     sizeof(hello) - MSG_HDR));
	if (n < 0) {
		e = n;
		goto done; /* cannot happen: addr fits its MAX */
	}
	/* rank 0 waits at most its own timeout, which began after ours */
	if ((e = send_all(fd, hello, (size_t)n, t0 + 2 * tmo)) < 0 ||
	    (e = recv_all(fd, lenb, 4, t0 + 2 * tmo)) < 0)
		goto fail_io;
	blen = dsm__get_le32(lenb);
	if (blen < HDR_SIZE || blen > DSM__MAX(LIST_BODY_MAX(cfg->nodes), ERROR_BODY_MAX)) {
		DSM__ERR("DSM_BOOTSTRAP: malformed answer from rank 0 (%zu bytes)", blen);
		e = DSM_EPROTO;
		goto fail_io;
	}
	body = malloc(blen);
	if (!body) {
		e = DSM_ENOMEM;
		goto fail_io;
	}
	if ((e = recv_all(fd, body, blen, t0 + 2 * tmo)) < 0)
		goto fail_io;
	e = client_answer(cfg, body, blen, addr);
	goto done;
fail_io:
	if (e == DSM_ETIMEDOUT)
		DSM__ERR("DSM_BOOTSTRAP: no answer from rank 0 at %s within %d ms "
			 "(DSM_CONNECT_TIMEOUT_MS)", bs, 2 * cfg->connect_timeout_ms);
	else if (e == DSM_ECLOSED || e == DSM_ESYS)
		DSM__ERR("DSM_BOOTSTRAP: rank 0 at %s closed the connection without an answer", bs);
	if (e == DSM_ECLOSED || e == DSM_ESYS)
		e = DSM_EPROTO;
done:
	free(body);
	close(ufd);
fail_udp:
	close(fd);
	return e;
}

/* See boot-internal.h. */
int dsm__boot_tcp(struct dsm__net_cfg *cfg, const char *bs)
{
	int64_t t0 = dsm__now_ns();
	char host[DSM__BOOT_ADDR_MAX + 1];
	struct in_addr bip;
	unsigned bport;
	long nodes, rank;
	int e;

	if ((e = dsm__env_long("DSM_NODES", 0, 1, DSM__BOOT_NODES_MAX, &nodes)))
		return e;
	if (!nodes) {
		DSM__ERR("DSM_NODES: not set, but DSM_BOOTSTRAP is (every node needs DSM_NODES and DSM_RANK)");
		return DSM_ECONFIG;
	}
	if ((e = dsm__env_long("DSM_RANK", -1, 0, nodes - 1, &rank)))
		return e;
	if (rank < 0) {
		DSM__ERR("DSM_RANK: not set, but DSM_BOOTSTRAP is (every node needs DSM_NODES and DSM_RANK)");
		return DSM_ECONFIG;
	}
	if (dsm__parse_hostport(bs, host, sizeof(host), &bport) < 0 || dsm__boot_resolve4(host, &bip) < 0) {
		DSM__ERR("DSM_BOOTSTRAP: '%s' is not a reachable IPv4 host:port", bs);
		return DSM_EADDR;
	}
	if ((e = dsm__boot_base_cfg(cfg)))
		return e;
	cfg->rank = (unsigned)rank;
	dsm__log_set_rank((int)rank);
	if (nodes == 1) {
		cfg->nodes = 1;
		return 0; /* alone: nothing to exchange */
	}
	cfg->nodes = (unsigned)nodes;
	e = 1;
	if (rank == 0)
		e = boot_rank0(cfg, bs, bip, bport, t0 + (int64_t)cfg->connect_timeout_ms * 1000000);
	if (e == 1) /* not rank 0, or rank 0's address taken: join (rank 0 checks) */
		e = boot_client(cfg, bs, bip, bport, t0);
	if (e) {
		dsm__net_cfg_fini(cfg);
		memset(cfg, 0, sizeof(*cfg));
		return e;
	}
	DSM__INFO("DSM_BOOTSTRAP: rank %u of %u at %s, cluster %08x", cfg->rank, cfg->nodes,
		  cfg->addrs[cfg->rank], cfg->cluster);
	return 0;
}
