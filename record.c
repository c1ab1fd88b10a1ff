/*-------------------------------------------------------------------------
 *
 * record.c
 *		Writing down what became of each delivery.
 *
 * Finished requests are recorded in batches, one statement per batch in a
 * transaction of its own: each delivery is updated (delivered, failed, or
 * pending with its next attempt) and its attempt inserted.  Only once that
 * has committed do the deliveries leave the flights (endpoint.c), so that
 * no claim sends them again while their outcome is being written.
 *
 * A delivery's attempt row is inserted plainly, without ON CONFLICT: a
 * speculative insertion costs each row a second probe of the key, a lock
 * and a second WAL record.  The row's number is the delivery's attempts
 * plus one, checked by the same statement, so it is already there only if
 * someone set attempts back by hand.  Then the batch fails on the key, and
 * is tried again at once with ON CONFLICT DO NOTHING, which keeps the row
 * that was there; that failure is not reported, the second try's would be.
 *
 * When recording fails (a statement_timeout, a read-only database, a full
 * disk, a trigger of yours that errors), the batch is tried again row by
 * row, so that one bad row costs only itself.  What still cannot be
 * recorded is kept and tried again after a wait that doubles, from a
 * second up to a minute, and that no commit's wake-up cuts short.  Those
 * deliveries stay claimed meanwhile: they are not sent again.  The log
 * says so when it starts and when it ends, not at every try.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "konvox_webhooks.h"
#include "worker.h"

/* Longest wait between tries of recording that keeps failing. */
#define KW_RECORD_BACKOFF_MAX_MS	60000

/*
 * finished requests waiting to be recorded: the first kw_nstuck of them
 * could not be recorded before, the others are new
 */
static KwRequest **kw_results = NULL;
static int	kw_nresults = 0;
static int	kw_nstuck = 0;
static int	kw_results_size = 0;

/* the oldest of the new outcomes finished then */
static TimestampTz kw_oldest_fresh_at = 0;

/* the last of them, not yet counted out of the caps (kw_record_answered) */
static int	kw_nunanswered = 0;

/* recording that keeps failing: tries so far, and when to try again */
static int	kw_record_failures = 0;
static TimestampTz kw_record_retry_at = 0;

/* the recording statement, plain and with ON CONFLICT DO NOTHING */
static Oid	kw_record_plans_for = InvalidOid;
static SPIPlanPtr kw_record_plan = NULL;
static SPIPlanPtr kw_record_careful_plan = NULL;

/* One outcome, as the recording statement takes it. */
typedef struct KwOutcomeRow
{
	int64		id;
	int64		endpoint_id;
	int32		attempt;
	const char *status;
	int			status_code;	/* 0: none */
	const char *error;			/* NULL: none */
	TimestampTz started_at;
	double		duration_ms;
	text	   *response;		/* NULL: none */
	TimestampTz next_attempt_at;	/* 0: none */
	TimestampTz finished_at;	/* 0: not finished */
} KwOutcomeRow;

/* A finished request, to be recorded. */
void
kw_record_add(KwRequest *req)
{
	if (kw_nresults == kw_results_size)
	{
		MemoryContext old = MemoryContextSwitchTo(kw_worker_context);

		kw_results_size = Max(256, kw_results_size * 2);
		kw_results = kw_results ?
			repalloc(kw_results, sizeof(KwRequest *) * kw_results_size) :
			palloc(sizeof(KwRequest *) * kw_results_size);
		MemoryContextSwitchTo(old);
	}
	kw_results[kw_nresults++] = req;
	kw_nunanswered++;
	kw_claim_finished(req);
	if (kw_nresults == kw_nstuck + 1)
		kw_oldest_fresh_at = req->finished_at;
}

/*
 * The requests added since the last call no longer count against the
 * caps: one pass under the lock for all the answers of a turn of the loop,
 * before its claim.
 */
void
kw_record_answered(void)
{
	if (kw_nunanswered == 0)
		return;
	kw_endpoints_answered(kw_results + kw_nresults - kw_nunanswered,
						  kw_nunanswered);
	kw_nunanswered = 0;
}

/*
 * Is there something to record now?  New outcomes, in batches: once there
 * are KW_RECORD_BATCH of them, the oldest has waited KW_RECORD_DELAY_MS,
 * or no request is left in flight to add to them (in_flight); a statement
 * costs about as much as twenty of its rows, so few large ones go further.
 * And those that could not be recorded before, once their wait is over.
 */
bool
kw_record_due(int in_flight)
{
	TimestampTz now = GetCurrentTimestamp();
	int			fresh = kw_nresults - kw_nstuck;

	if (kw_nstuck > 0 && now >= kw_record_retry_at)
		return true;
	return fresh > 0 &&
		(fresh >= KW_RECORD_BATCH || in_flight == 0 ||
		 now >= kw_oldest_fresh_at + (TimestampTz) KW_RECORD_DELAY_MS * 1000);
}

/* When recording is next due, if nothing finishes before. */
TimestampTz
kw_record_next_time(void)
{
	TimestampTz next = DT_NOEND;

	if (kw_nresults > kw_nstuck)
		next = kw_oldest_fresh_at + (TimestampTz) KW_RECORD_DELAY_MS * 1000;
	if (kw_nstuck > 0)
		next = Min(next, kw_record_retry_at);
	return next;
}

/*
 * What follows attempt n of a delivery: delivered, failed (no attempt
 * left), or pending with the next attempt at *retry_at: retry_base_delay ×
 * 2^(n−1), ±10% jitter, at most max_retry_delay; and no earlier than a
 * Retry-After of the receiver, at most max_retry_after.
 */
static const char *
kw_next_step(int32 attempt, bool succeeded, TimestampTz finished_at,
			 int retry_after, TimestampTz *retry_at)
{
	double		delay_ms;

	*retry_at = 0;
	if (succeeded)
		return "delivered";
	if (attempt >= kw_max_attempts)
		return "failed";

	/* in floating point, so that a large attempt number cannot overflow */
	delay_ms = (double) kw_retry_base_delay * pow(2.0, attempt - 1) *
		(0.9 + 0.2 * pg_prng_double(&pg_global_prng_state));
	delay_ms = Min(delay_ms, (double) kw_max_retry_delay);
	if (retry_after > 0)
		delay_ms = Max(delay_ms, 1000.0 * Min(retry_after, kw_max_retry_after));
	*retry_at = finished_at + (TimestampTz) (delay_ms * 1000.0);
	return "pending";
}

/*
 * Copy a response body into text that the database will take: invalid or
 * NUL bytes become '?', so that one odd receiver cannot fail a whole batch.
 */
static text *
kw_response_text(KwRequest *req)
{
	StringInfoData buf;
	int			encoding = GetDatabaseEncoding();
	const char *p = req->response;
	int			left = req->response_len;

	initStringInfo(&buf);
	while (left > 0)
	{
		/* the valid run, then one '?' for the byte that ends it */
		int			len = pg_encoding_verifymbstr(encoding, p, left);

		appendBinaryStringInfo(&buf, p, len);
		p += len;
		left -= len;
		if (left > 0)
		{
			appendStringInfoChar(&buf, '?');
			p++;
			left--;
		}
	}
	return cstring_to_text_with_len(buf.data, buf.len);
}

/*
 * The recording statement, which inserts the attempts with ON CONFLICT DO
 * NOTHING if careful.
 */
static char *
kw_record_sql(bool careful)
{
	/*
	 * Pending is said as neither delivered nor failed, so that the planner
	 * cannot take the queue index (whose size its statistics may misjudge)
	 * to find rows by id: the primary key is the only index left that
	 * matches.
	 */
	return psprintf("/* konvox_webhooks: record outcomes */"
					" WITH u AS ("
					"  UPDATE webhooks.deliveries d"
					"     SET status = r.status, attempts = r.attempt,"
					"         next_attempt_at = r.next_attempt_at,"
					"         last_status_code = r.status_code,"
					"         last_error = r.error, finished_at = r.finished_at"
					"    FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
					"      AS r(id, attempt, status, status_code, error,"
					"           started_at, duration_ms, response_body,"
					"           next_attempt_at, finished_at)"
					"   WHERE d.id = r.id AND d.attempts = r.attempt - 1"
					"     AND d.status <> 'delivered' AND d.status <> 'failed'"
					"  RETURNING r.id, r.attempt, r.started_at, r.duration_ms,"
					"            r.status_code, r.error, r.response_body,"
					"            r.next_attempt_at"
					" )"
					" INSERT INTO webhooks.delivery_attempts"
					"   (delivery_id, attempt, started_at, duration_ms,"
					"    status_code, error, response_body, next_attempt_at)"
					" SELECT * FROM u%s",
					careful ? " ON CONFLICT DO NOTHING" : "");
}

/*
 * Run the recording statement over n outcomes, in the current transaction.
 * A delivery that someone changed or removed meanwhile is left alone and
 * gets no attempt row.  Unless careful, an attempt row already there is an
 * error (see the file's comment).
 */
static void
kw_write_outcomes(KwOutcomeRow *o, int n, bool careful)
{
	Datum	   *v[10];
	bool	   *nulls[10];
	Datum		args[10];
	static const Oid elemtypes[10] = {INT8OID, INT4OID, TEXTOID, INT4OID,
		TEXTOID, TIMESTAMPTZOID, FLOAT8OID, TEXTOID, TIMESTAMPTZOID,
	TIMESTAMPTZOID};

	if (n == 0)
		return;
	if (kw_record_plan == NULL || kw_record_plans_for != kw_extension_oid)
	{
		Oid			types[10] = {INT8ARRAYOID, INT4ARRAYOID, TEXTARRAYOID,
			INT4ARRAYOID, TEXTARRAYOID, TIMESTAMPTZARRAYOID, FLOAT8ARRAYOID,
		TEXTARRAYOID, TIMESTAMPTZARRAYOID, TIMESTAMPTZARRAYOID};

		kw_free_plan(&kw_record_plan);
		kw_free_plan(&kw_record_careful_plan);
		kw_record_plan = kw_keep_plan(kw_record_sql(false), 10, types);
		kw_record_careful_plan = kw_keep_plan(kw_record_sql(true), 10, types);
		kw_record_plans_for = kw_extension_oid;
	}

	for (int c = 0; c < 10; c++)
	{
		v[c] = palloc(sizeof(Datum) * n);
		nulls[c] = palloc0(sizeof(bool) * n);
	}
	for (int i = 0; i < n; i++)
	{
		v[0][i] = Int64GetDatum(o[i].id);
		v[1][i] = Int32GetDatum(o[i].attempt);
		v[2][i] = CStringGetTextDatum(o[i].status);
		v[3][i] = Int32GetDatum(o[i].status_code);
		nulls[3][i] = (o[i].status_code == 0);
		nulls[4][i] = (o[i].error == NULL);
		v[4][i] = nulls[4][i] ? (Datum) 0 : CStringGetTextDatum(o[i].error);
		v[5][i] = TimestampTzGetDatum(o[i].started_at);
		v[6][i] = Float8GetDatum(o[i].duration_ms);
		nulls[7][i] = (o[i].response == NULL);
		v[7][i] = PointerGetDatum(o[i].response);
		v[8][i] = TimestampTzGetDatum(o[i].next_attempt_at);
		nulls[8][i] = (o[i].next_attempt_at == 0);
		v[9][i] = TimestampTzGetDatum(o[i].finished_at);
		nulls[9][i] = (o[i].finished_at == 0);
	}
	for (int c = 0; c < 10; c++)
		args[c] = kw_array(v[c], nulls[c], n, elemtypes[c]);
	if (kw_execute_plan(careful ? kw_record_careful_plan : kw_record_plan,
						args, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not record delivery outcomes");
}

/*
 * Record the deliveries of a failing endpoint, or whose request must not be
 * sent, as attempts without a request (no status code), in the current
 * transaction; they follow the normal backoff.
 */
void
kw_record_not_sent(Datum *ids, int32 *attempts, int64 *endpoints,
				   char **reasons, int n, bool *failed)
{
	KwOutcomeRow  *o = palloc(sizeof(KwOutcomeRow) * Max(1, n));
	TimestampTz now = GetCurrentTimestamp();

	for (int i = 0; i < n; i++)
	{
		TimestampTz retry_at;

		o[i].id = DatumGetInt64(ids[i]);
		o[i].endpoint_id = endpoints[i];
		o[i].attempt = attempts[i];
		o[i].status = kw_next_step(attempts[i], false, now, 0, &retry_at);
		o[i].status_code = 0;
		o[i].error = reasons[i];
		o[i].started_at = now;
		o[i].duration_ms = 0;
		o[i].response = NULL;
		o[i].next_attempt_at = retry_at;
		o[i].finished_at = retry_at == 0 ? now : 0;
		failed[i] = (retry_at == 0);
	}
	kw_write_outcomes(o, n, true);
}

/*
 * Record the outcomes of n finished requests in one transaction, carefully
 * or not (kw_write_outcomes).  Returns false if it failed, with the error's
 * code in *sqlerrcode; the error goes to the log only when report is true,
 * unless it is the conflict that the careful try is for, and its message
 * into error.
 */
static bool
kw_record_batch(KwRequest **reqs, int n, bool careful, bool report,
				char *error, int errorlen, int *sqlerrcode)
{
	MemoryContext old = CurrentMemoryContext;
	volatile bool ok = true;
	KwOutcomeRow *volatile o = palloc(sizeof(KwOutcomeRow) * Max(1, n));
	KwOutcome  *volatile outcomes = palloc(sizeof(KwOutcome) * Max(1, n));
	volatile int m = 0;

	PG_TRY();
	{
		kw_begin("recording delivery outcomes");
		MemoryContextSwitchTo(old);
		if (kw_extension_ready())
		{
			for (int r = 0; r < n; r++)
			{
				KwRequest  *req = reqs[r];
				TimestampTz retry_at;

				/* claimed from an extension since dropped: nothing to record */
				if (req->extension_oid != kw_extension_oid)
					continue;
				o[m].id = req->delivery_id;
				o[m].endpoint_id = req->endpoint_id;
				o[m].attempt = req->attempt;
				o[m].status = kw_next_step(req->attempt, req->succeeded,
										   req->finished_at,
										   req->retry_after, &retry_at);
				o[m].status_code = req->status_code;
				o[m].error = req->succeeded ? NULL : req->error;
				o[m].started_at = req->started_at;
				o[m].duration_ms =
					(double) (req->finished_at - req->started_at) / 1000.0;
				o[m].response = req->response_len == 0 ? NULL :
					kw_response_text(req);
				o[m].next_attempt_at = retry_at;
				o[m].finished_at = retry_at == 0 ? req->finished_at : 0;
				outcomes[m] = req->outcome;
				m++;

				elog(DEBUG1, "konvox_webhooks: delivery " INT64_FORMAT
					 " attempt %d: %s%s%s",
					 req->delivery_id, req->attempt,
					 kw_next_step(req->attempt, req->succeeded, 0, 0,
								  &retry_at),
					 req->succeeded ? "" : ", ",
					 req->succeeded ? "" : req->error);
			}
			kw_write_outcomes(o, m, careful);

			/* a retry may now be due earlier than anything we knew of */
			for (int i = 0; i < m; i++)
			{
				if (o[i].next_attempt_at != 0)
					kw_claim_retry_at(o[i].endpoint_id, o[i].next_attempt_at);
			}
		}
		kw_commit();

		/* counted for monitoring once committed */
		for (int i = 0; i < m; i++)
			kw_count_attempt(outcomes[i], o[i].status[0] == 'd',
							 o[i].status[0] == 'f');
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(old);
		edata = CopyErrorData();
		*sqlerrcode = edata->sqlerrcode;
		FreeErrorData(edata);
		if (!careful && *sqlerrcode == ERRCODE_UNIQUE_VIOLATION)
			report = false;
		kw_recover_with_message(report, error, errorlen);
		ok = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
	return ok;
}

/*
 * Record every finished request that is due: the new ones, and those that
 * could not be recorded before once their wait is over.  See the file's
 * comment for what happens when that fails.
 */
void
kw_record(void)
{
	bool		retry_stuck = kw_nstuck > 0 &&
		GetCurrentTimestamp() >= kw_record_retry_at;
	int			first = retry_stuck ? 0 : kw_nstuck;
	int			n = kw_nresults - first;
	KwRequest **batch = kw_results + first;
	KwRequest **done = palloc(sizeof(KwRequest *) * Max(1, n));
	KwRequest **left = palloc(sizeof(KwRequest *) * Max(1, n));
	int			ndone = 0;
	int			nleft = 0;
	char		error[KW_ERROR_LEN] = "";
	int			sqlerrcode = 0;
	bool		recorded;

	recorded = kw_record_batch(batch, n, false, kw_record_failures == 0,
							   error, sizeof(error), &sqlerrcode);
	if (!recorded && sqlerrcode == ERRCODE_UNIQUE_VIOLATION)
		recorded = kw_record_batch(batch, n, true, kw_record_failures == 0,
								   error, sizeof(error), &sqlerrcode);
	if (recorded)
	{
		memcpy(done, batch, sizeof(KwRequest *) * n);
		ndone = n;
	}
	else
	{
		for (int i = 0; i < n; i++)
		{
			if (n > 1 && kw_record_batch(&batch[i], 1, true, false, NULL, 0,
										 &sqlerrcode))
				done[ndone++] = batch[i];
			else
				left[nleft++] = batch[i];
		}
	}

	/* recorded: the deliveries leave the flights, the slots are free */
	kw_endpoints_finished(done, ndone);
	for (int i = 0; i < ndone; i++)
		kw_free_slot(done[i]);

	/* what is left waits, the stuck ones first */
	memcpy(batch, left, sizeof(KwRequest *) * nleft);
	kw_nresults = first + nleft;
	kw_nstuck = kw_nresults;

	if (nleft > 0 && (retry_stuck || kw_record_failures == 0))
	{
		long		wait_ms = Min(KW_RECORD_BACKOFF_MAX_MS,
								  1000L << Min(kw_record_failures, 16));

		if (kw_record_failures == 0)
			ereport(LOG,
					(errmsg("konvox_webhooks could not record the outcomes of %d deliveries: %s",
							nleft, error),
					 errdetail("Those deliveries are not sent again meanwhile; recording is tried again in %ld ms, then after each failure twice as long, up to a minute.",
							   wait_ms)));
		kw_record_failures++;
		kw_record_retry_at = GetCurrentTimestamp() +
			(TimestampTz) wait_ms * 1000;
	}
	else if (kw_nstuck == 0 && kw_record_failures > 0)
	{
		ereport(LOG,
				(errmsg("konvox_webhooks records delivery outcomes again")));
		kw_record_failures = 0;
		kw_record_retry_at = 0;
	}
	pfree(done);
	pfree(left);
}
