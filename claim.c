/*-------------------------------------------------------------------------
 *
 * claim.c
 *		What a delivery worker sends next.
 *
 * The queue is the partial index deliveries_due_idx on (endpoint_id,
 * next_attempt_at, id) of the pending deliveries: each endpoint's
 * deliveries in the order they fall due.  A claim is one short transaction
 * that
 *
 *	 1. when the worker's view of the queue is stale (a commit woke the
 *		worker, or KW_ENUMERATE_MS passed), lists the endpoints that have
 *		pending deliveries, with one descent of the index each;
 *	 2. takes the endpoints that are due, least recently served first, and
 *		asks endpoint.c what it may take from each: its share of the room
 *		left under the caps, a probe if it is failing, nothing while a
 *		Retry-After holds it;
 *	 3. reads, in one statement, each of those endpoints' due deliveries
 *		after the last one claimed from it, with their events;
 *	 4. builds their requests; records as not sent the deliveries of a
 *		failing endpoint; fails those that cannot be sent (endpoint deleted,
 *		deactivated or of another company, event missing for a day, a
 *		request that cannot be built); commits; and only then sends.
 *
 * So a backlog of a million deliveries to one endpoint, sent or stuck, is
 * never read past on the way to another endpoint's: each endpoint's queue
 * is read on its own, as far as it may send.
 *
 * Every statement has one plan whatever the statistics say.  The queue is
 * read per endpoint as LATERAL ... ORDER BY the index's own columns LIMIT n,
 * and events are fetched by key per delivery, so only nested loops over
 * index scans answer them; the worker's session plans them generically and
 * turns off sequential and bitmap scans, hash and merge joins, so that a
 * table analyzed empty and read full, or the other way round, changes
 * nothing.  t/027_plans.pl checks the plans with statistics present.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "konvox_webhooks.h"
#include "worker.h"

/*
 * Look again this soon at an endpoint whose cap other workers hold, or that
 * another worker claims from (if the wake-up at the end of that claim, see
 * kw_claim_ended, were missed).
 */
#define KW_BUSY_RECHECK_MS	10

/* Fail the old deliveries of a missing endpoint at most this often. */
#define KW_ORPHAN_CHECK_MS	(10 * 60 * 1000)

/* An endpoint in the worker's view of the queue. */
typedef struct KwDue
{
	int64		endpoint_id;	/* hash key */
	TimestampTz due_at;			/* may have deliveries due from then */
	TimestampTz next_at;		/* the earliest future one known */
	TimestampTz served_at;		/* last claimed from */
	int			mine;			/* this worker's requests to it in flight */
	bool		listed;			/* by the last look at the whole queue */
	bool		waiting;		/* for another worker's claim from it to end */
	bool		capped;			/* its cap full, with requests of ours in it */
} KwDue;

/* An endpoint as the requests to it need it. */
typedef struct KwEndpointInfo
{
	int64		endpoint_id;	/* hash key */
	bool		exists;
	bool		active;
	int			cap;
	char	   *company_id;
	char	   *url;
	char	   *secret;
	char	   *previous_secret;
	TimestampTz previous_expires_at;
	Jsonb	   *headers;		/* its own, or NULL */
	TimestampTz orphans_checked_at; /* missing: its old deliveries failed */
} KwEndpointInfo;

/* What became of a claimed delivery, besides being sent. */
typedef enum KwVerdict
{
	KW_SEND,
	KW_NOT_SENT,				/* an attempt without a request; retried */
	KW_FAIL						/* failed at once, with a reason */
} KwVerdict;

static HTAB *kw_due = NULL;
static TimestampTz kw_next_claim_at = 0;	/* the earliest due_at */
static bool kw_view_stale = true;
static TimestampTz kw_woken_at = 0;	/* by a commit */
static TimestampTz kw_enumerated_at = 0;
static long kw_enumerate_usecs = 0;
static TimestampTz kw_claim_backoff_until = 0;
static TimestampTz kw_room_recheck_at = 0;	/* see kw_claim_next_time */
static bool kw_careful = false;

static MemoryContext kw_endpoints_context = NULL;
static HTAB *kw_endpoints = NULL;
static bool kw_endpoints_stale = false;
static Oid	kw_endpoints_relid = InvalidOid;

static Oid	kw_plans_for = InvalidOid;
static SPIPlanPtr kw_enumerate_plan = NULL;
static SPIPlanPtr kw_load_endpoints_plan = NULL;
static SPIPlanPtr kw_claim_plan = NULL;
static SPIPlanPtr kw_fail_plan = NULL;
static SPIPlanPtr kw_fail_endpoints_plan = NULL;

static void kw_prepare_plans(void);
static KwVerdict kw_prepare_request(KwRequest *req, KwEndpointInfo *ep,
									HeapTuple tuple, TupleDesc desc,
									TimestampTz now, const char **why);

/*
 * webhooks.endpoints changed: the cached endpoints are read again at the
 * next claim.  Only marked here: this runs wherever a lock is taken, also
 * in the middle of a claim that holds pointers into the cache.
 */
static void
kw_endpoints_invalidate(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == kw_endpoints_relid)
		kw_endpoints_stale = true;
}

/* Set up the view of the queue and the endpoint cache. */
void
kw_claim_init(void)
{
	HASHCTL		ctl;

	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(KwDue);
	ctl.hcxt = kw_worker_context;
	kw_due = hash_create("konvox_webhooks due endpoints", 256, &ctl,
						 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	kw_endpoints_context = AllocSetContextCreate(kw_worker_context,
												 "konvox_webhooks endpoints",
												 ALLOCSET_DEFAULT_SIZES);
	CacheRegisterRelcacheCallback(kw_endpoints_invalidate, (Datum) 0);
}

/* A commit or a reload: look at the whole queue again. */
void
kw_claim_reset(void)
{
	kw_view_stale = true;
	kw_woken_at = GetCurrentTimestamp();
	kw_claim_backoff_until = 0;
}

/* The share of an endpoint's cap that this worker may use. */
static int
kw_my_share(KwEndpointInfo *ep)
{
	int			cap = (ep != NULL) ? ep->cap : kw_max_concurrency_per_endpoint;

	return kw_share(cap, kw_running_workers());
}

/*
 * Is an endpoint of the view worth a claim once due?  Not while this worker
 * has nearly its share of the cap in flight to it: its own answers will
 * make room, and a claim for a few requests costs as much as for many.
 */
static bool
kw_worth_claiming(KwDue *due)
{
	KwEndpointInfo *ep = NULL;
	int			share;

	if (kw_endpoints != NULL)
		ep = hash_search(kw_endpoints, &due->endpoint_id, HASH_FIND, NULL);
	share = kw_my_share(ep);
	return due->mine == 0 || share - due->mine >= Max(1, share / 4);
}

/* Recompute kw_next_claim_at from the view. */
static void
kw_update_next_claim(void)
{
	HASH_SEQ_STATUS status;
	KwDue	   *due;

	kw_next_claim_at = DT_NOEND;
	hash_seq_init(&status, kw_due);
	while ((due = hash_seq_search(&status)) != NULL)
	{
		if (due->due_at < kw_next_claim_at && kw_worth_claiming(due))
			kw_next_claim_at = due->due_at;
	}
}

/* When the next look at the whole queue is due. */
static TimestampTz
kw_next_enumeration(void)
{
	TimestampTz earliest = kw_enumerated_at + (TimestampTz) 4 * kw_enumerate_usecs;

	if (kw_view_stale)
		return earliest;
	if (hash_get_num_entries(kw_due) > 0 || kw_http_in_flight() > 0)
		return Max(earliest, kw_enumerated_at +
				   (TimestampTz) KW_ENUMERATE_MS * 1000);
	return kw_enumerated_at + (TimestampTz) KW_IDLE_RECHECK_MS * 1000;
}

/*
 * When a claim is next wanted, if nothing wakes the worker before: never
 * while this worker has no room for a request, which only its own answers
 * can make.  When the others hold more than their shares (their number
 * changed, or max_concurrency), their answers make room that nothing tells
 * this worker of: it looks again every KW_BUSY_RECHECK_MS.
 */
TimestampTz
kw_claim_next_time(void)
{
	bool		others_over;
	TimestampTz next = Max(kw_claim_backoff_until,
						   Min(kw_next_claim_at, kw_next_enumeration()));

	if (kw_free_slots() == 0)
		return DT_NOEND;
	if (kw_endpoints_room(&others_over) > 0)
	{
		kw_room_recheck_at = 0;
		return next;
	}
	if (!others_over)
		return DT_NOEND;
	if (kw_room_recheck_at == 0)
		kw_room_recheck_at = GetCurrentTimestamp() +
			(TimestampTz) KW_BUSY_RECHECK_MS * 1000;
	return Max(next, kw_room_recheck_at);
}

/*
 * Another worker's claim from an endpoint that this one found it claiming
 * is over: such endpoints are due again at once.
 */
void
kw_claim_ended(void)
{
	HASH_SEQ_STATUS status;
	KwDue	   *due;

	hash_seq_init(&status, kw_due);
	while ((due = hash_seq_search(&status)) != NULL)
	{
		if (due->waiting)
		{
			due->waiting = false;
			due->due_at = 0;
		}
	}
	kw_update_next_claim();
}

/*
 * A reload: the endpoints' caps (max_concurrency_per_endpoint for those
 * without their own) are read again at the next claim.
 */
void
kw_claim_settings_changed(void)
{
	kw_endpoints_stale = true;
}

/* Is a claim wanted now? */
bool
kw_claim_wanted(void)
{
	return GetCurrentTimestamp() >= kw_claim_next_time();
}

/*
 * The entry of an endpoint, made if there is none: due at once, never
 * served, nothing of ours in flight.  *found says whether it was there.
 */
static KwDue *
kw_due_entry(int64 endpoint_id, bool *found)
{
	KwDue	   *due = hash_search(kw_due, &endpoint_id, HASH_ENTER, found);

	if (!*found)
	{
		due->due_at = 0;
		due->next_at = DT_NOEND;
		due->served_at = 0;
		due->mine = 0;
		due->listed = false;
		due->waiting = false;
		due->capped = false;
	}
	return due;
}

/* A retry of ours falls due at at. */
void
kw_claim_retry_at(int64 endpoint_id, TimestampTz at)
{
	bool		found;
	KwDue	   *due = kw_due_entry(endpoint_id, &found);

	if (!found || at < due->due_at)
		due->due_at = at;
	if (at < kw_next_claim_at)
		kw_next_claim_at = at;
}

/* One of this worker's requests to an endpoint is over. */
void
kw_claim_finished(KwRequest *req)
{
	KwDue	   *due = hash_search(kw_due, &req->endpoint_id, HASH_FIND, NULL);

	if (due == NULL)
		return;
	if (due->mine > 0)
		due->mine--;
	if (due->capped)
	{
		/* it made room under the cap */
		due->capped = false;
		due->due_at = 0;
	}
	if (due->due_at < kw_next_claim_at && kw_worth_claiming(due))
		kw_next_claim_at = due->due_at;
}

/*
 * Prepare the statements, once per extension: they are planned for the
 * tables of the extension as it is now (1.2 and later, or older).
 */
static void
kw_prepare_plans(void)
{
	Oid			nsp;
	StringInfoData sql;

	if (kw_plans_for == kw_extension_oid && kw_fail_endpoints_plan != NULL)
		return;

	/* forgotten as they are freed: preparing the new ones may fail midway */
	kw_free_plan(&kw_enumerate_plan);
	kw_free_plan(&kw_load_endpoints_plan);
	kw_free_plan(&kw_claim_plan);
	kw_free_plan(&kw_fail_plan);
	kw_free_plan(&kw_fail_endpoints_plan);
	nsp = get_namespace_oid("webhooks", false);
	kw_endpoints_relid = get_relname_relid("endpoints", nsp);
	kw_endpoints_invalidate((Datum) 0, InvalidOid);

	/*
	 * Every endpoint with pending deliveries, with the first (which may be
	 * in flight) and the earliest still to fall due: a skip scan of the
	 * queue index, one descent per endpoint.
	 */
	kw_enumerate_plan = kw_keep_plan(
		"/* konvox_webhooks: list the queue */"
		" WITH RECURSIVE e(endpoint_id, first_at) AS ("
		"   (SELECT d.endpoint_id, d.next_attempt_at"
		"      FROM webhooks.deliveries d"
		"     WHERE d.status = 'pending'"
		"     ORDER BY d.endpoint_id, d.next_attempt_at, d.id LIMIT 1)"
		"   UNION ALL"
		"   SELECT n.endpoint_id, n.next_attempt_at"
		"     FROM e CROSS JOIN LATERAL ("
		"       SELECT d.endpoint_id, d.next_attempt_at"
		"         FROM webhooks.deliveries d"
		"        WHERE d.status = 'pending' AND d.endpoint_id > e.endpoint_id"
		"        ORDER BY d.endpoint_id, d.next_attempt_at, d.id LIMIT 1) n"
		" )"
		" SELECT e.endpoint_id, e.first_at,"
		"        (SELECT d.next_attempt_at FROM webhooks.deliveries d"
		"          WHERE d.status = 'pending' AND d.endpoint_id = e.endpoint_id"
		"            AND d.next_attempt_at > now()"
		"          ORDER BY d.endpoint_id, d.next_attempt_at, d.id LIMIT 1)"
		"   FROM e",
		0, NULL);

	initStringInfo(&sql);
	/* columns from version 1.2 of the extension on */
	appendStringInfo(&sql,
					 "/* konvox_webhooks: load endpoints */"
					 " SELECT id, company_id, url, secret, previous_secret,"
					 "        previous_secret_expires_at, active, %s, %s"
					 "   FROM webhooks.endpoints WHERE id = ANY ($1)",
					 get_attnum(kw_endpoints_relid, "max_concurrency") !=
					 InvalidAttrNumber ? "max_concurrency" : "NULL::integer",
					 get_attnum(kw_endpoints_relid, "headers") !=
					 InvalidAttrNumber ? "headers" : "NULL::jsonb");
	{
		Oid			types[1] = {INT8ARRAYOID};

		kw_load_endpoints_plan = kw_keep_plan(sql.data, 1, types);
	}

	/*
	 * Each endpoint's due deliveries after the last one claimed, in the
	 * index's order, with their events fetched by key.
	 */
	{
		Oid			types[4] = {INT8ARRAYOID, TIMESTAMPTZARRAYOID,
		INT8ARRAYOID, INT4ARRAYOID};

		kw_claim_plan = kw_keep_plan(
			"/* konvox_webhooks: claim */"
			" SELECT c.endpoint_id, c.id, c.attempts, c.next_attempt_at,"
			"        c.created_at, ev.found, ev.event, ev.company_id,"
			"        ev.created_at, ev.data, c.event_id"
			"   FROM unnest($1, $2, $3, $4) AS q(endpoint_id, after_at, after_id, n)"
			"  CROSS JOIN LATERAL ("
			"        SELECT d.endpoint_id, d.id, d.attempts, d.next_attempt_at,"
			"               d.created_at, d.event_id"
			"          FROM webhooks.deliveries d"
			"         WHERE d.status = 'pending'"
			"           AND d.endpoint_id = q.endpoint_id"
			"           AND d.next_attempt_at <= now()"
			"           AND (d.next_attempt_at, d.id) > (q.after_at, q.after_id)"
			"         ORDER BY d.endpoint_id, d.next_attempt_at, d.id"
			"         LIMIT q.n) c"
			"   LEFT JOIN LATERAL ("
			"        SELECT true AS found, x.event, x.company_id, x.created_at,"
			"               x.data"
			"          FROM webhooks.events x WHERE x.id = c.event_id"
			"         LIMIT 1) ev ON true",
			4, types);
	}

	/*
	 * Fail deliveries that cannot be sent.  Pending is said as neither
	 * delivered nor failed, so that the planner cannot take the queue index
	 * (whose size its statistics may misjudge) to find rows by id: the
	 * primary key is the only index left that matches.
	 */
	{
		Oid			types[2] = {INT8ARRAYOID, TEXTARRAYOID};

		kw_fail_plan = kw_keep_plan(
			"/* konvox_webhooks: fail deliveries */"
			" UPDATE webhooks.deliveries d"
			"    SET status = 'failed', next_attempt_at = NULL,"
			"        finished_at = now(), last_error = r.reason"
			"   FROM unnest($1, $2) AS r(id, reason)"
			"  WHERE d.id = r.id"
			"    AND d.status <> 'delivered' AND d.status <> 'failed'",
			2, types);
	}
	{
		Oid			types[3] = {INT8ARRAYOID, TEXTARRAYOID,
		TIMESTAMPTZARRAYOID};

		kw_fail_endpoints_plan = kw_keep_plan(
			"/* konvox_webhooks: fail an endpoint's deliveries */"
			" UPDATE webhooks.deliveries d"
			"    SET status = 'failed', next_attempt_at = NULL,"
			"        finished_at = now(), last_error = r.reason"
			"   FROM unnest($1, $2, $3) AS r(endpoint_id, reason, before)"
			"  WHERE d.endpoint_id = r.endpoint_id AND d.status = 'pending'"
			"    AND d.created_at < r.before",
			3, types);
	}
	kw_plans_for = kw_extension_oid;
}

/* A copy of text in the endpoint cache, or NULL. */
static char *
kw_cache_string(HeapTuple tuple, TupleDesc desc, int col)
{
	char	   *value = SPI_getvalue(tuple, desc, col);

	return value ? MemoryContextStrdup(kw_endpoints_context, value) : NULL;
}

/*
 * Make sure the cache holds each of the endpoints (ids), existing or not,
 * and return them, in the order given.
 */
static KwEndpointInfo **
kw_load_endpoints(int64 *ids, int n)
{
	KwEndpointInfo **out = palloc(sizeof(KwEndpointInfo *) * Max(1, n));
	Datum	   *missing = palloc(sizeof(Datum) * Max(1, n));
	int			nmissing = 0;

	/* before the statement below, whose locks may mark the cache again */
	if (kw_endpoints_stale)
	{
		kw_endpoints = NULL;
		MemoryContextReset(kw_endpoints_context);
		kw_endpoints_stale = false;
	}
	if (kw_endpoints == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(int64);
		ctl.entrysize = sizeof(KwEndpointInfo);
		ctl.hcxt = kw_endpoints_context;
		kw_endpoints = hash_create("konvox_webhooks endpoint cache", 256,
								   &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	for (int i = 0; i < n; i++)
	{
		if (hash_search(kw_endpoints, &ids[i], HASH_FIND, NULL) == NULL)
			missing[nmissing++] = Int64GetDatum(ids[i]);
	}
	if (nmissing > 0)
	{
		Datum		args[1];

		args[0] = kw_array(missing, NULL, nmissing, INT8OID);
		if (kw_execute_plan(kw_load_endpoints_plan, args, NULL, true, 0) !=
			SPI_OK_SELECT)
			elog(ERROR, "could not read webhooks.endpoints");
		for (uint64 r = 0; r < SPI_processed; r++)
		{
			HeapTuple	tuple = SPI_tuptable->vals[r];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull;
			int64		id = DatumGetInt64(SPI_getbinval(tuple, desc, 1, &isnull));
			KwEndpointInfo *ep = hash_search(kw_endpoints, &id, HASH_ENTER, NULL);
			Datum		d;

			ep->exists = true;
			ep->company_id = kw_cache_string(tuple, desc, 2);
			ep->url = kw_cache_string(tuple, desc, 3);
			ep->secret = kw_cache_string(tuple, desc, 4);
			ep->previous_secret = kw_cache_string(tuple, desc, 5);
			d = SPI_getbinval(tuple, desc, 6, &isnull);
			ep->previous_expires_at = isnull ? 0 : DatumGetTimestampTz(d);
			ep->active = DatumGetBool(SPI_getbinval(tuple, desc, 7, &isnull));
			d = SPI_getbinval(tuple, desc, 8, &isnull);
			ep->cap = isnull ? kw_max_concurrency_per_endpoint :
				DatumGetInt32(d);
			d = SPI_getbinval(tuple, desc, 9, &isnull);
			ep->headers = NULL;
			if (!isnull)
			{
				MemoryContext old = MemoryContextSwitchTo(kw_endpoints_context);

				ep->headers = DatumGetJsonbPCopy(d);
				MemoryContextSwitchTo(old);
			}
		}
	}
	for (int i = 0; i < n; i++)
	{
		bool		found;
		KwEndpointInfo *ep = hash_search(kw_endpoints, &ids[i], HASH_ENTER,
										 &found);

		if (!found)
		{
			memset(((char *) ep) + sizeof(int64), 0,
				   sizeof(KwEndpointInfo) - sizeof(int64));
			ep->exists = false;
		}
		out[i] = ep;
	}
	return out;
}

/*
 * Look at the whole queue: the view becomes the endpoints that have pending
 * deliveries, each due when its first one is.
 */
static void
kw_enumerate(TimestampTz now)
{
	HASH_SEQ_STATUS status;
	KwDue	   *due;

	if (kw_execute_plan(kw_enumerate_plan, NULL, NULL, true, 0) !=
		SPI_OK_SELECT)
		elog(ERROR, "could not list the queue");

	hash_seq_init(&status, kw_due);
	while ((due = hash_seq_search(&status)) != NULL)
		due->listed = false;
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		bool		found;
		int64		id = DatumGetInt64(SPI_getbinval(tuple, desc, 1, &isnull));
		TimestampTz first_at = DatumGetTimestampTz(SPI_getbinval(tuple, desc,
																  2, &isnull));
		Datum		next = SPI_getbinval(tuple, desc, 3, &isnull);

		due = kw_due_entry(id, &found);
		due->listed = true;
		due->next_at = isnull ? DT_NOEND : DatumGetTimestampTz(next);
		due->due_at = (first_at <= now) ? 0 : first_at;
	}

	/* endpoints with nothing pending, and nothing of ours in flight */
	hash_seq_init(&status, kw_due);
	while ((due = hash_seq_search(&status)) != NULL)
	{
		if (!due->listed && due->mine == 0)
			hash_search(kw_due, &due->endpoint_id, HASH_REMOVE, NULL);
	}
	kw_view_stale = false;
}

/* qsort comparator: least recently served first. */
static int
kw_cmp_served(const void *a, const void *b)
{
	TimestampTz x = (*(KwDue *const *) a)->served_at;
	TimestampTz y = (*(KwDue *const *) b)->served_at;

	return (x > y) - (x < y);
}

/* The due endpoints of the view, least recently served first. */
static KwDue **
kw_due_endpoints(TimestampTz now, int *n)
{
	KwDue	  **out = palloc(sizeof(KwDue *) *
							 Max(1, hash_get_num_entries(kw_due)));
	HASH_SEQ_STATUS status;
	KwDue	   *due;

	*n = 0;
	hash_seq_init(&status, kw_due);
	while ((due = hash_seq_search(&status)) != NULL)
	{
		if (due->due_at <= now && kw_worth_claiming(due))
			out[(*n)++] = due;
	}
	qsort(out, *n, sizeof(KwDue *), kw_cmp_served);
	return out;
}

/* Is id among the n ids of skip? */
static bool
kw_skipped(KwCandidate *c, int64 id)
{
	for (int i = 0; i < c->nskip; i++)
	{
		if (c->skip[i] == id)
			return true;
	}
	return false;
}

/* Deliveries a claim fails, or records as not sent, with their reasons. */
typedef struct KwVerdicts
{
	int			n;
	Datum	   *ids;
	Datum	   *reasons;
	int32	   *attempts;		/* not sent only */
	int64	   *endpoints;		/* not sent only */
	char	  **texts;			/* not sent only */
} KwVerdicts;

static void
kw_verdicts_init(KwVerdicts *v, int size)
{
	v->n = 0;
	v->ids = palloc(sizeof(Datum) * Max(1, size));
	v->reasons = palloc(sizeof(Datum) * Max(1, size));
	v->attempts = palloc(sizeof(int32) * Max(1, size));
	v->endpoints = palloc(sizeof(int64) * Max(1, size));
	v->texts = palloc(sizeof(char *) * Max(1, size));
}

static void
kw_verdicts_add(KwVerdicts *v, int64 id, int32 attempt, int64 endpoint_id,
				const char *reason)
{
	v->ids[v->n] = Int64GetDatum(id);
	v->reasons[v->n] = CStringGetTextDatum(reason);
	v->attempts[v->n] = attempt;
	v->endpoints[v->n] = endpoint_id;
	v->texts[v->n] = pstrdup(reason);
	v->n++;
}

/*
 * Of the endpoints (ids, eps) that the claim's snapshot misses, which are
 * deleted (deleted[i]) and which exist by now (appeared[i]); both stay
 * false for the others.
 *
 * Deleted means listed in webhooks.deleted_endpoints, which the deletion
 * writes in its own transaction and which is not dumped, so a restore in
 * progress, whatever its order, has none of its endpoints there.  Both
 * tables are read in a statement with a snapshot of its own, newer than
 * the claim's: an endpoint loaded or deleted meanwhile is seen so.  Before
 * the update to 1.2 there is no such table, and no endpoint is taken for
 * deleted.
 */
static void
kw_missing_endpoints(int64 *ids, KwEndpointInfo **eps, int n, bool *deleted,
					 bool *appeared)
{
	MemoryContext old = CurrentMemoryContext;
	Datum	   *missing = palloc(sizeof(Datum) * Max(1, n));
	int			nmissing = 0;
	Oid			types[1] = {INT8ARRAYOID};
	Datum		args[1];
	bool		tombstones;
	int			nfound[2];
	Datum	   *found[2];
	char	   *sql;

	for (int i = 0; i < n; i++)
	{
		if (!eps[i]->exists)
			missing[nmissing++] = Int64GetDatum(ids[i]);
	}
	if (nmissing == 0)
		return;

	tombstones = OidIsValid(get_relname_relid("deleted_endpoints",
											  get_rel_namespace(kw_endpoints_relid)));
	sql = psprintf("/* konvox_webhooks: missing endpoints */"
				   " SELECT ARRAY(SELECT e.id FROM webhooks.endpoints e"
				   "               WHERE e.id = ANY ($1)),"
				   "        %s",
				   tombstones ?
				   "ARRAY(SELECT t.id FROM webhooks.deleted_endpoints t"
				   "       WHERE t.id = ANY ($1))" : "'{}'::bigint[]");
	args[0] = kw_array(missing, NULL, nmissing, INT8OID);

	/* not read-only: a snapshot of its own */
	if (SPI_execute_with_args(sql, 1, types, args, NULL, false, 1) !=
		SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not read webhooks.endpoints");
	MemoryContextSwitchTo(old);
	for (int col = 0; col < 2; col++)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0],
									  SPI_tuptable->tupdesc, col + 1, &isnull);

		if (isnull)
			elog(ERROR, "could not read webhooks.endpoints");
		deconstruct_array(DatumGetArrayTypeP(d), INT8OID, 8, FLOAT8PASSBYVAL,
						  TYPALIGN_DOUBLE, &found[col], NULL, &nfound[col]);
	}
	for (int i = 0; i < n; i++)
	{
		for (int j = 0; j < nfound[0]; j++)
			appeared[i] |= DatumGetInt64(found[0][j]) == ids[i];
		for (int j = 0; j < nfound[1] && !appeared[i]; j++)
			deleted[i] |= DatumGetInt64(found[1][j]) == ids[i];
	}
	if (nfound[0] > 0)
		kw_endpoints_stale = true;	/* read again at the next claim */
}

/*
 * The endpoints of the candidates that cannot be sent to at all: their
 * pending deliveries are failed, with why, and the endpoints held (and
 * looked at again at once, if appeared).  An endpoint that is deactivated
 * fails them at once; so does one deleted (kw_missing_endpoints).
 * Otherwise a missing endpoint is one that a restore has not loaded yet,
 * since pg_restore loads deliveries before endpoints: its deliveries wait,
 * and only those older than KW_ORPHAN_GRACE_MS are failed.
 */
static void
kw_fail_lost_endpoints(int64 *endpoint_ids, KwEndpointInfo **eps, int n,
					   bool *held, bool *appeared)
{
	Datum	   *ids = palloc(sizeof(Datum) * Max(1, n));
	Datum	   *reasons = palloc(sizeof(Datum) * Max(1, n));
	Datum	   *before = palloc(sizeof(Datum) * Max(1, n));
	bool	   *deleted = palloc0(sizeof(bool) * Max(1, n));
	int			nfail = 0;
	int			nwaiting = 0;
	TimestampTz grace = GetCurrentTimestamp() -
		(TimestampTz) KW_ORPHAN_GRACE_MS * 1000;

	memset(appeared, 0, sizeof(bool) * n);
	kw_missing_endpoints(endpoint_ids, eps, n, deleted, appeared);

	for (int i = 0; i < n; i++)
	{
		held[i] = !(eps[i]->exists && eps[i]->active);
		if (!held[i] || appeared[i])
			continue;

		/* a missing endpoint's old deliveries, now and then */
		if (!eps[i]->exists && !deleted[i])
		{
			if (GetCurrentTimestamp() - eps[i]->orphans_checked_at <
				(TimestampTz) KW_ORPHAN_CHECK_MS * 1000)
				continue;
			eps[i]->orphans_checked_at = GetCurrentTimestamp();
			nwaiting++;
		}
		ids[nfail] = Int64GetDatum(endpoint_ids[i]);
		reasons[nfail] = CStringGetTextDatum(eps[i]->exists ?
											 "endpoint deactivated" :
											 deleted[i] ? "endpoint deleted" :
											 "endpoint missing");
		before[nfail++] = TimestampTzGetDatum(eps[i]->exists || deleted[i] ?
											  DT_NOEND : grace);
	}
	if (nwaiting > 0)
		ereport(LOG,
				(errmsg_plural("konvox_webhooks worker holds the deliveries to %d missing endpoint until it appears, as in a restore not finished",
							   "konvox_webhooks worker holds the deliveries to %d missing endpoints until they appear, as in a restore not finished",
							   nwaiting, nwaiting),
				 errdetail("Those over %d hours old are failed with \"endpoint missing\"; those of a deleted endpoint are failed at once.",
						   (int) (KW_ORPHAN_GRACE_MS / 3600000))));
	if (nfail > 0)
	{
		Datum		args[3];

		args[0] = kw_array(ids, NULL, nfail, INT8OID);
		args[1] = kw_array(reasons, NULL, nfail, TEXTOID);
		args[2] = kw_array(before, NULL, nfail, TIMESTAMPTZOID);
		if (kw_execute_plan(kw_fail_endpoints_plan, args, NULL, false, 0) !=
			SPI_OK_UPDATE)
			elog(ERROR, "could not fail the deliveries of lost endpoints");
		if (SPI_processed > 0)
			ereport(LOG,
					(errmsg("konvox_webhooks failed " UINT64_FORMAT " deliveries whose endpoint is deleted, deactivated or missing",
							SPI_processed)));
	}
}

/*
 * Build the request of one claimed row, in a subtransaction when a claim
 * has failed before (kw_careful): then a row whose request cannot be built
 * fails alone, with the error as its reason.
 */
static KwVerdict
kw_prepare_carefully(KwRequest *req, KwEndpointInfo *ep, HeapTuple tuple,
					 TupleDesc desc, TimestampTz now, const char **why)
{
	MemoryContext old = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile KwVerdict verdict = KW_FAIL;

	if (!kw_careful)
		return kw_prepare_request(req, ep, tuple, desc, now, why);

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(old);
	PG_TRY();
	{
		verdict = kw_prepare_request(req, ep, tuple, desc, now, why);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(old);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		*why = psprintf("could not build the request: %s", edata->message);
		verdict = KW_FAIL;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
	CurrentResourceOwner = owner;
	return verdict;
}

/* One claim: what it works on, kept where PG_CATCH can see it. */
typedef struct KwClaimPass
{
	TimestampTz now;
	int			slots;			/* free request slots */
	KwDue	  **due;			/* the candidates' entries in the view */
	KwEndpointInfo **eps;		/* and their endpoints */
	KwCandidate *cands;
	int			ncands;
	bool		planned;		/* endpoint.c has marked them claimed */
	KwRequest **taken;			/* requests to send once committed */
	int			ntaken;
	KwVerdicts	fail;			/* deliveries to fail at once */
	KwVerdicts	unsent;			/* deliveries to record as not sent */
	bool	   *unsent_failed;	/* which of those that failed */
} KwClaimPass;

/*
 * The candidates of a claim: the due endpoints of the view, least
 * recently served first, that can be sent to.  The deliveries of those
 * that cannot (deleted, deactivated) are failed here.
 */
static void
kw_choose_candidates(KwClaimPass *p)
{
	int			ndue;
	int64	   *ids;
	bool	   *held;
	bool	   *appeared;

	p->due = kw_due_endpoints(p->now, &ndue);
	ndue = Min(ndue, KW_CLAIM_BATCH);
	ids = palloc(sizeof(int64) * Max(1, ndue));
	for (int i = 0; i < ndue; i++)
		ids[i] = p->due[i]->endpoint_id;
	p->eps = kw_load_endpoints(ids, ndue);
	held = palloc(sizeof(bool) * Max(1, ndue));
	appeared = palloc(sizeof(bool) * Max(1, ndue));
	kw_fail_lost_endpoints(ids, p->eps, ndue, held, appeared);

	p->cands = palloc0(sizeof(KwCandidate) * Max(1, ndue));
	for (int i = 0; i < ndue; i++)
	{
		KwCandidate *c = &p->cands[p->ncands];

		if (held[i])
		{
			p->due[i]->due_at = appeared[i] ? 0 : DT_NOEND;
			continue;
		}
		p->due[p->ncands] = p->due[i];
		p->eps[p->ncands] = p->eps[i];
		c->endpoint_id = ids[i];
		c->cap = p->eps[i]->cap;
		c->mine = p->due[i]->mine;
		p->ncands++;
	}
}

/*
 * The claim statement's arguments: for each candidate given anything,
 * where to read its queue and how far.  Returns how many.
 */
static int
kw_claim_args(KwClaimPass *p, Datum *args)
{
	Datum	   *ids = palloc(sizeof(Datum) * Max(1, p->ncands));
	Datum	   *at = palloc(sizeof(Datum) * Max(1, p->ncands));
	Datum	   *after = palloc(sizeof(Datum) * Max(1, p->ncands));
	Datum	   *n = palloc(sizeof(Datum) * Max(1, p->ncands));
	int			nq = 0;

	for (int i = 0; i < p->ncands; i++)
	{
		KwCandidate *c = &p->cands[i];

		c->limit = 0;
		if (c->send + c->not_sent == 0)
			continue;
		c->limit = Min(KW_CLAIM_BATCH, c->send + c->not_sent + c->nskip);
		ids[nq] = Int64GetDatum(c->endpoint_id);
		at[nq] = TimestampTzGetDatum(c->from_start ? DT_NOBEGIN : c->after_at);
		after[nq] = Int64GetDatum(c->from_start ? 0 : c->after_id);
		n[nq++] = Int32GetDatum(c->limit);
	}
	args[0] = kw_array(ids, NULL, nq, INT8OID);
	args[1] = kw_array(at, NULL, nq, TIMESTAMPTZOID);
	args[2] = kw_array(after, NULL, nq, INT8OID);
	args[3] = kw_array(n, NULL, nq, INT4OID);
	return nq;
}

/* The candidate a claimed row belongs to; rows come in the order asked. */
static int
kw_candidate_of(KwClaimPass *p, int64 endpoint_id, int from)
{
	for (int i = from; i < p->ncands; i++)
	{
		if (p->cands[i].endpoint_id == endpoint_id)
			return i;
	}
	for (int i = 0; i < from; i++)
	{
		if (p->cands[i].endpoint_id == endpoint_id)
			return i;
	}
	elog(ERROR, "claimed a delivery of endpoint " INT64_FORMAT ", not asked for",
		 endpoint_id);
	return -1;					/* keep compiler quiet */
}

/*
 * Read the candidates' due deliveries, in one statement, and decide what
 * becomes of each: a request to send, an attempt recorded as not sent, a
 * delivery failed at once, or nothing yet (in flight, or its event not
 * there yet).
 */
static void
kw_read_deliveries(KwClaimPass *p)
{
	Datum		args[4];
	int			ci = 0;

	kw_verdicts_init(&p->fail, 0);
	kw_verdicts_init(&p->unsent, 0);
	if (kw_claim_args(p, args) == 0)
		return;

	/* not read-only: the statement takes a snapshot of its own */
	if (kw_execute_plan(kw_claim_plan, args, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read due deliveries");
	kw_verdicts_init(&p->fail, SPI_processed);
	kw_verdicts_init(&p->unsent, SPI_processed);

	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		int64		endpoint_id = DatumGetInt64(SPI_getbinval(tuple, desc, 1, &isnull));
		int64		id = DatumGetInt64(SPI_getbinval(tuple, desc, 2, &isnull));
		int32		attempts = DatumGetInt32(SPI_getbinval(tuple, desc, 3, &isnull));
		TimestampTz at;
		KwCandidate *c;
		KwRequest  *req;
		const char *why = NULL;
		KwVerdict	verdict;

		ci = kw_candidate_of(p, endpoint_id, ci);
		c = &p->cands[ci];
		c->read++;
		at = DatumGetTimestampTz(SPI_getbinval(tuple, desc, 4, &isnull));
		if (!c->from_start)
		{
			c->advance = true;
			c->last_at = at;
			c->last_id = id;
		}

		if (kw_skipped(c, id))
			continue;			/* in flight: claimed before */

		/* its event is missing: a restore not done, or lost for good */
		(void) SPI_getbinval(tuple, desc, 6, &isnull);
		if (isnull)
		{
			TimestampTz created_at =
				DatumGetTimestampTz(SPI_getbinval(tuple, desc, 5, &isnull));

			if (p->now - created_at >= (TimestampTz) KW_ORPHAN_GRACE_MS * 1000)
				kw_verdicts_add(&p->fail, id, 0, endpoint_id, "event missing");
			continue;
		}

		/* a failing endpoint: all but the probe are recorded as not sent */
		if (c->send == 0)
		{
			if (c->not_sent > 0)
			{
				kw_verdicts_add(&p->unsent, id, attempts + 1, endpoint_id,
								c->note);
				c->not_sent--;
			}
			continue;
		}

		req = kw_take_slot();
		req->endpoint_id = endpoint_id;
		req->probe = c->probe;
		verdict = kw_prepare_carefully(req, p->eps[ci], tuple, desc, p->now,
									   &why);
		if (verdict == KW_SEND)
		{
			p->taken[p->ntaken++] = req;
			c->send--;
			c->taken++;
			if (c->from_start)
			{
				/*
				 * Read from the start, the last row read may be a delivery
				 * in flight with others after it: the cursor moves only as
				 * far as what is taken (kw_endpoints_claimed).
				 */
				c->advance = true;
				c->last_at = at;
				c->last_id = id;
			}
			continue;
		}
		kw_free_slot(req);
		if (verdict == KW_NOT_SENT)
			kw_verdicts_add(&p->unsent, id, attempts + 1, endpoint_id, why);
		else
			kw_verdicts_add(&p->fail, id, 0, endpoint_id, why);
	}
}

/* Fail, and record as not sent, what the claim decided so. */
static void
kw_write_verdicts(KwClaimPass *p)
{
	if (p->fail.n > 0)
	{
		Datum		args[2];

		args[0] = kw_array(p->fail.ids, NULL, p->fail.n, INT8OID);
		args[1] = kw_array(p->fail.reasons, NULL, p->fail.n, TEXTOID);
		if (kw_execute_plan(kw_fail_plan, args, NULL, false, 0) !=
			SPI_OK_UPDATE)
			elog(ERROR, "could not fail undeliverable deliveries");
		ereport(LOG,
				(errmsg("konvox_webhooks failed %d deliveries that cannot be sent, the first: %s",
						p->fail.n, p->fail.texts[0])));
	}
	if (p->unsent.n > 0)
	{
		p->unsent_failed = palloc(sizeof(bool) * p->unsent.n);
		kw_record_not_sent(p->unsent.ids, p->unsent.attempts,
						   p->unsent.endpoints, p->unsent.texts, p->unsent.n,
						   p->unsent_failed);
	}
}

/* When to look at each candidate again, after the claim has committed. */
static void
kw_schedule_candidates(KwClaimPass *p)
{
	TimestampTz now = p->now;

	for (int i = 0; i < p->ncands; i++)
	{
		KwCandidate *c = &p->cands[i];
		KwDue	   *d = p->due[i];

		d->waiting = false;
		d->capped = false;
		if (c->limit == 0)
		{
			/* held; claimed or capped by other workers; or no room left */
			if (c->hold_until > now)
				d->due_at = c->hold_until;
			else if (c->waits)
			{
				/* woken when that claim ends (kw_claim_ended) */
				d->waiting = true;
				d->due_at = now + (TimestampTz) KW_BUSY_RECHECK_MS * 1000;
			}
			else if (c->busy && d->mine > 0)
			{
				/*
				 * Due again at an answer of ours (kw_claim_finished); the
				 * others refill what theirs free.
				 */
				d->capped = true;
				d->due_at = DT_NOEND;
			}
			else if (c->busy)
				d->due_at = now + (TimestampTz) KW_BUSY_RECHECK_MS * 1000;
			else
				d->due_at = 0;
			continue;
		}
		d->served_at = now;
		d->mine += c->taken;
		if (c->read >= c->limit)
			d->due_at = 0;		/* more may be due */
		else if (c->hold_until > now)
			d->due_at = c->hold_until;
		else
			d->due_at = (d->next_at > now) ? d->next_at : DT_NOEND;
	}
	kw_update_next_claim();
}

/*
 * Claim what may be sent now, and send it; see the file's comment.
 */
void
kw_claim(void)
{
	MemoryContext old = CurrentMemoryContext;
	KwClaimPass *p = palloc0(sizeof(KwClaimPass));
	volatile bool ok = true;

	p->now = GetCurrentTimestamp();
	p->slots = kw_free_slots();
	kw_room_recheck_at = 0;
	p->taken = palloc(sizeof(KwRequest *) * Max(1, p->slots));
	PG_TRY();
	{
		kw_begin("claiming deliveries");
		MemoryContextSwitchTo(old);
		if (kw_extension_ready())
		{
			kw_prepare_plans();
			if (kw_view_stale || p->now >= kw_next_enumeration())
			{
				TimestampTz t0 = GetCurrentTimestamp();

				kw_enumerate(p->now);
				kw_enumerated_at = GetCurrentTimestamp();
				kw_enumerate_usecs = (long) (kw_enumerated_at - t0);
			}
			kw_choose_candidates(p);

			/* from here on, nothing may take a snapshot before the claim */
			kw_endpoints_plan(p->cands, p->ncands, p->slots,
							  kw_running_workers(), kw_woken_at);
			p->planned = true;
			kw_read_deliveries(p);
			kw_write_verdicts(p);
		}
		else
		{
			/* a commit in the database (CREATE EXTENSION) wakes us sooner */
			kw_claim_backoff_until = p->now +
				(TimestampTz) KW_MISSING_RECHECK_MS * 1000;
		}
		kw_commit();
	}
	PG_CATCH();
	{
		kw_recover(true);
		ok = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);

	if (!ok)
	{
		/* claim nothing; look at the queue again, carefully, in a while */
		if (p->planned)
			kw_endpoints_unclaim(p->cands, p->ncands);
		for (int i = 0; i < p->ntaken; i++)
			kw_free_slot(p->taken[i]);
		kw_view_stale = true;
		kw_careful = true;
		kw_claim_backoff_until = GetCurrentTimestamp() +
			(TimestampTz) KW_ERROR_BACKOFF_MS * 1000;
		return;
	}
	kw_careful = false;
	for (int i = 0; i < p->unsent.n; i++)
		kw_count_attempt(KW_OUTCOME_NOT_SENT, false, p->unsent_failed[i]);
	if (p->planned)
	{
		kw_endpoints_claimed(p->cands, p->ncands, p->taken, p->ntaken);
		kw_schedule_candidates(p);
	}

	/* the transaction is over: now, and only now, send */
	for (int i = 0; i < p->ntaken; i++)
		kw_http_start(p->taken[i], kw_request_timeout);
}

/*
 * Format a timestamp the way the envelope wants it: UTC, milliseconds, Z.
 * Returns false for a time out of range (infinity).
 */
static bool
kw_append_timestamp(StringInfo buf, TimestampTz ts)
{
	struct pg_tm tm;
	fsec_t		fsec;

	if (TIMESTAMP_NOT_FINITE(ts) ||
		timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0)
		return false;
	appendStringInfo(buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
					 tm.tm_year, tm.tm_mon, tm.tm_mday,
					 tm.tm_hour, tm.tm_min, tm.tm_sec, (int) (fsec / 1000));
	return true;
}

/*
 * Fill a request slot from one claimed row and its endpoint: the URL, the
 * envelope (the same bytes on every attempt, as they depend only on the
 * stored event) and the headers of this attempt.  Returns KW_SEND, or
 * why (in *why) the delivery is not sent: KW_NOT_SENT for an attempt that
 * fails and is retried, KW_FAIL for a delivery that fails at once.
 */
static KwVerdict
kw_prepare_request(KwRequest *req, KwEndpointInfo *ep, HeapTuple tuple,
				   TupleDesc desc, TimestampTz now, const char **why)
{
	bool		isnull;
	char	   *event_id;
	char	   *company;
	Jsonb	   *data;
	int64		unix_now;
	const char *previous_secret;

	req->delivery_id = DatumGetInt64(SPI_getbinval(tuple, desc, 2, &isnull));
	req->extension_oid = kw_extension_oid;
	req->attempt = DatumGetInt32(SPI_getbinval(tuple, desc, 3, &isnull)) + 1;

	company = TextDatumGetCString(SPI_getbinval(tuple, desc, 8, &isnull));
	if (strcmp(company, ep->company_id) != 0)
	{
		*why = "endpoint belongs to another company";
		return KW_FAIL;
	}

	resetStringInfo(&req->url);
	appendStringInfoString(&req->url, ep->url);

	resetStringInfo(&req->body);
	appendStringInfoString(&req->body, "{\"event\": ");
	escape_json(&req->body, TextDatumGetCString(SPI_getbinval(tuple, desc, 7,
															  &isnull)));
	appendStringInfoString(&req->body, ", \"timestamp\": \"");
	if (!kw_append_timestamp(&req->body,
							 DatumGetTimestampTz(SPI_getbinval(tuple, desc, 9,
															   &isnull))))
	{
		*why = "the event's created_at is not a finite time";
		return KW_FAIL;
	}
	appendStringInfoString(&req->body, "\", \"companyId\": ");
	escape_json(&req->body, company);
	appendStringInfoString(&req->body, ", \"data\": ");
	data = DatumGetJsonbP(SPI_getbinval(tuple, desc, 10, &isnull));
	(void) JsonbToCString(&req->body, &data->root, VARSIZE(data));
	appendStringInfoChar(&req->body, '}');

	/*
	 * Receivers read JSON as UTF-8.  From SQL_ASCII no conversion is
	 * defined, so those bytes go as they are; every other server encoding
	 * converts to UTF-8 without fail.
	 */
	if (GetDatabaseEncoding() != PG_UTF8 &&
		GetDatabaseEncoding() != PG_SQL_ASCII)
	{
		char	   *utf8 = pg_server_to_any(req->body.data, req->body.len,
											PG_UTF8);

		if (utf8 != req->body.data)
		{
			resetStringInfo(&req->body);
			appendStringInfoString(&req->body, utf8);
		}
	}

	/* Standard Webhooks headers, signed with every live secret */
	event_id = DatumGetCString(DirectFunctionCall1(uuid_out,
												   SPI_getbinval(tuple, desc, 11,
																 &isnull)));
	unix_now = (int64) (now / USECS_PER_SEC) +
		(POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY;
	previous_secret = (ep->previous_expires_at > now) ?
		ep->previous_secret : NULL;

	resetStringInfo(&req->headers);
	appendStringInfo(&req->headers,
					 "webhook-id: %s\nwebhook-timestamp: " INT64_FORMAT
					 "\nwebhook-signature: ",
					 event_id, unix_now);

	/* never unsigned: a receiver that checks signatures would take it */
	if (ep->secret == NULL ||
		!kw_sign(&req->headers, ep->secret, event_id, unix_now,
				 req->body.data, req->body.len))
	{
		*why = "not sent: the endpoint's secret is not a valid signing secret; give it a new one with webhooks.rotate_secret()";
		return KW_NOT_SENT;
	}
	if (previous_secret != NULL)
	{
		int			len = req->headers.len;

		appendStringInfoChar(&req->headers, ' ');
		if (!kw_sign(&req->headers, previous_secret, event_id, unix_now,
					 req->body.data, req->body.len))
			req->headers.data[req->headers.len = len] = '\0';
	}

	/*
	 * The endpoint's own headers, checked again: a restore with triggers
	 * disabled bypasses the endpoint's checks.
	 */
	if (ep->headers != NULL && !JB_ROOT_IS_SCALAR(ep->headers) &&
		JB_ROOT_COUNT(ep->headers) > 0)
	{
		if (!kw_check_headers(ep->headers, DEBUG1))
		{
			*why = "not sent: the endpoint's headers are not valid; set them again with webhooks.set_headers()";
			return KW_NOT_SENT;
		}
		appendStringInfoChar(&req->headers, '\n');
		kw_append_headers(&req->headers, ep->headers);
	}
	return KW_SEND;
}
