/*-------------------------------------------------------------------------
 *
 * worker.c
 *		The konvox_webhooks background worker: claims due deliveries, hands
 *		them to http.c, and records every attempt.
 *
 * The worker runs one loop:
 *
 *	 1. claim: in a short read-only transaction, read up to N due pending
 *		deliveries with their event and endpoint, build each request body and
 *		its headers, and commit;
 *	 2. send: hand the requests to libcurl, with no transaction open;
 *	 3. record: in one statement of a new transaction, write the outcome of
 *		every finished request to deliveries and delivery_attempts;
 *	 4. sleep on the latch, the sockets and libcurl's timer, until a commit
 *		wakes us, a response arrives or the next retry falls due.
 *
 * A delivery stays 'pending' while its request is in flight; the worker
 * remembers the deliveries it is sending in a hash table and skips them when
 * it reads the queue again.  Nothing about the flight is written down, so a
 * crash at any moment leaves every unrecorded delivery 'pending' and due, and
 * the next worker sends it again: delivery is at least once.
 *
 * Reading the queue walks the due index from a cursor, so that a backlog of
 * a million rows is read once, not once per batch.  When a read comes back
 * short the worker has caught up and the cursor goes back to the start, which
 * also picks up rows committed late with an early next_attempt_at.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>
#include <sys/resource.h>

#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_database.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "konvox_webhooks.h"

/* Most deliveries read by one claim. */
#define KW_CLAIM_BATCH		1000

/* How long to wait before looking again for a missing extension. */
#define KW_MISSING_RECHECK_MS	5000

/* Wait before starting a delivery worker again. */
#define KW_RESTART_DELAY_MS		5000

/* How often the first worker looks for history past the retention. */
#define KW_PURGE_INTERVAL_MS	60000

/* Deliveries (and events) deleted per retention transaction. */
#define KW_PURGE_BATCH		1000

/* Look at the queue at least this often, whatever else happens. */
#define KW_IDLE_RECHECK_MS	60000

/* Request buffers larger than this are given back after use. */
#define KW_BUFFER_KEEP		(64 * 1024)

/* An entry of the in-flight table. */
typedef struct KwInFlight
{
	int64		delivery_id;	/* hash key */
	Oid			extension_oid;	/* of the extension it was claimed from */
} KwInFlight;

static KwWorkerSlot *kw_me;
static MemoryContext kw_worker_context;
static MemoryContext kw_loop_context;
static HTAB *kw_in_flight;

/* request slots: all of them, and those not in use */
static KwRequest **kw_slots = NULL;
static int	kw_nslots = 0;
static KwRequest **kw_free = NULL;
static int	kw_nfree = 0;

/* finished requests waiting to be recorded */
static KwRequest **kw_results = NULL;
static int	kw_nresults = 0;

/* claimed in the current claim transaction, not yet started */
static KwRequest **kw_claimed = NULL;
static int	kw_nclaimed = 0;

/* this worker's share of the deliveries: those with id % nworkers = index */
static int	kw_worker_index = 0;
static int	kw_nworkers = 1;

/* this worker's share of max_concurrency */
static int	kw_concurrency = 1;

/* where the next claim starts reading the due index */
static TimestampTz kw_cursor_at = DT_NOBEGIN;
static int64 kw_cursor_id = 0;

/* the queue may hold due rows we have not read */
static bool kw_more_due = true;

/*
 * When to read the queue again if nothing wakes us: the earliest future
 * retry we know of, and never later than KW_IDLE_RECHECK_MS from the last
 * read, as a safety net for rows written without waking the worker.
 */
static TimestampTz kw_next_due = 0;

/* when the first worker next deletes history past the retention */
static TimestampTz kw_next_purge = 0;

/*
 * The extension as we last saw it.  Dropped and created again, it numbers
 * its deliveries from 1 again, so a request claimed from the old one must
 * not be recorded against, or hide, a new delivery of the same id.
 */
static Oid	kw_extension_oid = InvalidOid;

/* the extension was missing at the last look */
static bool kw_extension_missing = false;

static SPIPlanPtr kw_claim_plan = NULL;
static bool kw_claim_plan_headers = false;	/* it reads ep.headers */
static SPIPlanPtr kw_next_due_plan = NULL;
static SPIPlanPtr kw_record_plan = NULL;
static SPIPlanPtr kw_unsendable_plan = NULL;

static void kw_worker_exit(int code, Datum arg);
static BackgroundWorkerHandle *kw_start_worker(int i);
static bool kw_database_exists(const char *name);
static int	kw_share_of_concurrency(void);
static void kw_ensure_slots(int n);
static bool kw_extension_ready(void);
static bool kw_endpoints_have_headers(void);
static void kw_claim(int limit);
static const char *kw_prepare_request(KwRequest *req, HeapTuple tuple,
									  TupleDesc desc, TimestampTz now);
static void kw_record(void);
static void kw_release_results(void);
static void kw_purge(void);
static Datum kw_array(Datum *values, bool *nulls, int n, Oid elemtype);

/* Milliseconds from now until t, rounded up; 0 if t has passed. */
static long
kw_ms_until(TimestampTz t)
{
	long		secs;
	int			usecs;

	TimestampDifference(GetCurrentTimestamp(), t, &secs, &usecs);
	return secs * 1000 + (usecs + 999) / 1000;
}

/*
 * After an error in a claim or a record: read the queue again from its
 * start, and not before KW_MISSING_RECHECK_MS, so that a lasting error
 * cannot become a busy loop.
 */
static void
kw_back_off(void)
{
	kw_more_due = false;
	kw_next_due = GetCurrentTimestamp() +
		(TimestampTz) KW_MISSING_RECHECK_MS * 1000;
	kw_cursor_at = DT_NOBEGIN;
	kw_cursor_id = 0;
}

/*
 * How many deliveries a claim may read now: the free slots within the
 * concurrency cap, but only once a quarter of the cap is free (or nothing is
 * in flight), so that claims come in useful batches.
 */
static int
kw_claim_room(void)
{
	int			in_flight = kw_http_in_flight();
	int			room = Min(kw_nfree, kw_concurrency - in_flight);

	if (room <= 0)
		return 0;
	if (room < Max(1, kw_concurrency / 4) && in_flight > 0)
		return 0;
	return room;
}

/*
 * Entry point of the worker, registered by _PG_init.
 */
void
kw_worker_main(Datum main_arg)
{
	WaitEventSet *wait_set;
	struct rlimit rl;

	kw_worker_index = DatumGetInt32(main_arg);
	kw_nworkers = kw_workers;
	kw_in_delivery_worker = true;

	/* one worker per share, even if a restarted launcher asks twice */
	kw_me = &kw_shared->workers[kw_worker_index];
	{
		uint32		expected = 0;

		if (!pg_atomic_compare_exchange_u32(&kw_me->pid, &expected,
											(uint32) MyProcPid))
		{
			ereport(LOG,
					(errmsg("konvox_webhooks worker %d is already running as PID %u",
							kw_worker_index + 1, expected)));
			proc_exit(0);
		}
	}
	before_shmem_exit(kw_worker_exit, (Datum) 0);

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnection(kw_database_name, NULL, 0);

	/*
	 * Names in our statements resolve in pg_catalog only: an operator or
	 * function that someone creates in public with an exact argument match
	 * would otherwise run as the superuser that we are.
	 */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET,
					PGC_S_OVERRIDE);

	/*
	 * Our results are written with synchronous_commit off: a crash may lose
	 * the last moment of them, and those deliveries are simply sent again.
	 */
	SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);

	/*
	 * The queue's statistics are nearly always wrong: analyzed when it was
	 * empty, read when it holds a million rows, or the other way round.  The
	 * right plans do not depend on them (walk the due index in order, fetch
	 * rows by key), so rule out the plans that bad estimates lead to: a
	 * bitmap scan and sort of the whole queue for every claim, or a
	 * sequential scan for every batch of results.  These apply to this
	 * worker's own statements only.
	 */
	SetConfigOption("enable_bitmapscan", "off", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("enable_seqscan", "off", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("jit", "off", PGC_SUSET, PGC_S_OVERRIDE);

	/* sockets to receivers count against the descriptor limit */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max)
	{
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}

	kw_worker_context = AllocSetContextCreate(TopMemoryContext,
											  "konvox_webhooks worker",
											  ALLOCSET_DEFAULT_SIZES);

	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(int64);
		ctl.entrysize = sizeof(KwInFlight);
		ctl.hcxt = kw_worker_context;
		kw_in_flight = hash_create("konvox_webhooks in flight", 1024, &ctl,
								   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}

	kw_concurrency = kw_share_of_concurrency();
	kw_http_init(kw_concurrency);
	kw_ensure_slots(kw_concurrency);

	wait_set = CreateWaitEventSet(kw_worker_context, 3);
	AddWaitEventToSet(wait_set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(wait_set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL,
					  NULL);
	AddWaitEventToSet(wait_set, WL_SOCKET_READABLE, kw_http_socket(), NULL,
					  NULL);

	pg_atomic_write_u32(&kw_me->procno, (uint32) MyProc->pgprocno);

	ereport(LOG,
			(errmsg("konvox_webhooks worker %d of %d started for database \"%s\"",
					kw_worker_index + 1, kw_nworkers, kw_database_name)));

	kw_loop_context = AllocSetContextCreate(kw_worker_context,
											"konvox_webhooks worker loop",
											ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		WaitEvent	event;
		long		timeout;
		KwRequest  *req;

		MemoryContextReset(kw_loop_context);
		MemoryContextSwitchTo(kw_loop_context);
		CHECK_FOR_INTERRUPTS();

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			kw_concurrency = kw_share_of_concurrency();
			kw_http_configure(kw_concurrency);
			kw_ensure_slots(kw_concurrency);
			kw_more_due = true;
			/* a changed retention applies at once */
			kw_next_purge = 0;
		}

		/* progress on the sockets, then record what has finished */
		kw_http_drive();
		while ((req = kw_http_next_done()) != NULL)
			kw_results[kw_nresults++] = req;
		pg_atomic_write_u32(&kw_me->in_flight, (uint32) kw_http_in_flight());
		if (kw_nresults > 0)
			kw_record();

		if (ShutdownRequestPending)
			break;

		if (GetCurrentTimestamp() >= kw_next_due)
			kw_more_due = true;
		if (kw_more_due && kw_claim_room() > 0)
			kw_claim(Min(kw_claim_room(), KW_CLAIM_BATCH));

		/* one small batch of retention at a time, between deliveries */
		if (kw_worker_index == 0 && kw_retention > 0 &&
			GetCurrentTimestamp() >= kw_next_purge)
			kw_purge();

		/* sleep until a wake-up, a socket, libcurl's timer or a due retry */
		if (kw_extension_missing)
			timeout = KW_MISSING_RECHECK_MS;
		else if (kw_http_has_done())
			timeout = 0;
		else if (kw_claim_room() == 0)
		{
			/* no room: only a finished request can change that */
			timeout = KW_IDLE_RECHECK_MS;
		}
		else if (kw_more_due)
			timeout = 0;
		else
			timeout = kw_ms_until(kw_next_due);
		if (kw_http_timeout() >= 0)
			timeout = Min(timeout, kw_http_timeout());
		if (kw_worker_index == 0 && kw_retention > 0)
			timeout = Min(timeout, kw_ms_until(kw_next_purge));
		/* what pg_stat_activity shows while we wait */
		if (kw_http_in_flight() > 0)
			pgstat_report_activity(STATE_RUNNING, "delivering webhooks");
		else
			pgstat_report_activity(STATE_IDLE, NULL);

		if (WaitEventSetWait(wait_set, timeout, &event, 1,
							 PG_WAIT_EXTENSION) > 0 &&
			(event.events & WL_LATCH_SET))
		{
			ResetLatch(MyLatch);
			kw_more_due = true;
		}
	}

	/*
	 * Shutdown: what has finished is already recorded; what is still in
	 * flight stays pending and goes out again after the restart.
	 */
	ereport(LOG,
			(errmsg("konvox_webhooks worker shutting down, %d requests in flight left pending",
					kw_http_in_flight())));
	proc_exit(1);
}

/*
 * Entry point of the launcher, the one worker registered by _PG_init.  It
 * connects to no database, waits until konvox_webhooks.database_name
 * exists, and keeps the delivery workers running there: a worker that
 * stops is started again after KW_RESTART_DELAY_MS.  So a missing database
 * costs one log line and a look every few seconds, not a worker failing to
 * connect in a loop.
 */
void
kw_launcher_main(Datum main_arg)
{
	BackgroundWorkerHandle *handles[KW_MAX_WORKERS] = {0};
	TimestampTz started[KW_MAX_WORKERS] = {0};
	bool		waiting = false;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	while (!ShutdownRequestPending)
	{
		long		timeout = -1;
		bool		exists;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		exists = kw_database_exists(kw_database_name);

		if (!exists)
		{
			if (!waiting)
				ereport(LOG,
						(errmsg("konvox_webhooks waiting for database \"%s\" to exist",
								kw_database_name),
						 errhint("Create it, or set konvox_webhooks.database_name to the database that holds the extension and restart.")));
			waiting = true;
			timeout = KW_MISSING_RECHECK_MS;
		}
		else
		{
			TimestampTz now = GetCurrentTimestamp();

			if (waiting)
				ereport(LOG,
						(errmsg("konvox_webhooks found database \"%s\"",
								kw_database_name)));
			waiting = false;

			for (int i = 0; i < kw_workers; i++)
			{
				pid_t		pid;
				bool		running;

				if (handles[i] != NULL)
					running = (GetBackgroundWorkerPid(handles[i], &pid) !=
							   BGWH_STOPPED);
				else
					running = (pg_atomic_read_u32(&kw_shared->workers[i].pid) != 0);
				if (running)
				{
					/* started by an earlier launcher: only looking tells */
					if (handles[i] == NULL)
						timeout = (timeout < 0) ? KW_RESTART_DELAY_MS :
							Min(timeout, KW_RESTART_DELAY_MS);
					continue;
				}

				if (now - started[i] >= KW_RESTART_DELAY_MS * 1000)
				{
					handles[i] = kw_start_worker(i);
					started[i] = now;
				}
				else
				{
					long		wait_ms = KW_RESTART_DELAY_MS -
						(long) ((now - started[i]) / 1000);

					timeout = (timeout < 0) ? wait_ms : Min(timeout, wait_ms);
				}
				/* no handle: look again soon */
				if (handles[i] == NULL)
					timeout = (timeout < 0) ? KW_RESTART_DELAY_MS :
						Min(timeout, KW_RESTART_DELAY_MS);
			}
		}

		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_EXIT_ON_PM_DEATH |
						 (timeout >= 0 ? WL_TIMEOUT : 0),
						 timeout, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
	proc_exit(1);
}

/*
 * Does a database of that name exist?  The launcher is connected to no
 * database, so it reads pg_database with a heap scan, as the autovacuum
 * launcher does: indexes of shared catalogs need pg_class to be opened.
 */
static bool
kw_database_exists(const char *name)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	bool		found = false;

	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (!found && (tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
		found = (strcmp(NameStr(((Form_pg_database) GETSTRUCT(tup))->datname),
						name) == 0);
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return found;
}

/*
 * Register delivery worker i; the postmaster tells us (SIGUSR1, which sets
 * our latch) when it starts or stops.  Returns NULL, having said why, when
 * there is no free background worker slot.
 */
static BackgroundWorkerHandle *
kw_start_worker(int i)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	MemoryContext old;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS |
		BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(worker.bgw_library_name, "konvox_webhooks", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "kw_worker_main", BGW_MAXLEN);
	snprintf(worker.bgw_name, BGW_MAXLEN, "%s %d", KW_WORKER_TYPE, i + 1);
	strlcpy(worker.bgw_type, KW_WORKER_TYPE, BGW_MAXLEN);
	worker.bgw_main_arg = Int32GetDatum(i);
	worker.bgw_notify_pid = MyProcPid;

	old = MemoryContextSwitchTo(TopMemoryContext);
	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
	{
		ereport(LOG,
				(errmsg("konvox_webhooks could not start delivery worker %d: no background worker slot is free",
						i + 1),
				 errhint("Raise max_worker_processes.")));
		handle = NULL;
	}
	MemoryContextSwitchTo(old);
	return handle;
}

/* Forget the worker in shared memory, so that nobody wakes a stale latch. */
static void
kw_worker_exit(int code, Datum arg)
{
	pg_atomic_write_u32(&kw_me->procno, INVALID_PGPROCNO);
	pg_atomic_write_u32(&kw_me->pid, 0);
	pg_atomic_write_u32(&kw_me->in_flight, 0);
}

/* This worker's part of max_concurrency: an equal share, at least one. */
static int
kw_share_of_concurrency(void)
{
	return Max(1, (kw_max_concurrency + kw_nworkers - 1) / kw_nworkers);
}

/*
 * Make sure there are at least n request slots.  Slots are never freed: a
 * lower max_concurrency just leaves some unused.
 */
static void
kw_ensure_slots(int n)
{
	MemoryContext old;

	if (n <= kw_nslots)
		return;

	old = MemoryContextSwitchTo(kw_worker_context);
	if (kw_slots == NULL)
	{
		kw_slots = palloc(sizeof(KwRequest *) * n);
		kw_free = palloc(sizeof(KwRequest *) * n);
		kw_results = palloc(sizeof(KwRequest *) * n);
		kw_claimed = palloc(sizeof(KwRequest *) * n);
	}
	else
	{
		kw_slots = repalloc(kw_slots, sizeof(KwRequest *) * n);
		kw_free = repalloc(kw_free, sizeof(KwRequest *) * n);
		kw_results = repalloc(kw_results, sizeof(KwRequest *) * n);
		kw_claimed = repalloc(kw_claimed, sizeof(KwRequest *) * n);
	}
	for (int i = kw_nslots; i < n; i++)
	{
		KwRequest  *req = palloc0(sizeof(KwRequest));

		initStringInfo(&req->url);
		initStringInfo(&req->body);
		initStringInfo(&req->headers);
		req->response = palloc(KW_RESPONSE_BODY_CAP + 1);
		kw_slots[i] = req;
		kw_free[kw_nfree++] = req;
	}
	kw_nslots = n;
	MemoryContextSwitchTo(old);
}

/* Give a slot back, shrinking buffers that one large payload grew. */
static void
kw_free_slot(KwRequest *req)
{
	MemoryContext old = MemoryContextSwitchTo(kw_worker_context);

	if (req->body.maxlen > KW_BUFFER_KEEP)
	{
		pfree(req->body.data);
		initStringInfo(&req->body);
	}
	MemoryContextSwitchTo(old);
	kw_free[kw_nfree++] = req;
}

/*
 * Start a transaction for a unit of the worker's work, as worker_spi does.
 */
static void
kw_begin(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

/* Commit the transaction kw_begin started. */
static void
kw_commit(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
}

/*
 * After an error in one of our transactions: report it, roll back, and carry
 * on.  The worker must outlive a dropped extension or a bad row.
 */
static void
kw_recover(void)
{
	HOLD_INTERRUPTS();
	EmitErrorReport();
	AbortCurrentTransaction();
	FlushErrorState();
	RESUME_INTERRUPTS();
	MemoryContextSwitchTo(kw_worker_context);
}

/*
 * Is the extension installed in our database?  Called inside a transaction.
 * Says so in the log only when the answer changes.
 */
static bool
kw_extension_ready(void)
{
	Oid			oid = get_extension_oid("konvox_webhooks", true);
	bool		ready = OidIsValid(oid);

	if (ready && OidIsValid(kw_extension_oid) && oid != kw_extension_oid)
		ereport(LOG,
				(errmsg("konvox_webhooks worker found the extension created again; outcomes of %d requests in flight will not be recorded",
						kw_http_in_flight())));
	if (ready)
		kw_extension_oid = oid;

	if (!ready && !kw_extension_missing)
		ereport(LOG,
				(errmsg("konvox_webhooks worker waiting: extension \"konvox_webhooks\" is not installed in database \"%s\"",
						kw_database_name),
				 errhint("Run CREATE EXTENSION konvox_webhooks in that database.")));
	else if (ready && kw_extension_missing)
		ereport(LOG,
				(errmsg("konvox_webhooks worker found the extension in database \"%s\"",
						kw_database_name)));
	kw_extension_missing = !ready;
	return ready;
}

/*
 * Do endpoints have their own headers (version 1.2 of the extension on)?
 * Called inside a transaction.
 */
static bool
kw_endpoints_have_headers(void)
{
	Oid			nsp = get_namespace_oid("webhooks", true);
	Oid			relid = OidIsValid(nsp) ?
		get_relname_relid("endpoints", nsp) : InvalidOid;

	return OidIsValid(relid) &&
		get_attnum(relid, "headers") != InvalidAttrNumber;
}

/*
 * Read up to limit due deliveries, prepare their requests, commit, and only
 * then start sending them.
 */
static void
kw_claim(int limit)
{
	MemoryContext old = CurrentMemoryContext;
	uint64		nread = 0;

	kw_nclaimed = 0;
	PG_TRY();
	{
		kw_begin("claiming deliveries");
		if (kw_extension_ready())
		{
			Datum		args[5];
			TimestampTz now = GetCurrentTimestamp();
			Datum	   *unsendable_ids = NULL;
			Datum	   *unsendable_reasons = NULL;
			int			nunsendable = 0;
			Oid			claim_types[5] = {TIMESTAMPTZOID, INT8OID, INT4OID,
			INT4OID, INT4OID};
			bool		headers = kw_endpoints_have_headers();

			/* read the endpoints' headers once an update has added them */
			if (kw_claim_plan != NULL && kw_claim_plan_headers != headers)
			{
				SPI_freeplan(kw_claim_plan);
				kw_claim_plan = NULL;
			}
			if (kw_claim_plan == NULL)
			{
				kw_claim_plan = kw_keep_plan(psprintf(
					"SELECT d.id, d.attempts, d.next_attempt_at, ev.id,"
					"       ev.event, ev.company_id, ev.created_at, ev.data,"
					"       ep.url, ep.secret,"
					"       CASE WHEN ep.previous_secret_expires_at > now()"
					"            THEN ep.previous_secret END,"
					"       CASE WHEN ep.id IS NULL THEN 'endpoint deleted'"
					"            WHEN NOT ep.active THEN 'endpoint deactivated'"
					"            WHEN ep.company_id <> ev.company_id"
					"            THEN 'endpoint belongs to another company' END,"
					"       ev.id IS NULL OR (ep.id IS NULL AND d.endpoint_id >"
					"           (SELECT last_value FROM webhooks.endpoints_id_seq)),"
					"       %s"
					"  FROM webhooks.deliveries d"
					"  LEFT JOIN webhooks.events ev ON ev.id = d.event_id"
					"  LEFT JOIN webhooks.endpoints ep ON ep.id = d.endpoint_id"
					" WHERE d.status = 'pending'"
					"   AND d.next_attempt_at <= now()"
					"   AND (d.next_attempt_at, d.id) > ($1, $2)"
					"   AND d.id %% $4 = $5"
					" ORDER BY d.next_attempt_at, d.id"
					" LIMIT $3",
					headers ? "ep.headers" : "NULL::jsonb"),
					5, claim_types);
				kw_claim_plan_headers = headers;
			}
			if (kw_next_due_plan == NULL)
			{
				kw_next_due_plan = kw_keep_plan(
					"SELECT min(next_attempt_at) FROM webhooks.deliveries"
					" WHERE status = 'pending' AND next_attempt_at > now()"
					"   AND id % $1 = $2",
					2, claim_types + 3);
			}
			if (kw_unsendable_plan == NULL)
			{
				Oid			types[2] = {INT8ARRAYOID, TEXTARRAYOID};

				kw_unsendable_plan = kw_keep_plan(
					"UPDATE webhooks.deliveries d"
					"   SET status = 'failed', next_attempt_at = NULL,"
					"       finished_at = now(), last_error = r.reason"
					"  FROM unnest($1, $2) AS r(id, reason)"
					" WHERE d.id = r.id AND d.status = 'pending'",
					2, types);
			}

			args[0] = TimestampTzGetDatum(kw_cursor_at);
			args[1] = Int64GetDatum(kw_cursor_id);
			args[2] = Int32GetDatum(limit);
			args[3] = Int32GetDatum(kw_nworkers);
			args[4] = Int32GetDatum(kw_worker_index);
			if (SPI_execute_plan(kw_claim_plan, args, NULL, true, 0) !=
				SPI_OK_SELECT)
				elog(ERROR, "could not read due deliveries");

			nread = SPI_processed;
			for (uint64 i = 0; i < nread; i++)
			{
				HeapTuple	tuple = SPI_tuptable->vals[i];
				TupleDesc	desc = SPI_tuptable->tupdesc;
				bool		isnull;
				int64		id;
				KwInFlight *entry;

				id = DatumGetInt64(SPI_getbinval(tuple, desc, 1, &isnull));
				if (i == nread - 1)
				{
					kw_cursor_id = id;
					kw_cursor_at = DatumGetTimestampTz(SPI_getbinval(tuple, desc, 3,
																	 &isnull));
				}
				entry = hash_search(kw_in_flight, &id, HASH_FIND, NULL);
				if (entry != NULL && entry->extension_oid == kw_extension_oid)
					continue;

				/*
				 * Its event, or an endpoint id never issued here, is missing:
				 * a restore that has loaded deliveries but not yet the rest.
				 * Leave it pending.
				 */
				if (DatumGetBool(SPI_getbinval(tuple, desc, 13, &isnull)))
					continue;

				/* nothing to send it to: fail it, do not send it */
				(void) SPI_getbinval(tuple, desc, 12, &isnull);
				if (!isnull)
				{
					if (unsendable_ids == NULL)
					{
						unsendable_ids = palloc(sizeof(Datum) * nread);
						unsendable_reasons = palloc(sizeof(Datum) * nread);
					}
					unsendable_ids[nunsendable] = Int64GetDatum(id);
					unsendable_reasons[nunsendable++] =
						SPI_getbinval(tuple, desc, 12, &isnull);
					continue;
				}

				kw_claimed[kw_nclaimed] = kw_free[--kw_nfree];
				kw_claimed[kw_nclaimed]->not_sent =
					kw_prepare_request(kw_claimed[kw_nclaimed], tuple, desc, now);
				kw_nclaimed++;
			}

			if (nunsendable > 0)
			{
				Datum		uargs[2];

				uargs[0] = kw_array(unsendable_ids, NULL, nunsendable, INT8OID);
				uargs[1] = kw_array(unsendable_reasons, NULL, nunsendable,
									TEXTOID);
				if (SPI_execute_plan(kw_unsendable_plan, uargs, NULL, false, 0) !=
					SPI_OK_UPDATE)
					elog(ERROR, "could not fail undeliverable deliveries");
				ereport(LOG,
						(errmsg("konvox_webhooks failed %d deliveries whose endpoint or event is gone, deactivated or moved",
								nunsendable)));
			}

			/* a short read: we have caught up, so look from the start */
			kw_more_due = (nread == (uint64) limit);
			kw_next_due = GetCurrentTimestamp() +
				(TimestampTz) KW_IDLE_RECHECK_MS * 1000;
			if (!kw_more_due)
			{
				kw_cursor_at = DT_NOBEGIN;
				kw_cursor_id = 0;
				if (SPI_execute_plan(kw_next_due_plan, args + 3, NULL, true, 1) ==
					SPI_OK_SELECT && SPI_processed == 1)
				{
					bool		isnull;
					Datum		d = SPI_getbinval(SPI_tuptable->vals[0],
												  SPI_tuptable->tupdesc, 1,
												  &isnull);

					if (!isnull && DatumGetTimestampTz(d) < kw_next_due)
						kw_next_due = DatumGetTimestampTz(d);
				}
			}
		}
		kw_commit();
	}
	PG_CATCH();
	{
		kw_recover();
		while (kw_nclaimed > 0)
			kw_free_slot(kw_claimed[--kw_nclaimed]);
		kw_back_off();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);

	/* the transaction is over: now, and only now, send */
	for (int i = 0; i < kw_nclaimed; i++)
	{
		KwRequest  *req = kw_claimed[i];
		KwInFlight *entry;

		entry = hash_search(kw_in_flight, &req->delivery_id, HASH_ENTER, NULL);
		entry->extension_oid = req->extension_oid;
		if (req->not_sent != NULL)
			kw_http_fail(req, req->not_sent);
		else
			kw_http_start(req, kw_request_timeout);
	}
	kw_nclaimed = 0;
}

/*
 * Format a timestamp the way the envelope wants it: UTC, milliseconds, Z.
 */
static void
kw_append_timestamp(StringInfo buf, TimestampTz ts)
{
	struct pg_tm tm;
	fsec_t		fsec;

	if (timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range")));
	appendStringInfo(buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
					 tm.tm_year, tm.tm_mon, tm.tm_mday,
					 tm.tm_hour, tm.tm_min, tm.tm_sec, (int) (fsec / 1000));
}

/*
 * Fill a request slot from one claimed row: the URL, the envelope (the same
 * bytes on every attempt, as they depend only on the stored event) and the
 * headers of this attempt.  Returns NULL, or why the request must not be
 * sent, for the attempt's error.
 */
static const char *
kw_prepare_request(KwRequest *req, HeapTuple tuple, TupleDesc desc,
				   TimestampTz now)
{
	bool		isnull;
	char	   *event_id;
	char	   *secret;
	char	   *previous_secret;
	Jsonb	   *data;
	Datum		headers;
	int64		unix_now;

	req->delivery_id = DatumGetInt64(SPI_getbinval(tuple, desc, 1, &isnull));
	req->extension_oid = kw_extension_oid;
	req->attempt = DatumGetInt32(SPI_getbinval(tuple, desc, 2, &isnull)) + 1;
	event_id = DatumGetCString(DirectFunctionCall1(uuid_out,
												   SPI_getbinval(tuple, desc, 4,
																 &isnull)));

	resetStringInfo(&req->url);
	appendStringInfoString(&req->url, SPI_getvalue(tuple, desc, 9));

	resetStringInfo(&req->body);
	appendStringInfoString(&req->body, "{\"event\": ");
	escape_json(&req->body, TextDatumGetCString(SPI_getbinval(tuple, desc, 5,
															  &isnull)));
	appendStringInfoString(&req->body, ", \"timestamp\": \"");
	kw_append_timestamp(&req->body,
						DatumGetTimestampTz(SPI_getbinval(tuple, desc, 7,
														  &isnull)));
	appendStringInfoString(&req->body, "\", \"companyId\": ");
	escape_json(&req->body, TextDatumGetCString(SPI_getbinval(tuple, desc, 6,
															  &isnull)));
	appendStringInfoString(&req->body, ", \"data\": ");
	data = DatumGetJsonbP(SPI_getbinval(tuple, desc, 8, &isnull));
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
	unix_now = (int64) (now / USECS_PER_SEC) +
		(POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY;
	secret = SPI_getvalue(tuple, desc, 10);
	previous_secret = SPI_getvalue(tuple, desc, 11);

	resetStringInfo(&req->headers);
	appendStringInfo(&req->headers,
					 "webhook-id: %s\nwebhook-timestamp: " INT64_FORMAT
					 "\nwebhook-signature: ",
					 event_id, unix_now);
	/* never unsigned: a receiver that checks signatures would take it */
	if (secret == NULL ||
		!kw_sign(&req->headers, secret, event_id, unix_now,
				 req->body.data, req->body.len))
		return "not sent: the endpoint's secret is not a valid signing secret; give it a new one with webhooks.rotate_secret()";
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
	headers = SPI_getbinval(tuple, desc, 14, &isnull);
	if (!isnull)
	{
		if (!kw_check_headers(DatumGetJsonbP(headers), DEBUG1))
			return "not sent: the endpoint's headers are not valid; set them again with webhooks.set_headers()";
		appendStringInfoChar(&req->headers, '\n');
		kw_append_headers(&req->headers, DatumGetJsonbP(headers));
	}
	return NULL;
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

/* Build a one-dimensional array of n datums of a type, with nulls. */
static Datum
kw_array(Datum *values, bool *nulls, int n, Oid elemtype)
{
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			dims[1] = {n};
	int			lbs[1] = {1};

	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_md_array(values, nulls, 1, dims, lbs,
											  elemtype, typlen, typbyval,
											  typalign));
}

/*
 * Write the outcomes of nreqs finished requests, in one transaction: one
 * statement updates the deliveries and inserts the attempts.  A delivery
 * that someone changed or removed meanwhile is left alone and gets no
 * attempt row.  Returns false if the transaction failed.
 */
static bool
kw_record_batch(KwRequest **reqs, int nreqs)
{
	MemoryContext old = CurrentMemoryContext;
	volatile bool ok = true;
	char	   *final = palloc0(nreqs); /* 'd'elivered, 'f'ailed, 'p'ending */

	PG_TRY();
	{
		kw_begin("recording delivery results");
		if (kw_extension_ready())
		{
			Datum	   *ids = palloc(sizeof(Datum) * nreqs);
			Datum	   *attempts = palloc(sizeof(Datum) * nreqs);
			Datum	   *statuses = palloc(sizeof(Datum) * nreqs);
			Datum	   *codes = palloc(sizeof(Datum) * nreqs);
			Datum	   *errors = palloc(sizeof(Datum) * nreqs);
			Datum	   *started = palloc(sizeof(Datum) * nreqs);
			Datum	   *durations = palloc(sizeof(Datum) * nreqs);
			Datum	   *bodies = palloc(sizeof(Datum) * nreqs);
			Datum	   *next_at = palloc(sizeof(Datum) * nreqs);
			Datum	   *finished = palloc(sizeof(Datum) * nreqs);
			bool	   *code_nulls = palloc(sizeof(bool) * nreqs);
			bool	   *error_nulls = palloc(sizeof(bool) * nreqs);
			bool	   *body_nulls = palloc(sizeof(bool) * nreqs);
			bool	   *next_nulls = palloc(sizeof(bool) * nreqs);
			bool	   *finished_nulls = palloc(sizeof(bool) * nreqs);
			Datum		args[10];
			int			n;

			if (kw_record_plan == NULL)
			{
				Oid			types[10] = {INT8ARRAYOID, INT4ARRAYOID,
					TEXTARRAYOID, INT4ARRAYOID, TEXTARRAYOID,
					TIMESTAMPTZARRAYOID, FLOAT8ARRAYOID, TEXTARRAYOID,
				TIMESTAMPTZARRAYOID, TIMESTAMPTZARRAYOID};

				kw_record_plan = kw_keep_plan(
					"WITH r AS ("
					"  SELECT * FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
					"    AS r(id, attempt, status, status_code, error, started_at,"
					"         duration_ms, response_body, next_attempt_at,"
					"         finished_at)"
					"), u AS ("
					"  UPDATE webhooks.deliveries d"
					"     SET status = r.status, attempts = r.attempt,"
					"         next_attempt_at = r.next_attempt_at,"
					"         last_status_code = r.status_code,"
					"         last_error = r.error, finished_at = r.finished_at"
					"    FROM r"
					"   WHERE d.id = r.id AND d.status = 'pending'"
					"     AND d.attempts = r.attempt - 1"
					"  RETURNING d.id"
					")"
					"INSERT INTO webhooks.delivery_attempts"
					"  (delivery_id, attempt, started_at, duration_ms,"
					"   status_code, error, response_body, next_attempt_at)"
					"SELECT r.id, r.attempt, r.started_at, r.duration_ms,"
					"       r.status_code, r.error, r.response_body,"
					"       r.next_attempt_at"
					"  FROM r JOIN u ON u.id = r.id"
					" ON CONFLICT DO NOTHING",
					10, types);
			}

			n = 0;
			for (int r = 0; r < nreqs; r++)
			{
				KwRequest  *req = reqs[r];
				int			i;
				const char *status;
				TimestampTz retry_at = 0;

				/* claimed from an extension since dropped: nothing to record */
				if (req->extension_oid != kw_extension_oid)
					continue;
				i = n++;

				if (req->succeeded)
					status = "delivered";
				else if (req->attempt >= kw_max_attempts)
					status = "failed";
				else
				{
					/* base * 2^(n-1), with jitter of +-10% */
					double		delay_ms = (double) kw_retry_base_delay *
						pow(2.0, req->attempt - 1) *
						(0.9 + 0.2 * pg_prng_double(&pg_global_prng_state));

					status = "pending";
					retry_at = req->finished_at +
						(TimestampTz) (delay_ms * 1000.0);
				}

				final[r] = status[0];
				ids[i] = Int64GetDatum(req->delivery_id);
				attempts[i] = Int32GetDatum(req->attempt);
				statuses[i] = CStringGetTextDatum(status);
				codes[i] = Int32GetDatum(req->status_code);
				code_nulls[i] = (req->status_code == 0);
				errors[i] = CStringGetTextDatum(req->error);
				error_nulls[i] = req->succeeded;
				started[i] = TimestampTzGetDatum(req->started_at);
				durations[i] = Float8GetDatum(
					(double) (req->finished_at - req->started_at) / 1000.0);
				body_nulls[i] = (req->response_len == 0);
				bodies[i] = body_nulls[i] ? (Datum) 0 :
					PointerGetDatum(kw_response_text(req));
				next_at[i] = TimestampTzGetDatum(retry_at);
				next_nulls[i] = (retry_at == 0);
				finished[i] = TimestampTzGetDatum(req->finished_at);
				finished_nulls[i] = (retry_at != 0);

				elog(DEBUG1, "konvox_webhooks: delivery " INT64_FORMAT
					 " attempt %d: %s%s%s",
					 req->delivery_id, req->attempt, status,
					 req->succeeded ? "" : ", ",
					 req->succeeded ? "" : req->error);
			}

			args[0] = kw_array(ids, NULL, n, INT8OID);
			args[1] = kw_array(attempts, NULL, n, INT4OID);
			args[2] = kw_array(statuses, NULL, n, TEXTOID);
			args[3] = kw_array(codes, code_nulls, n, INT4OID);
			args[4] = kw_array(errors, error_nulls, n, TEXTOID);
			args[5] = kw_array(started, NULL, n, TIMESTAMPTZOID);
			args[6] = kw_array(durations, NULL, n, FLOAT8OID);
			args[7] = kw_array(bodies, body_nulls, n, TEXTOID);
			args[8] = kw_array(next_at, next_nulls, n, TIMESTAMPTZOID);
			args[9] = kw_array(finished, finished_nulls, n, TIMESTAMPTZOID);

			if (n > 0 &&
				SPI_execute_plan(kw_record_plan, args, NULL, false, 0) !=
				SPI_OK_INSERT)
				elog(ERROR, "could not record delivery results");

			/* a retry may now be due earlier than anything we knew of */
			for (int i = 0; i < n; i++)
			{
				if (!next_nulls[i] &&
					DatumGetTimestampTz(next_at[i]) < kw_next_due)
					kw_next_due = DatumGetTimestampTz(next_at[i]);
			}
		}
		kw_commit();

		/* committed: now they count */
		for (int r = 0; r < nreqs; r++)
		{
			if (final[r] != '\0')
				kw_count_attempt(reqs[r]->outcome, final[r] == 'd',
								 final[r] == 'f');
		}
	}
	PG_CATCH();
	{
		kw_recover();
		ok = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
	return ok;
}

/*
 * Record every finished request.  If the batch fails, record the requests
 * one by one, so that one bad row costs only itself; what still cannot be
 * recorded stays pending and is sent again, but not before
 * KW_MISSING_RECHECK_MS, so that a lasting error cannot make us resend in a
 * loop.
 */
static void
kw_record(void)
{
	bool		ok = kw_record_batch(kw_results, kw_nresults);

	if (!ok && kw_nresults > 1)
	{
		ok = true;
		for (int i = 0; i < kw_nresults; i++)
			ok &= kw_record_batch(&kw_results[i], 1);
	}
	if (!ok)
		kw_back_off();
	kw_release_results();
}

/*
 * Delete one batch of history older than konvox_webhooks.retention, with
 * webhooks._purge_batch (from version 1.1 of the extension; nothing is
 * done while the database still has 1.0).  When the batch was full, the
 * next one follows at the next turn of the loop; otherwise we look again
 * in KW_PURGE_INTERVAL_MS.
 */
static void
kw_purge(void)
{
	MemoryContext old = CurrentMemoryContext;
	volatile bool more = false;

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
		kw_recover();
		more = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);

	kw_next_purge = more ? GetCurrentTimestamp() :
		GetCurrentTimestamp() + (TimestampTz) KW_PURGE_INTERVAL_MS * 1000;
}

/* Forget the recorded requests: out of the in-flight table, slots back. */
static void
kw_release_results(void)
{
	for (int i = 0; i < kw_nresults; i++)
	{
		KwRequest  *req = kw_results[i];
		KwInFlight *entry;

		entry = hash_search(kw_in_flight, &req->delivery_id, HASH_FIND, NULL);
		if (entry != NULL && entry->extension_oid == req->extension_oid)
			hash_search(kw_in_flight, &req->delivery_id, HASH_REMOVE, NULL);
		kw_free_slot(req);
	}
	kw_nresults = 0;
}
