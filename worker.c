/*-------------------------------------------------------------------------
 *
 * worker.c
 *		A konvox_webhooks delivery worker: its loop, its request slots and
 *		the transactions of its steps.
 *
 * The worker runs one loop:
 *
 *	 1. progress on the sockets; record the outcomes of the requests that
 *		have finished, in one statement of a transaction of their own
 *		(record.c);
 *	 2. claim what may be sent next and send it (claim.c): a short
 *		transaction reads due deliveries and commits, and only then are
 *		the requests handed to libcurl, with no transaction open;
 *	 3. now and then, delete history past the retention (retention.c);
 *	 4. sleep on the latch, the sockets and libcurl's timer, until a commit
 *		wakes the worker, another worker ends a claim that this one waited
 *		for, a response arrives or something falls due.
 *
 * A delivery stays 'pending' while its request is in flight; what the
 * workers have claimed is listed in shared memory (endpoint.c), so that no
 * worker claims it again.  Nothing about the flight is written down, so a
 * crash at any moment leaves every unrecorded delivery 'pending' and due,
 * and the next worker sends it again: delivery is at least once.
 *
 * Any worker sends any delivery, so that all of them serve every endpoint,
 * and none is left unserved while any worker runs.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <sys/resource.h>

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "konvox_webhooks.h"
#include "worker.h"

/* Request buffers larger than this are given back after use. */
#define KW_BUFFER_KEEP		(64 * 1024)

int			kw_worker_index = 0;
KwWorkerSlot *kw_me = NULL;
MemoryContext kw_worker_context = NULL;

/*
 * The extension as we last saw it.  Dropped and created again, it numbers
 * its deliveries from 1 again, so a request claimed from the old one must
 * not be recorded against a new delivery of the same id.
 */
Oid			kw_extension_oid = InvalidOid;

/* the extension was missing at the last look */
static bool kw_extension_missing = false;

/*
 * webhooks.deliveries of the extension found at the last full look
 * (kw_extension_oid), or InvalidOid: none found, or an error since
 */
static Oid	kw_outbox_relid = InvalidOid;

static MemoryContext kw_loop_context;

/* request slots: all of them, and those not in use */
static KwRequest **kw_slots = NULL;
static int	kw_nslots = 0;
static KwRequest **kw_free = NULL;
static int	kw_nfree = 0;

static void kw_ensure_slots(int n);
static void kw_read_wakeups(void);

/* Milliseconds from now until t, rounded up; 0 if t has passed. */
long
kw_ms_until(TimestampTz t)
{
	long		secs;
	int			usecs;

	TimestampDifference(GetCurrentTimestamp(), t, &secs, &usecs);
	return secs * 1000 + (usecs + 999) / 1000;
}

/* Build a one-dimensional array of n datums of a type, with nulls. */
Datum
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
 * Give back what this worker claimed, and forget it in shared memory, so
 * that nobody wakes a stale latch.
 */
static void
kw_worker_exit(int code, Datum arg)
{
	ereport(LOG,
			(errmsg("konvox_webhooks worker %d shutting down; %d requests in flight and their deliveries stay pending",
					kw_worker_index + 1, kw_http_in_flight())));
	kw_endpoints_worker_exit();
	pg_atomic_write_u32(&kw_me->procno, (uint32) INVALID_PROC_NUMBER);
	pg_atomic_write_u32(&kw_me->in_flight, 0);
	pg_atomic_write_u32(&kw_me->pid, 0);
}

/*
 * Settings of the worker's session.  Names resolve in pg_catalog only:
 * an operator or function that someone creates in public with an exact
 * argument match would otherwise run as the superuser that we are.  The
 * statements' plans must not depend on statistics, which are nearly always
 * wrong for a queue (see claim.c): they are planned generically, without
 * the scans and joins that bad estimates lead to.  Outcomes are written
 * with synchronous_commit off: a crash may lose the last moment of them,
 * and those deliveries are simply sent again.  A lock held elsewhere stops
 * a step for lock_timeout at most; the step is tried again.
 */
static void
kw_session_settings(void)
{
	static const char *const settings[][2] = {
		{"search_path", "pg_catalog, pg_temp"},
		{"synchronous_commit", "off"},
		{"default_transaction_isolation", "read committed"},
		{"plan_cache_mode", "force_generic_plan"},
		{"enable_seqscan", "off"},
		{"enable_bitmapscan", "off"},
		{"enable_hashjoin", "off"},
		{"enable_mergejoin", "off"},
		{"enable_memoize", "off"},
		{"jit", "off"},
		{"lock_timeout", "10s"},
	};

	for (int i = 0; i < (int) lengthof(settings); i++)
		SetConfigOption(settings[i][0], settings[i][1], PGC_SUSET,
						PGC_S_OVERRIDE);
}

/*
 * Act on what set the latch: a commit (look at the whole queue again), or
 * the end of another worker's claim that this one waited for.  Read after
 * every wait, and again before computing the next one: a lock wait in one
 * of the worker's own transactions resets the latch, and the flag is then
 * all that is left of the wake-up.
 */
static void
kw_read_wakeups(void)
{
	if (pg_atomic_exchange_u32(&kw_me->woken_by_commit, 0) != 0)
		kw_claim_reset();
	if (pg_atomic_exchange_u32(&kw_me->claim_ended, 0) != 0)
		kw_claim_ended();
}

/*
 * Entry point of a delivery worker, started by the launcher.
 */
void
kw_worker_main(Datum main_arg)
{
	WaitEventSet *wait_set;
	struct rlimit rl;

	kw_worker_index = DatumGetInt32(main_arg);
	kw_in_delivery_worker = true;

	/* one worker per number, even if a restarted launcher asks twice */
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

	/* SIGTERM (shutdown, pg_terminate_backend) ends even a wait on a lock */
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnection(kw_database_name, NULL, 0);
	kw_session_settings();

	/* sockets to receivers count against the descriptor limit */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max)
	{
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}

#ifdef __GLIBC__

	/*
	 * Keep freed memory for the next batch instead of giving it back to the
	 * kernel: each batch's executor memory, freed at its end, was returned
	 * with brk() and faulted in again by the next batch, 0.75 page faults
	 * per delivery in a steady drain, fewer than 0.01 with this.  Set
	 * outright, the two thresholds no longer adjust themselves, so they are
	 * set to the highest that glibc's own adjustment reaches after a large
	 * block is freed (32 MB and twice that on 64-bit machines): a large
	 * payload's buffer still comes from the heap.  Where glibc refuses that
	 * (on 32-bit machines), both are left to adjust themselves.
	 */
	if (mallopt(M_MMAP_THRESHOLD, (int) (4 * 1024 * 1024 * sizeof(long))))
		mallopt(M_TRIM_THRESHOLD, (int) (8 * 1024 * 1024 * sizeof(long)));
#endif

	kw_worker_context = AllocSetContextCreate(TopMemoryContext,
											  "konvox_webhooks worker",
											  ALLOCSET_DEFAULT_SIZES);
	kw_loop_context = AllocSetContextCreate(kw_worker_context,
											"konvox_webhooks worker loop",
											ALLOCSET_DEFAULT_SIZES);
	kw_http_init(kw_max_concurrency);
	kw_ensure_slots(2 * kw_max_concurrency);
	kw_claim_init();

	wait_set = CreateWaitEventSet(NULL, 3);
	AddWaitEventToSet(wait_set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(wait_set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL,
					  NULL);
	AddWaitEventToSet(wait_set, WL_SOCKET_READABLE, kw_http_socket(), NULL,
					  NULL);

	pg_atomic_write_u32(&kw_me->procno, (uint32) MyProcNumber);

	ereport(LOG,
			(errmsg("konvox_webhooks worker %d of %d started for database \"%s\"",
					kw_worker_index + 1, kw_workers, kw_database_name)));

	for (;;)
	{
		WaitEvent	event;
		TimestampTz next;
		long		timeout;
		KwRequest  *req;

		MemoryContextReset(kw_loop_context);
		MemoryContextSwitchTo(kw_loop_context);
		CHECK_FOR_INTERRUPTS();

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			kw_http_configure(kw_max_concurrency);
			kw_ensure_slots(2 * kw_max_concurrency);
			kw_claim_reset();
			kw_claim_settings_changed();
			kw_retention_reset();
		}

		/* progress on the sockets, then record what has finished */
		kw_http_drive();
		while ((req = kw_http_next_done()) != NULL)
			kw_record_add(req);
		kw_record_answered();
		pg_atomic_write_u32(&kw_me->in_flight, (uint32) kw_http_in_flight());
		if (kw_record_due(kw_http_in_flight()))
			kw_record();

		if (kw_claim_wanted())
			kw_claim();

		kw_apply_retention();
		kw_read_wakeups();

		/* sleep until a wake-up, a socket, libcurl's timer or a due step */
		next = Min(kw_claim_next_time(), kw_record_next_time());
		next = Min(next, kw_retention_next_time());
		timeout = kw_http_has_done() ? 0 :
			Min(kw_ms_until(next), KW_IDLE_RECHECK_MS);
		if (kw_http_timeout() >= 0)
			timeout = Min(timeout, kw_http_timeout());

		/* what pg_stat_activity shows while we wait */
		if (kw_http_in_flight() > 0)
			pgstat_report_activity(STATE_RUNNING, "delivering webhooks");
		else
			pgstat_report_activity(STATE_IDLE, NULL);

		if (WaitEventSetWait(wait_set, timeout, &event, 1,
							 PG_WAIT_EXTENSION) > 0 &&
			(event.events & WL_LATCH_SET))
			ResetLatch(MyLatch);

		kw_read_wakeups();
	}
}

/*
 * Make sure there are at least n request slots: twice max_concurrency, since
 * a request whose answer waits to be recorded keeps its slot, while another
 * may take its place in flight.  Slots are never freed: a lower
 * max_concurrency just leaves some unused.
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
	}
	else
	{
		kw_slots = repalloc(kw_slots, sizeof(KwRequest *) * n);
		kw_free = repalloc(kw_free, sizeof(KwRequest *) * n);
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

/* A free request slot; the caller has made sure there is one. */
KwRequest *
kw_take_slot(void)
{
	Assert(kw_nfree > 0);
	return kw_free[--kw_nfree];
}

/* Give a slot back, shrinking buffers that one large payload grew. */
void
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

/* Request slots free now. */
int
kw_free_slots(void)
{
	return kw_nfree;
}

/*
 * Start a transaction for a unit of the worker's work, as worker_spi does.
 */
void
kw_begin(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

/* Commit the transaction kw_begin started. */
void
kw_commit(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
}

/*
 * SPI_execute_plan and SPI_execute, returning in the caller's memory
 * context.  SPI's own calls return in its procedure context, which the
 * commit frees: what a worker allocates after a statement, to use once
 * the transaction is over, would be freed under it.
 */
int
kw_execute_plan(SPIPlanPtr plan, Datum *args, const char *nulls,
				bool read_only, long count)
{
	MemoryContext old = CurrentMemoryContext;
	int			rc = SPI_execute_plan(plan, args, nulls, read_only, count);

	MemoryContextSwitchTo(old);
	return rc;
}

int
kw_execute(const char *sql, bool read_only, long count)
{
	MemoryContext old = CurrentMemoryContext;
	int			rc = SPI_execute(sql, read_only, count);

	MemoryContextSwitchTo(old);
	return rc;
}

/*
 * After an error in one of our transactions: report it (if report), copy
 * its message into error (if given), roll back, and carry on.  The worker
 * must outlive a dropped extension or a bad row.
 */
void
kw_recover_with_message(bool report, char *error, int errorlen)
{
	MemoryContext old = CurrentMemoryContext;

	HOLD_INTERRUPTS();
	if (error != NULL)
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(kw_worker_context);
		edata = CopyErrorData();
		strlcpy(error, edata->message, errorlen);
		FreeErrorData(edata);
		MemoryContextSwitchTo(old);
	}
	if (report)
		EmitErrorReport();
	AbortCurrentTransaction();
	FlushErrorState();
	RESUME_INTERRUPTS();
	MemoryContextSwitchTo(kw_worker_context);

	/* whatever went wrong, the next transaction looks for the extension */
	kw_outbox_relid = InvalidOid;
}

/* After an error in one of our transactions: report it, and carry on. */
void
kw_recover(bool report)
{
	kw_recover_with_message(report, NULL, 0);
}

/*
 * Is the extension installed in our database?  Called inside a transaction.
 * Says so in the log only when the answer changes.
 */
bool
kw_extension_ready(void)
{
	Oid			oid;
	bool		ready;

	/*
	 * Lock the extension seen last, as DROP EXTENSION does before it touches
	 * any table of the extension: a drop then waits for this transaction, or
	 * this transaction for the drop, instead of each holding a table that
	 * the other wants.  (A DROP OWNED may still lock a table first; then the
	 * deadlock detector ends one of the two, and a worker tries again.)
	 * Taking the lock also takes in what a drop committed meanwhile (a
	 * transaction sends its invalidations before it releases its locks).
	 * While the outbox table of the last full look is still in the catalog
	 * cache, the extension is that same one: dropped, it takes the table
	 * along, and created again, it makes a table of another OID.  So most
	 * transactions need only the lock and a probe of the cache, not a scan
	 * of pg_extension.
	 */
	if (OidIsValid(kw_outbox_relid))
	{
		LockDatabaseObject(ExtensionRelationId, kw_extension_oid, 0,
						   AccessShareLock);
		if (SearchSysCacheExists1(RELOID, ObjectIdGetDatum(kw_outbox_relid)))
			return true;
		UnlockDatabaseObject(ExtensionRelationId, kw_extension_oid, 0,
							 AccessShareLock);
	}

	/* The full look, the extension found locked and found again */
	for (;;)
	{
		oid = get_extension_oid("konvox_webhooks", true);
		if (!OidIsValid(oid))
			break;
		LockDatabaseObject(ExtensionRelationId, oid, 0, AccessShareLock);
		if (get_extension_oid("konvox_webhooks", true) == oid)
			break;
		UnlockDatabaseObject(ExtensionRelationId, oid, 0, AccessShareLock);
	}
	ready = OidIsValid(oid);

	if (ready && !kw_extension_missing && OidIsValid(kw_extension_oid) &&
		oid != kw_extension_oid)
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
	kw_outbox_relid = ready ?
		get_relname_relid("deliveries", get_namespace_oid("webhooks", true)) :
		InvalidOid;
	return ready;
}
