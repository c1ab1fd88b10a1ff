/*-------------------------------------------------------------------------
 *
 * outbox.c
 *		The write side of the outbox: what emit() checks an event against,
 *		and how it stores the event and its deliveries.
 *
 * emit() is called once per row by application triggers, so it must cost
 * little more than the INSERT it rides along with.  Two things make that so:
 *
 * - Event types and each company's active endpoints are cached per backend.
 *   A statement trigger on event_types and endpoints sends a relcache
 *   invalidation for the table; our relcache callback drops the cache, in
 *   this backend at the end of the statement and in every other one when
 *   the change commits.  Caches are loaded with the latest snapshot, not the
 *   transaction's, so that what a REPEATABLE READ transaction loads is never
 *   older than the invalidations already processed.
 *
 * - The event row and its delivery rows are inserted with table_tuple_insert
 *   and ExecInsertIndexTuples, as COPY does, from a writer kept open for the
 *   rest of the transaction, instead of planning and starting an INSERT for
 *   every call.  NOT NULL and CHECK constraints are checked as an INSERT
 *   checks them.  What this bypasses is meant to be bypassed: the tables
 *   have no foreign keys, and their only triggers wake the worker for rows
 *   written by SQL, which emit() does itself at commit.  A column that
 *   emit() does not know is refused, since it could not honour its default.
 *
 * An event with an idempotency key is the exception: its row goes through
 * INSERT ... ON CONFLICT DO NOTHING, which alone can wait for a concurrent
 * insert of the same key and tell whether it committed; its deliveries are
 * written as any others.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "nodes/execnodes.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/uuid.h"

#include "konvox_webhooks.h"

/* Longest event name and company id, in bytes: the cache's key size. */
#define KW_KEY_LEN			256

/* Drop the endpoint cache rather than let it grow past this many companies */
#define KW_MAX_COMPANIES	10000

/* One described field of an event type. */
typedef struct KwField
{
	char	   *name;
	const char *type;
	bool		required;
} KwField;

typedef struct KwEventTypeEntry
{
	char		name[KW_KEY_LEN];	/* hash key */
	int			nfields;
	KwField    *fields;
} KwEventTypeEntry;

/* An active endpoint of a company, as far as emit() needs it. */
typedef struct KwEndpointRef
{
	int64		id;
	int			nevents;
	char	  **events;
} KwEndpointRef;

typedef struct KwCompanyEntry
{
	char		company_id[KW_KEY_LEN]; /* hash key */
	int			nendpoints;
	KwEndpointRef *endpoints;
} KwCompanyEntry;

/* One table being written: the relation, its indexes and a slot. */
typedef struct KwTableWriter
{
	Relation	rel;
	ResultRelInfo *rri;
	TupleTableSlot *slot;
} KwTableWriter;

/*
 * Where the writer's columns are, and the deliveries' identity sequence:
 * catalog lookups, kept from one transaction to the next until a relcache
 * invalidation of either table.
 */
typedef struct KwLayout
{
	Oid			events_relid;
	Oid			deliveries_relid;
	Oid			delivery_seq;
	AttrNumber	ev_id,
				ev_event,
				ev_company,
				ev_data,
				ev_created;
	AttrNumber	d_id,
				d_event,
				d_endpoint,
				d_status,
				d_attempts,
				d_next,
				d_created;
} KwLayout;

/* The open writer of this transaction. */
typedef struct KwWriter
{
	EState	   *estate;
	Datum		pending;		/* 'pending' as text */
	KwTableWriter events;
	KwTableWriter deliveries;
	KwLayout	l;
} KwWriter;

static MemoryContext kw_types_context = NULL;
static MemoryContext kw_companies_context = NULL;
static HTAB *kw_event_types = NULL;
static HTAB *kw_companies = NULL;
static uint64 kw_event_types_gen = 0;
static uint64 kw_companies_gen = 0;

/* OIDs of our tables, once known; they change only with the extension */
static Oid	kw_event_types_relid = InvalidOid;
static Oid	kw_endpoints_relid = InvalidOid;
static Oid	kw_events_relid = InvalidOid;
static Oid	kw_deliveries_relid = InvalidOid;

static KwWriter *kw_writer = NULL;
static bool kw_writer_stale = false;
static KwLayout kw_layout;
static bool kw_layout_valid = false;

static SPIPlanPtr kw_load_types_plan = NULL;
static SPIPlanPtr kw_load_endpoints_plan = NULL;
static SPIPlanPtr kw_keyed_insert_plan = NULL;
static SPIPlanPtr kw_keyed_lookup_plan = NULL;

PG_FUNCTION_INFO_V1(kw_cache_invalidate);

static void kw_close_writer(void);

/*
 * Drop what a relcache invalidation of one of our tables makes stale.
 * InvalidOid means every relation.
 */
static void
kw_relcache_cb(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == kw_event_types_relid)
	{
		kw_event_types = NULL;
		kw_event_types_gen++;
		if (kw_types_context != NULL)
			MemoryContextDelete(kw_types_context);
		kw_types_context = NULL;
	}
	if (relid == InvalidOid || relid == kw_endpoints_relid)
	{
		kw_companies = NULL;
		kw_companies_gen++;
		if (kw_companies_context != NULL)
			MemoryContextReset(kw_companies_context);
	}
	if (relid == InvalidOid || relid == kw_events_relid ||
		relid == kw_deliveries_relid)
	{
		kw_writer_stale = true;
		kw_layout_valid = false;
	}
}

/*
 * Close the writer before commit or prepare; on abort the resource owner
 * has released what it held, so only forget it.  The writer belongs to the
 * top-level transaction, so a subtransaction's end does not concern it.
 */
static void
kw_outbox_xact_cb(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PARALLEL_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			kw_close_writer();
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			kw_writer = NULL;
			break;
		default:
			break;
	}
}

/*
 * Register the callbacks; called from _PG_init.
 */
void
kw_outbox_init(void)
{
	CacheRegisterRelcacheCallback(kw_relcache_cb, (Datum) 0);
	RegisterXactCallback(kw_outbox_xact_cb, NULL);
}

/*
 * webhooks._cache_invalidate(): statement trigger on event_types and
 * endpoints, telling every backend that its cache of the table is stale.
 */
Datum
kw_cache_invalidate(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "kw_cache_invalidate must be called as a trigger");
	CacheInvalidateRelcache(trigdata->tg_relation);
	return PointerGetDatum(NULL);
}

/* OID of a table of our schema. */
static Oid
kw_relid(const char *name)
{
	Oid			nsp = get_namespace_oid("webhooks", false);
	Oid			relid = get_relname_relid(name, nsp);

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation \"webhooks.%s\" does not exist", name),
				 errhint("Is the extension konvox_webhooks installed?")));
	return relid;
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
				 errdetail("The fields of an event type are a JSON array."),
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

		if (elem->type == jbvBinary &&
			JsonContainerIsObject(elem->val.binary.data))
		{
			name = kw_find_key(elem->val.binary.data, "name");
			type = kw_find_key(elem->val.binary.data, "type");
			required = kw_find_key(elem->val.binary.data, "required");
		}
		if (name && name->type == jbvString && name->val.string.len > 0 &&
			type && type->type == jbvString &&
			required && required->type == jbvBool)
		{
			result[i].name = pnstrdup(name->val.string.val,
									  name->val.string.len);
			result[i].type = pnstrdup(type->val.string.val,
									  type->val.string.len);
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
		for (int j = 0; j < i; j++)
		{
			if (strcmp(result[j].name, result[i].name) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid fields for event type \"%s\"", event),
						 errdetail("Field \"%s\" is described twice.",
								   result[i].name),
						 errhint("Describe each field once.")));
		}
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
	return nfields > 0 ? buf.data : "none described";
}

/*
 * Check data against the fields of its event type.  A required field must
 * be present, not null, and of its type; a nullable one may be absent or
 * null.  Fields not described are allowed and passed through.
 */
static void
kw_validate_data(const char *event, KwField *fields, int nfields,
				 Jsonb *data)
{
	if (!JB_ROOT_IS_OBJECT(data))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event data must be a JSON object"),
				 errdetail("The data given for \"%s\" is a JSON %s.", event,
						   JB_ROOT_IS_ARRAY(data) && !JB_ROOT_IS_SCALAR(data) ?
						   "array" : "scalar"),
				 errhint("Pass the event's fields as an object, for example jsonb_build_object('contactId', ...).")));

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

/*
 * Error context for a sample that does not fit the fields of its type, so
 * that the error says it is about the sample.
 */
static void
kw_sample_error_context(void *arg)
{
	errcontext("checking the sample of event type \"%s\" against its fields",
			   (const char *) arg);
}

/*
 * Validate one event_types row: its fields description, and its sample as
 * data of the type.
 */
void
kw_check_event_type(const char *name, Jsonb *fields, Jsonb *sample)
{
	int			nfields;
	KwField    *parsed = kw_parse_fields(name, fields, &nfields);
	ErrorContextCallback errcallback;

	errcallback.callback = kw_sample_error_context;
	errcallback.arg = unconstify(char *, name);
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;
	kw_validate_data(name, parsed, nfields, sample);
	error_context_stack = errcallback.previous;
}

/*
 * Prepare a statement once and keep it for the life of the process; used by
 * emit()'s cache loads and by the worker.  Returns in the caller's memory
 * context, not in SPI's (see kw_execute_plan).
 */
SPIPlanPtr
kw_keep_plan(const char *sql, int nargs, Oid *argtypes)
{
	MemoryContext old = CurrentMemoryContext;
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, argtypes);

	MemoryContextSwitchTo(old);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s",
			 SPI_result_code_string(SPI_result));
	SPI_keepplan(plan);
	return plan;
}

/* Free a plan that kw_keep_plan made, if any, and forget it. */
void
kw_free_plan(SPIPlanPtr *plan)
{
	if (*plan != NULL)
		SPI_freeplan(*plan);
	*plan = NULL;
}

/* Make sure the endpoint cache's context exists. */
static void
kw_cache_setup(void)
{
	if (kw_companies_context == NULL)
		kw_companies_context = AllocSetContextCreate(CacheMemoryContext,
													 "konvox_webhooks endpoints",
													 ALLOCSET_DEFAULT_SIZES);
}

/*
 * Load every event type into the cache.  The table is built in a context
 * of its own and published only if no invalidation arrived meanwhile (one
 * can, while a large value is detoasted); otherwise it serves this call and
 * goes away with the transaction.
 */
static HTAB *
kw_load_event_types(void)
{
	uint64		gen;
	HASHCTL		ctl;
	HTAB	   *htab;
	MemoryContext build;
	MemoryContext old;

	kw_event_types_relid = kw_relid("event_types");
	gen = kw_event_types_gen;

	SPI_connect();
	if (kw_load_types_plan == NULL)
		kw_load_types_plan = kw_keep_plan(
			"SELECT name, fields FROM webhooks.event_types", 0, NULL);
	if (SPI_execute_snapshot(kw_load_types_plan, NULL, NULL,
							 GetLatestSnapshot(), InvalidSnapshot,
							 true, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read webhooks.event_types");

	build = AllocSetContextCreate(CurTransactionContext,
								  "konvox_webhooks event types",
								  ALLOCSET_SMALL_SIZES);
	ctl.keysize = KW_KEY_LEN;
	ctl.entrysize = sizeof(KwEventTypeEntry);
	ctl.hcxt = build;
	htab = hash_create("konvox_webhooks event types", 16, &ctl,
					   HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		char	   *name = SPI_getvalue(tup, SPI_tuptable->tupdesc, 1);
		bool		isnull;
		Datum		fields = SPI_getbinval(tup, SPI_tuptable->tupdesc, 2,
										   &isnull);
		Jsonb	   *jb;
		KwEventTypeEntry *entry;

		if (strlen(name) >= KW_KEY_LEN || isnull)
			continue;
		jb = DatumGetJsonbP(fields);
		entry = hash_search(htab, name, HASH_ENTER, NULL);
		old = MemoryContextSwitchTo(build);
		entry->fields = kw_parse_fields(name, jb, &entry->nfields);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();

	if (gen == kw_event_types_gen)
	{
		MemoryContextSetParent(build, CacheMemoryContext);
		if (kw_types_context != NULL)
			MemoryContextDelete(kw_types_context);
		kw_types_context = build;
		kw_event_types = htab;
	}
	return htab;
}

/* list_sort comparator for C strings. */
static int
kw_cmp_cstring(const ListCell *a, const ListCell *b)
{
	return strcmp((const char *) lfirst(a), (const char *) lfirst(b));
}

/* Raise the error for an event name that event_types does not hold. */
static void
kw_unknown_event(const char *event, HTAB *types)
{
	HASH_SEQ_STATUS status;
	KwEventTypeEntry *entry;
	List	   *names = NIL;
	StringInfoData buf;
	ListCell   *lc;

	hash_seq_init(&status, types);
	while ((entry = hash_seq_search(&status)) != NULL)
		names = lappend(names, entry->name);
	list_sort(names, kw_cmp_cstring);

	initStringInfo(&buf);
	foreach(lc, names)
		appendStringInfo(&buf, "%s%s", buf.len > 0 ? ", " : "",
						 (char *) lfirst(lc));

	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown event type \"%s\"", event),
			 errhint("Known event types: %s.", buf.len > 0 ? buf.data : "none")));
}

/*
 * Check an event: its type exists and data is valid for it.
 */
void
kw_validate_event(const char *event, Jsonb *data)
{
	HTAB	   *types = kw_event_types;
	KwEventTypeEntry *entry = NULL;

	if (types == NULL)
		types = kw_load_event_types();
	if (strlen(event) < KW_KEY_LEN)
		entry = hash_search(types, event, HASH_FIND, NULL);
	if (entry == NULL)
		kw_unknown_event(event, types);
	kw_validate_data(event, entry->fields, entry->nfields, data);
}

/* A copy of a company's endpoints, allocated in cxt. */
static KwCompanyEntry *
kw_copy_company(KwCompanyEntry *from, KwCompanyEntry *to, MemoryContext cxt)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);

	to->nendpoints = from->nendpoints;
	to->endpoints = palloc0(sizeof(KwEndpointRef) * Max(1, from->nendpoints));
	for (int i = 0; i < from->nendpoints; i++)
	{
		KwEndpointRef *f = &from->endpoints[i];
		KwEndpointRef *t = &to->endpoints[i];

		t->id = f->id;
		t->nevents = f->nevents;
		t->events = palloc(sizeof(char *) * Max(1, f->nevents));
		for (int j = 0; j < f->nevents; j++)
			t->events[j] = pstrdup(f->events[j]);
	}
	MemoryContextSwitchTo(old);
	return to;
}

/*
 * The active endpoints of a company, from the cache or loaded into it.  As
 * for event types, the entry is built aside (detoasting the events array
 * can accept invalidations) and cached only if no invalidation arrived
 * while it was read.
 */
static KwCompanyEntry *
kw_company_endpoints(const char *company_id)
{
	uint64		gen;
	KwCompanyEntry *entry;
	KwCompanyEntry *loaded;
	MemoryContext old;
	Datum		args[1];
	Oid			types[1] = {TEXTOID};

	if (kw_companies != NULL)
	{
		entry = hash_search(kw_companies, company_id, HASH_FIND, NULL);
		if (entry != NULL)
			return entry;
	}

	kw_cache_setup();
	kw_endpoints_relid = kw_relid("endpoints");
	gen = kw_companies_gen;

	SPI_connect();
	if (kw_load_endpoints_plan == NULL)
		kw_load_endpoints_plan = kw_keep_plan(
			"SELECT id, events FROM webhooks.endpoints"
			" WHERE company_id OPERATOR(pg_catalog.=) $1 AND active"
			" ORDER BY id",
			1, types);
	args[0] = CStringGetTextDatum(company_id);
	if (SPI_execute_snapshot(kw_load_endpoints_plan, args, NULL,
							 GetLatestSnapshot(), InvalidSnapshot,
							 true, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read webhooks.endpoints");

	old = MemoryContextSwitchTo(CurTransactionContext);
	loaded = palloc0(sizeof(KwCompanyEntry));
	loaded->nendpoints = (int) SPI_processed;
	loaded->endpoints = palloc0(sizeof(KwEndpointRef) *
								Max(1, loaded->nendpoints));
	for (int i = 0; i < loaded->nendpoints; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum	   *elems;
		int			nelems;
		KwEndpointRef *ep = &loaded->endpoints[i];

		ep->id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(tup, desc, 2,
														   &isnull)),
						  TEXTOID, -1, false, TYPALIGN_INT,
						  &elems, NULL, &nelems);
		ep->nevents = nelems;
		ep->events = palloc(sizeof(char *) * Max(1, nelems));
		for (int j = 0; j < nelems; j++)
			ep->events[j] = TextDatumGetCString(elems[j]);
	}
	MemoryContextSwitchTo(old);
	SPI_finish();

	if (gen != kw_companies_gen)
		return loaded;

	/* nothing below accepts invalidations: publish */
	if (kw_companies == NULL ||
		hash_get_num_entries(kw_companies) >= KW_MAX_COMPANIES)
	{
		HASHCTL		ctl;

		MemoryContextReset(kw_companies_context);
		ctl.keysize = KW_KEY_LEN;
		ctl.entrysize = sizeof(KwCompanyEntry);
		ctl.hcxt = kw_companies_context;
		kw_companies = hash_create("konvox_webhooks endpoints", 64, &ctl,
								   HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	}
	entry = hash_search(kw_companies, company_id, HASH_ENTER, NULL);
	return kw_copy_company(loaded, entry, kw_companies_context);
}

/* Open one table for inserting, with its indexes. */
static void
kw_open_table(KwTableWriter *tw, Oid relid)
{
	tw->rel = table_open(relid, RowExclusiveLock);
	tw->rri = makeNode(ResultRelInfo);
	InitResultRelInfo(tw->rri, tw->rel, 0, NULL, 0);
	ExecOpenIndices(tw->rri, false);
	tw->slot = table_slot_create(tw->rel, NULL);
}

/* Close what kw_open_table opened. */
static void
kw_close_table(KwTableWriter *tw)
{
	ExecDropSingleTupleTableSlot(tw->slot);
	ExecCloseIndices(tw->rri);
	table_close(tw->rel, NoLock);
}

/* Column number of a column of ours, which must exist. */
static AttrNumber
kw_attnum(Relation rel, const char *name)
{
	AttrNumber	attnum = get_attnum(RelationGetRelid(rel), name);

	if (attnum == InvalidAttrNumber)
		elog(ERROR, "column \"%s\" of \"%s\" does not exist", name,
			 RelationGetRelationName(rel));
	return attnum;
}

/*
 * Refuse to write to a table with a column that emit() does not know: it
 * writes rows directly, so such a column would get NULL whatever its
 * default or NOT NULL says.  known is a NULL-terminated list of names.
 */
static void
kw_check_columns(Relation rel, const char *const *known)
{
	TupleDesc	desc = RelationGetDescr(rel);

	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		bool		found = false;

		if (att->attisdropped)
			continue;
		for (const char *const *k = known; *k != NULL && !found; k++)
			found = (strcmp(NameStr(att->attname), *k) == 0);
		if (!found)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("webhooks.%s has a column that emit() does not write: \"%s\"",
							RelationGetRelationName(rel), NameStr(att->attname)),
					 errdetail("emit() writes the outbox rows directly, so a column it does not know would get NULL whatever its default says."),
					 errhint("Drop the column, and keep data of your own in a table of your own that refers to webhooks.events by id.")));
	}
}

/*
 * Look up kw_layout for the open tables.  They are locked, so their columns
 * cannot change meanwhile; an invalidation that arrives during the lookups
 * only makes the next writer look again.
 */
static void
kw_load_layout(Relation events, Relation deliveries)
{
	static const char *const events_columns[] = {
		"id", "event", "company_id", "data", "created_at", "idempotency_key", NULL
	};
	static const char *const deliveries_columns[] = {
		"id", "event_id", "endpoint_id", "status", "attempts",
		"next_attempt_at", "last_status_code", "last_error", "created_at",
		"finished_at", "redelivery_of", NULL
	};
	KwLayout   *l = &kw_layout;

	kw_check_columns(events, events_columns);
	kw_check_columns(deliveries, deliveries_columns);
	kw_layout_valid = true;
	l->events_relid = RelationGetRelid(events);
	l->ev_id = kw_attnum(events, "id");
	l->ev_event = kw_attnum(events, "event");
	l->ev_company = kw_attnum(events, "company_id");
	l->ev_data = kw_attnum(events, "data");
	l->ev_created = kw_attnum(events, "created_at");

	l->deliveries_relid = RelationGetRelid(deliveries);
	l->d_id = kw_attnum(deliveries, "id");
	l->d_event = kw_attnum(deliveries, "event_id");
	l->d_endpoint = kw_attnum(deliveries, "endpoint_id");
	l->d_status = kw_attnum(deliveries, "status");
	l->d_attempts = kw_attnum(deliveries, "attempts");
	l->d_next = kw_attnum(deliveries, "next_attempt_at");
	l->d_created = kw_attnum(deliveries, "created_at");
	l->delivery_seq = getIdentitySequence(deliveries, l->d_id, false);
}

/*
 * Open the writer for this transaction, in TopTransactionContext and owned
 * by the top-level transaction's resource owner, so that it outlives the
 * statement (and any subtransaction) that opened it.
 */
static KwWriter *
kw_open_writer(void)
{
	MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);
	ResourceOwner save = CurrentResourceOwner;
	KwWriter   *w = palloc0(sizeof(KwWriter));

	kw_events_relid = kw_relid("events");
	kw_deliveries_relid = kw_relid("deliveries");
	kw_writer_stale = false;

	CurrentResourceOwner = TopTransactionResourceOwner;
	w->estate = CreateExecutorState();
	w->pending = CStringGetTextDatum("pending");
	kw_open_table(&w->events, kw_events_relid);
	kw_open_table(&w->deliveries, kw_deliveries_relid);

	if (!kw_layout_valid ||
		kw_layout.events_relid != kw_events_relid ||
		kw_layout.deliveries_relid != kw_deliveries_relid)
		kw_load_layout(w->events.rel, w->deliveries.rel);
	w->l = kw_layout;

	CurrentResourceOwner = save;
	MemoryContextSwitchTo(old);
	return w;
}

/* Close the writer, if open. */
static void
kw_close_writer(void)
{
	KwWriter   *w = kw_writer;
	ResourceOwner save = CurrentResourceOwner;

	if (w == NULL)
		return;
	kw_writer = NULL;
	CurrentResourceOwner = TopTransactionResourceOwner;
	kw_close_table(&w->events);
	kw_close_table(&w->deliveries);
	FreeExecutorState(w->estate);
	CurrentResourceOwner = save;
}

/*
 * Insert the row in tw's slot, and its index entries.  NOT NULL and CHECK
 * constraints hold as for any INSERT, those that you add included.  An
 * index access method may keep buffers pinned from one insert to the next
 * until the index is closed (BRIN does, from PostgreSQL 17 on), so the
 * inserts run under the resource owner that closes the indexes: the
 * top-level transaction's, which owns the writer.
 */
static void
kw_insert(KwWriter *w, KwTableWriter *tw)
{
	ResourceOwner save = CurrentResourceOwner;

	CurrentResourceOwner = TopTransactionResourceOwner;
	ExecStoreVirtualTuple(tw->slot);
	if (tw->rel->rd_att->constr != NULL)
		ExecConstraints(tw->rri, tw->slot, w->estate);
	table_tuple_insert(tw->rel, tw->slot, GetCurrentCommandId(true), 0, NULL);
	if (tw->rri->ri_NumIndices > 0)
		ExecInsertIndexTuples(tw->rri, tw->slot, w->estate, false, false,
							  NULL, NIL, false);
	CurrentResourceOwner = save;
	ResetPerTupleExprContext(w->estate);
}

/*
 * The active endpoints of a company subscribed to an event, copied out of
 * the cache into *ids: opening a sequence or a TOAST table accepts
 * invalidations, which may reset the cache while we write.  Returns how
 * many.
 */
static int
kw_subscribed_endpoints(text *company_id, const char *event_name,
						int64 **ids)
{
	KwCompanyEntry *company;
	int			n = 0;

	company = kw_company_endpoints(text_to_cstring(company_id));

	*ids = palloc(sizeof(int64) * Max(1, company->nendpoints));
	for (int i = 0; i < company->nendpoints; i++)
	{
		KwEndpointRef *ep = &company->endpoints[i];

		for (int j = 0; j < ep->nevents; j++)
		{
			if (strcmp(ep->events[j], event_name) == 0)
			{
				(*ids)[n++] = ep->id;
				break;
			}
		}
	}
	return n;
}

/* The writer of this transaction, opened again if a table changed. */
static KwWriter *
kw_get_writer(void)
{
	if (kw_writer != NULL && kw_writer_stale)
		kw_close_writer();
	if (kw_writer == NULL)
		kw_writer = kw_open_writer();
	return kw_writer;
}

/* Write a pending delivery of event id to each of n endpoints. */
static void
kw_write_deliveries(KwWriter *w, pg_uuid_t *id, int64 *endpoint_ids, int n,
					TimestampTz now)
{
	TupleTableSlot *slot = w->deliveries.slot;

	for (int i = 0; i < n; i++)
	{
		ExecClearTuple(slot);
		memset(slot->tts_isnull, true,
			   sizeof(bool) * slot->tts_tupleDescriptor->natts);
		slot->tts_values[w->l.d_id - 1] =
			Int64GetDatum(nextval_internal(w->l.delivery_seq, false));
		slot->tts_isnull[w->l.d_id - 1] = false;
		slot->tts_values[w->l.d_event - 1] = UUIDPGetDatum(id);
		slot->tts_isnull[w->l.d_event - 1] = false;
		slot->tts_values[w->l.d_endpoint - 1] = Int64GetDatum(endpoint_ids[i]);
		slot->tts_isnull[w->l.d_endpoint - 1] = false;
		slot->tts_values[w->l.d_status - 1] = w->pending;
		slot->tts_isnull[w->l.d_status - 1] = false;
		slot->tts_values[w->l.d_attempts - 1] = Int32GetDatum(0);
		slot->tts_isnull[w->l.d_attempts - 1] = false;
		slot->tts_values[w->l.d_next - 1] = TimestampTzGetDatum(now);
		slot->tts_isnull[w->l.d_next - 1] = false;
		slot->tts_values[w->l.d_created - 1] = TimestampTzGetDatum(now);
		slot->tts_isnull[w->l.d_created - 1] = false;
		kw_insert(w, &w->deliveries);
	}
}

/*
 * Store an event, and a pending delivery for each active endpoint of its
 * company subscribed to it.  Returns the number of deliveries.
 */
int
kw_write_event(pg_uuid_t *id, text *event, text *company_id, Jsonb *data)
{
	KwWriter   *w = kw_get_writer();
	TupleTableSlot *slot;
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	int64	   *endpoint_ids;
	int			ndeliveries;

	ndeliveries = kw_subscribed_endpoints(company_id, text_to_cstring(event),
										  &endpoint_ids);

	slot = w->events.slot;
	ExecClearTuple(slot);
	memset(slot->tts_isnull, true, sizeof(bool) * slot->tts_tupleDescriptor->natts);
	slot->tts_values[w->l.ev_id - 1] = UUIDPGetDatum(id);
	slot->tts_isnull[w->l.ev_id - 1] = false;
	slot->tts_values[w->l.ev_event - 1] = PointerGetDatum(event);
	slot->tts_isnull[w->l.ev_event - 1] = false;
	slot->tts_values[w->l.ev_company - 1] = PointerGetDatum(company_id);
	slot->tts_isnull[w->l.ev_company - 1] = false;
	slot->tts_values[w->l.ev_data - 1] = JsonbPGetDatum(data);
	slot->tts_isnull[w->l.ev_data - 1] = false;
	slot->tts_values[w->l.ev_created - 1] = TimestampTzGetDatum(now);
	slot->tts_isnull[w->l.ev_created - 1] = false;
	kw_insert(w, &w->events);

	kw_write_deliveries(w, id, endpoint_ids, ndeliveries, now);
	pfree(endpoint_ids);
	return ndeliveries;
}

/*
 * Store an event with an idempotency key, as kw_write_event does, unless
 * the company already has an event of that type with that key: then write
 * nothing and return that event's id.  Returns the id of the new event
 * otherwise, with the number of deliveries written in *ndeliveries.
 *
 * The event row goes through INSERT ... ON CONFLICT DO NOTHING on the
 * partial unique index of keys, so that concurrent emits with one key make
 * one event: each waits for the transaction that inserted the key first,
 * and finds its event if it commits, or inserts its own if it aborts.  In
 * READ COMMITTED the lookup that follows takes a new snapshot and sees the
 * committed event.  In REPEATABLE READ and SERIALIZABLE, a key taken by a
 * transaction that committed after our snapshot was taken is a
 * serialization failure (40001), raised by ON CONFLICT itself: retried, the
 * transaction returns that event's id.
 */
pg_uuid_t *
kw_write_keyed_event(pg_uuid_t *id, text *event, text *company_id,
					 Jsonb *data, text *key, int *ndeliveries)
{
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	pg_uuid_t  *existing = NULL;
	bool		inserted = false;
	Datum		args[6];
	int64	   *endpoint_ids;

	SPI_connect();
	if (kw_keyed_insert_plan == NULL)
	{
		Oid			types[6] = {UUIDOID, TEXTOID, TEXTOID, JSONBOID,
		TIMESTAMPTZOID, TEXTOID};

		kw_keyed_insert_plan = kw_keep_plan(
			"INSERT INTO webhooks.events"
			"       (id, event, company_id, data, created_at, idempotency_key)"
			" VALUES ($1, $2, $3, $4, $5, $6)"
			" ON CONFLICT (company_id, event, idempotency_key)"
			"    WHERE idempotency_key IS NOT NULL DO NOTHING",
			6, types);
	}
	if (kw_keyed_lookup_plan == NULL)
	{
		Oid			types[3] = {TEXTOID, TEXTOID, TEXTOID};

		kw_keyed_lookup_plan = kw_keep_plan(
			"SELECT id FROM webhooks.events"
			" WHERE company_id OPERATOR(pg_catalog.=) $1"
			"   AND event OPERATOR(pg_catalog.=) $2"
			"   AND idempotency_key OPERATOR(pg_catalog.=) $3",
			3, types);
	}
	args[0] = UUIDPGetDatum(id);
	args[1] = PointerGetDatum(event);
	args[2] = PointerGetDatum(company_id);
	args[3] = JsonbPGetDatum(data);
	args[4] = TimestampTzGetDatum(now);
	args[5] = PointerGetDatum(key);

	/* the event found can be purged before we read it: then insert again */
	for (int tries = 0; !inserted && existing == NULL; tries++)
	{
		Datum		lookup_args[3] = {args[2], args[1], args[5]};

		if (tries == 3)
			elog(ERROR, "could not insert or find the event of an idempotency key");
		if (SPI_execute_plan(kw_keyed_insert_plan, args, NULL, false, 0) !=
			SPI_OK_INSERT)
			elog(ERROR, "could not insert into webhooks.events");
		inserted = (SPI_processed == 1);
		if (inserted)
			break;
		if (SPI_execute_plan(kw_keyed_lookup_plan, lookup_args, NULL, false,
							 1) != SPI_OK_SELECT)
			elog(ERROR, "could not read webhooks.events");
		if (SPI_processed == 1)
		{
			bool		isnull;

			existing = DatumGetUUIDP(SPI_datumTransfer(
				SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
							  &isnull), false, UUID_LEN));
		}
	}
	SPI_finish();

	*ndeliveries = 0;
	if (!inserted)
		return existing;

	*ndeliveries = kw_subscribed_endpoints(company_id, text_to_cstring(event),
										   &endpoint_ids);
	kw_write_deliveries(kw_get_writer(), id, endpoint_ids, *ndeliveries, now);
	pfree(endpoint_ids);
	return id;
}
