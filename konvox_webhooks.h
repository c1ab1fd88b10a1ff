/*-------------------------------------------------------------------------
 *
 * konvox_webhooks.h
 *		Shared types, settings and prototypes of konvox_webhooks.
 *
 * The extension is split by what the code touches: konvox_webhooks.c holds
 * the SQL-callable functions, settings and shared memory; worker.c the
 * background worker, which reads and writes tables through SPI; http.c
 * everything that speaks to libcurl.  http.c never opens a transaction and
 * worker.c never calls libcurl.
 *
 *-------------------------------------------------------------------------
 */
#ifndef KONVOX_WEBHOOKS_H
#define KONVOX_WEBHOOKS_H

#include "datatype/timestamp.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "port/atomics.h"
#include "utils/jsonb.h"
#include "utils/uuid.h"

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
extern int	kw_workers;
extern int	kw_retention;
extern int	kw_max_payload_size;
extern bool kw_allow_private_targets;
extern char *kw_ca_file;
extern char *kw_proxy;
extern char *kw_no_proxy;

/* Most delivery workers konvox_webhooks.workers may ask for. */
#define KW_MAX_WORKERS		16

/*
 * One delivery worker as the backends that wake it see it.  Only plain
 * values: the worker is found through its PGPROC number.
 */
typedef struct KwWorkerSlot
{
	pg_atomic_uint32 procno;	/* INVALID_PGPROCNO when not running */
	pg_atomic_uint32 pid;
	pg_atomic_uint32 in_flight; /* requests handed to libcurl */
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
	Oid			extension_oid;	/* the extension the delivery belongs to */
	int32		attempt;		/* the number of this attempt, from 1 */
	const char *not_sent;		/* why it must not be sent, or NULL */
	StringInfoData url;
	StringInfoData body;
	StringInfoData headers;		/* "Name: value\n" lines */

	/* set by http.c */
	TimestampTz started_at;
	TimestampTz finished_at;
	int			status_code;	/* 0 when no response came */
	bool		succeeded;		/* 2xx */
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
	struct KwRequest *next_done;
} KwRequest;

/* konvox_webhooks.c */
extern bool kw_in_delivery_worker;
extern void kw_wake_worker(void);
extern bool kw_sign(StringInfo out, const char *secret, const char *msg_id,
					int64 timestamp, const char *body, int body_len);
extern void kw_count_attempt(KwOutcome outcome, bool delivered, bool failed);
extern bool kw_check_headers(Jsonb *headers, int elevel);
extern void kw_append_headers(StringInfo out, Jsonb *headers);

/* outbox.c */
extern void kw_outbox_init(void);
extern SPIPlanPtr kw_keep_plan(const char *sql, int nargs, Oid *argtypes);
extern void kw_validate_event(const char *event, Jsonb *data);
extern void kw_check_event_type(const char *name, Jsonb *fields,
								Jsonb *sample);
extern int	kw_write_event(pg_uuid_t *id, text *event, text *company_id,
						   Jsonb *data);
extern pg_uuid_t *kw_write_keyed_event(pg_uuid_t *id, text *event,
									   text *company_id, Jsonb *data,
									   text *key, int *ndeliveries);

/* worker.c */
extern PGDLLEXPORT void kw_launcher_main(Datum main_arg);
extern PGDLLEXPORT void kw_worker_main(Datum main_arg);

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
