/*-------------------------------------------------------------------------
 *
 * worker.h
 *		What the parts of a konvox_webhooks delivery worker share.
 *
 * A delivery worker is one loop (worker.c) around three steps, each in a
 * file of its own: the claim, which decides what to send next (claim.c);
 * the recording of outcomes (record.c); and retention (retention.c).  What
 * the workers decide together -- how many requests each endpoint has in
 * flight, its health, where its queue was last read -- lives in shared
 * memory and is kept by endpoint.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef KONVOX_WEBHOOKS_WORKER_H
#define KONVOX_WEBHOOKS_WORKER_H

#include "konvox_webhooks.h"

/* Most deliveries read by one claim. */
#define KW_CLAIM_BATCH		1000

/* How long to wait before looking again for a missing extension. */
#define KW_MISSING_RECHECK_MS	5000

/* After an error in a claim, wait this long before the next. */
#define KW_ERROR_BACKOFF_MS	1000

/* Look at the whole queue at least this often while anything is pending. */
#define KW_ENUMERATE_MS		1000

/* Look at the whole queue at least this often, whatever else happens. */
#define KW_IDLE_RECHECK_MS	60000

/*
 * An endpoint's queue is read from its start, rather than after the last
 * delivery claimed, at least this often: rows committed late with an early
 * next_attempt_at wait no longer than this.  Rows committed out of order
 * are common (next_attempt_at is a transaction's start, and transactions
 * overlap), so an endpoint with at most KW_RESCAN_SKIP deliveries claimed
 * is also read from its start after every commit that wakes the worker: a
 * few rows read again, for a row committed late not to wait.
 */
#define KW_RESCAN_MS		1000
#define KW_RESCAN_SKIP		32

/* A delivery whose event is missing is failed once it is this old. */
#define KW_ORPHAN_GRACE_MS	(24 * 3600 * 1000L)

/*
 * New outcomes wait to be recorded until there are this many, or until the
 * oldest has waited this long: a statement costs about as much as twenty
 * of its rows.
 */
#define KW_RECORD_BATCH		256
#define KW_RECORD_DELAY_MS	2

/*
 * Deliveries of a failing endpoint recorded as not sent: a small batch at
 * most every KW_NOT_SENT_INTERVAL_MS (1,000 a second), so that a backlog
 * of them costs the other endpoints little, and no claim that records
 * them holds up the others' requests for long.
 */
#define KW_NOT_SENT_BATCH	25
#define KW_NOT_SENT_INTERVAL_MS	25

/*
 * An endpoint that a claim may take deliveries from, and what endpoint.c
 * allows it to take.
 */
typedef struct KwCandidate
{
	int64		endpoint_id;
	int			cap;			/* its concurrency cap */
	int			mine;			/* this worker's requests to it in flight */

	/* set by kw_endpoints_plan() */
	int			send;			/* deliveries to send now */
	bool		probe;			/* the one request of a failing endpoint */
	int			not_sent;		/* deliveries to record as not sent */
	bool		from_start;		/* read its queue from the start */
	TimestampTz planned_at;		/* before the claim's snapshot */
	TimestampTz after_at;		/* else read after this delivery */
	int64		after_id;
	int			nskip;			/* in flight: not to be claimed again */
	int64	   *skip;
	TimestampTz hold_until;		/* nothing allowed before this time */
	char		note[KW_ERROR_LEN]; /* why deliveries are not sent */

	bool		busy;			/* another worker claims from it, or holds its cap */
	bool		waits;			/* woken when another worker's claim ends */

	/* set by the claim */
	int			limit;			/* deliveries asked for */
	int			taken;			/* requests taken */
	int			read;			/* deliveries the claim read */
	bool		advance;		/* move the cursor to last_at, last_id: */
	TimestampTz last_at;		/* the last read, or from the start the */
	int64		last_id;		/* last taken */
} KwCandidate;

/* worker.c */
extern int	kw_worker_index;
extern KwWorkerSlot *kw_me;
extern MemoryContext kw_worker_context;
extern Oid	kw_extension_oid;
extern KwRequest *kw_take_slot(void);
extern void kw_free_slot(KwRequest *req);
extern int	kw_free_slots(void);
extern void kw_begin(const char *activity);
extern void kw_commit(void);
extern int	kw_execute_plan(SPIPlanPtr plan, Datum *args, const char *nulls,
							bool read_only, long count);
extern int	kw_execute(const char *sql, bool read_only, long count);
extern void kw_recover(bool report);
extern void kw_recover_with_message(bool report, char *error, int errorlen);
extern bool kw_extension_ready(void);
extern long kw_ms_until(TimestampTz t);
extern Datum kw_array(Datum *values, bool *nulls, int n, Oid elemtype);

/* claim.c */
extern void kw_claim_init(void);
extern void kw_claim_reset(void);
extern void kw_claim(void);
extern bool kw_claim_wanted(void);
extern void kw_claim_ended(void);
extern void kw_claim_settings_changed(void);
extern TimestampTz kw_claim_next_time(void);
extern void kw_claim_retry_at(int64 endpoint_id, TimestampTz at);
extern void kw_claim_finished(KwRequest *req);

/* record.c */
extern void kw_record_add(KwRequest *req);
extern void kw_record_answered(void);
extern bool kw_record_due(int in_flight);
extern TimestampTz kw_record_next_time(void);
extern void kw_record(void);
extern void kw_record_not_sent(Datum *ids, int32 *attempts, int64 *endpoints,
							   char **reasons, int n, bool *failed);

/* retention.c */
extern void kw_apply_retention(void);
extern TimestampTz kw_retention_next_time(void);
extern void kw_retention_reset(void);

/* endpoint.c */
extern void kw_endpoints_plan(KwCandidate *cands, int ncands, int room,
							  int nworkers, TimestampTz woken_at);
extern void kw_endpoints_claimed(KwCandidate *cands, int ncands,
								 KwRequest **reqs, int nreqs);
extern void kw_endpoints_unclaim(KwCandidate *cands, int ncands);
extern void kw_endpoints_answered(KwRequest **reqs, int nreqs);
extern void kw_endpoints_finished(KwRequest **reqs, int nreqs);
extern void kw_endpoints_worker_exit(void);
extern int	kw_endpoints_room(bool *others_over);
extern int	kw_running_workers(void);

/* A worker's share of a cap: the cap over the workers, rounded up. */
static inline int
kw_share(int cap, int nworkers)
{
	return (cap + nworkers - 1) / nworkers;
}

#endif							/* KONVOX_WEBHOOKS_WORKER_H */
