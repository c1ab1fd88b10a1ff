/*-------------------------------------------------------------------------
 *
 * http.c
 *		Everything konvox_webhooks asks of libcurl.
 *
 * One multi handle drives every request through curl_multi_socket_action.
 * libcurl tells us which sockets to watch (kw_socket_cb) and when to call it
 * back (kw_timer_cb); we keep those sockets in an epoll set of our own, whose
 * descriptor the worker adds to its WaitEventSet beside the latch.  So one
 * process waits on thousands of requests, a commit wake-up and postmaster
 * death at once.
 *
 * With konvox_webhooks.proxy set, each request goes through the proxy in a
 * CONNECT tunnel, unless its host is in konvox_webhooks.no_proxy: which way
 * it goes is decided here, per request, and told to libcurl outright, so
 * that the server's environment has no say.  The proxy resolves the hosts
 * of the requests it carries, so the address checks, which see only the
 * proxy's address then, apply to direct requests alone.
 *
 * Requests over https always verify the receiver's certificate, against
 * konvox_webhooks.ca_file or the system's trust store.  They share one TLS
 * session cache and one DNS cache per worker (a libcurl share handle), so
 * that a new connection to a receiver resumes the TLS session of an earlier
 * one, whichever request slot made it, instead of a full handshake.
 *
 * Nothing here opens a transaction, touches a table or raises an ERROR from
 * inside a libcurl callback.  A failed request is an outcome written into the
 * KwRequest, never an error.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <curl/curl.h>

#include "utils/timestamp.h"

#include "konvox_webhooks.h"

#define KW_EPOLL_BATCH	256

/*
 * How long libcurl may keep the trust store it has read from a CA file:
 * a file changed in place is read again within this time.
 */
#define KW_CA_CACHE_SECONDS	60

/*
 * What the epoll set holds for each descriptor.  When libcurl stops watching
 * a socket between two requests on a kept-alive connection, we leave it in
 * the set and only note that libcurl does not want it; the next request
 * usually wants the same events, so no epoll_ctl is needed at all.  A socket
 * that turns ready while unwanted (the peer closed it) is taken out then,
 * and libcurl's close-socket callback clears the entry before the
 * descriptor can be reused.  Other sockets libcurl watches (its resolver's,
 * closed without our callback) are taken out as soon as it stops watching.
 */
typedef struct KwSocket
{
	bool		registered;		/* in the epoll set */
	bool		wanted;			/* libcurl is watching it */
	bool		connection;		/* opened and closed through our callbacks */
	uint32		events;			/* what the epoll set watches for */
} KwSocket;

static CURLM *kw_multi = NULL;
static CURLSH *kw_share = NULL;
static int	kw_epfd = -1;
static KwSocket *kw_sockets = NULL;
static int	kw_nsockets = 0;
static TimestampTz kw_timer_deadline = 0;	/* 0: libcurl wants no call */
static int	kw_running = 0;

/* libcurl's own trust store, used while konvox_webhooks.ca_file is empty */
static const char *kw_default_cainfo = NULL;
static const char *kw_default_capath = NULL;

StaticAssertDecl(KW_ERROR_LEN >= CURL_ERROR_SIZE,
				 "KwRequest.curl_error must hold libcurl's error buffer");

/* finished requests, in order, linked through KwRequest.next_done */
static KwRequest *kw_done_head = NULL;
static KwRequest *kw_done_tail = NULL;

static int	kw_socket_cb(CURL *easy, curl_socket_t s, int what, void *userp,
						 void *socketp);
static int	kw_timer_cb(CURLM *multi, long timeout_ms, void *userp);
static size_t kw_write_cb(char *ptr, size_t size, size_t nmemb, void *userdata);
static curl_socket_t kw_open_socket_cb(void *clientp, curlsocktype purpose,
									   struct curl_sockaddr *address);
static int	kw_close_socket_cb(void *clientp, curl_socket_t s);
static int	kw_prereq_cb(void *clientp, char *primary_ip, char *local_ip,
						 int primary_port, int local_port);
static void kw_http_init_share(void);
static void kw_set_trust(CURL *easy);
static bool kw_in_tls_handshake(KwRequest *req);
static bool kw_tls_error(KwRequest *req, CURLcode result);
static void kw_finish(KwRequest *req, CURLcode result, bool transferred);
static bool kw_route(KwRequest *req);
static bool kw_proxy_error(KwRequest *req, CURLcode result);

/*
 * Set up libcurl, the multi handle and the epoll set.  Called once by the
 * worker before its loop; failures here are configuration problems and so
 * they are errors.
 */
void
kw_http_init(int max_concurrency)
{
	curl_version_info_data *info;

	if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not initialize libcurl")));

	kw_multi = curl_multi_init();
	if (kw_multi == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a libcurl multi handle")));

	kw_epfd = epoll_create1(EPOLL_CLOEXEC);
	if (kw_epfd < 0)
		ereport(ERROR,
				(errcode_for_socket_access(),
				 errmsg("could not create epoll set: %m")));

	/*
	 * With a synchronous resolver, every name lookup would stop this
	 * worker's whole event loop until the DNS server answers.
	 */
	if ((curl_version_info(CURLVERSION_NOW)->features & CURL_VERSION_ASYNCHDNS) == 0)
		ereport(WARNING,
				(errmsg("libcurl %s resolves host names synchronously",
						curl_version_info(CURLVERSION_NOW)->version),
				 errdetail("While a DNS server is slow to answer, this konvox_webhooks worker sends and receives nothing else."),
				 errhint("Use a libcurl built with the threaded resolver or with c-ares.")));

	curl_multi_setopt(kw_multi, CURLMOPT_SOCKETFUNCTION, kw_socket_cb);
	curl_multi_setopt(kw_multi, CURLMOPT_TIMERFUNCTION, kw_timer_cb);
	kw_http_configure(max_concurrency);
	kw_http_init_share();

	/* libcurl's own trust store, for while ca_file is empty */
	info = curl_version_info(CURLVERSION_NOW);
	kw_default_cainfo = info->cainfo;
	kw_default_capath = info->capath;
}

/*
 * The share handle of every easy handle: the TLS sessions and DNS answers
 * of one request serve the next, whichever slot sends it.  A worker is one
 * thread, so the share needs no lock callbacks.  A libcurl built without
 * TLS has no sessions to share (nor sends https); that is no error here.
 */
static void
kw_http_init_share(void)
{
	CURLSHcode	rc;

	kw_share = curl_share_init();
	if (kw_share == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a libcurl share handle")));
	rc = curl_share_setopt(kw_share, CURLSHOPT_SHARE,
						   CURL_LOCK_DATA_SSL_SESSION);
	if (rc != CURLSHE_OK && rc != CURLSHE_NOT_BUILT_IN)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not share TLS sessions between libcurl handles: %s",
						curl_share_strerror(rc))));
	rc = curl_share_setopt(kw_share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
	if (rc != CURLSHE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not share the DNS cache between libcurl handles: %s",
						curl_share_strerror(rc))));
}

/*
 * Apply the connection cap.  Requests in flight never exceed it because the
 * workers together start no more than max_concurrency of them; these
 * limits keep this worker's connections, busy or kept alive, within the
 * same bound.
 */
void
kw_http_configure(int max_concurrency)
{
	curl_multi_setopt(kw_multi, CURLMOPT_MAX_TOTAL_CONNECTIONS,
					  (long) max_concurrency);
	curl_multi_setopt(kw_multi, CURLMOPT_MAX_HOST_CONNECTIONS,
					  (long) max_concurrency);
	curl_multi_setopt(kw_multi, CURLMOPT_MAXCONNECTS, (long) max_concurrency);
}

/* The descriptor that becomes readable when a watched socket is ready. */
int
kw_http_socket(void)
{
	return kw_epfd;
}

/*
 * Milliseconds until libcurl wants to be called for its timers, or -1 when it
 * has nothing scheduled.
 */
long
kw_http_timeout(void)
{
	TimestampTz now;

	if (kw_timer_deadline == 0)
		return -1;
	now = GetCurrentTimestamp();
	if (now >= kw_timer_deadline)
		return 0;
	/* round up, so that we never wake a little too early and spin */
	return (long) ((kw_timer_deadline - now + 999) / 1000);
}

/* Requests handed to libcurl and not yet finished. */
int
kw_http_in_flight(void)
{
	return kw_running;
}

/*
 * The state of descriptor s, growing the table to reach it.  Returns NULL
 * only if memory ran out; never raises an error, as libcurl calls us.
 */
static KwSocket *
kw_socket_state(curl_socket_t s)
{
	if (s < 0)
		return NULL;
	if (s >= kw_nsockets)
	{
		int			n = Max(s + 1, Max(kw_nsockets * 2, 1024));
		KwSocket   *grown = realloc(kw_sockets, sizeof(KwSocket) * n);

		if (grown == NULL)
			return NULL;
		memset(grown + kw_nsockets, 0, sizeof(KwSocket) * (n - kw_nsockets));
		kw_sockets = grown;
		kw_nsockets = n;
	}
	return &kw_sockets[s];
}

/*
 * libcurl's socket callback: watch s for what libcurl asks, touching the
 * epoll set only when that differs from what it already watches.
 */
static int
kw_socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	KwSocket   *st = kw_socket_state(s);
	struct epoll_event ev;

	if (st == NULL)
		return -1;
	if (what == CURL_POLL_REMOVE)
	{
		st->wanted = false;
		if (!st->connection && st->registered)
		{
			epoll_ctl(kw_epfd, EPOLL_CTL_DEL, s, NULL);
			st->registered = false;
		}
		return 0;
	}

	/*
	 * A connection waits to read only once it is open: for a request whose
	 * TLS handshake has not finished, that means the server has not
	 * answered it (see kw_in_tls_handshake)
	 */
	if ((what & CURL_POLL_IN) && st->connection && easy != NULL)
	{
		KwRequest  *req = NULL;

		curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **) &req);
		if (req != NULL)
			req->awaited_answer = true;
	}

	memset(&ev, 0, sizeof(ev));
	if (what & CURL_POLL_IN)
		ev.events |= EPOLLIN;
	if (what & CURL_POLL_OUT)
		ev.events |= EPOLLOUT;
	ev.data.fd = s;
	st->wanted = true;

	if (st->registered && st->events == ev.events)
		return 0;
	if (epoll_ctl(kw_epfd, st->registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD,
				  s, &ev) != 0)
	{
		/* our record was stale; the other operation will do */
		if (epoll_ctl(kw_epfd, st->registered ? EPOLL_CTL_ADD : EPOLL_CTL_MOD,
					  s, &ev) != 0)
			return -1;
	}
	st->registered = true;
	st->events = ev.events;
	return 0;
}

/*
 * libcurl's close-socket callback: forget the descriptor before it is
 * closed and its number reused.
 */
static int
kw_close_socket_cb(void *clientp, curl_socket_t s)
{
	KwSocket   *st = kw_socket_state(s);

	if (st != NULL && st->registered)
		epoll_ctl(kw_epfd, EPOLL_CTL_DEL, s, NULL);
	if (st != NULL)
		memset(st, 0, sizeof(KwSocket));
	return close(s);
}

/* libcurl's timer callback: remember when libcurl wants to be called. */
static int
kw_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	if (timeout_ms < 0)
		kw_timer_deadline = 0;
	else
		kw_timer_deadline = GetCurrentTimestamp() +
			(TimestampTz) timeout_ms * 1000;
	return 0;
}

/*
 * Keep the first KW_RESPONSE_BODY_CAP bytes of a response body and swallow
 * the rest, so that a huge body costs neither memory nor a failed attempt.
 */
static size_t
kw_write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	KwRequest  *req = (KwRequest *) userdata;
	size_t		len = size * nmemb;
	size_t		room = KW_RESPONSE_BODY_CAP - req->response_len;

	if (room > 0)
	{
		size_t		n = Min(len, room);

		memcpy(req->response + req->response_len, ptr, n);
		req->response_len += n;
	}
	return len;
}

/*
 * Is an address one that webhook traffic may go to?  Loopback, private,
 * link-local (where cloud metadata services live), shared, unspecified,
 * multicast and reserved ranges are refused, unless
 * konvox_webhooks.allow_private_targets is on.
 */
static bool
kw_address_allowed(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
	{
		uint32		a = ntohl(((const struct sockaddr_in *) sa)->sin_addr.s_addr);

		if ((a >> 24) == 0 ||	/* 0.0.0.0/8 */
			(a >> 24) == 10 ||	/* 10.0.0.0/8 */
			(a >> 24) == 127 || /* 127.0.0.0/8 */
			(a >> 22) == ((100 << 2) | 1) ||	/* 100.64.0.0/10 */
			(a >> 16) == ((169 << 8) | 254) ||	/* 169.254.0.0/16 */
			(a >> 20) == ((172 << 4) | 1) ||	/* 172.16.0.0/12 */
			(a >> 8) == ((192 << 16) | 0) ||	/* 192.0.0.0/24 */
			(a >> 16) == ((192 << 8) | 168) ||	/* 192.168.0.0/16 */
			(a >> 17) == ((198 << 7) | 9) ||	/* 198.18.0.0/15 */
			(a >> 28) >= 14)	/* 224.0.0.0/4, 240.0.0.0/4 */
			return false;
		return true;
	}
	if (sa->sa_family == AF_INET6)
	{
		const struct in6_addr *a6 = &((const struct sockaddr_in6 *) sa)->sin6_addr;
		const uint8 *b = a6->s6_addr;

		static const uint8 nat64[12] = {0x00, 0x64, 0xff, 0x9b};
		const uint8 *v4 = NULL;

		static const uint8 siit[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
		static const uint8 discard[8] = {0x01};

		if (IN6_IS_ADDR_UNSPECIFIED(a6) || IN6_IS_ADDR_LOOPBACK(a6) ||
			IN6_IS_ADDR_LINKLOCAL(a6) || IN6_IS_ADDR_SITELOCAL(a6) ||
			IN6_IS_ADDR_MULTICAST(a6) ||
			(b[0] & 0xfe) == 0xfc ||	/* fc00::/7 */
			(b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b &&
			 b[4] == 0x00 && b[5] == 0x01) ||	/* 64:ff9b:1::/48 */
			memcmp(b, siit, sizeof(siit)) == 0 ||	/* ::ffff:0:0:0/96, SIIT */
			(b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x00 &&
			 b[3] == 0x00) ||	/* 2001::/32, Teredo */
			(b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d &&
			 b[3] == 0xb8) ||	/* 2001:db8::/32, documentation */
			memcmp(b, discard, sizeof(discard)) == 0)	/* 100::/64, discard */
			return false;

		/* addresses that carry an IPv4 address are judged by it */
		if (IN6_IS_ADDR_V4MAPPED(a6) || IN6_IS_ADDR_V4COMPAT(a6) ||
			memcmp(b, nat64, sizeof(nat64)) == 0)	/* 64:ff9b::/96 */
			v4 = b + 12;
		else if (b[0] == 0x20 && b[1] == 0x02)	/* 2002::/16, 6to4 */
			v4 = b + 2;
		if (v4 != NULL)
		{
			struct sockaddr_in sin;

			memset(&sin, 0, sizeof(sin));
			sin.sin_family = AF_INET;
			memcpy(&sin.sin_addr, v4, 4);
			return kw_address_allowed((struct sockaddr *) &sin);
		}
		return true;
	}
	return false;
}

/*
 * Remember a refused address for the server log.  The attempt's error,
 * which tenants read in their history, only says that an address was not
 * allowed: which internal address a name resolves to is not theirs to see.
 */
static void
kw_note_refused(KwRequest *req, const char *address)
{
	int			len = strlen(req->refused_addresses);

	req->addresses_refused++;
	snprintf(req->refused_addresses + len, sizeof(req->refused_addresses) - len,
			 "%s%s", len > 0 ? ", " : "", address);
}

/*
 * libcurl's open-socket callback: the one place where every connection's
 * resolved address passes, so the address check happens here, after DNS,
 * and a name that resolves to a private address cannot slip past it.
 */
static curl_socket_t
kw_open_socket_cb(void *clientp, curlsocktype purpose,
				  struct curl_sockaddr *address)
{
	KwRequest  *req = (KwRequest *) clientp;
	curl_socket_t fd;
	KwSocket   *st;

	req->addresses_tried++;
	/* through a proxy, this is the proxy's address: the proxy checks */
	if (!req->via_proxy && !kw_allow_private_targets &&
		!kw_address_allowed(&address->addr))
	{
		char		host[INET6_ADDRSTRLEN] = "?";

		if (address->family == AF_INET)
			inet_ntop(AF_INET,
					  &((struct sockaddr_in *) &address->addr)->sin_addr,
					  host, sizeof(host));
		else if (address->family == AF_INET6)
			inet_ntop(AF_INET6,
					  &((struct sockaddr_in6 *) &address->addr)->sin6_addr,
					  host, sizeof(host));
		kw_note_refused(req, host);
		return CURL_SOCKET_BAD;
	}
	fd = socket(address->family, address->socktype, address->protocol);
	st = kw_socket_state(fd);
	if (st != NULL)
	{
		memset(st, 0, sizeof(KwSocket));
		st->connection = true;
	}
	return fd;
}

/*
 * libcurl's pre-request callback, called for every request, whether its
 * connection is new or kept alive: the second line of the address check.
 * Without it, a connection opened while allow_private_targets was on would
 * go on being used after it was turned off.
 */
static int
kw_prereq_cb(void *clientp, char *primary_ip, char *local_ip,
			 int primary_port, int local_port)
{
	KwRequest  *req = (KwRequest *) clientp;
	struct sockaddr_storage ss;

	/* connected, through the proxy's tunnel if any: the rest is theirs */
	req->reached = true;
	if (kw_allow_private_targets || req->via_proxy)
		return CURL_PREREQFUNC_OK;

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, primary_ip,
				  &((struct sockaddr_in *) &ss)->sin_addr) == 1)
		ss.ss_family = AF_INET;
	else if (inet_pton(AF_INET6, primary_ip,
					   &((struct sockaddr_in6 *) &ss)->sin6_addr) == 1)
		ss.ss_family = AF_INET6;

	if (ss.ss_family == AF_UNSPEC ||
		!kw_address_allowed((struct sockaddr *) &ss))
	{
		req->addresses_tried++;
		kw_note_refused(req, primary_ip);
		return CURL_PREREQFUNC_ABORT;
	}
	return CURL_PREREQFUNC_OK;
}

/*
 * Append a header line to a list; on failure, free the list and return
 * NULL, so that nothing leaks.  A NULL list stays NULL, except the first
 * call's, which starts one.
 */
static struct curl_slist *
kw_add_header(struct curl_slist *list, const char *line)
{
	struct curl_slist *grown = curl_slist_append(list, line);

	if (grown == NULL)
		curl_slist_free_all(list);
	return grown;
}

/* Forget the outcome of the slot's last request. */
static void
kw_reset_outcome(KwRequest *req)
{
	req->status_code = 0;
	req->succeeded = false;
	req->error[0] = '\0';
	req->via_proxy = false;
	req->reached = false;
	req->addresses_tried = 0;
	req->addresses_refused = 0;
	req->refused_addresses[0] = '\0';
	req->response_len = 0;
	req->next_done = NULL;
	req->sent = false;
	req->awaited_answer = false;
	req->retry_after = 0;
	req->started_at = GetCurrentTimestamp();
}

/*
 * Set an option that the safety of deliveries depends on; if this libcurl
 * does not take it, say so in req->error and return false.
 */
static bool
kw_must_setopt(KwRequest *req, CURLcode rc, const char *option)
{
	static bool warned = false;

	if (rc == CURLE_OK)
		return true;
	snprintf(req->error, sizeof(req->error),
			 "not sent: libcurl %s does not support %s",
			 curl_version_info(CURLVERSION_NOW)->version, option);
	if (!warned)
		ereport(WARNING,
				(errmsg("konvox_webhooks sends nothing: libcurl %s does not support %s",
						curl_version_info(CURLVERSION_NOW)->version, option),
				 errdetail("%s", curl_easy_strerror(rc)),
				 errhint("Install libcurl 7.85 or later and restart the server.")));
	warned = true;
	return false;
}

/*
 * A new easy handle with the options that never change.  The address
 * checks, the protocol restriction, no redirects and no proxy from the
 * environment are what keeps a customer's URL from reaching inside, and
 * certificate verification (TLS 1.2 at least) what keeps a request from
 * going to an impostor: if libcurl refuses any of them, the handle is not
 * used and the request is not sent.  Returns NULL, with req->error set,
 * when that happens.
 */
static CURL *
kw_new_easy(KwRequest *req)
{
	CURL	   *easy = curl_easy_init();

	if (easy == NULL)
	{
		strlcpy(req->error, "not sent: out of memory", sizeof(req->error));
		return NULL;
	}
	if (!kw_must_setopt(req, curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR,
											  "http,https"),
						"CURLOPT_PROTOCOLS_STR") ||
		!kw_must_setopt(req, curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L),
						"CURLOPT_FOLLOWLOCATION") ||
		!kw_must_setopt(req, curl_easy_setopt(easy, CURLOPT_PROXY, ""),
						"CURLOPT_PROXY") ||
		!kw_must_setopt(req, curl_easy_setopt(easy, CURLOPT_NOPROXY, ""),
						"CURLOPT_NOPROXY") ||
		/* a proxy carries a tunnel, never the request or its headers */
		!kw_must_setopt(req, curl_easy_setopt(easy, CURLOPT_PROXYTYPE,
											  (long) CURLPROXY_HTTP),
						"CURLOPT_PROXYTYPE") ||
		!kw_must_setopt(req, curl_easy_setopt(easy, CURLOPT_HTTPPROXYTUNNEL,
											  1L),
						"CURLOPT_HTTPPROXYTUNNEL") ||
		!kw_must_setopt(req, curl_easy_setopt(easy, CURLOPT_HEADEROPT,
											  (long) CURLHEADER_SEPARATE),
						"CURLOPT_HEADEROPT") ||
		!kw_must_setopt(req, curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION,
											  kw_open_socket_cb),
						"CURLOPT_OPENSOCKETFUNCTION") ||
		!kw_must_setopt(req, curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, req),
						"CURLOPT_OPENSOCKETDATA") ||
		!kw_must_setopt(req, curl_easy_setopt(easy, CURLOPT_PREREQFUNCTION,
											  kw_prereq_cb),
						"CURLOPT_PREREQFUNCTION") ||
		!kw_must_setopt(req, curl_easy_setopt(easy, CURLOPT_PREREQDATA, req),
						"CURLOPT_PREREQDATA") ||
		!kw_must_setopt(req, curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION,
											  kw_close_socket_cb),
						"CURLOPT_CLOSESOCKETFUNCTION") ||
		/* peer and host name verified, as libcurl does by default */
		!kw_must_setopt(req, curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L),
						"CURLOPT_SSL_VERIFYPEER") ||
		!kw_must_setopt(req, curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L),
						"CURLOPT_SSL_VERIFYHOST") ||
		!kw_must_setopt(req, curl_easy_setopt(easy, CURLOPT_SSLVERSION,
											  (long) CURL_SSLVERSION_TLSv1_2),
						"CURLOPT_SSLVERSION"))
	{
		curl_easy_cleanup(easy);
		return NULL;
	}
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_USERAGENT, KW_USER_AGENT);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, kw_write_cb);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, req);
	curl_easy_setopt(easy, CURLOPT_PRIVATE, req);
	curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, req->curl_error);
	curl_easy_setopt(easy, CURLOPT_SHARE, kw_share);

	/*
	 * HTTP/1.1 over TLS as over plain HTTP, so that connections behave the
	 * same either way; the trust store is parsed once a minute, not at
	 * every connection.
	 */
	curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_1_1);
	curl_easy_setopt(easy, CURLOPT_CA_CACHE_TIMEOUT, (long) KW_CA_CACHE_SECONDS);
	return easy;
}

/*
 * Finish a request without sending it, with reason as the attempt's error:
 * the worker found that it must not go out.
 */
void
kw_http_fail(KwRequest *req, const char *reason)
{
	kw_reset_outcome(req);
	strlcpy(req->error, reason, sizeof(req->error));
	kw_finish(req, CURLE_OK, false);
}

/*
 * Hand one request to libcurl.  Its easy handle is made on first use and
 * kept, with the options that never change, for the slot's next requests.
 */
void
kw_http_start(KwRequest *req, int timeout_ms)
{
	CURL	   *easy = req->easy;
	struct curl_slist *list = NULL;
	char	   *line;
	char	   *next;

	kw_reset_outcome(req);
	if (easy == NULL)
	{
		easy = kw_new_easy(req);
		if (easy == NULL)
		{
			kw_finish(req, CURLE_FAILED_INIT, false);
			return;
		}
		req->easy = easy;
	}
	req->curl_error[0] = '\0';
	kw_set_trust(easy);

	/* through the proxy or direct, said outright: never the environment's */
	if (!kw_route(req))
	{
		kw_finish(req, CURLE_COULDNT_CONNECT, false);
		return;
	}
	if (curl_easy_setopt(easy, CURLOPT_PROXY,
						 req->via_proxy ? kw_proxy : "") != CURLE_OK)
	{
		strlcpy(req->error, "not sent: libcurl did not take konvox_webhooks.proxy",
				sizeof(req->error));
		kw_finish(req, CURLE_FAILED_INIT, false);
		return;
	}

	/* one header per line of req->headers */
	list = kw_add_header(NULL, "Content-Type: application/json");
	list = kw_add_header(list, "Expect:");
	for (line = req->headers.data; list && line && *line; line = next)
	{
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		list = kw_add_header(list, line);
	}
	if (list == NULL)
	{
		kw_finish(req, CURLE_OUT_OF_MEMORY, false);
		return;
	}
	req->header_list = list;

	curl_easy_setopt(easy, CURLOPT_URL, req->url.data);
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, list);
	curl_easy_setopt(easy, CURLOPT_POSTFIELDS, req->body.data);
	curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, (long) req->body.len);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long) timeout_ms);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long) timeout_ms);

	if (curl_multi_add_handle(kw_multi, easy) != CURLM_OK)
	{
		kw_finish(req, CURLE_FAILED_INIT, false);
		return;
	}
	req->sent = true;
	kw_running++;
}

/*
 * Let libcurl do what is ready: read the sockets that epoll reports, fire
 * libcurl's timer when it is due, and collect finished transfers.  Never
 * blocks.
 */
void
kw_http_drive(void)
{
	struct epoll_event events[KW_EPOLL_BATCH];
	CURLMsg    *msg;
	int			msgs_left;
	int			still_running;
	int			n;

	do
	{
		n = epoll_wait(kw_epfd, events, KW_EPOLL_BATCH, 0);
		for (int i = 0; i < n; i++)
		{
			int			fd = events[i].data.fd;
			int			flags = 0;

			/* ready while libcurl does not watch it: take it out */
			if (fd < kw_nsockets && !kw_sockets[fd].wanted)
			{
				epoll_ctl(kw_epfd, EPOLL_CTL_DEL, fd, NULL);
				kw_sockets[fd].registered = false;
				continue;
			}

			if (events[i].events & EPOLLIN)
				flags |= CURL_CSELECT_IN;
			if (events[i].events & EPOLLOUT)
				flags |= CURL_CSELECT_OUT;
			if (events[i].events & (EPOLLERR | EPOLLHUP))
				flags |= CURL_CSELECT_ERR;
			curl_multi_socket_action(kw_multi, fd, flags, &still_running);
		}
	} while (n == KW_EPOLL_BATCH);

	if (kw_timer_deadline != 0 && GetCurrentTimestamp() >= kw_timer_deadline)
	{
		kw_timer_deadline = 0;
		curl_multi_socket_action(kw_multi, CURL_SOCKET_TIMEOUT, 0,
								 &still_running);
	}

	while ((msg = curl_multi_info_read(kw_multi, &msgs_left)) != NULL)
	{
		KwRequest  *req;
		CURLcode	result;

		if (msg->msg != CURLMSG_DONE)
			continue;
		/* read before the handle is removed, which invalidates msg */
		result = msg->data.result;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &req);
		curl_multi_remove_handle(kw_multi, msg->easy_handle);
		kw_running--;
		kw_finish(req, result, true);
	}
}

/*
 * Trust the certificate authorities of konvox_webhooks.ca_file, or the
 * system's when it is empty.  Set for every request, so that a reload
 * applies to the next one; libcurl does not reuse connections or TLS
 * sessions made under another trust setting.  A bundle file rather than a
 * directory, where libcurl has one, so that libcurl reads it once per
 * KW_CA_CACHE_SECONDS and not at every new connection.
 */
static void
kw_set_trust(CURL *easy)
{
	const char *file = (kw_ca_file != NULL && kw_ca_file[0] != '\0') ?
		kw_ca_file : kw_default_cainfo;

	curl_easy_setopt(easy, CURLOPT_CAINFO, file);
	curl_easy_setopt(easy, CURLOPT_CAPATH,
					 file != NULL ? NULL : kw_default_capath);
}

/*
 * Did a request end in the TLS handshake of a new connection: TCP connected
 * (libcurl waited to read from it), the handshake not done?  (libcurl 8
 * knows no local port before the handshake ends.)
 */
static bool
kw_in_tls_handshake(KwRequest *req)
{
	char	   *scheme = NULL;
	curl_off_t	tls_done = 0;

	curl_easy_getinfo(req->easy, CURLINFO_SCHEME, &scheme);
	curl_easy_getinfo(req->easy, CURLINFO_APPCONNECT_TIME_T, &tls_done);
	return scheme != NULL && pg_strcasecmp(scheme, "https") == 0 &&
		req->awaited_answer && tls_done == 0;
}

/*
 * Describe a request that failed in TLS, into req->error; false when the
 * failure was not one.  libcurl's text for these codes says little ("SSL
 * peer certificate or SSH remote key was not OK"), its error buffer says
 * what was wrong; the buffer's parts that may name a host or an address
 * are left out.
 */
static bool
kw_tls_error(KwRequest *req, CURLcode result)
{
	const char *what;
	const char *detail = req->curl_error;
	char		buf[KW_ERROR_LEN];
	char	   *cut;

	switch (result)
	{
		case CURLE_PEER_FAILED_VERIFICATION:
			what = "TLS certificate not accepted";
			break;
		case CURLE_SSL_CONNECT_ERROR:
			what = "TLS handshake failed";
			break;
		case CURLE_SSL_CACERT_BADFILE:
			what = "TLS trust store could not be read";
			break;
		case CURLE_OPERATION_TIMEDOUT:
			if (!kw_in_tls_handshake(req))
				return false;
			snprintf(req->error, sizeof(req->error),
					 "%s during the TLS handshake", curl_easy_strerror(result));
			return true;
		default:
			return false;
	}

	strlcpy(buf, detail[0] ? detail : curl_easy_strerror(result), sizeof(buf));
	/* "... in connection to <host>:<port>" */
	if ((cut = strstr(buf, " in connection to ")) != NULL)
		*cut = '\0';
	/* "OpenSSL/3.0.2: error:0A00010B:SSL routines::wrong version number" */
	if (strstr(buf, "error:") != NULL && (cut = strrchr(buf, ':')) != NULL)
		memmove(buf, cut + 1, strlen(cut + 1) + 1);
	for (cut = buf + strlen(buf); cut > buf && cut[-1] == ' '; cut--)
		cut[-1] = '\0';
	detail = buf;
	while (*detail == ' ')
		detail++;
	if (strncmp(detail, "SSL certificate problem: ", 25) == 0)
		detail += 25;
	else if (strncmp(detail, "SSL: ", 5) == 0)
		detail += 5;

	/* in words of our own, and never with the address it was checked for */
	if (strstr(detail, "host name") != NULL ||
		strstr(detail, "subject name") != NULL ||
		strstr(detail, "does not match") != NULL)
		detail = "it is not valid for the host name of the URL";
	else if (strstr(detail, "wrong version number") != NULL)
		detail = "the server did not answer in TLS (is it plain HTTP?)";
	snprintf(req->error, sizeof(req->error), "%s: %s", what, detail);
	return true;
}

/*
 * The seconds that a Retry-After header of the answer asks to wait, in
 * seconds or as an HTTP date; 0 when there is none.  (libcurl's own
 * CURLINFO_RETRY_AFTER takes "120" for a date in some versions.)
 */
static int
kw_retry_after(CURL *easy)
{
	struct curl_header *h;
	const char *p;
	long		secs = 0;
	bool		digits = true;

	if (curl_easy_header(easy, "Retry-After", 0, CURLH_HEADER, -1, &h) !=
		CURLHE_OK)
		return 0;
	for (p = h->value; *p == ' ' || *p == '\t'; p++)
		;
	if (*p == '\0')
		return 0;
	for (const char *q = p; *q != '\0' && *q != ' ' && *q != '\t'; q++)
		digits &= (*q >= '0' && *q <= '9');
	if (digits)
	{
		for (; *p >= '0' && *p <= '9' && secs < INT_MAX / 10; p++)
			secs = secs * 10 + (*p - '0');
	}
	else
	{
		time_t		when = curl_getdate(p, NULL);

		if (when > 0)
			secs = (long) (when - time(NULL));
	}
	return (int) Max(0, Min(secs, INT_MAX));
}

/*
 * Turn libcurl's verdict into the request's outcome and queue the request
 * for the worker; transferred is false when libcurl never had it.  2xx is success; any other status, a redirect included,
 * and any transport error is a failed attempt described in words.
 */
static void
kw_finish(KwRequest *req, CURLcode result, bool transferred)
{
	long		code = 0;

	req->finished_at = GetCurrentTimestamp();
	if (transferred)
		curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &code);
	req->status_code = (int) code;

	if (transferred && (code == 429 || code == 503))
		req->retry_after = kw_retry_after(req->easy);

	req->outcome = (result == CURLE_OPERATION_TIMEDOUT) ?
		KW_OUTCOME_TIMEOUT : KW_OUTCOME_NETWORK;
	if (req->error[0] != '\0')
	{
		/* not sent at all; the caller has said why */
		req->outcome = KW_OUTCOME_NOT_SENT;
	}
	else if (result == CURLE_OK && code >= 200 && code <= 299)
	{
		req->succeeded = true;
		req->outcome = KW_OUTCOME_SUCCESS;
	}
	else if (result == CURLE_OK)
	{
		snprintf(req->error, sizeof(req->error), "HTTP %ld", code);
		req->outcome = KW_OUTCOME_HTTP_ERROR;
	}
	else if (transferred && req->via_proxy && !req->reached &&
			 kw_proxy_error(req, result))
	{
		/* the proxy failed us before the receiver could answer */
		req->outcome = KW_OUTCOME_PROXY;
	}
	else if (req->addresses_refused > 0 &&
			 req->addresses_refused == req->addresses_tried)
	{
		strlcpy(req->error, "address not allowed", sizeof(req->error));
		req->outcome = KW_OUTCOME_REFUSED;
	}
	else if (req->addresses_refused > 0)
		snprintf(req->error, sizeof(req->error),
				 "%s (%d of %d addresses not allowed)",
				 curl_easy_strerror(result), req->addresses_refused,
				 req->addresses_tried);
	else if (kw_tls_error(req, result))
	{
		if (result != CURLE_OPERATION_TIMEDOUT)
			req->outcome = KW_OUTCOME_TLS;
	}
	else
		strlcpy(req->error, curl_easy_strerror(result), sizeof(req->error));

	if (req->addresses_refused > 0)
		ereport(LOG,
				(errmsg("konvox_webhooks refused delivery " INT64_FORMAT " to %s: address %s is not allowed",
						req->delivery_id, req->url.data, req->refused_addresses),
				 errhint("Deliveries to loopback, private, link-local and other internal addresses are refused unless konvox_webhooks.allow_private_targets is on.")));

	if (req->header_list)
	{
		curl_slist_free_all((struct curl_slist *) req->header_list);
		req->header_list = NULL;
	}

	if (kw_done_tail)
		kw_done_tail->next_done = req;
	else
		kw_done_head = req;
	kw_done_tail = req;
	req->next_done = NULL;
}

/* Is a finished request waiting to be collected? */
bool
kw_http_has_done(void)
{
	return kw_done_head != NULL;
}

/* The next finished request, or NULL when none is waiting. */
KwRequest *
kw_http_next_done(void)
{
	KwRequest  *req = kw_done_head;

	if (req)
	{
		kw_done_head = req->next_done;
		if (kw_done_head == NULL)
			kw_done_tail = NULL;
		req->next_done = NULL;
	}
	return req;
}

/* An IP address, as a URL or konvox_webhooks.no_proxy writes it. */
typedef struct KwAddress
{
	int			family;			/* AF_INET or AF_INET6 */
	uint8		bytes[16];
} KwAddress;

/*
 * Parse text of len bytes as an IPv4 or IPv6 address, the latter with or
 * without brackets.  False if it is none.
 */
static bool
kw_parse_address(const char *text, int len, KwAddress *addr)
{
	char		buf[INET6_ADDRSTRLEN + 1];

	if (len >= 2 && text[0] == '[' && text[len - 1] == ']')
	{
		text++;
		len -= 2;
	}
	if (len <= 0 || len >= (int) sizeof(buf))
		return false;
	memcpy(buf, text, len);
	buf[len] = '\0';
	memset(addr, 0, sizeof(KwAddress));
	if (inet_pton(AF_INET, buf, addr->bytes) == 1)
		addr->family = AF_INET;
	else if (inet_pton(AF_INET6, buf, addr->bytes) == 1)
		addr->family = AF_INET6;
	return addr->family != 0;
}

/* Is addr allowed as a target, by kw_address_allowed's rules? */
static bool
kw_literal_allowed(const KwAddress *addr)
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	ss.ss_family = addr->family;
	if (addr->family == AF_INET)
		memcpy(&((struct sockaddr_in *) &ss)->sin_addr, addr->bytes, 4);
	else
		memcpy(&((struct sockaddr_in6 *) &ss)->sin6_addr, addr->bytes, 16);
	return kw_address_allowed((struct sockaddr *) &ss);
}

/*
 * One entry of konvox_webhooks.no_proxy, of len bytes, trimmed: "*", an IP
 * address, a CIDR range "address/bits", or a host name with its
 * subdomains (a leading dot changes nothing).  Returns whether it covers
 * host, whose address addr is when host is an IP address (else NULL); or,
 * with host NULL, whether the entry is well formed.
 */
static bool
kw_no_proxy_entry(const char *entry, int len, const char *host,
				  const KwAddress *addr)
{
	const char *slash = memchr(entry, '/', len);
	KwAddress	net;

	if (len == 1 && entry[0] == '*')
		return true;
	if (slash != NULL)
	{
		char	   *end;
		long		bits;
		int			nbytes;

		if (!kw_parse_address(entry, slash - entry, &net) ||
			slash + 1 == entry + len || !isdigit((unsigned char) slash[1]))
			return false;
		bits = strtol(slash + 1, &end, 10);
		if (end != entry + len || bits > (net.family == AF_INET ? 32 : 128))
			return false;
		if (host == NULL)
			return true;
		if (addr == NULL || addr->family != net.family)
			return false;
		nbytes = bits / 8;
		if (memcmp(addr->bytes, net.bytes, nbytes) != 0)
			return false;
		return bits % 8 == 0 ||
			((addr->bytes[nbytes] ^ net.bytes[nbytes]) &
			 (0xff << (8 - bits % 8))) == 0;
	}
	if (kw_parse_address(entry, len, &net))
		return host == NULL ||
			(addr != NULL && addr->family == net.family &&
			 memcmp(addr->bytes, net.bytes, 16) == 0);

	/* a host name */
	while (len > 0 && entry[0] == '.')
	{
		entry++;
		len--;
	}
	while (len > 0 && entry[len - 1] == '.')
		len--;
	if (len == 0)
		return false;
	if (host == NULL)
	{
		for (int i = 0; i < len; i++)
		{
			if (!isalnum((unsigned char) entry[i]) &&
				strchr("-._", entry[i]) == NULL)
				return false;
		}
		return true;
	}
	else
	{
		int			hlen = strlen(host);

		while (hlen > 0 && host[hlen - 1] == '.')
			hlen--;
		if (addr != NULL || hlen < len ||
			pg_strncasecmp(host + hlen - len, entry, len) != 0)
			return false;
		return hlen == len || host[hlen - len - 1] == '.';
	}
}

/*
 * Does konvox_webhooks.no_proxy cover host?  With host NULL: the first
 * entry that is malformed, or NULL.
 */
static const char *
kw_no_proxy_scan(const char *list, const char *host, const KwAddress *addr,
				 int *bad_len)
{
	const char *p = list;

	while (p != NULL && *p != '\0')
	{
		const char *comma = strchr(p, ',');
		const char *end = comma ? comma : p + strlen(p);
		const char *start = p;

		while (start < end && (*start == ' ' || *start == '\t'))
			start++;
		while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
			end--;
		if (end > start)
		{
			bool		hit;

			hit = kw_no_proxy_entry(start, end - start, host, addr);

			if (host != NULL && hit)
				return start;
			if (host == NULL && !hit)
			{
				*bad_len = end - start;
				return start;
			}
		}
		p = comma ? comma + 1 : NULL;
	}
	return NULL;
}

/*
 * Decide whether a request goes through konvox_webhooks.proxy: yes when one
 * is set, unless konvox_webhooks.no_proxy covers the URL's host.  A request
 * through the proxy whose host is an IP address that we would refuse is
 * refused here, before the proxy sees it; a host name is the proxy's to
 * resolve, and to judge.  Returns false when the request is refused.
 */
static bool
kw_route(KwRequest *req)
{
	CURLU	   *h;
	char	   *host = NULL;
	KwAddress	addr;
	bool		literal = false;
	bool		allowed = true;

	req->via_proxy = false;
	if (kw_proxy == NULL || kw_proxy[0] == '\0')
		return true;

	/* a URL that does not parse goes to the proxy, and fails there */
	req->via_proxy = true;
	h = curl_url();
	if (h != NULL &&
		curl_url_set(h, CURLUPART_URL, req->url.data, 0) == CURLUE_OK &&
		curl_url_get(h, CURLUPART_HOST, &host, 0) == CURLUE_OK)
	{
		int			bad;

		literal = kw_parse_address(host, strlen(host), &addr);
		req->via_proxy = (kw_no_proxy == NULL ||
						  kw_no_proxy_scan(kw_no_proxy, host,
										   literal ? &addr : NULL,
										   &bad) == NULL);
		if (req->via_proxy && literal && !kw_allow_private_targets &&
			!kw_literal_allowed(&addr))
		{
			req->addresses_tried++;
			kw_note_refused(req, host);
			allowed = false;
		}
	}
	curl_free(host);
	curl_url_cleanup(h);
	return allowed;
}

/*
 * Describe a request that the proxy failed, before the tunnel to the
 * receiver was open, into req->error as "proxy: ..."; false when the
 * failure came later, from the receiver.  What the proxy said is not the
 * receiver's answer, so no status code is recorded.  The proxy's address
 * stays out of the message, as the receiver's does.
 */
static bool
kw_proxy_error(KwRequest *req, CURLcode result)
{
	long		connect_code = 0;

	curl_easy_getinfo(req->easy, CURLINFO_HTTP_CONNECTCODE, &connect_code);
	if (connect_code >= 200 && connect_code <= 299)
		return false;

	if (connect_code == 407)
		strlcpy(req->error,
				"proxy: CONNECT answered HTTP 407 (proxy authentication required)",
				sizeof(req->error));
	else if (connect_code != 0)
		snprintf(req->error, sizeof(req->error),
				 "proxy: CONNECT answered HTTP %ld", connect_code);
	else if (result == CURLE_COULDNT_RESOLVE_PROXY)
		strlcpy(req->error, "proxy: could not resolve the proxy's host name",
				sizeof(req->error));
	else if (result == CURLE_COULDNT_CONNECT)
		strlcpy(req->error, "proxy: could not connect to the proxy",
				sizeof(req->error));
	else if (result == CURLE_OPERATION_TIMEDOUT)
		strlcpy(req->error,
				"proxy: Timeout was reached before the proxy opened the tunnel",
				sizeof(req->error));
	else
		snprintf(req->error, sizeof(req->error), "proxy: %s",
				 curl_easy_strerror(result));
	req->status_code = 0;
	return true;
}

/*
 * Is proxy a value konvox_webhooks.proxy may have: http://, a host, a port,
 * perhaps credentials, nothing else?  Returns NULL if so, else a sentence
 * saying what is wrong, which never repeats the value.
 */
const char *
kw_http_check_proxy(const char *proxy)
{
	CURLU	   *h;
	char	   *scheme = NULL;
	char	   *host = NULL;
	char	   *port = NULL;
	char	   *path = NULL;
	char	   *query = NULL;
	char	   *fragment = NULL;
	const char *problem = NULL;

	for (const char *p = proxy; *p; p++)
	{
		if ((unsigned char) *p <= ' ' || *p == 0x7f)
			return "The proxy URL contains a space or a control character.";
	}
	h = curl_url();
	if (h == NULL)
		return "Out of memory while parsing the proxy URL.";
	if (curl_url_set(h, CURLUPART_URL, proxy, 0) != CURLUE_OK)
		problem = "The proxy is not an absolute URL.";
	else if (curl_url_get(h, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
			 strcmp(scheme, "http") != 0)
		problem = "Only http:// proxies are supported: requests to https receivers go through them in TLS, end to end.";
	else if (curl_url_get(h, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
			 host[0] == '\0')
		problem = "The proxy URL has no host.";
	else if (curl_url_get(h, CURLUPART_PORT, &port, 0) != CURLUE_OK)
		problem = "The proxy URL has no port.";
	else if ((curl_url_get(h, CURLUPART_PATH, &path, 0) == CURLUE_OK &&
			  strcmp(path, "/") != 0) ||
			 curl_url_get(h, CURLUPART_QUERY, &query, 0) == CURLUE_OK ||
			 curl_url_get(h, CURLUPART_FRAGMENT, &fragment, 0) == CURLUE_OK)
		problem = "The proxy URL has a path, a query or a fragment.";

	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_free(path);
	curl_free(query);
	curl_free(fragment);
	curl_url_cleanup(h);
	return problem;
}

/*
 * Is no_proxy a value konvox_webhooks.no_proxy may have?  Returns NULL if
 * so, else a sentence naming the first entry that is not well formed.
 */
const char *
kw_http_check_no_proxy(const char *no_proxy)
{
	int			len = 0;
	const char *bad = kw_no_proxy_scan(no_proxy, NULL, NULL, &len);

	if (bad == NULL)
		return NULL;
	return psprintf("\"%.*s\" is neither a host name, an IP address, a CIDR range nor *.",
					len, bad);
}

/*
 * Is url one that an endpoint may have?  Returns NULL if so, else a sentence
 * saying what is wrong, for the caller's errdetail.
 */
const char *
kw_http_check_url(const char *url)
{
	CURLU	   *h;
	CURLUcode	rc;
	char	   *scheme = NULL;
	char	   *host = NULL;
	char	   *user = NULL;
	char	   *password = NULL;
	const char *problem = NULL;

	for (const char *p = url; *p; p++)
	{
		if ((unsigned char) *p <= ' ' || *p == 0x7f)
			return "The URL contains a space or a control character.";
	}

	h = curl_url();
	if (h == NULL)
		return "Out of memory while parsing the URL.";

	rc = curl_url_set(h, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME);
	if (rc == CURLUE_NO_HOST)
		problem = "The URL has no host.";
	else if (rc != CURLUE_OK)
		problem = "The URL could not be parsed.";
	else if (curl_url_get(h, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
			 (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0))
		problem = "Only http and https URLs are allowed.";
	else if (strstr(url, "://") == NULL || strstr(url, "://")[3] == '/' ||
			 curl_url_get(h, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
			 host[0] == '\0')
		problem = "The URL has no host.";
	else if (curl_url_get(h, CURLUPART_USER, &user, 0) == CURLUE_OK ||
			 curl_url_get(h, CURLUPART_PASSWORD, &password, 0) == CURLUE_OK)
		problem = "The URL contains credentials.";

	curl_free(scheme);
	curl_free(host);
	curl_free(user);
	curl_free(password);
	curl_url_cleanup(h);
	return problem;
}
