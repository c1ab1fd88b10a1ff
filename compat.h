/*-------------------------------------------------------------------------
 *
 * compat.h
 *		The differences between the PostgreSQL releases that konvox_webhooks
 *		builds on (15 and later), in one place.
 *
 * The code is written against the newest release's API; for an older
 * release this header supplies the newer names and argument lists on top
 * of what that release has.  No other file tests PG_VERSION_NUM.  To
 * support a new release, add its differences here.
 *
 *-------------------------------------------------------------------------
 */
#ifndef KW_COMPAT_H
#define KW_COMPAT_H

#include "catalog/dependency.h"
#include "common/base64.h"
#include "executor/executor.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#if PG_VERSION_NUM < 150000
#error "konvox_webhooks needs PostgreSQL 15 or later"
#endif

/*
 * 17 renamed the number of a PGPROC in ProcGlobal->allProcs to ProcNumber,
 * gave the backend's own a global (MyProcNumber), dropped PGPROC.pgprocno
 * and turned INVALID_PGPROCNO (PG_INT32_MAX) into INVALID_PROC_NUMBER (-1).
 */
#if PG_VERSION_NUM < 170000
typedef int ProcNumber;

#define INVALID_PROC_NUMBER		INVALID_PGPROCNO
#define MyProcNumber			(MyProc->pgprocno)
#endif

/*
 * 17: CreateWaitEventSet() takes the resource owner that frees the set on
 * abort, or NULL for a set that lives until the process exits, instead of
 * a memory context.  Before 17, such a set lives in TopMemoryContext.
 */
#if PG_VERSION_NUM < 170000
#define CreateWaitEventSet(resowner, nevents) \
	(CreateWaitEventSet) (TopMemoryContext, (nevents))
#endif

/*
 * 17: getIdentitySequence() takes the table's Relation (so that it can
 * follow a partition to its parent) instead of its Oid.
 */
#if PG_VERSION_NUM < 170000
#define getIdentitySequence(rel, attnum, missing_ok) \
	(getIdentitySequence) (RelationGetRelid(rel), (attnum), (missing_ok))
#endif

/*
 * 16: ExecInsertIndexTuples() takes onlySummarizing, true to insert into
 * summarizing (BRIN) indexes only, after a HOT update.
 */
#if PG_VERSION_NUM < 160000
#define ExecInsertIndexTuples(rri, slot, estate, update, noDupErr, \
							  specConflict, arbiterIndexes, onlySummarizing) \
	(ExecInsertIndexTuples) ((rri), (slot), (estate), (update), (noDupErr), \
							 (specConflict), (arbiterIndexes))
#endif

/*
 * 18: pg_b64_encode() reads, and pg_b64_decode() writes, bytes (uint8)
 * rather than char.
 */
#if PG_VERSION_NUM < 180000
#define pg_b64_encode(src, len, dst, dstlen) \
	(pg_b64_encode) ((const char *) (src), (len), (dst), (dstlen))
#define pg_b64_decode(src, len, dst, dstlen) \
	(pg_b64_decode) ((src), (len), (char *) (dst), (dstlen))
#endif

#endif							/* KW_COMPAT_H */
