/*-------------------------------------------------------------------------
 *
 * launcher.c
 *		The konvox_webhooks launcher: waits for the served database and keeps
 *		the delivery workers running there.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "konvox_webhooks.h"

/* How long to wait before looking again for a missing database. */
#define KW_MISSING_RECHECK_MS	5000

/* Wait before starting a delivery worker again. */
#define KW_RESTART_DELAY_MS		5000

/* the log has said that worker i found no free slot, since it last started */
static bool kw_no_slot[KW_MAX_WORKERS];

static bool kw_database_exists(const char *name);
static BackgroundWorkerHandle *kw_start_worker(int i);

/* Forget the launcher in shared memory, so that nobody wakes a stale latch. */
static void
kw_launcher_exit(int code, Datum arg)
{
	pg_atomic_write_u32(&kw_shared->launcher_procno,
						(uint32) INVALID_PROC_NUMBER);
}

/*
 * Entry point of the launcher, the one worker registered by _PG_init.  It
 * connects to no database, waits until konvox_webhooks.database_name
 * exists, and keeps the delivery workers running there: a worker that
 * stops is started again after KW_RESTART_DELAY_MS.  So a missing database
 * costs one log line and a look every few seconds, not a worker failing to
 * connect in a loop; and a commit in the database, which finds no worker
 * to wake, wakes the launcher, which looks at once.
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

	/* a commit that finds no worker running wakes us instead */
	before_shmem_exit(kw_launcher_exit, (Datum) 0);
	pg_atomic_write_u32(&kw_shared->launcher_procno, (uint32) MyProcNumber);

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
		/* said once, not at every try */
		if (!kw_no_slot[i])
			ereport(LOG,
					(errmsg("konvox_webhooks could not start delivery worker %d: no background worker slot is free",
							i + 1),
					 errdetail("The other workers send its deliveries meanwhile; it is tried again every %d ms.",
							   KW_RESTART_DELAY_MS),
					 errhint("Raise max_worker_processes.")));
		kw_no_slot[i] = true;
		handle = NULL;
	}
	else
		kw_no_slot[i] = false;
	MemoryContextSwitchTo(old);
	return handle;
}
