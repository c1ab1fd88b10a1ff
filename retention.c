/*-------------------------------------------------------------------------
 *
 * retention.c
 *		Deleting history older than konvox_webhooks.retention.
 *
 * One worker does it, the running one with the lowest number, in small
 * batches between deliveries, with webhooks._purge_batch (from version 1.1
 * of the extension; nothing is done while the database still has 1.0).
 * When a batch was full, the next one follows at the next turn of the loop;
 * otherwise the worker looks again in KW_PURGE_INTERVAL_MS.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/timestamp.h"

#include "konvox_webhooks.h"
#include "worker.h"

/* How often to look for history past the retention. */
#define KW_PURGE_INTERVAL_MS	60000

/* Deliveries (and events) deleted per retention transaction. */
#define KW_PURGE_BATCH		1000

/* when this worker next deletes history past the retention */
static TimestampTz kw_next_purge = 0;

/* Is this the worker that applies retention: the lowest-numbered running? */
static bool
kw_applies_retention(void)
{
	for (int i = 0; i < kw_worker_index; i++)
	{
		if (pg_atomic_read_u32(&kw_shared->workers[i].pid) != 0)
			return false;
	}
	return kw_retention > 0;
}

/* When retention is next due for this worker, or never. */
TimestampTz
kw_retention_next_time(void)
{
	return kw_applies_retention() ? kw_next_purge : DT_NOEND;
}

/* The setting may have changed: apply it at once. */
void
kw_retention_reset(void)
{
	kw_next_purge = 0;
}

/* Delete one batch of history past the retention, if due. */
void
kw_apply_retention(void)
{
	MemoryContext old = CurrentMemoryContext;
	volatile bool more = false;

	if (GetCurrentTimestamp() < kw_retention_next_time())
		return;
	PG_TRY();
	{
		kw_begin("deleting history past retention");
		if (kw_extension_ready() &&
			SPI_execute("SELECT pg_catalog.to_regprocedure("
						"'webhooks._purge_batch(timestamptz, integer)') IS NOT NULL",
						true, 1) == SPI_OK_SELECT &&
			SPI_processed == 1 &&
			strcmp(SPI_getvalue(SPI_tuptable->vals[0],
								SPI_tuptable->tupdesc, 1), "t") == 0)
		{
			Oid			types[2] = {TIMESTAMPTZOID, INT4OID};
			Datum		args[2];

			args[0] = TimestampTzGetDatum(GetCurrentTimestamp() -
										  (TimestampTz) kw_retention * USECS_PER_SEC);
			args[1] = Int32GetDatum(KW_PURGE_BATCH);
			if (SPI_execute_with_args("SELECT deliveries, events"
									  "  FROM webhooks._purge_batch($1, $2)",
									  2, types, args, NULL, false, 1) !=
				SPI_OK_SELECT || SPI_processed != 1)
				elog(ERROR, "could not delete history past retention");
			more = (strcmp(SPI_getvalue(SPI_tuptable->vals[0],
										SPI_tuptable->tupdesc, 1), "0") != 0 ||
					strcmp(SPI_getvalue(SPI_tuptable->vals[0],
										SPI_tuptable->tupdesc, 2), "0") != 0);
			if (more)
				elog(DEBUG1, "konvox_webhooks: deleted %s deliveries and %s events past retention",
					 SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1),
					 SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2));
		}
		kw_commit();
	}
	PG_CATCH();
	{
		kw_recover(true);
		more = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);

	kw_next_purge = more ? GetCurrentTimestamp() :
		GetCurrentTimestamp() + (TimestampTz) KW_PURGE_INTERVAL_MS * 1000;
}
