/*-------------------------------------------------------------------------
 *
 * konvox_webhooks.c
 *		Module setup, settings, shared memory and the SQL-callable functions
 *		of konvox_webhooks.
 *
 * webhooks.emit() validates an event against its type, writes it to the
 * outbox with one delivery per subscribed endpoint, in the caller's
 * transaction, and asks for the worker to be woken when that transaction
 * commits.  The worker itself lives in worker.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <unistd.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "common/base64.h"
#include "common/hmac.h"
#include "common/sha2.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "tcop/pquery.h"
#include "tcop/utility.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/rel.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

/* OpenSSL's HMAC with its contexts kept, from OpenSSL 1.1 on */
#ifdef USE_OPENSSL
#include <openssl/opensslv.h>
#if OPENSSL_VERSION_NUMBER >= 0x10100000L
#define KW_OPENSSL_HMAC
#include <openssl/evp.h>
#include <openssl/hmac.h>
#endif
#endif

#include "konvox_webhooks.h"

PG_MODULE_MAGIC;

/* Random bytes in a generated endpoint secret. */
#define KW_SECRET_BYTES		32

/* Standard Webhooks keys are 24 to 64 bytes. */
#define KW_SECRET_MIN_BYTES	24
#define KW_SECRET_MAX_BYTES	64

#define KW_SECRET_PREFIX	"whsec_"

/* Longer than any secret kw_secret_key() takes: the prefix and 96 more. */
#define KW_SECRET_MAX_TEXT	128

/* Settings */
char	   *kw_database_name = NULL;
int			kw_max_attempts = 3;
int			kw_request_timeout = 10000;
int			kw_retry_base_delay = 30000;
int			kw_max_concurrency = 256;
int			kw_max_concurrency_per_endpoint = 64;
int			kw_breaker_failures = 10;
int			kw_breaker_probe_interval = 30000;
int			kw_max_retry_delay = 3600 * 1000;
int			kw_max_retry_after = 3600;
int			kw_workers = 2;
int			kw_retention = 30 * 24 * 3600;
int			kw_max_payload_size = 256 * 1024;
bool		kw_allow_private_targets = false;
char	   *kw_ca_file = NULL;
char	   *kw_proxy = NULL;
char	   *kw_no_proxy = NULL;

KwSharedState *kw_shared = NULL;

const char *const kw_outcome_names[KW_NUM_OUTCOMES] = {
	"success", "http_error", "timeout", "network", "tls", "proxy",
	"address_refused", "not_sent"
};

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* This transaction wrote something the worker should see at commit. */
static bool kw_wake_at_commit = false;

/* This process is a delivery worker (set by kw_worker_main). */
bool		kw_in_delivery_worker = false;

void		_PG_init(void);

static void kw_check_company_id(text *company_id);
static void kw_check_idempotency_key(text *key);
static bool kw_check_ca_file(char **newval, void **extra, GucSource source);
static bool kw_check_proxy(char **newval, void **extra, GucSource source);
static bool kw_check_no_proxy(char **newval, void **extra, GucSource source);

PG_FUNCTION_INFO_V1(kw_emit);
PG_FUNCTION_INFO_V1(kw_new_event_id);
PG_FUNCTION_INFO_V1(kw_generate_secret);
PG_FUNCTION_INFO_V1(kw_sign_sql);
PG_FUNCTION_INFO_V1(kw_wake_worker_sql);
PG_FUNCTION_INFO_V1(kw_wake_trigger);
PG_FUNCTION_INFO_V1(kw_worker_slots);
PG_FUNCTION_INFO_V1(kw_delivery_counters);
PG_FUNCTION_INFO_V1(kw_attempt_counters);
PG_FUNCTION_INFO_V1(kw_endpoint_check);
PG_FUNCTION_INFO_V1(kw_event_type_check);

/*
 * Reserve our slice of shared memory.
 */
static void
kw_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(add_size(MAXALIGN(sizeof(KwSharedState)),
									kw_endpoint_shmem_size()));
	RequestNamedLWLockTranche("konvox_webhooks", 1);
}

/*
 * Attach to, and on first use initialize, our shared memory.
 */
static void
kw_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	kw_shared = ShmemInitStruct("konvox_webhooks", sizeof(KwSharedState),
								&found);
	if (!found)
	{
		for (int i = 0; i < KW_MAX_WORKERS; i++)
		{
			pg_atomic_init_u32(&kw_shared->workers[i].procno,
							   INVALID_PROC_NUMBER);
			pg_atomic_init_u32(&kw_shared->workers[i].pid, 0);
			pg_atomic_init_u32(&kw_shared->workers[i].in_flight, 0);
			pg_atomic_init_u32(&kw_shared->workers[i].woken_by_commit, 0);
			pg_atomic_init_u32(&kw_shared->workers[i].claim_ended, 0);
			kw_shared->workers[i].requests = 0;
			dlist_init(&kw_shared->workers[i].flights);
		}
		pg_atomic_init_u32(&kw_shared->launcher_procno,
						   INVALID_PROC_NUMBER);
		kw_shared->lock = &(GetNamedLWLockTranche("konvox_webhooks"))->lock;
		kw_shared->requests = 0;
		kw_shared->nendpoints = 0;
		kw_shared->endpoints_full = false;
		dlist_init(&kw_shared->free_flights);
		for (int i = 0; i < KW_MAX_FLIGHTS; i++)
			dlist_push_tail(&kw_shared->free_flights,
							&kw_shared->flights[i].endpoint_node);
		kw_shared->nfree_flights = KW_MAX_FLIGHTS;
		kw_shared->counted_since = GetCurrentTimestamp();
		pg_atomic_init_u64(&kw_shared->delivered, 0);
		pg_atomic_init_u64(&kw_shared->failed, 0);
		for (int i = 0; i < KW_NUM_OUTCOMES; i++)
			pg_atomic_init_u64(&kw_shared->attempts[i], 0);
	}
	kw_endpoint_shmem_init();
	LWLockRelease(AddinShmemInitLock);
}

/*
 * Set the latch of worker i, if it runs, with the flag that tells it why:
 * a commit (by_commit), or the end of a claim that it waited for.  Returns
 * whether it runs.
 */
bool
kw_wake_slot(int i, bool by_commit)
{
	KwWorkerSlot *slot = &kw_shared->workers[i];
	ProcNumber	procno = (ProcNumber) pg_atomic_read_u32(&slot->procno);

	if (procno == INVALID_PROC_NUMBER)
		return false;
	pg_atomic_write_u32(by_commit ? &slot->woken_by_commit : &slot->claim_ended,
						1);
	SetLatch(&ProcGlobal->allProcs[procno].procLatch);
	return true;
}

/*
 * At commit, wake the workers if this transaction wrote deliveries; on
 * abort, forget that it did.  With no worker running yet (the database or
 * the extension was just created), wake the launcher, which starts them.
 */
static void
kw_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (kw_wake_at_commit)
			{
				bool		woken = false;
				ProcNumber	procno;

				kw_wake_at_commit = false;
				for (int i = 0; i < kw_workers; i++)
					woken |= kw_wake_slot(i, true);
				procno = (ProcNumber)
					pg_atomic_read_u32(&kw_shared->launcher_procno);
				if (!woken && procno != INVALID_PROC_NUMBER)
					SetLatch(&ProcGlobal->allProcs[procno].procLatch);
			}
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			kw_wake_at_commit = false;
			break;
		default:
			break;
	}
}

/*
 * Ask for the worker to be woken when the current transaction commits.
 *
 * Not from a delivery worker: nothing it writes (outcomes, deliveries it
 * fails, retention) gives another worker something to send, and it keeps
 * its own next retry time.  Waking every worker at each recorded batch
 * only sent them all to read the queue again.
 */
void
kw_wake_worker(void)
{
	if (!kw_in_delivery_worker)
		kw_wake_at_commit = true;
}

/*
 * Check hook of konvox_webhooks.ca_file: empty, or a file the server can
 * read (a relative path is relative to the data directory), so that a typo
 * is refused when the setting is changed instead of failing every https
 * delivery.
 */
static bool
kw_check_ca_file(char **newval, void **extra, GucSource source)
{
	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	if (access(*newval, R_OK) != 0)
	{
		GUC_check_errdetail("File \"%s\" cannot be read: %m.", *newval);
		return false;
	}
	return true;
}

/*
 * Check hook of konvox_webhooks.proxy: empty, or http://[user:password@]
 * host:port.  The value is not repeated in the message: it may hold the
 * proxy's password.
 */
static bool
kw_check_proxy(char **newval, void **extra, GucSource source)
{
	const char *problem;

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	problem = kw_http_check_proxy(*newval);
	if (problem != NULL)
	{
		GUC_check_errdetail("%s", problem);
		GUC_check_errhint("Give the proxy as http://host:port, or http://user:password@host:port, or leave it empty for none.");
		return false;
	}
	return true;
}

/*
 * Check hook of konvox_webhooks.no_proxy: a comma-separated list of host
 * names, IP addresses and CIDR ranges, or *.
 */
static bool
kw_check_no_proxy(char **newval, void **extra, GucSource source)
{
	const char *problem;

	if (*newval == NULL)
		return true;
	problem = kw_http_check_no_proxy(*newval);
	if (problem != NULL)
	{
		GUC_check_errdetail("%s", problem);
		GUC_check_errhint("List host names (a name covers its subdomains), IP addresses and CIDR ranges, separated by commas, or * for every host.");
		return false;
	}
	return true;
}

/*
 * Module load: settings, shared memory, the commit hook and the worker.
 */
void
_PG_init(void)
{
	BackgroundWorker worker;

	if (!process_shared_preload_libraries_in_progress)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("konvox_webhooks must be loaded via shared_preload_libraries"),
				 errhint("Add konvox_webhooks to shared_preload_libraries in postgresql.conf and restart the server.")));

	DefineCustomStringVariable("konvox_webhooks.database_name",
							   "Database in which the delivery worker runs.",
							   NULL,
							   &kw_database_name,
							   "postgres",
							   PGC_POSTMASTER,
							   0,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("konvox_webhooks.max_attempts",
							"Attempts before a delivery is marked failed.",
							NULL,
							&kw_max_attempts,
							3, 1, 100,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("konvox_webhooks.request_timeout",
							"Time a receiver has to answer one request.",
							"A request that takes longer is a failed attempt.",
							&kw_request_timeout,
							10000, 1, 3600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("konvox_webhooks.retry_base_delay",
							"Wait before the first retry; each later retry waits twice as long.",
							"The wait before attempt n+1 is retry_base_delay * 2^(n-1), +-10% jitter, at most max_retry_delay.",
							&kw_retry_base_delay,
							30000, 0, 24 * 3600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("konvox_webhooks.max_retry_delay",
							"Longest wait before a retry.",
							NULL,
							&kw_max_retry_delay,
							3600 * 1000, 0, 7 * 24 * 3600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("konvox_webhooks.max_retry_after",
							"Longest hold that a receiver's Retry-After header can ask for.",
							"After a 429 or 503 with Retry-After, the endpoint is sent nothing until then.",
							&kw_max_retry_after,
							3600, 0, 7 * 24 * 3600,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("konvox_webhooks.max_concurrency",
							"Most requests in flight at once, over all workers and endpoints.",
							"Each running worker starts at most its share; each also keeps at most this many connections to receivers open.",
							&kw_max_concurrency,
							256, 1, KW_MAX_CONCURRENCY,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("konvox_webhooks.max_concurrency_per_endpoint",
							"Most requests in flight to one endpoint, over all workers.",
							"webhooks.endpoints.max_concurrency overrides it for one endpoint.",
							&kw_max_concurrency_per_endpoint,
							64, 1, KW_MAX_CONCURRENCY,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("konvox_webhooks.breaker_failures",
							"Failed requests in a row after which an endpoint is failing.",
							"A failing endpoint gets one probe request every breaker_probe_interval; 0 never marks an endpoint failing.",
							&kw_breaker_failures,
							10, 0, INT_MAX,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("konvox_webhooks.breaker_probe_interval",
							"Time between probe requests to a failing endpoint.",
							NULL,
							&kw_breaker_probe_interval,
							30000, 1, 24 * 3600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("konvox_webhooks.workers",
							"Number of delivery workers.",
							"Any worker sends any delivery; more workers use more cores.",
							&kw_workers,
							2, 1, KW_MAX_WORKERS,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("konvox_webhooks.retention",
							"How long finished deliveries and their events are kept.",
							"The first worker deletes older ones in small batches; 0 keeps everything.",
							&kw_retention,
							30 * 24 * 3600, 0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("konvox_webhooks.max_payload_size",
							"Largest data accepted by emit(), as stored jsonb.",
							NULL,
							&kw_max_payload_size,
							256 * 1024, 1024, 64 * 1024 * 1024,
							PGC_SUSET,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("konvox_webhooks.allow_private_targets",
							 "Allow deliveries to loopback, private and link-local addresses.",
							 "Off by default, so that a registered URL cannot reach internal services.",
							 &kw_allow_private_targets,
							 false,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("konvox_webhooks.ca_file",
							   "PEM file of the certificate authorities trusted for https receivers.",
							   "Empty: the system's trust store. A file replaces it; certificates are verified either way.",
							   &kw_ca_file,
							   "",
							   PGC_SIGHUP,
							   0,
							   kw_check_ca_file, NULL, NULL);

	DefineCustomStringVariable("konvox_webhooks.proxy",
							   "HTTP proxy that deliveries go through, as http://host:port.",
							   "Empty: deliveries connect to receivers directly. Each request goes through a CONNECT tunnel; proxy settings in the server's environment are ignored.",
							   &kw_proxy,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   kw_check_proxy, NULL, NULL);

	DefineCustomStringVariable("konvox_webhooks.no_proxy",
							   "Receivers reached directly although konvox_webhooks.proxy is set.",
							   "Host names (each with its subdomains), IP addresses and CIDR ranges, separated by commas; * for every host.",
							   &kw_no_proxy,
							   "",
							   PGC_SIGHUP,
							   0,
							   kw_check_no_proxy, NULL, NULL);

	MarkGUCPrefixReserved("konvox_webhooks");

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = kw_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = kw_shmem_startup;

	RegisterXactCallback(kw_xact_callback, NULL);
	kw_outbox_init();

	/* the launcher starts the delivery workers once the database exists */
	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS |
		BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	strlcpy(worker.bgw_library_name, "konvox_webhooks", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "kw_launcher_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, KW_LAUNCHER_TYPE, BGW_MAXLEN);
	strlcpy(worker.bgw_type, KW_LAUNCHER_TYPE, BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}

/*
 * Decode the key of a secret, "whsec_" and base64, into key.  Returns its
 * length, or -1 when the secret is not of that form or too long.
 */
static int
kw_secret_key(const char *secret, uint8 *key, int keysize)
{
	const char *encoded;

	if (strncmp(secret, KW_SECRET_PREFIX, strlen(KW_SECRET_PREFIX)) != 0)
		return -1;
	encoded = secret + strlen(KW_SECRET_PREFIX);
	if (pg_b64_dec_len(strlen(encoded)) > keysize)
		return -1;
	return pg_b64_decode(encoded, strlen(encoded), key, keysize);
}

#ifdef KW_OPENSSL_HMAC

/*
 * HMAC contexts keyed once, in the delivery workers: a worker signs request
 * after request with the same secret (two while a rotation overlaps), and
 * keying, which hashes the key twice and sets up three digests, costs as
 * much as hashing a body.  OpenSSL reuses a context's key when it is
 * initialized again without one.  Other processes key a context for each
 * signature and free it at once, so that no backend keeps a secret.
 */
#define KW_HMAC_SLOTS 2

typedef struct KwHmacSlot
{
	HMAC_CTX   *ctx;			/* keyed with secret, or NULL */
	char		secret[KW_SECRET_MAX_TEXT + 1];
} KwHmacSlot;

static KwHmacSlot kw_hmac_slots[KW_HMAC_SLOTS];
static int	kw_hmac_last = 0;	/* the slot used last */

/* Free a slot's context, and with it the key. */
static void
kw_hmac_drop(KwHmacSlot *slot)
{
	HMAC_CTX_free(slot->ctx);
	slot->ctx = NULL;
	explicit_bzero(slot->secret, sizeof(slot->secret));
}

/*
 * An HMAC-SHA256 context ready for a message signed with secret, or NULL
 * when the secret is not of the right form or OpenSSL fails.  Only a slot
 * with a context keyed with that very secret is ever taken.
 */
static HMAC_CTX *
kw_hmac_for(const char *secret)
{
	uint8		key[KW_SECRET_MAX_BYTES + 8];
	int			keylen;
	KwHmacSlot *slot;

	StaticAssertStmt(KW_HMAC_SLOTS == 2,
					 "the slot keyed anew is the one not used last");

	for (int i = 0; i < KW_HMAC_SLOTS; i++)
	{
		slot = &kw_hmac_slots[i];
		if (slot->ctx != NULL && strcmp(slot->secret, secret) == 0)
		{
			kw_hmac_last = i;
			if (HMAC_Init_ex(slot->ctx, NULL, 0, NULL, NULL) == 1)
				return slot->ctx;
			kw_hmac_drop(slot);
			return NULL;
		}
	}

	/* not held: key the slot not used last */
	kw_hmac_last = 1 - kw_hmac_last;
	slot = &kw_hmac_slots[kw_hmac_last];
	kw_hmac_drop(slot);
	if (strlen(secret) > KW_SECRET_MAX_TEXT)
		return NULL;			/* kw_secret_key() refuses it too */
	keylen = kw_secret_key(secret, key, sizeof(key));
	if (keylen <= 0)
		return NULL;
	slot->ctx = HMAC_CTX_new();
	if (slot->ctx == NULL ||
		HMAC_Init_ex(slot->ctx, key, keylen, EVP_sha256(), NULL) != 1)
	{
		kw_hmac_drop(slot);
		explicit_bzero(key, sizeof(key));
		return NULL;
	}
	explicit_bzero(key, sizeof(key));
	strcpy(slot->secret, secret);
	return slot->ctx;
}

/*
 * HMAC-SHA256 of msg_id "." ts "." body, keyed with secret, into mac
 * (PG_SHA256_DIGEST_LENGTH bytes).  Returns false when the secret is not
 * of the right form or OpenSSL fails.
 */
static bool
kw_hmac_message(const char *secret, const char *msg_id, const char *ts,
				const char *body, int body_len, uint8 *mac)
{
	HMAC_CTX   *ctx = kw_hmac_for(secret);
	unsigned int maclen = 0;
	bool		ok;

	ok = (ctx != NULL &&
		  HMAC_Update(ctx, (const uint8 *) msg_id, strlen(msg_id)) == 1 &&
		  HMAC_Update(ctx, (const uint8 *) ".", 1) == 1 &&
		  HMAC_Update(ctx, (const uint8 *) ts, strlen(ts)) == 1 &&
		  HMAC_Update(ctx, (const uint8 *) ".", 1) == 1 &&
		  HMAC_Update(ctx, (const uint8 *) body, body_len) == 1 &&
		  HMAC_Final(ctx, mac, &maclen) == 1 &&
		  maclen == PG_SHA256_DIGEST_LENGTH);
	/* only the delivery workers keep keyed contexts */
	if (!kw_in_delivery_worker)
	{
		for (int i = 0; i < KW_HMAC_SLOTS; i++)
			kw_hmac_drop(&kw_hmac_slots[i]);
	}
	return ok;
}

#else							/* !KW_OPENSSL_HMAC */

/*
 * HMAC-SHA256 of msg_id "." ts "." body, keyed with secret, into mac
 * (PG_SHA256_DIGEST_LENGTH bytes), with PostgreSQL's own HMAC, keyed for
 * each message.  Returns false when the secret is not of the right form
 * or the HMAC fails.
 */
static bool
kw_hmac_message(const char *secret, const char *msg_id, const char *ts,
				const char *body, int body_len, uint8 *mac)
{
	uint8		key[KW_SECRET_MAX_BYTES + 8];
	int			keylen = kw_secret_key(secret, key, sizeof(key));
	pg_hmac_ctx *ctx;
	bool		ok;

	if (keylen <= 0)
		return false;
	ctx = pg_hmac_create(PG_SHA256);
	ok = (ctx != NULL &&
		  pg_hmac_init(ctx, key, keylen) >= 0 &&
		  pg_hmac_update(ctx, (const uint8 *) msg_id, strlen(msg_id)) >= 0 &&
		  pg_hmac_update(ctx, (const uint8 *) ".", 1) >= 0 &&
		  pg_hmac_update(ctx, (const uint8 *) ts, strlen(ts)) >= 0 &&
		  pg_hmac_update(ctx, (const uint8 *) ".", 1) >= 0 &&
		  pg_hmac_update(ctx, (const uint8 *) body, body_len) >= 0 &&
		  pg_hmac_final(ctx, mac, PG_SHA256_DIGEST_LENGTH) >= 0);
	pg_hmac_free(ctx);
	return ok;
}

#endif							/* KW_OPENSSL_HMAC */

/*
 * Append the Standard Webhooks signature of one message to out:
 * "v1," + base64(HMAC-SHA256(key, msg_id "." timestamp "." body)), where
 * key is the base64-decoded part of secret after "whsec_".  Returns false,
 * appending nothing, when the secret is not of that form.
 */
bool
kw_sign(StringInfo out, const char *secret, const char *msg_id,
		int64 timestamp, const char *body, int body_len)
{
	uint8		mac[PG_SHA256_DIGEST_LENGTH];
	char		b64[64];
	char		ts[32];
	int			b64len;

	snprintf(ts, sizeof(ts), INT64_FORMAT, timestamp);
	if (!kw_hmac_message(secret, msg_id, ts, body, body_len, mac))
		return false;
	b64len = pg_b64_encode(mac, sizeof(mac), b64, sizeof(b64));
	if (b64len < 0)
		return false;
	appendStringInfoString(out, "v1,");
	appendBinaryStringInfo(out, b64, b64len);
	return true;
}

/*
 * Decode the key of a secret, or raise the error a bad secret deserves.
 * Returns the key length.
 */
static int
kw_check_secret(const char *secret)
{
	uint8		key[KW_SECRET_MAX_BYTES + 8];
	int			keylen = kw_secret_key(secret, key, sizeof(key));

	if (keylen < KW_SECRET_MIN_BYTES || keylen > KW_SECRET_MAX_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid endpoint secret"),
				 errdetail("A secret is \"whsec_\" followed by the base64 encoding of %d to %d bytes.",
						   KW_SECRET_MIN_BYTES, KW_SECRET_MAX_BYTES),
				 errhint("Leave the secret out and one is generated.")));
	return keylen;
}

/*
 * webhooks.sign(secret, msg_id, ts, body): the signature the worker sends,
 * for receivers to test their verification against.  Like the worker, it
 * signs the body as UTF-8, whatever the database encoding.
 */
Datum
kw_sign_sql(PG_FUNCTION_ARGS)
{
	char	   *secret = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *msg_id = text_to_cstring(PG_GETARG_TEXT_PP(1));
	int64		ts = PG_GETARG_INT64(2);
	text	   *body = PG_GETARG_TEXT_PP(3);
	char	   *data = VARDATA_ANY(body);
	int			len = VARSIZE_ANY_EXHDR(body);
	StringInfoData out;

	kw_check_secret(secret);
	if (GetDatabaseEncoding() != PG_UTF8)
	{
		char	   *utf8 = pg_server_to_any(data, len, PG_UTF8);

		if (utf8 != data)
		{
			data = utf8;
			len = strlen(utf8);
		}
	}
	initStringInfo(&out);
	if (!kw_sign(&out, secret, msg_id, ts, data, len))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute HMAC-SHA256")));
	PG_RETURN_TEXT_P(cstring_to_text_with_len(out.data, out.len));
}

/*
 * webhooks.generate_secret(): "whsec_" and the base64 of 32 random bytes.
 */
Datum
kw_generate_secret(PG_FUNCTION_ARGS)
{
	uint8		raw[KW_SECRET_BYTES];
	char		b64[KW_SECRET_BYTES * 2];
	int			len;
	StringInfoData out;

	if (!pg_strong_random(raw, sizeof(raw)))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random bytes")));
	len = pg_b64_encode(raw, sizeof(raw), b64, sizeof(b64));
	initStringInfo(&out);
	appendStringInfoString(&out, KW_SECRET_PREFIX);
	appendBinaryStringInfo(&out, b64, len);
	PG_RETURN_TEXT_P(cstring_to_text_with_len(out.data, out.len));
}

/*
 * webhooks.new_event_id(): a time-ordered UUID (version 7 layout), so that
 * the outbox's primary key grows at its right edge like a sequence.  The 12
 * bits after the version count events within a millisecond, so the ids one
 * backend makes also sort in the order it made them.
 *
 * The random bytes come from a pool that one pg_strong_random() call fills
 * for 32 ids: each call costs about as much as the rest of an emit() row.
 * Only backends call this, so no two processes share a pool.
 */
Datum
kw_new_event_id(PG_FUNCTION_ARGS)
{
	static uint64 last_ms = 0;
	static uint32 counter = 0;
	static uint8 pool[32 * (UUID_LEN - 8)];
	static int	pool_used = sizeof(pool);
	pg_uuid_t  *uuid = palloc(sizeof(pg_uuid_t));
	TimestampTz now = GetCurrentTimestamp();
	uint64		unix_ms;

	unix_ms = (uint64) (now / 1000) +
		(uint64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * 1000;
	if (unix_ms <= last_ms)
	{
		/* same millisecond (or the clock went back): count on */
		if (++counter > 0xfff)
		{
			last_ms++;
			counter = 0;
		}
		unix_ms = last_ms;
	}
	else
	{
		last_ms = unix_ms;
		counter = 0;
	}

	if (pool_used == sizeof(pool))
	{
		if (!pg_strong_random(pool, sizeof(pool)))
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not generate random bytes")));
		pool_used = 0;
	}
	memcpy(uuid->data + 8, pool + pool_used, UUID_LEN - 8);
	pool_used += UUID_LEN - 8;
	for (int i = 0; i < 6; i++)
		uuid->data[i] = (uint8) (unix_ms >> (40 - 8 * i));
	uuid->data[6] = 0x70 | (uint8) (counter >> 8);	/* version 7 */
	uuid->data[7] = (uint8) counter;
	uuid->data[8] = (uuid->data[8] & 0x3f) | 0x80;	/* RFC 4122 variant */

	PG_RETURN_UUID_P(uuid);
}

/*
 * webhooks.wake_worker(): wake the worker when this transaction commits.
 */
Datum
kw_wake_worker_sql(PG_FUNCTION_ARGS)
{
	kw_wake_worker();
	PG_RETURN_VOID();
}

/*
 * webhooks.emit(event, company_id, data [, idempotency_key]) RETURNS uuid
 *
 * Validate, then write the event and its deliveries in the caller's
 * transaction (see outbox.c), and have the worker woken at commit.  With a
 * key that the company already used for the event type, write nothing and
 * return the id of that event.  Declared SECURITY DEFINER with a pinned
 * search_path, so an application role needs no privilege on the tables.
 * Setting that search_path at each call costs about a tenth of an emit()
 * of one delivery, and must stay in the declaration all the same: the
 * CHECK constraints and index expressions of the outbox, which a superuser
 * may add, are planned and run inside the inserts under the search_path
 * of the moment (t/024_search_path.pl).
 */
Datum
kw_emit(PG_FUNCTION_ARGS)
{
	text	   *event;
	text	   *company_id;
	Jsonb	   *data;
	text	   *key;
	char	   *event_name;
	Datum		id;
	Size		size;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("event must not be null"),
				 errhint("Pass an event type name such as 'contact.replied'.")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("company_id must not be null"),
				 errhint("Every event and endpoint belongs to a company; pass its id.")));
	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("event data must not be null"),
				 errhint("Pass the event's fields as a JSON object.")));

	PreventCommandIfReadOnly("webhooks.emit()");

	event = PG_GETARG_TEXT_PP(0);
	company_id = PG_GETARG_TEXT_PP(1);
	data = PG_GETARG_JSONB_P(2);
	key = (PG_NARGS() > 3 && !PG_ARGISNULL(3)) ? PG_GETARG_TEXT_PP(3) : NULL;
	event_name = text_to_cstring(event);

	kw_check_company_id(company_id);
	if (key != NULL)
		kw_check_idempotency_key(key);

	size = VARSIZE(data) - VARHDRSZ;
	if (size > (Size) kw_max_payload_size)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("event data is too large"),
				 errdetail("The data of this \"%s\" event takes %zu bytes; the limit is %d bytes.",
						   event_name, size, kw_max_payload_size),
				 errhint("Send less data, for example ids instead of whole records, or raise konvox_webhooks.max_payload_size.")));

	kw_validate_event(event_name, data);

	id = DirectFunctionCall1(kw_new_event_id, (Datum) 0);
	if (key != NULL)
	{
		pg_uuid_t  *result;
		int			ndeliveries;

		result = kw_write_keyed_event(DatumGetUUIDP(id), event, company_id,
									  data, key, &ndeliveries);
		if (ndeliveries > 0)
			kw_wake_worker();
		PG_RETURN_UUID_P(result);
	}
	if (kw_write_event(DatumGetUUIDP(id), event, company_id, data) > 0)
		kw_wake_worker();

	PG_RETURN_DATUM(id);
}

/*
 * An idempotency key must not be empty, which is more likely a bug than a
 * key, and short enough for the index of keys.
 */
static void
kw_check_idempotency_key(text *key)
{
	int			len = VARSIZE_ANY_EXHDR(key);

	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("idempotency_key must not be empty"),
				 errhint("Pass NULL for an event without a key.")));
	if (len > KW_MAX_ID_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("idempotency_key is too long"),
				 errdetail("It takes %d bytes; the limit is %d.", len, KW_MAX_ID_LEN),
				 errhint("Use a request id, or a hash of what identifies the event.")));
}

/*
 * A company id must not be empty or blank, and must be short enough to be a
 * cache key; emit() and the endpoints trigger apply the same rule.
 */
static void
kw_check_company_id(text *company_id)
{
	const char *p = VARDATA_ANY(company_id);
	int			len = VARSIZE_ANY_EXHDR(company_id);
	bool		blank = true;

	for (int i = 0; i < len && blank; i++)
		blank = (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n');
	if (blank)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("company_id must not be empty"),
				 errhint("Every event and endpoint belongs to a company; pass its id.")));
	if (len > KW_MAX_ID_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("company_id is too long"),
				 errdetail("It takes %d bytes; the limit is %d.", len, KW_MAX_ID_LEN),
				 errhint("Use the company's id, not its name or another long text.")));
}

/*
 * webhooks._wake_trigger(): statement trigger that wakes the worker when
 * the transaction commits.
 */
Datum
kw_wake_trigger(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "kw_wake_trigger must be called as a trigger");
	kw_wake_worker();
	return PointerGetDatum(NULL);
}

/*
 * webhooks._worker_slots(): one row per configured delivery worker, with
 * its pid (0 when not running) and the requests it has in flight.
 */
Datum
kw_worker_slots(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	InitMaterializedSRF(fcinfo, 0);
	for (int i = 0; i < kw_workers; i++)
	{
		Datum		values[3];
		bool		nulls[3] = {false, false, false};

		values[0] = Int32GetDatum(i + 1);
		values[1] = Int32GetDatum((int32) pg_atomic_read_u32(&kw_shared->workers[i].pid));
		values[2] = Int32GetDatum((int32) pg_atomic_read_u32(&kw_shared->workers[i].in_flight));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * Count a recorded attempt, and the delivery it finished if it did; called
 * by a worker once the transaction that recorded them has committed.
 */
void
kw_count_attempt(KwOutcome outcome, bool delivered, bool failed)
{
	pg_atomic_fetch_add_u64(&kw_shared->attempts[outcome], 1);
	if (delivered)
		pg_atomic_fetch_add_u64(&kw_shared->delivered, 1);
	if (failed)
		pg_atomic_fetch_add_u64(&kw_shared->failed, 1);
}

/*
 * webhooks.delivery_counters(): the deliveries the workers have recorded
 * as delivered and as failed, and since when they count.
 */
Datum
kw_delivery_counters(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	values[0] = Int64GetDatum((int64)
							  pg_atomic_read_u64(&kw_shared->delivered));
	values[1] = Int64GetDatum((int64)
							  pg_atomic_read_u64(&kw_shared->failed));
	values[2] = TimestampTzGetDatum(kw_shared->counted_since);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc),
													  values, nulls)));
}

/*
 * webhooks.attempt_counters(): the attempts the workers have recorded, one
 * row per outcome.
 */
Datum
kw_attempt_counters(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	InitMaterializedSRF(fcinfo, 0);
	for (int i = 0; i < KW_NUM_OUTCOMES; i++)
	{
		Datum		values[2];
		bool		nulls[2] = {false, false};

		values[0] = CStringGetTextDatum(kw_outcome_names[i]);
		values[1] = Int64GetDatum((int64)
								  pg_atomic_read_u64(&kw_shared->attempts[i]));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* The value of a named column of a trigger's new row, or NULL. */
static char *
kw_column(HeapTuple tuple, TupleDesc desc, const char *name)
{
	int			attnum = SPI_fnumber(desc, name);

	if (attnum <= 0)
		elog(ERROR, "column \"%s\" not found", name);
	return SPI_getvalue(tuple, desc, attnum);
}

/*
 * The row that a BEFORE ROW trigger function checks: the new row of an
 * UPDATE, else the inserted one.  fn names the function, for misuse, and
 * table the one table of our schema it may be a trigger of.
 */
static HeapTuple
kw_before_row(FunctionCallInfo fcinfo, const char *fn, const char *table)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	rel;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		elog(ERROR, "%s must be a BEFORE ROW trigger", fn);

	/*
	 * The checks read the table's columns as the types they have there.  On
	 * a table of someone else's, which anyone who may execute the function
	 * can make, a column of the same name and another type would be read as
	 * garbage.
	 */
	rel = trigdata->tg_relation;
	if (RelationGetNamespace(rel) != get_namespace_oid("webhooks", true) ||
		strcmp(RelationGetRelationName(rel), table) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("%s can only be a trigger on webhooks.%s", fn, table),
				 errdetail("It was fired by a trigger on \"%s\".",
						   RelationGetRelationName(rel)),
				 errhint("The extension creates the triggers that call it; a table of yours needs a trigger function of its own.")));
	return TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ?
		trigdata->tg_newtuple : trigdata->tg_trigtuple;
}

/*
 * Is c a character of an HTTP token (RFC 9110, 5.6.2), as header names are?
 */
static bool
kw_token_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		(c >= '0' && c <= '9') || strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/*
 * Check an endpoint's headers: a JSON object of at most KW_MAX_HEADERS
 * string values, KW_MAX_HEADERS_SIZE bytes of names and values in all,
 * whose names are HTTP tokens that konvox_webhooks does not set itself,
 * each given once whatever its case, and whose values are one line of
 * text.  The first problem is reported at elevel (ERROR for the endpoint's
 * checks) and false returned.  No message shows a value, as values are
 * often credentials; nor a name that is not a token, which may be a whole
 * "Authorization: Bearer ..." line.
 */
bool
kw_check_headers(Jsonb *headers, int elevel)
{
	static const char *const owned[] = {"Content-Type", "Content-Length",
		"Host", "webhook-id", "webhook-timestamp", "webhook-signature",
	"Transfer-Encoding", "Connection"};
	char	   *names[KW_MAX_HEADERS];
	int			n = 0;
	int			size = 0;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;

	if (!JB_ROOT_IS_OBJECT(headers))
	{
		ereport(elevel,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("endpoint headers must be a JSON object"),
				 errhint("Give them as {\"X-Api-Key\": \"...\"}, or '{}' for none.")));
		return false;
	}
	if (JB_ROOT_COUNT(headers) > KW_MAX_HEADERS)
	{
		ereport(elevel,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many endpoint headers"),
				 errdetail("%u headers are given; the limit is %d.",
						   JB_ROOT_COUNT(headers), KW_MAX_HEADERS),
				 errhint("Send a receiver one credential, not many.")));
		return false;
	}

	it = JsonbIteratorInit(&headers->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		char	   *name;
		int			len;
		int			bad;

		if (tok != WJB_KEY)
			continue;
		name = pnstrdup(v.val.string.val, v.val.string.len);
		len = v.val.string.len;
		bad = (len == 0) ? 0 : -1;
		for (int i = 0; i < len && bad < 0; i++)
		{
			if (!kw_token_char((unsigned char) name[i]))
				bad = i;
		}
		if (bad >= 0)
		{
			unsigned char c = (unsigned char) name[bad];

			ereport(elevel,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid header name"),
					 len == 0 ?
					 errdetail("A header name is empty.") :
					 (c > ' ' && c < 0x7f) ?
					 errdetail("A header name of %d bytes has '%c' at byte %d.",
							   len, c, bad + 1) :
					 errdetail("A header name of %d bytes has byte 0x%02x at byte %d.",
							   len, c, bad + 1),
					 errhint("A header name is a token of letters, digits and !#$%%&'*+-.^_`|~, such as X-Api-Key; the value goes in the JSON value.")));
			return false;
		}
		for (int i = 0; i < (int) lengthof(owned); i++)
		{
			if (pg_strcasecmp(name, owned[i]) != 0)
				continue;
			ereport(elevel,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("header \"%s\" is set by konvox_webhooks", name),
					 errdetail("Content-Type, Content-Length, Host, webhook-id, webhook-timestamp, webhook-signature, Transfer-Encoding and Connection are the engine's own."),
					 errhint("Remove it from the endpoint's headers.")));
			return false;
		}
		for (int i = 0; i < n; i++)
		{
			if (pg_strcasecmp(name, names[i]) != 0)
				continue;
			ereport(elevel,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("header \"%s\" is given twice", name),
					 errdetail("Header names are case-insensitive: \"%s\" and \"%s\" are the same header.",
							   names[i], name),
					 errhint("Keep one of them.")));
			return false;
		}
		names[n++] = name;

		tok = JsonbIteratorNext(&it, &v, true);
		Assert(tok == WJB_VALUE);
		if (v.type != jbvString)
		{
			ereport(elevel,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("value of header \"%s\" must be a JSON string", name),
					 errhint("Give each header as \"Name\": \"value\".")));
			return false;
		}
		if (v.val.string.len == 0)
		{
			ereport(elevel,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("value of header \"%s\" is empty", name),
					 errhint("Remove the header, or give it a value.")));
			return false;
		}
		for (int i = 0; i < v.val.string.len; i++)
		{
			unsigned char c = (unsigned char) v.val.string.val[i];

			if ((c >= ' ' && c != 0x7f) || c == '\t')
				continue;
			ereport(elevel,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("value of header \"%s\" contains a line break or another control character",
							name),
					 errdetail("Byte %d of the value is 0x%02x.", i + 1, c),
					 errhint("A header value is one line of text. The value is not shown, as it may be a secret.")));
			return false;
		}
		size += len + v.val.string.len;
	}

	if (size > KW_MAX_HEADERS_SIZE)
	{
		ereport(elevel,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("endpoint headers are too large"),
				 errdetail("Their names and values take %d bytes; the limit is %d.",
						   size, KW_MAX_HEADERS_SIZE),
				 errhint("Send a receiver a short credential, such as a token, not a document.")));
		return false;
	}
	return true;
}

/*
 * Append an endpoint's headers, checked by kw_check_headers, to out as
 * "Name: value" lines.
 */
void
kw_append_headers(StringInfo out, Jsonb *headers)
{
	JsonbIterator *it = JsonbIteratorInit(&headers->root);
	JsonbValue	v;
	JsonbIteratorToken tok;

	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			appendBinaryStringInfo(out, v.val.string.val, v.val.string.len);
			appendStringInfoString(out, ": ");
		}
		else if (tok == WJB_VALUE)
		{
			appendBinaryStringInfo(out, v.val.string.val, v.val.string.len);
			appendStringInfoChar(out, '\n');
		}
	}
}

/*
 * Trigger on webhooks.endpoints: every row, however it is written, gets the
 * checks create_endpoint() promises.
 */
Datum
kw_endpoint_check(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	HeapTuple	tuple;
	TupleDesc	desc;
	char	   *company_id;
	char	   *url;
	char	   *secret;
	const char *problem;
	Datum		events;
	bool		isnull;
	int			attnum;
	ArrayType  *arr;
	Datum		args[1];
	Oid			types[1] = {TEXTARRAYOID};

	tuple = kw_before_row(fcinfo, "webhooks._endpoint_check()", "endpoints");
	desc = trigdata->tg_relation->rd_att;

	company_id = kw_column(tuple, desc, "company_id");
	kw_check_company_id(cstring_to_text(company_id ? company_id : ""));
	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
	{
		char	   *old_company = kw_column(trigdata->tg_trigtuple, desc,
											"company_id");

		if (strcmp(old_company, company_id) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("an endpoint cannot move to another company"),
					 errdetail("Its deliveries and history belong to company \"%s\".",
							   old_company),
					 errhint("Create an endpoint for the other company, and deactivate or delete this one.")));
	}

	url = kw_column(tuple, desc, "url");
	if (url == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("endpoint url must not be null"),
				 errhint("Give the https URL that should receive the events.")));
	problem = kw_http_check_url(url);
	if (problem != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid endpoint url \"%s\"", url),
				 errdetail_internal("%s", problem),
				 errhint("Give an absolute http or https URL with a host, such as https://example.com/hooks/konvox.")));

	secret = kw_column(tuple, desc, "secret");
	if (secret != NULL)
		kw_check_secret(secret);
	secret = kw_column(tuple, desc, "previous_secret");
	if (secret != NULL)
		kw_check_secret(secret);

	/* from version 1.2 of the extension */
	attnum = SPI_fnumber(desc, "max_concurrency");
	if (attnum > 0)
	{
		Datum		cap = SPI_getbinval(tuple, desc, attnum, &isnull);

		if (!isnull && (DatumGetInt32(cap) < 1 ||
						DatumGetInt32(cap) > KW_MAX_CONCURRENCY))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("max_concurrency of an endpoint must be between 1 and %d",
							KW_MAX_CONCURRENCY),
					 errhint("Leave it NULL for konvox_webhooks.max_concurrency_per_endpoint (now %d).",
							 kw_max_concurrency_per_endpoint)));
	}
	attnum = SPI_fnumber(desc, "headers");
	if (attnum > 0)
	{
		Datum		headers = SPI_getbinval(tuple, desc, attnum, &isnull);

		if (isnull)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("endpoint headers must not be null"),
					 errhint("Use '{}' for an endpoint without headers of its own.")));
		kw_check_headers(DatumGetJsonbP(headers), ERROR);
	}

	events = SPI_getbinval(tuple, desc, SPI_fnumber(desc, "events"), &isnull);
	arr = isnull ? NULL : DatumGetArrayTypeP(events);
	if (arr == NULL || ArrayGetNItems(ARR_NDIM(arr), ARR_DIMS(arr)) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("an endpoint must subscribe to at least one event"),
				 errhint("Pass the event type names, for example ARRAY['contact.replied'].")));
	if (array_contains_nulls(arr))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("subscribed event names must not be null")));

	/*
	 * pg_dump loads the data of endpoints before that of event_types, so a
	 * restore would find the event types that users added missing.  Rows
	 * loaded by COPY therefore skip this one check; an endpoint subscribed
	 * to an unknown type simply never matches an event.
	 */
	if (ActivePortal != NULL && ActivePortal->commandTag == CMDTAG_COPY)
		return PointerGetDatum(tuple);

	SPI_connect();
	args[0] = PointerGetDatum(arr);
	if (SPI_execute_with_args(
							  "SELECT pg_catalog.string_agg(e, ', '),"
							  "       (SELECT pg_catalog.string_agg(name, ', ' ORDER BY name)"
							  "          FROM webhooks.event_types)"
							  "  FROM pg_catalog.unnest($1) AS e"
							  " WHERE NOT EXISTS (SELECT FROM webhooks.event_types t"
							  "                    WHERE t.name OPERATOR(pg_catalog.=) e)",
							  1, types, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read webhooks.event_types");
	if (SPI_processed == 1)
	{
		char	   *unknown = SPI_getvalue(SPI_tuptable->vals[0],
										   SPI_tuptable->tupdesc, 1);

		if (unknown != NULL)
		{
			char	   *known = SPI_getvalue(SPI_tuptable->vals[0],
											 SPI_tuptable->tupdesc, 2);

			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown event type in subscription: %s", unknown),
					 errhint("Known event types: %s.", known ? known : "none")));
		}
	}
	SPI_finish();

	return PointerGetDatum(tuple);
}

/*
 * Trigger on webhooks.event_types: the fields description must be well
 * formed, and the sample payload must be valid data for the type.
 */
Datum
kw_event_type_check(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	HeapTuple	tuple;
	TupleDesc	desc;
	char	   *name;
	Datum		d;
	bool		isnull;
	Jsonb	   *fields;

	tuple = kw_before_row(fcinfo, "webhooks._event_type_check()", "event_types");
	desc = trigdata->tg_relation->rd_att;

	name = kw_column(tuple, desc, "name");
	if (name == NULL || strpbrk(name, " \t\r\n") != NULL || name[0] == '\0' ||
		strlen(name) > KW_MAX_ID_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid event type name \"%s\"", name ? name : ""),
				 errhint("Use a dotted name without spaces, of at most %d bytes, such as 'invoice.paid'.",
						 KW_MAX_ID_LEN)));

	d = SPI_getbinval(tuple, desc, SPI_fnumber(desc, "fields"), &isnull);
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("fields of event type \"%s\" must not be null", name),
				 errhint("Use '[]' for an event type without described fields.")));
	fields = DatumGetJsonbP(d);

	d = SPI_getbinval(tuple, desc, SPI_fnumber(desc, "sample"), &isnull);
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("sample of event type \"%s\" must not be null", name),
				 errhint("Give the payload that send_test() sends for this type.")));
	kw_check_event_type(name, fields, DatumGetJsonbP(d));

	return PointerGetDatum(tuple);
}
