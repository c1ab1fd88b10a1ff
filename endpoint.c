/*-------------------------------------------------------------------------
 *
 * endpoint.c
 *		What the delivery workers share about each endpoint: the deliveries
 *		claimed for it and not yet recorded, where its queue was last read,
 *		its health (a circuit breaker) and a Retry-After hold.
 *
 * Any worker may send any delivery.  Three rules keep that safe and fair:
 *
 * - One worker at a time claims from an endpoint (its claiming mark), and
 *   reads its queue after the last delivery claimed from it, so that no
 *   two claims read the same rows.  A worker that finds the mark there is
 *   woken when it ends, so that it claims then rather than on a timer.
 * - A delivery claimed and not yet recorded is a KwFlight, listed under its
 *   endpoint.  When a claim reads an endpoint's queue from its start (to
 *   pick up rows committed late, see KW_RESCAN_MS), it copies that list
 *   under the lock before its snapshot is taken, and skips those
 *   deliveries.  A delivery leaves the list only after the transaction
 *   that records its outcome has committed: a snapshot that still sees it
 *   pending was taken while it was still listed.
 * - An endpoint has at most its cap of requests in flight over all
 *   workers, and each worker at most its share of that cap; all endpoints
 *   together at most max_concurrency, and each worker at most its share of
 *   that too.  A claim shares what it may take
 *   among the endpoints that are due, least recently served first.
 *
 * Health follows the outcomes: after breaker_failures consecutive failed
 * requests (transport errors, timeouts, 5xx, 429) an endpoint is failing;
 * it then gets one probe request at a time, every breaker_probe_interval,
 * and its other due deliveries are recorded as not sent.  A successful
 * answer closes the breaker.  A 429 or 503 with Retry-After holds the
 * endpoint until then.
 *
 * The table holds endpoints with something claimed, failures counted or a
 * hold; the others are dropped.  Everything here is under kw_shared->lock,
 * but for the wake-ups, which set a worker's flag and latch once it is
 * released.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/extension.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"

#include "konvox_webhooks.h"
#include "worker.h"

/* A bit per worker in KwEndpointState.waiting */
StaticAssertDecl(KW_MAX_WORKERS <= 32, "too many workers for a uint32 mask");

/* Endpoints that the table can hold at once. */
#define KW_MAX_ENDPOINT_STATES	16384

/* Bytes of an endpoint's last error kept for its health. */
#define KW_HEALTH_ERROR_LEN		96

typedef enum KwHealth
{
	KW_HEALTHY,
	KW_FAILING,					/* breaker open: only probes */
	KW_PROBING					/* breaker open, a probe in flight */
} KwHealth;

typedef struct KwEndpointState
{
	int64		endpoint_id;	/* hash key */
	Oid			extension_oid;	/* of the extension whose endpoint it is */
	int			requests;		/* requests in flight, all workers */
	int			claiming;		/* index + 1 of the worker claiming, or 0 */
	uint32		waiting;		/* workers waiting for that claim to end */
	int			reserved;		/* of requests, held for that claim */
	dlist_head	flights;		/* its KwFlights */
	TimestampTz after_at;		/* the last delivery claimed from it */
	int64		after_id;
	TimestampTz rescanned_at;	/* its queue last read from the start */
	KwHealth	health;
	int			failures;		/* consecutive failed requests */
	TimestampTz failing_since;
	TimestampTz next_probe_at;
	TimestampTz retry_after_until;
	TimestampTz not_sent_at;	/* its next batch recorded as not sent */
	char		last_error[KW_HEALTH_ERROR_LEN];
} KwEndpointState;

/* A change of health, logged once the lock is released. */
typedef struct KwHealthNote
{
	int64		endpoint_id;
	bool		failing;
	int			failures;
	char		error[KW_HEALTH_ERROR_LEN];
} KwHealthNote;

static HTAB *kw_states = NULL;

static void kw_state_forget(KwEndpointState *st);

PG_FUNCTION_INFO_V1(kw_endpoint_states);

/* Shared memory for the endpoint states. */
Size
kw_endpoint_shmem_size(void)
{
	return hash_estimate_size(KW_MAX_ENDPOINT_STATES, sizeof(KwEndpointState));
}

/*
 * Attach to the endpoint states, creating them on first use; called from
 * the shared memory startup hook.
 */
void
kw_endpoint_shmem_init(void)
{
	HASHCTL		ctl;

	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(KwEndpointState);
	kw_states = ShmemInitHash("konvox_webhooks endpoints",
							  KW_MAX_ENDPOINT_STATES, KW_MAX_ENDPOINT_STATES,
							  &ctl, HASH_ELEM | HASH_BLOBS | HASH_FIXED_SIZE);
}

/*
 * The state of an endpoint, made when create is true and there is none.
 * Returns NULL when there is none, or no room for one (said in the log
 * once).
 */
static KwEndpointState *
kw_state(int64 endpoint_id, bool create)
{
	KwEndpointState *st;
	bool		found;

	st = hash_search(kw_states, &endpoint_id,
					 create ? HASH_ENTER_NULL : HASH_FIND, &found);
	if (st == NULL)
	{
		if (create && !kw_shared->endpoints_full)
			ereport(LOG,
					(errmsg("konvox_webhooks is following %d endpoints, as many as it can; others wait until one of them is done",
							KW_MAX_ENDPOINT_STATES)));
		kw_shared->endpoints_full = create;
		return NULL;
	}
	if (!found)
	{
		st->requests = 0;
		st->claiming = 0;
		st->waiting = 0;
		st->reserved = 0;
		dlist_init(&st->flights);
		kw_state_forget(st);
		kw_shared->nendpoints++;
	}
	return st;
}

/*
 * Forget what an endpoint's state knows of its queue and health, and give
 * it to the extension of this worker.  A dropped and created extension
 * numbers its endpoints from 1 again: what the old endpoint of an id
 * taught (a breaker, a Retry-After hold) says nothing of the new one.
 * Requests still in flight stay counted against the caps.
 */
static void
kw_state_forget(KwEndpointState *st)
{
	st->extension_oid = kw_extension_oid;
	st->after_at = DT_NOBEGIN;
	st->after_id = 0;
	st->rescanned_at = 0;
	st->health = KW_HEALTHY;
	st->failures = 0;
	st->failing_since = 0;
	st->next_probe_at = 0;
	st->retry_after_until = 0;
	st->not_sent_at = 0;
	st->last_error[0] = '\0';
}

/* Drop an endpoint's state once there is nothing in it to keep. */
static void
kw_state_drop_if_idle(KwEndpointState *st, TimestampTz now)
{
	if (st->claiming == 0 && dlist_is_empty(&st->flights) &&
		st->health == KW_HEALTHY && st->failures == 0 &&
		st->retry_after_until <= now)
	{
		hash_search(kw_states, &st->endpoint_id, HASH_REMOVE, NULL);
		kw_shared->nendpoints--;
		kw_shared->endpoints_full = false;
	}
}

/*
 * End an endpoint's claiming mark.  The workers that found it there are
 * added to *wake, to be woken (kw_wake_waiting) once the lock is released.
 */
static void
kw_end_claiming(KwEndpointState *st, uint32 *wake)
{
	st->claiming = 0;
	*wake |= st->waiting;
	st->waiting = 0;
}

/* Wake the workers that waited for claiming marks to end: they may claim. */
static void
kw_wake_waiting(uint32 wake)
{
	for (int i = 0; i < kw_workers; i++)
	{
		if (wake & ((uint32) 1 << i))
			(void) kw_wake_slot(i, false);
	}
}

/* Has an endpoint at most n deliveries claimed?  The caller holds the lock. */
static bool
kw_few_flights(KwEndpointState *st, int n)
{
	dlist_iter	iter;

	dlist_foreach(iter, &st->flights)
	{
		if (--n < 0)
			return false;
	}
	return true;
}

/*
 * Count n more requests in flight (or fewer, n < 0) to an endpoint, by a
 * worker, against the caps.  The caller holds the lock.
 */
static void
kw_count_requests(KwEndpointState *st, KwWorkerSlot *worker, int n)
{
	if (st != NULL)
		st->requests += n;
	worker->requests += n;
	kw_shared->requests += n;
}

/*
 * Requests that this worker may still start: its share of max_concurrency,
 * within what all workers together leave.  Without a share, the worker
 * that claims first would take all the room at every answer, and the
 * others would wait for an answer of their own that never comes.
 */
static int
kw_room(int nworkers)
{
	return Min(kw_max_concurrency - kw_shared->requests,
			   kw_share(kw_max_concurrency, nworkers) - kw_me->requests);
}

/*
 * Decide, for each candidate endpoint, what the claim may take from it:
 * requests to send (room in all, shared among the candidates), a probe, or
 * deliveries to record as not sent; and where to read its queue.  Marks the
 * endpoints given anything as claimed by this worker, and this worker as
 * waiting on those that another is claiming from.  Called in the claim
 * transaction before its first snapshot; see the file's comment.  woken_at
 * is when a commit last woke the worker (KW_RESCAN_SKIP).
 */
void
kw_endpoints_plan(KwCandidate *cands, int ncands, int room, int nworkers,
				  TimestampTz woken_at)
{
	TimestampTz now = GetCurrentTimestamp();
	int		   *want = palloc0(sizeof(int) * Max(1, ncands));
	int			nwant = 0;

	LWLockAcquire(kw_shared->lock, LW_EXCLUSIVE);

	room = Min(room, kw_room(nworkers));
	room = Min(room, kw_shared->nfree_flights);

	for (int i = 0; i < ncands; i++)
	{
		KwCandidate *c = &cands[i];
		KwEndpointState *st;

		c->send = 0;
		c->probe = false;
		c->not_sent = 0;
		c->from_start = false;
		c->nskip = 0;
		c->skip = NULL;
		c->hold_until = 0;
		c->note[0] = '\0';
		c->busy = false;
		c->waits = false;
		c->taken = 0;
		c->read = 0;
		c->advance = false;

		st = kw_state(c->endpoint_id, true);
		if (st == NULL)
		{
			c->busy = true;		/* the table is full */
			continue;
		}
		if (st->claiming != 0)
		{
			/* another worker claims from it: woken when that ends */
			st->waiting |= (uint32) 1 << kw_worker_index;
			c->busy = true;
			c->waits = true;
			continue;
		}
		if (st->extension_oid != kw_extension_oid)
			kw_state_forget(st);
		if (st->retry_after_until > now)
		{
			c->hold_until = st->retry_after_until;
			continue;
		}
		if (st->health != KW_HEALTHY)
		{
			char		since[MAXDATELEN + 1];

			/* its oldest due delivery, once per probe interval */
			if (st->health == KW_FAILING && now >= st->next_probe_at &&
				room > 0)
			{
				c->send = 1;
				c->probe = true;
				room--;
			}
			else if (st->health == KW_PROBING)
				c->hold_until = DT_NOEND;	/* until the probe's answer */
			else
				c->hold_until = st->next_probe_at;

			/*
			 * Its other due deliveries, a batch at a time, paced: a backlog
			 * recorded all at once would hold up every other endpoint.
			 */
			if (now >= st->not_sent_at)
			{
				c->not_sent = KW_NOT_SENT_BATCH;
				st->not_sent_at = now +
					(TimestampTz) KW_NOT_SENT_INTERVAL_MS * 1000;
			}
			else if (!c->probe)
				c->hold_until = Min(c->hold_until, st->not_sent_at);
			strlcpy(since, timestamptz_to_str(st->failing_since),
					sizeof(since));
			snprintf(c->note, sizeof(c->note),
					 "not sent: endpoint failing since %s, last error: %s",
					 since, st->last_error);
			continue;
		}
		want[i] = Min(c->cap - st->requests,
					  kw_share(c->cap, nworkers) - c->mine);
		if (want[i] > 0)
			nwant++;
		else if (st->requests >= c->cap)
			c->busy = true;		/* others hold its cap */
	}

	/*
	 * Share the room: an equal part for each endpoint that wants some, in
	 * the order given (least recently served first), then what is left to
	 * those that want more.
	 */
	for (int pass = 0; pass < 2 && room > 0 && nwant > 0; pass++)
	{
		int			part = (pass == 0) ? Max(1, room / nwant) : room;

		for (int i = 0; i < ncands && room > 0; i++)
		{
			int			n = Min(Min(want[i] - cands[i].send, part), room);

			if (n > 0)
			{
				cands[i].send += n;
				room -= n;
			}
		}
	}

	/* what is claimed from, and where its queue is read */
	for (int i = 0; i < ncands; i++)
	{
		KwCandidate *c = &cands[i];
		KwEndpointState *st;

		if (c->send + c->not_sent == 0)
			continue;
		st = kw_state(c->endpoint_id, false);
		st->claiming = kw_worker_index + 1;

		/* held for this claim, so that no other claim counts on them */
		st->reserved = c->send;
		kw_count_requests(st, kw_me, c->send);
		c->planned_at = now;
		if (dlist_is_empty(&st->flights) ||
			now - st->rescanned_at >= (TimestampTz) KW_RESCAN_MS * 1000 ||
			(st->rescanned_at < woken_at &&
			 kw_few_flights(st, KW_RESCAN_SKIP)))
		{
			dlist_iter	iter;

			c->from_start = true;
			dlist_foreach(iter, &st->flights)
				c->nskip++;
			c->skip = palloc(sizeof(int64) * Max(1, c->nskip));
			c->nskip = 0;
			dlist_foreach(iter, &st->flights)
			{
				KwFlight   *f = dlist_container(KwFlight, endpoint_node,
												iter.cur);

				c->skip[c->nskip++] = f->delivery_id;
			}
		}
		else
		{
			c->after_at = st->after_at;
			c->after_id = st->after_id;
		}
	}
	LWLockRelease(kw_shared->lock);
	pfree(want);
}

/*
 * After the claim transaction has committed: list the deliveries taken as
 * this worker's flights, count the requests against the caps, move each
 * endpoint's cursor after what was read, and end the claiming marks.
 */
void
kw_endpoints_claimed(KwCandidate *cands, int ncands, KwRequest **reqs,
					 int nreqs)
{
	TimestampTz now = GetCurrentTimestamp();
	uint32		wake = 0;

	LWLockAcquire(kw_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < nreqs; i++)
	{
		KwRequest  *req = reqs[i];
		KwEndpointState *st = kw_state(req->endpoint_id, false);
		KwFlight   *f;

		/* the plan kept room for it, and the claiming mark kept st */
		Assert(st != NULL && !dlist_is_empty(&kw_shared->free_flights));
		f = dlist_container(KwFlight, endpoint_node,
							dlist_pop_head_node(&kw_shared->free_flights));
		kw_shared->nfree_flights--;
		f->delivery_id = req->delivery_id;
		f->endpoint_id = req->endpoint_id;
		f->worker = kw_worker_index;
		f->request = true;
		dlist_push_tail(&st->flights, &f->endpoint_node);
		dlist_push_tail(&kw_me->flights, &f->worker_node);
		req->flight = f;
		if (req->probe)
			st->health = KW_PROBING;
	}
	for (int i = 0; i < ncands; i++)
	{
		KwCandidate *c = &cands[i];
		KwEndpointState *st;

		if (c->limit == 0)
			continue;
		st = kw_state(c->endpoint_id, false);

		/* what was held for requests that the claim did not take */
		kw_count_requests(st, kw_me, c->taken - st->reserved);
		st->reserved = 0;
		/*
		 * The cursor never goes back behind a delivery in flight, which a
		 * read after it would claim again.  Read from the start, it moves
		 * to the last delivery taken if that is further.
		 */
		if (c->advance &&
			(!c->from_start || c->last_at > st->after_at ||
			 (c->last_at == st->after_at && c->last_id > st->after_id)))
		{
			st->after_at = c->last_at;
			st->after_id = c->last_id;
		}
		if (c->from_start)
			st->rescanned_at = c->planned_at;
		kw_end_claiming(st, &wake);
		kw_state_drop_if_idle(st, now);
	}
	LWLockRelease(kw_shared->lock);
	kw_wake_waiting(wake);
}

/* The claim failed: end its claiming marks, taking nothing. */
void
kw_endpoints_unclaim(KwCandidate *cands, int ncands)
{
	TimestampTz now = GetCurrentTimestamp();
	uint32		wake = 0;

	LWLockAcquire(kw_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < ncands; i++)
	{
		KwEndpointState *st = kw_state(cands[i].endpoint_id, false);

		if (st != NULL && st->claiming == kw_worker_index + 1)
		{
			kw_count_requests(st, kw_me, -st->reserved);
			st->reserved = 0;
			kw_end_claiming(st, &wake);
			kw_state_drop_if_idle(st, now);
		}
	}
	LWLockRelease(kw_shared->lock);
	kw_wake_waiting(wake);
}

/* Give a flight back; the caller holds the lock. */
static void
kw_release_flight(KwFlight *f, KwEndpointState *st)
{
	dlist_delete(&f->endpoint_node);
	dlist_delete(&f->worker_node);
	if (f->request)
		kw_count_requests(st, &kw_shared->workers[f->worker], -1);
	dlist_push_head(&kw_shared->free_flights, &f->endpoint_node);
	kw_shared->nfree_flights++;
}

/*
 * Does an outcome count against an endpoint's health?  Transport errors,
 * timeouts, 5xx and 429 do: the endpoint is down, overloaded or asks us to
 * back off.  Other answers show that it is up.
 */
static bool
kw_is_failure(KwRequest *req)
{
	return !req->succeeded &&
		(req->status_code == 0 || req->status_code >= 500 ||
		 req->status_code == 429);
}

/*
 * Requests have their answers (or failed): they no longer count against
 * the caps, though their deliveries stay claimed until their outcomes are
 * recorded.  A 429 or 503 with Retry-After holds its endpoint from now
 * on, before the outcome is even recorded, so that no claim meanwhile
 * sends it more.
 */
void
kw_endpoints_answered(KwRequest **reqs, int nreqs)
{
	LWLockAcquire(kw_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < nreqs; i++)
	{
		KwRequest  *req = reqs[i];
		KwEndpointState *st = kw_state(req->endpoint_id, false);

		if (req->flight != NULL && req->flight->request)
		{
			req->flight->request = false;
			kw_count_requests(st, kw_me, -1);
		}
		if (st != NULL && st->extension_oid == req->extension_oid &&
			req->sent && req->retry_after > 0 &&
			(req->status_code == 429 || req->status_code == 503))
		{
			TimestampTz until = req->finished_at + (TimestampTz)
			Min(req->retry_after, kw_max_retry_after) * USECS_PER_SEC;

			st->retry_after_until = Max(st->retry_after_until, until);
		}
	}
	LWLockRelease(kw_shared->lock);
}

/*
 * After the outcomes of requests have been recorded and committed: the
 * deliveries leave the flights, and the endpoints' health follows the
 * outcomes.
 */
void
kw_endpoints_finished(KwRequest **reqs, int nreqs)
{
	TimestampTz now = GetCurrentTimestamp();
	KwHealthNote *notes = palloc(sizeof(KwHealthNote) * Max(1, nreqs));
	int			nnotes = 0;

	LWLockAcquire(kw_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < nreqs; i++)
	{
		KwRequest  *req = reqs[i];
		KwEndpointState *st = kw_state(req->endpoint_id, false);

		if (req->flight != NULL)
			kw_release_flight(req->flight, st);
		req->flight = NULL;
		if (st == NULL)
			continue;
		if (st->extension_oid != req->extension_oid)
		{
			/* a request of a dropped extension: no news of this endpoint */
			kw_state_drop_if_idle(st, now);
			continue;
		}

		if (!req->sent)
		{
			/* nothing was asked of the endpoint; a probe not sent is lost */
			if (req->probe && st->health == KW_PROBING)
				st->health = KW_FAILING;
		}
		else if (kw_is_failure(req))
		{
			st->failures++;
			strlcpy(st->last_error, req->error, sizeof(st->last_error));
			if (st->health == KW_HEALTHY && kw_breaker_failures > 0 &&
				st->failures >= kw_breaker_failures)
			{
				st->health = KW_FAILING;
				st->failing_since = now;
				st->next_probe_at = now +
					(TimestampTz) kw_breaker_probe_interval * 1000;
				notes[nnotes].endpoint_id = req->endpoint_id;
				notes[nnotes].failing = true;
				notes[nnotes].failures = st->failures;
				strlcpy(notes[nnotes++].error, req->error,
						KW_HEALTH_ERROR_LEN);
			}
			else if (req->probe && st->health == KW_PROBING)
			{
				st->health = KW_FAILING;
				st->next_probe_at = now +
					(TimestampTz) kw_breaker_probe_interval * 1000;
			}
		}
		else
		{
			/* an answer: the endpoint is up */
			if (st->health != KW_HEALTHY)
			{
				notes[nnotes].endpoint_id = req->endpoint_id;
				notes[nnotes].failing = false;
				notes[nnotes++].failures = st->failures;
			}
			st->health = KW_HEALTHY;
			st->failures = 0;
			st->last_error[0] = '\0';
		}
		kw_state_drop_if_idle(st, now);
	}
	LWLockRelease(kw_shared->lock);

	for (int i = 0; i < nnotes; i++)
	{
		if (notes[i].failing)
			ereport(LOG,
					(errmsg("konvox_webhooks endpoint " INT64_FORMAT " is failing after %d failed requests in a row, the last: %s",
							notes[i].endpoint_id, notes[i].failures,
							notes[i].error),
					 errdetail("It gets one probe request every %d ms; its other due deliveries are recorded as not sent.",
							   kw_breaker_probe_interval)));
		else
			ereport(LOG,
					(errmsg("konvox_webhooks endpoint " INT64_FORMAT " answers again",
							notes[i].endpoint_id)));
	}
	pfree(notes);
}

/*
 * A worker that exits gives back what it claimed: those deliveries are
 * still pending, and any worker may claim them again.
 */
void
kw_endpoints_worker_exit(void)
{
	TimestampTz now = GetCurrentTimestamp();
	uint32		wake = 0;
	dlist_mutable_iter iter;
	HASH_SEQ_STATUS status;
	KwEndpointState *st;

	LWLockReleaseAll();
	LWLockAcquire(kw_shared->lock, LW_EXCLUSIVE);
	dlist_foreach_modify(iter, &kw_me->flights)
	{
		KwFlight   *f = dlist_container(KwFlight, worker_node, iter.cur);

		st = kw_state(f->endpoint_id, false);
		kw_release_flight(f, st);
		if (st != NULL && st->health == KW_PROBING)
		{
			st->health = KW_FAILING;
			st->next_probe_at = now;
		}
	}
	hash_seq_init(&status, kw_states);
	while ((st = hash_seq_search(&status)) != NULL)
	{
		st->waiting &= ~((uint32) 1 << kw_worker_index);
		if (st->claiming == kw_worker_index + 1)
		{
			kw_count_requests(st, kw_me, -st->reserved);
			st->reserved = 0;
			kw_end_claiming(st, &wake);
		}
	}
	LWLockRelease(kw_shared->lock);
	kw_wake_waiting(wake);
}

/*
 * Requests that this worker may still start (see kw_room); and whether the
 * other workers hold more than their shares, as they may for a while after
 * the number of workers or max_concurrency changed.  Read without the
 * lock, as a hint of whether a claim is worth trying: the claim itself
 * decides under the lock.
 */
int
kw_endpoints_room(bool *others_over)
{
	int			nworkers = kw_running_workers();
	*others_over = (kw_shared->requests - kw_me->requests >
					(nworkers - 1) * kw_share(kw_max_concurrency, nworkers));
	return kw_room(nworkers);
}

/* Delivery workers running now. */
int
kw_running_workers(void)
{
	int			n = 0;

	for (int i = 0; i < kw_workers; i++)
	{
		if (pg_atomic_read_u32(&kw_shared->workers[i].pid) != 0)
			n++;
	}
	return Max(n, 1);
}

/* A time for SQL: NULL when not set. */
static void
kw_put_time(Datum *values, bool *nulls, int i, TimestampTz t)
{
	nulls[i] = (t == 0);
	values[i] = TimestampTzGetDatum(t);
}

/*
 * webhooks._endpoint_states(): the endpoints that the workers follow now,
 * with their requests in flight, health and Retry-After hold.
 */
Datum
kw_endpoint_states(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	HASH_SEQ_STATUS status;
	KwEndpointState *st;
	TimestampTz now = GetCurrentTimestamp();
	Oid			extension_oid = get_extension_oid("konvox_webhooks", true);

	InitMaterializedSRF(fcinfo, 0);
	LWLockAcquire(kw_shared->lock, LW_SHARED);
	hash_seq_init(&status, kw_states);
	while ((st = hash_seq_search(&status)) != NULL)
	{
		Datum		values[8];
		bool		nulls[8] = {0};

		/* endpoints of this extension, not of one dropped before it */
		if (st->extension_oid != extension_oid)
			continue;

		values[0] = Int64GetDatum(st->endpoint_id);
		values[1] = CStringGetTextDatum(st->health == KW_HEALTHY ? "healthy" :
										st->health == KW_FAILING ? "failing" :
										"probing");
		values[2] = Int32GetDatum(st->failures);
		values[3] = Int32GetDatum(st->requests);
		kw_put_time(values, nulls, 4,
					st->health == KW_HEALTHY ? 0 : st->failing_since);
		kw_put_time(values, nulls, 5,
					st->health == KW_FAILING ? st->next_probe_at : 0);
		kw_put_time(values, nulls, 6,
					st->retry_after_until > now ? st->retry_after_until : 0);
		nulls[7] = (st->last_error[0] == '\0');
		values[7] = CStringGetTextDatum(st->last_error);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	LWLockRelease(kw_shared->lock);
	return (Datum) 0;
}
