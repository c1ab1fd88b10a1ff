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

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "common/base64.h"
#include "common/hmac.h"
#include "common/sha2.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "konvox_webhooks.h"

PG_MODULE_MAGIC;

/* Random bytes in a generated endpoint secret. */
#define KW_SECRET_BYTES		32

/* Standard Webhooks keys are 24 to 64 bytes. */
#define KW_SECRET_MIN_BYTES	24
#define KW_SECRET_MAX_BYTES	64

#define KW_SECRET_PREFIX	"whsec_"

/* Settings */
char	   *kw_database_name = NULL;
int			kw_max_attempts = 3;
int			kw_request_timeout = 10000;
int			kw_retry_base_delay = 30000;
int			kw_max_concurrency = 256;
int			kw_max_payload_size = 256 * 1024;
bool		kw_allow_private_targets = false;

KwSharedState *kw_shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* This transaction wrote something the worker should see at commit. */
static bool kw_wake_at_commit = false;

/* Prepared statements of emit(), kept for the life of the backend. */
static SPIPlanPtr kw_event_type_plan = NULL;
static SPIPlanPtr kw_insert_event_plan = NULL;

void		_PG_init(void);

PG_FUNCTION_INFO_V1(kw_emit);
PG_FUNCTION_INFO_V1(kw_new_event_id);
PG_FUNCTION_INFO_V1(kw_generate_secret);
PG_FUNCTION_INFO_V1(kw_sign_sql);
PG_FUNCTION_INFO_V1(kw_wake_worker_sql);
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
	RequestAddinShmemSpace(MAXALIGN(sizeof(KwSharedState)));
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
		pg_atomic_init_u32(&kw_shared->worker_procno, INVALID_PGPROCNO);
		pg_atomic_init_u32(&kw_shared->worker_pid, 0);
		pg_atomic_init_u32(&kw_shared->in_flight, 0);
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * At commit, wake the worker if this transaction wrote deliveries; on abort,
 * forget that it did.
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
				uint32		procno;

				kw_wake_at_commit = false;
				procno = pg_atomic_read_u32(&kw_shared->worker_procno);
				if (procno != INVALID_PGPROCNO)
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
 */
void
kw_wake_worker(void)
{
	kw_wake_at_commit = true;
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
							"The wait before attempt n+1 is retry_base_delay * 2^(n-1), +-10% jitter.",
							&kw_retry_base_delay,
							30000, 0, 24 * 3600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("konvox_webhooks.max_concurrency",
							"Most requests in flight at once.",
							"Also the cap on open connections to receivers.",
							&kw_max_concurrency,
							256, 1, 10000,
							PGC_SIGHUP,
							0,
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

	MarkGUCPrefixReserved("konvox_webhooks");

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = kw_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = kw_shmem_startup;

	RegisterXactCallback(kw_xact_callback, NULL);

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS |
		BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	strlcpy(worker.bgw_library_name, "konvox_webhooks", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "kw_worker_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, KW_WORKER_TYPE, BGW_MAXLEN);
	strlcpy(worker.bgw_type, KW_WORKER_TYPE, BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}

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
	const char *encoded;
	uint8		key[KW_SECRET_MAX_BYTES + 8];
	int			keylen;
	uint8		mac[PG_SHA256_DIGEST_LENGTH];
	char		b64[64];
	char		ts[32];
	int			b64len;
	pg_hmac_ctx *ctx;

	if (strncmp(secret, KW_SECRET_PREFIX, strlen(KW_SECRET_PREFIX)) != 0)
		return false;
	encoded = secret + strlen(KW_SECRET_PREFIX);
	if (pg_b64_dec_len(strlen(encoded)) > (int) sizeof(key))
		return false;
	keylen = pg_b64_decode(encoded, strlen(encoded), (char *) key,
						   sizeof(key));
	if (keylen <= 0)
		return false;

	snprintf(ts, sizeof(ts), INT64_FORMAT, timestamp);
	ctx = pg_hmac_create(PG_SHA256);
	if (ctx == NULL ||
		pg_hmac_init(ctx, key, keylen) < 0 ||
		pg_hmac_update(ctx, (const uint8 *) msg_id, strlen(msg_id)) < 0 ||
		pg_hmac_update(ctx, (const uint8 *) ".", 1) < 0 ||
		pg_hmac_update(ctx, (const uint8 *) ts, strlen(ts)) < 0 ||
		pg_hmac_update(ctx, (const uint8 *) ".", 1) < 0 ||
		pg_hmac_update(ctx, (const uint8 *) body, body_len) < 0 ||
		pg_hmac_final(ctx, mac, sizeof(mac)) < 0)
	{
		pg_hmac_free(ctx);
		return false;
	}
	pg_hmac_free(ctx);

	b64len = pg_b64_encode((const char *) mac, sizeof(mac), b64, sizeof(b64));
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
	const char *encoded;
	char		key[KW_SECRET_MAX_BYTES + 8];
	int			keylen = -1;

	if (strncmp(secret, KW_SECRET_PREFIX, strlen(KW_SECRET_PREFIX)) == 0)
	{
		encoded = secret + strlen(KW_SECRET_PREFIX);
		if (pg_b64_dec_len(strlen(encoded)) <= (int) sizeof(key))
			keylen = pg_b64_decode(encoded, strlen(encoded), key, sizeof(key));
	}
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
 * for receivers to test their verification against.
 */
Datum
kw_sign_sql(PG_FUNCTION_ARGS)
{
	char	   *secret = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *msg_id = text_to_cstring(PG_GETARG_TEXT_PP(1));
	int64		ts = PG_GETARG_INT64(2);
	text	   *body = PG_GETARG_TEXT_PP(3);
	StringInfoData out;

	kw_check_secret(secret);
	initStringInfo(&out);
	if (!kw_sign(&out, secret, msg_id, ts, VARDATA_ANY(body),
				 VARSIZE_ANY_EXHDR(body)))
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
	len = pg_b64_encode((const char *) raw, sizeof(raw), b64, sizeof(b64));
	initStringInfo(&out);
	appendStringInfoString(&out, KW_SECRET_PREFIX);
	appendBinaryStringInfo(&out, b64, len);
	PG_RETURN_TEXT_P(cstring_to_text_with_len(out.data, out.len));
}

/*
 * webhooks.new_event_id(): a time-ordered UUID (version 7 layout), so that
 * the outbox's primary key grows at its right edge like a sequence.
 */
Datum
kw_new_event_id(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *uuid = palloc(sizeof(pg_uuid_t));
	TimestampTz now = GetCurrentTimestamp();
	uint64		unix_ms;

	unix_ms = (uint64) (now / 1000) +
		(uint64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * 1000;

	if (!pg_strong_random(uuid->data + 6, UUID_LEN - 6))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random bytes")));
	for (int i = 0; i < 6; i++)
		uuid->data[i] = (uint8) (unix_ms >> (40 - 8 * i));
	uuid->data[6] = (uuid->data[6] & 0x0f) | 0x70;	/* version 7 */
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

/* The JSON type name of a jsonb value, as event_types.fields spells it. */
static const char *
kw_json_type(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return "null";
		case jbvString:
			return "string";
		case jbvNumeric:
			return "number";
		case jbvBool:
			return "boolean";
		case jbvBinary:
			return JsonContainerIsArray(v->val.binary.data) ? "array" : "object";
		default:
			return "unknown";
	}
}

/* Look up key in a jsonb object container; NULL when absent. */
static JsonbValue *
kw_find_key(JsonbContainer *obj, const char *key)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	return findJsonbValueFromContainer(obj, JB_FOBJECT, &k);
}

/* A NUL-terminated copy of a jsonb string value. */
static char *
kw_jsonb_string(JsonbValue *v)
{
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/*
 * One field of an event type, read from event_types.fields.
 */
typedef struct KwField
{
	char	   *name;
	const char *type;
	bool		required;
} KwField;

/*
 * Read event_types.fields: an array of {"name", "type", "required"}.
 * Raises an error naming the event type when the description is malformed.
 */
static KwField *
kw_parse_fields(const char *event, Jsonb *fields, int *nfields)
{
	static const char *const types[] = {"string", "number", "boolean",
	"object", "array"};
	KwField    *result;
	int			n;

	if (!JB_ROOT_IS_ARRAY(fields) || JB_ROOT_IS_SCALAR(fields))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid fields for event type \"%s\"", event),
				 errdetail("fields must be a JSON array."),
				 errhint("Describe each field as {\"name\": \"contactId\", \"type\": \"string\", \"required\": true}.")));

	n = JB_ROOT_COUNT(fields);
	result = palloc0(sizeof(KwField) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		JsonbValue *elem = getIthJsonbValueFromContainer(&fields->root, i);
		JsonbValue *name = NULL;
		JsonbValue *type = NULL;
		JsonbValue *required = NULL;
		bool		known = false;

		if (elem->type == jbvBinary && JsonContainerIsObject(elem->val.binary.data))
		{
			name = kw_find_key(elem->val.binary.data, "name");
			type = kw_find_key(elem->val.binary.data, "type");
			required = kw_find_key(elem->val.binary.data, "required");
		}
		if (name && name->type == jbvString && name->val.string.len > 0 &&
			type && type->type == jbvString &&
			required && required->type == jbvBool)
		{
			result[i].name = kw_jsonb_string(name);
			result[i].type = kw_jsonb_string(type);
			result[i].required = required->val.boolean;
			for (int t = 0; t < (int) lengthof(types); t++)
				known |= (strcmp(result[i].type, types[t]) == 0);
		}
		if (!known)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid fields for event type \"%s\"", event),
					 errdetail("Element %d is not an object with a non-empty \"name\", a \"type\" of string, number, boolean, object or array, and a boolean \"required\".",
							   i + 1),
					 errhint("Describe each field as {\"name\": \"contactId\", \"type\": \"string\", \"required\": true}.")));
	}
	*nfields = n;
	return result;
}

/* "contactId (string, required), subject (string, nullable)" */
static char *
kw_describe_fields(KwField *fields, int nfields)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < nfields; i++)
		appendStringInfo(&buf, "%s%s (%s, %s)", i > 0 ? ", " : "",
						 fields[i].name, fields[i].type,
						 fields[i].required ? "required" : "nullable");
	return buf.data;
}

/*
 * Check data against the fields of its event type.  A required field must
 * be present, not null, and of its type; a nullable one may be absent or
 * null.  Fields not described are allowed and passed through.
 */
static void
kw_validate_data(const char *event, Jsonb *fields_json, Jsonb *data)
{
	KwField    *fields;
	int			nfields;

	if (!JB_ROOT_IS_OBJECT(data))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event data must be a JSON object"),
				 errdetail("The data given for \"%s\" is a JSON %s.", event,
						   JB_ROOT_IS_ARRAY(data) && !JB_ROOT_IS_SCALAR(data) ?
						   "array" : "scalar"),
				 errhint("Pass the event's fields as an object, for example jsonb_build_object('contactId', ...).")));

	fields = kw_parse_fields(event, fields_json, &nfields);
	for (int i = 0; i < nfields; i++)
	{
		JsonbValue *v = kw_find_key(&data->root, fields[i].name);

		if (v == NULL || v->type == jbvNull)
		{
			if (fields[i].required)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("required field \"%s\" of event \"%s\" is %s",
								fields[i].name, event,
								v == NULL ? "missing" : "null"),
						 errhint("The fields of \"%s\" are: %s.", event,
								 kw_describe_fields(fields, nfields))));
			continue;
		}
		if (strcmp(kw_json_type(v), fields[i].type) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("field \"%s\" of event \"%s\" must be of type %s, not %s",
							fields[i].name, event, fields[i].type,
							kw_json_type(v)),
					 errhint("The fields of \"%s\" are: %s.", event,
							 kw_describe_fields(fields, nfields))));
	}
}

/* Raise the error for an event name that event_types does not hold. */
static void
kw_unknown_event(const char *event)
{
	char	   *known = NULL;

	if (SPI_execute("SELECT pg_catalog.string_agg(name, ', ' ORDER BY name)"
					"  FROM webhooks.event_types", true, 1) == SPI_OK_SELECT &&
		SPI_processed == 1)
		known = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown event type \"%s\"", event),
			 errhint("Known event types: %s.", known ? known : "none")));
}

/* Prepare a statement once and keep it for the life of the backend. */
static SPIPlanPtr
kw_prepare(const char *sql, int nargs, Oid *argtypes)
{
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, argtypes);

	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s",
			 SPI_result_code_string(SPI_result));
	SPI_keepplan(plan);
	return plan;
}

/*
 * webhooks.emit(event, company_id, data) RETURNS uuid
 *
 * Validate, then write the event and its deliveries in the caller's
 * transaction.  Declared SECURITY DEFINER with a pinned search_path, so an
 * application role needs no privilege on the tables.
 */
Datum
kw_emit(PG_FUNCTION_ARGS)
{
	text	   *event_text;
	text	   *company_text;
	Jsonb	   *data;
	char	   *event;
	Jsonb	   *fields;
	Datum		id;
	Datum		args[4];
	bool		isnull;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("event must not be null"),
				 errhint("Pass an event type name such as 'contact.replied'.")));
	if (PG_ARGISNULL(1) || VARSIZE_ANY_EXHDR(PG_GETARG_TEXT_PP(1)) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("company_id must not be empty"),
				 errhint("Every event belongs to a company; pass its id.")));
	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("event data must not be null"),
				 errhint("Pass the event's fields as a JSON object.")));

	event_text = PG_GETARG_TEXT_PP(0);
	company_text = PG_GETARG_TEXT_PP(1);
	data = PG_GETARG_JSONB_P(2);
	event = text_to_cstring(event_text);

	if (VARSIZE(data) - VARHDRSZ > (Size) kw_max_payload_size)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("event data is too large"),
				 errdetail("The data of this \"%s\" event takes %zu bytes; the limit is %d bytes.",
						   event, (Size) (VARSIZE(data) - VARHDRSZ),
						   kw_max_payload_size),
				 errhint("Send less data, for example ids instead of whole records, or raise konvox_webhooks.max_payload_size.")));

	SPI_connect();

	if (kw_event_type_plan == NULL)
	{
		Oid			types1[1] = {TEXTOID};
		Oid			types4[4] = {UUIDOID, TEXTOID, TEXTOID, JSONBOID};

		kw_event_type_plan = kw_prepare(
			"SELECT fields FROM webhooks.event_types WHERE name = $1",
			1, types1);
		kw_insert_event_plan = kw_prepare(
			"WITH e AS ("
			"  INSERT INTO webhooks.events (id, event, company_id, data)"
			"  VALUES ($1, $2, $3, $4))"
			"INSERT INTO webhooks.deliveries (event_id, endpoint_id)"
			"SELECT $1, id FROM webhooks.endpoints"
			" WHERE company_id = $3 AND active AND $2 = ANY (events)",
			4, types4);
	}

	args[0] = PointerGetDatum(event_text);
	if (SPI_execute_plan(kw_event_type_plan, args, NULL, true, 1) !=
		SPI_OK_SELECT)
		elog(ERROR, "could not read webhooks.event_types");
	if (SPI_processed == 0)
		kw_unknown_event(event);
	fields = DatumGetJsonbP(SPI_getbinval(SPI_tuptable->vals[0],
										  SPI_tuptable->tupdesc, 1, &isnull));
	kw_validate_data(event, fields, data);

	id = DirectFunctionCall1(kw_new_event_id, (Datum) 0);
	args[0] = id;
	args[1] = PointerGetDatum(event_text);
	args[2] = PointerGetDatum(company_text);
	args[3] = JsonbPGetDatum(data);
	if (SPI_execute_plan(kw_insert_event_plan, args, NULL, false, 0) !=
		SPI_OK_INSERT)
		elog(ERROR, "could not write the event");
	if (SPI_processed > 0)
		kw_wake_worker();

	SPI_finish();
	PG_RETURN_DATUM(id);
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
	ArrayType  *arr;
	Datum		args[1];
	Oid			types[1] = {TEXTARRAYOID};

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		elog(ERROR, "kw_endpoint_check must be a BEFORE ROW trigger");

	tuple = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ?
		trigdata->tg_newtuple : trigdata->tg_trigtuple;
	desc = trigdata->tg_relation->rd_att;

	company_id = kw_column(tuple, desc, "company_id");
	if (company_id == NULL || company_id[strspn(company_id, " \t\r\n")] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("company_id must not be empty"),
				 errhint("Every endpoint belongs to a company; pass its id.")));

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

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		elog(ERROR, "kw_event_type_check must be a BEFORE ROW trigger");

	tuple = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ?
		trigdata->tg_newtuple : trigdata->tg_trigtuple;
	desc = trigdata->tg_relation->rd_att;

	name = kw_column(tuple, desc, "name");
	if (name == NULL || strpbrk(name, " \t\r\n") != NULL || name[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid event type name \"%s\"", name ? name : ""),
				 errhint("Use a dotted name without spaces, such as 'invoice.paid'.")));

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
	kw_validate_data(name, fields, DatumGetJsonbP(d));

	return PointerGetDatum(tuple);
}
