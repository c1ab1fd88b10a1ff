/*-------------------------------------------------------------------------
 *
 * konvox_webhooks.h
 *		Shared types, settings and prototypes of konvox_webhooks.
 *
 * The extension is split by what the code touches: konvox_webhooks.c holds
 * the SQL-callable functions, settings and shared memory; outbox.c what
 * emit() checks and writes; launcher.c the launcher; worker.c, claim.c,
 * record.c and retention.c a delivery worker, which reads and writes tables
 * through SPI (see worker.h), and endpoint.c what the workers share about
 * each endpoint; http.c everything that speaks to libcurl.  http.c never
 * opens a transaction and the worker's files never call libcurl.
 *
 *-------------------------------------------------------------------------
 */
#ifndef KONVOX_WEBHOOKS_H
#define KONVOX_WEBHOOKS_H

#include "datatype/timestamp.h"
#include "executor/spi.h"
#include "lib/ilist.h"
#include "lib/stringinfo.h"
#include "port/atomics.h"
#include "storage/lwlock.h"
#include "utils/jsonb.h"
#include "utils/uuid.h"

#include "compat.h"

#define KW_VERSION			"1.2"
#define KW_USER_AGENT		"konvox_webhooks/" KW_VERSION
#define KW_WORKER_TYPE		"konvox_webhooks worker"
#define KW_LAUNCHER_TYPE	"konvox_webhooks launcher"

/* Bytes of a response body kept in delivery_attempts.response_body. */
#define KW_RESPONSE_BODY_CAP	4096

/* Longest company id and event name, in bytes. */
#define KW_MAX_ID_LEN		255

/* Longest error text recorded for an attempt. */
#define KW_ERROR_LEN		256

/* Most headers of an endpoint, and most bytes of their names and values. */
#define KW_MAX_HEADERS		20
#define KW_MAX_HEADERS_SIZE	8192

/* Settings; see _PG_init for their meaning and defaults. */
extern char *kw_database_name;
extern int	kw_max_attempts;
extern int	kw_request_timeout;
extern int	kw_retry_base_delay;
extern int	kw_max_concurrency;
extern int	kw_max_concurrency_per_endpoint;
extern int	kw_breaker_failures;
extern int	kw_breaker_probe_interval;
extern int	kw_max_retry_delay;
extern int	kw_max_retry_after;
extern int	kw_workers;
extern int	kw_retention;
extern int	kw_max_payload_size;
extern bool kw_allow_private_targets;
extern char *kw_ca_file;
extern char *kw_proxy;
extern char *kw_no_proxy;

/* Most delivery workers konvox_webhooks.workers may ask for. */
#define KW_MAX_WORKERS		16

/* Most requests konvox_webhooks.max_concurrency may allow. */
#define KW_MAX_CONCURRENCY	10000

/*
 * Deliveries claimed and not yet recorded, over all workers: requests in
 * flight (at most max_concurrency), outcomes waiting to be recorded, and
 * deliveries of failing endpoints being recorded as not sent.
 */
#define KW_MAX_FLIGHTS		(2 * KW_MAX_CONCURRENCY + 1024)

/*
 * A delivery claimed by a worker and not yet recorded (see endpoint.c).
 * Listed under its endpoint, so that a worker reading that endpoint's queue
 * from its start can skip it, and under its worker, so that a worker that
 * exits gives its deliveries back.
 */
typedef struct KwFlight
{
	int64		delivery_id;
	int64		endpoint_id;
	int			worker;			/* index of the worker that claimed it */
	bool		request;		/* a request, counted against the caps */
	dlist_node	endpoint_node;	/* in the endpoint's list, or the free list */
	dlist_node	worker_node;
} KwFlight;

/*
 * One delivery worker as the backends that wake it see it: it is found
 * through its PGPROC number.
 */
typedef struct KwWorkerSlot
{
	pg_atomic_uint32 procno;	/* INVALID_PROC_NUMBER when not running */
	pg_atomic_uint32 pid;
	pg_atomic_uint32 in_flight; /* requests handed to libcurl */
	pg_atomic_uint32 woken_by_commit;	/* set with its latch by a commit */
	pg_atomic_uint32 claim_ended;	/* ... when a claim it waited for ended */
	int			requests;		/* its part of requests, under the lock */
	dlist_head	flights;		/* its KwFlights, under the lock */
} KwWorkerSlot;

/*
 * What an attempt came to, for the attempt counters; kw_outcome_names
 * holds the label of each.
 */
typedef enum KwOutcome
{
	KW_OUTCOME_SUCCESS,			/* a 2xx answer */
	KW_OUTCOME_HTTP_ERROR,		/* another answer */
	KW_OUTCOME_TIMEOUT,			/* no answer within request_timeout */
	KW_OUTCOME_NETWORK,			/* no connection, a reset, no DNS answer */
	KW_OUTCOME_TLS,				/* certificate not accepted, handshake */
	KW_OUTCOME_PROXY,			/* the proxy failed, before the tunnel */
	KW_OUTCOME_REFUSED,			/* address not allowed */
	KW_OUTCOME_NOT_SENT,		/* found unfit to send */
	KW_NUM_OUTCOMES
} KwOutcome;

extern const char *const kw_outcome_names[KW_NUM_OUTCOMES];

typedef struct KwSharedState
{
	KwWorkerSlot workers[KW_MAX_WORKERS];
	pg_atomic_uint32 launcher_procno;	/* INVALID_PROC_NUMBER when none */

	/* the rest is under lock, which also guards the endpoint states */
	LWLock	   *lock;
	int			requests;		/* requests in flight, all workers */
	int			nendpoints;		/* entries in the endpoint states */
	bool		endpoints_full; /* the log has said that they are */
	int			nfree_flights;
	dlist_head	free_flights;
	KwFlight	flights[KW_MAX_FLIGHTS];

	/*
	 * Counters since the server started, for monitoring: added to by the
	 * workers once the outcomes they count are committed, and never reset
	 * otherwise, so that rates can be taken of them.
	 */
	TimestampTz counted_since;
	pg_atomic_uint64 delivered; /* deliveries recorded as delivered */
	pg_atomic_uint64 failed;	/* deliveries recorded as failed */
	pg_atomic_uint64 attempts[KW_NUM_OUTCOMES];
} KwSharedState;

extern KwSharedState *kw_shared;

/*
 * One HTTP request and, once it has finished, its outcome.  The worker fills
 * the first part, http.c the second.  Every buffer is owned by the request
 * and reused when the slot is used again, so a long run allocates nothing
 * per delivery.
 */
typedef struct KwRequest
{
	/* set by the worker */
	int64		delivery_id;
	int64		endpoint_id;
	Oid			extension_oid;	/* the extension the delivery belongs to */
	int32		attempt;		/* the number of this attempt, from 1 */
	bool		probe;			/* the one request of a failing endpoint */
	KwFlight   *flight;			/* its claim, in shared memory */
	StringInfoData url;
	StringInfoData body;
	StringInfoData headers;		/* "Name: value\n" lines */

	/* set by http.c */
	TimestampTz started_at;
	TimestampTz finished_at;
	bool		sent;			/* handed to libcurl (else see error) */
	int			status_code;	/* 0 when no response came */
	bool		succeeded;		/* 2xx */
	int			retry_after;	/* seconds a 429 or 503 asked to wait */
	char		error[KW_ERROR_LEN];	/* empty on success */
	KwOutcome	outcome;
	char	   *response;		/* KW_RESPONSE_BODY_CAP + 1 bytes */
	int			response_len;

	/* private to http.c */
	void	   *easy;
	void	   *header_list;
	bool		via_proxy;		/* sent through konvox_webhooks.proxy */
	bool		reached;		/* connected to the receiver (tunnel up) */
	int			addresses_tried;	/* connections libcurl tried to open */
	int			addresses_refused;	/* of which not allowed */
	char		refused_addresses[KW_ERROR_LEN];	/* for the server log */
	char		curl_error[KW_ERROR_LEN];	/* libcurl's error buffer */
	bool		awaited_answer; /* waited to read on an open connection */
	struct KwRequest *next_done;
} KwRequest;

/* konvox_webhooks.c */
extern bool kw_in_delivery_worker;
extern bool kw_in_launcher;
extern void kw_wake_worker(void);
extern bool kw_wake_slot(int i, bool by_commit);
extern bool kw_sign(StringInfo out, const char *secret, const char *msg_id,
					int64 timestamp, const char *body, int body_len);
extern void kw_count_attempt(KwOutcome outcome, bool delivered, bool failed);
extern bool kw_check_headers(Jsonb *headers, int elevel);
extern void kw_append_headers(StringInfo out, Jsonb *headers);

/* outbox.c */
extern void kw_outbox_init(void);
extern SPIPlanPtr kw_keep_plan(const char *sql, int nargs, Oid *argtypes);
extern void kw_free_plan(SPIPlanPtr *plan);
extern void kw_validate_event(const char *event, Jsonb *data);
extern void kw_check_event_type(const char *name, Jsonb *fields,
								Jsonb *sample);
extern int	kw_write_event(pg_uuid_t *id, text *event, text *company_id,
						   Jsonb *data);
extern pg_uuid_t *kw_write_keyed_event(pg_uuid_t *id, text *event,
									   text *company_id, Jsonb *data,
									   text *key, int *ndeliveries);

/* launcher.c */
extern PGDLLEXPORT void kw_launcher_main(Datum main_arg);

/* worker.c */
extern PGDLLEXPORT void kw_worker_main(Datum main_arg);

/* endpoint.c */
extern Size kw_endpoint_shmem_size(void);
extern void kw_endpoint_shmem_init(void);

/* http.c */
extern void kw_http_init(int max_concurrency);
extern void kw_http_configure(int max_concurrency);
extern int	kw_http_socket(void);
extern long kw_http_timeout(void);
extern void kw_http_start(KwRequest *req, int timeout_ms);
extern void kw_http_fail(KwRequest *req, const char *reason);
extern void kw_http_drive(void);
extern KwRequest *kw_http_next_done(void);
extern bool kw_http_has_done(void);
extern int	kw_http_in_flight(void);
extern const char *kw_http_check_url(const char *url);
extern const char *kw_http_check_proxy(const char *proxy);
extern const char *kw_http_check_no_proxy(const char *no_proxy);

#endif							/* KONVOX_WEBHOOKS_H */
