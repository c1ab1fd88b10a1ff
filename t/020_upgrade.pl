# Upgrade from 1.0 to 1.1 and then to 1.2 over live data: the extension is
# created at 1.0, the worker delivers (and retries) there, then ALTER
# EXTENSION UPDATE TO '1.1' runs with a retry still scheduled.  Afterwards
# the data is intact, the 1.1 functions work on the 1.0 rows and the
# scheduled retry still goes out.  The update to 1.2 follows, with a retry
# scheduled again, and the schema of 1.0 + both updates is the same as that
# of a fresh CREATE EXTENSION.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../test";
use KwTest;
use PostgreSQL::Test::Utils;
use Test::More;

# A first retry 10 s after a failure (9 s at the earliest): long enough for
# the checks of 1.0 and the upgrade to happen while it is scheduled, even
# on a loaded machine, short enough not to slow the test much.
my $node = kw_node(
	'upgrade',
	no_extension => 1,
	conf => "konvox_webhooks.retry_base_delay = '10s'\n");
my $r = kw_receiver();

sub sql
{
	my ($query, $db) = @_;
	return $node->safe_psql($db // 'postgres', $query);
}

#
# 1.0, and data in it
#
sql("CREATE EXTENSION konvox_webhooks VERSION '1.0'");
is(sql("SELECT extversion FROM pg_extension WHERE extname = 'konvox_webhooks'"),
	'1.0', 'created at version 1.0');
is( sql(
		"SELECT to_regprocedure('webhooks.redeliver(bigint)') IS NULL AND to_regclass('webhooks.endpoint_stats') IS NULL"
	),
	't',
	'1.0 has none of the 1.1 objects');

sql(q{INSERT INTO webhooks.event_types (name, description, fields, sample)
VALUES ('invoice.paid', 'An invoice was paid.',
        '[{"name": "invoiceId", "type": "string", "required": true}]',
        '{"invoiceId": "inv_1"}')});

my %ep;
sub endpoint
{
	my ($name, $company, $path, $events) = @_;
	$ep{$name} = sql(
		"SELECT id FROM webhooks.create_endpoint('$company', '"
		  . receiver_url($r, $path)
		  . "', ARRAY[$events], '$name')");
	return;
}
endpoint('ok', 'acme', '/ok', q{'contact.replied', 'enrollment.created'});
endpoint('flaky', 'acme', '/flaky?fail_first=1', q{'contact.replied'});
endpoint('down', 'globex', '/down?status=503', q{'contact.replied'});
endpoint('inv', 'globex', '/inv', q{'invoice.paid'});

sql(q{
SELECT webhooks.emit('contact.replied', 'acme',
                     jsonb_build_object('contactId', 'c' || i, 'channel', 'email'))
  FROM generate_series(1, 3) i;
SELECT webhooks.emit('enrollment.created', 'acme',
                     jsonb_build_object('enrollmentId', 'e' || i, 'contactId', 'c' || i,
                                        'campaignId', 'k'))
  FROM generate_series(1, 2) i;
SELECT webhooks.emit('contact.replied', 'globex', '{"contactId": "g1", "channel": "email"}');
SELECT webhooks.emit('invoice.paid', 'globex', jsonb_build_object('invoiceId', 'inv_' || i))
  FROM generate_series(1, 2) i;
});

# ok and inv: all delivered; flaky: the first request failed and its retry
# is scheduled; down: failing
ok( $node->poll_query_until(
		'postgres', qq{
SELECT count(*) FILTER (WHERE status = 'delivered') = 9
   AND count(*) FILTER (WHERE endpoint_id = $ep{flaky} AND status = 'pending'
                          AND attempts = 1 AND next_attempt_at > now()) = 1
   AND count(*) FILTER (WHERE endpoint_id = $ep{down} AND attempts >= 1) = 1
  FROM webhooks.deliveries}),
	'1.0: the worker delivered, and scheduled a retry');
my $retry_id = sql(
	"SELECT id FROM webhooks.deliveries WHERE endpoint_id = $ep{flaky} AND status = 'pending'"
);
my $retry_event = sql(
	"SELECT event_id FROM webhooks.deliveries WHERE id = $retry_id");

# down: deactivated, which fails its delivery
sql("UPDATE webhooks.endpoints SET active = false WHERE id = $ep{down}");
my $failed_id =
  sql("SELECT id FROM webhooks.deliveries WHERE endpoint_id = $ep{down}");
is(sql("SELECT status FROM webhooks.deliveries WHERE id = $failed_id"),
	'failed', '1.0: a failed delivery');

my $counts_query = q{
SELECT (SELECT count(*) FROM webhooks.endpoints) || ' endpoints, ' ||
       (SELECT count(*) FROM webhooks.event_types) || ' event types, ' ||
       (SELECT count(*) FROM webhooks.events) || ' events, ' ||
       (SELECT count(*) FROM webhooks.deliveries) || ' deliveries'};
is(sql($counts_query),
	'4 endpoints, 7 event types, 8 events, 11 deliveries',
	'1.0: the data');

#
# The upgrade, in one transaction that keeps the worker from recording
# anything meanwhile: every row of 1.0, column by column, before and after,
# and the retry still scheduled while the update runs.  The tables are
# locked in the order the worker's recording statement locks them.
#
my $fingerprint = q{
SELECT count(*) || ' rows ' || md5(string_agg(x, E'\n' ORDER BY x)) FROM (
    SELECT 'endpoint ' || row(id, company_id, url, events, secret, previous_secret,
                              previous_secret_expires_at, description, active,
                              created_at)::text
      FROM webhooks.endpoints
    UNION ALL
    SELECT 'type ' || row(name, description, fields, sample)::text
      FROM webhooks.event_types
    UNION ALL
    SELECT 'event ' || row(id, event, company_id, data, created_at)::text
      FROM webhooks.events
    UNION ALL
    SELECT 'delivery ' || row(id, event_id, endpoint_id, status, attempts,
                              next_attempt_at, last_status_code, last_error,
                              created_at, finished_at)::text
      FROM webhooks.deliveries
    UNION ALL
    SELECT 'attempt ' || row(delivery_id, attempt, started_at, duration_ms,
                             status_code, error, response_body,
                             next_attempt_at)::text
      FROM webhooks.delivery_attempts
) s(x)};
my $ids_query = q{
SELECT (SELECT string_agg(id::text, ',' ORDER BY id) FROM webhooks.endpoints) || ' / ' ||
       (SELECT string_agg(id::text, ',' ORDER BY id) FROM webhooks.deliveries) || ' / ' ||
       (SELECT md5(string_agg(id::text, ',' ORDER BY id)) FROM webhooks.events)};
my $ids_before = sql($ids_query);

my @out = split /\n/, sql(
	qq{
BEGIN;
LOCK TABLE webhooks.delivery_attempts, webhooks.deliveries IN SHARE MODE;
$fingerprint;
SELECT status || ' ' || attempts || ' ' || (next_attempt_at > now())
  FROM webhooks.deliveries WHERE id = $retry_id;
ALTER EXTENSION konvox_webhooks UPDATE TO '1.1';
SELECT extversion FROM pg_extension WHERE extname = 'konvox_webhooks';
$fingerprint;
SELECT count(*) FROM webhooks.deliveries WHERE redelivery_of IS NOT NULL;
COMMIT;
});
my ($fp_before, $retry_state, $version, $fp_after, $linked) = @out;
like($fp_before, qr/^\d+ rows [0-9a-f]{32}$/, 'a fingerprint of the 1.0 data');
is($retry_state, 'pending 1 true',
	'the retry was still scheduled while the update ran');
is($version, '1.1', "ALTER EXTENSION UPDATE TO '1.1'");
is($fp_after, $fp_before,
	'every row of 1.0 is the same after the update, column by column');
is($linked, '0', 'no old delivery is taken for a redelivery');
is(sql($ids_query), $ids_before, 'the ids are the same');
is(sql($counts_query),
	'4 endpoints, 7 event types, 8 events, 11 deliveries',
	'the counts are the same');
# from 18 on, \dx shows the default version after the installed one
like(
	sql('\dx konvox_webhooks'),
	qr/^konvox_webhooks\|1\.1\|(?:1\.2\|)?pg_catalog\|/,
	'\dx shows version 1.1');

#
# The scheduled retry still goes out, when it was due
#
ok( $node->poll_query_until(
		'postgres',
		"SELECT status = 'delivered' FROM webhooks.deliveries WHERE id = $retry_id"
	),
	'the retry scheduled under 1.0 is delivered after the update');
is( sql(
		qq{
SELECT string_agg(coalesce(a.error, 'ok'), ', ' ORDER BY a.attempt),
       bool_and(a.attempt = 1 OR a.started_at >= (SELECT p.next_attempt_at
                                                    FROM webhooks.delivery_attempts p
                                                   WHERE p.delivery_id = a.delivery_id
                                                     AND p.attempt = a.attempt - 1))
  FROM webhooks.delivery_attempts a WHERE a.delivery_id = $retry_id}),
	'HTTP 500, ok|t',
	'its attempts: the failure under 1.0, then success, not before it was due');
is( scalar(
		grep {
			$_->{path} eq '/flaky'
			  && ($_->{headers}{'webhook-id'} // '') eq $retry_event
		} receiver_log($r)),
	2,
	'the flaky receiver saw the event twice');

#
# endpoint_stats over the deliveries of 1.0
#
is( sql(
		qq{
SELECT deliveries, delivered, failed, pending, success_rate,
       p50_ms > 0, p95_ms >= p50_ms, last_success_at IS NOT NULL,
       last_failure_at IS NULL, last_error IS NULL
  FROM webhooks.endpoint_stats WHERE endpoint_id = $ep{ok}}),
	'5|5|0|0|100.0|t|t|t|t|t',
	'endpoint_stats: the deliveries of 1.0, all delivered');
is( sql(
		qq{
SELECT deliveries, delivered, failed, pending, success_rate, active, last_error
  FROM webhooks.endpoint_stats WHERE endpoint_id = $ep{down}}),
	'1|0|1|0|0.0|f|HTTP 503',
	'endpoint_stats: the failed one, with its error');
is( sql(
		qq{
SELECT deliveries, delivered, success_rate, last_error
  FROM webhooks.endpoint_stats WHERE endpoint_id = $ep{flaky}}),
	'3|3|100.0|HTTP 500',
	'endpoint_stats: the retried one');

#
# redeliver() of a delivery delivered under 1.0
#
my ($old_id, $old_event) = split /\|/, sql(
	qq{
SELECT d.id, d.event_id FROM webhooks.deliveries d
  JOIN webhooks.events e ON e.id = d.event_id
 WHERE d.endpoint_id = $ep{ok} AND e.event = 'contact.replied'
 ORDER BY d.id LIMIT 1});
my $new_id = sql("SELECT webhooks.redeliver($old_id)");
ok($new_id > (split /,/, (split / \/ /, $ids_before)[1])[-1],
	'the redelivery gets an id after every 1.0 delivery');
ok( $node->poll_query_until(
		'postgres',
		"SELECT status = 'delivered' FROM webhooks.deliveries WHERE id = $new_id"
	),
	'the redelivery of a 1.0 delivery is delivered');
my @sent = grep {
	$_->{path} eq '/ok'
	  && ($_->{headers}{'webhook-id'} // '') eq $old_event
} receiver_log($r);
is(scalar @sent, 2, 'the endpoint got the event twice');
is($sent[1]{headers}{'webhook-id'},
	$sent[0]{headers}{'webhook-id'}, 'with the same webhook-id');
is($sent[1]{body}, $sent[0]{body}, 'and the same body');
is( sql(
		"SELECT redelivery_of, attempts, status FROM webhooks.deliveries WHERE id = $new_id"
	),
	"$old_id|1|delivered",
	'the redelivery is linked to the original');

#
# redeliver_failed() of the failure of 1.0, once the endpoint works again
#
receiver_control($r, '/down', 'status=200');
sql("UPDATE webhooks.endpoints SET active = true WHERE id = $ep{down}");
is( sql(
		"SELECT webhooks.redeliver_failed($ep{down}, now() - interval '1 hour')"),
	'1',
	'redeliver_failed() finds the failure of 1.0');
ok( $node->poll_query_until(
		'postgres',
		"SELECT status = 'delivered' FROM webhooks.deliveries WHERE redelivery_of = $failed_id"
	),
	'and it is delivered');
my @down = grep { $_->{path} eq '/down' } receiver_log($r);
is($down[-1]{status}, 200, 'the receiver answered the redelivery with 200');
is( $down[-1]{headers}{'webhook-id'},
	sql("SELECT event_id FROM webhooks.deliveries WHERE id = $failed_id"),
	'with the webhook-id of the failed delivery');

is( sql(
		'SELECT running, workers = cardinality(pids), in_flight, due_now FROM webhooks.worker_status()'
	),
	't|t|0|0',
	'worker_status() on the upgraded database');

#
# 1.1 to 1.2, with a retry scheduled again
#
receiver_control($r, '/flaky', 'status=500');
sql(q{SELECT webhooks.emit('contact.replied', 'acme',
                           '{"contactId": "c9", "channel": "email"}')});
ok( $node->poll_query_until(
		'postgres', qq{
SELECT count(*) = 1 FROM webhooks.deliveries
 WHERE endpoint_id = $ep{flaky} AND status = 'pending' AND attempts = 1
   AND next_attempt_at > now()}),
	'1.1: a retry is scheduled');
$retry_id = sql(
	"SELECT id FROM webhooks.deliveries WHERE endpoint_id = $ep{flaky} AND status = 'pending'"
);
@out = split /\n/, sql(
	qq{
BEGIN;
LOCK TABLE webhooks.delivery_attempts, webhooks.deliveries IN SHARE MODE;
$fingerprint;
ALTER EXTENSION konvox_webhooks UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'konvox_webhooks';
$fingerprint;
SELECT status || ' ' || attempts || ' ' || (next_attempt_at > now())
  FROM webhooks.deliveries WHERE id = $retry_id;
COMMIT;
});
($fp_before, $version, $fp_after, $retry_state) = @out;
is($version, '1.2', 'ALTER EXTENSION UPDATE goes on to 1.2');
is($fp_after, $fp_before,
	'every row of 1.1 is the same after the update, column by column');
is($retry_state, 'pending 1 true',
	'the retry was still scheduled while the update ran');
receiver_control($r, '/flaky', 'status=200');
ok( $node->poll_query_until(
		'postgres',
		"SELECT status = 'delivered' FROM webhooks.deliveries WHERE id = $retry_id"
	),
	'the retry scheduled under 1.1 is delivered after the update');
is( sql(
		q{SELECT count(*) FROM pg_proc p
	   WHERE p.pronamespace = 'webhooks'::regnamespace
	     AND p.prolang <> (SELECT oid FROM pg_language WHERE lanname = 'c')
	     AND NOT coalesce(p.proconfig @> '{"search_path=pg_catalog, pg_temp"}', false)}
	),
	'0',
	'1.2: every SQL and PL/pgSQL function pins its search_path');
is( sql(
		q{SELECT count(*) FROM pg_proc p
	   WHERE p.pronamespace = 'webhooks'::regnamespace AND p.prosecdef
	     AND NOT coalesce(p.proconfig @> '{"search_path=pg_catalog, pg_temp"}', false)}
	),
	'0',
	'1.2: every SECURITY DEFINER function, emit() included, pins it in its declaration'
);
is( sql(
		q{SELECT count(*) FROM pg_proc p
	   WHERE p.oid IN ('webhooks.emit(text, text, jsonb)'::regprocedure,
	                   'webhooks.emit(text, text, jsonb, text)'::regprocedure)
	     AND p.prosecdef}
	),
	'2',
	'1.2: both emit() functions are SECURITY DEFINER');

my $log = kw_log_since($node, 0);
unlike($log, qr/ERROR:/, 'no error in the server log, before or after the updates');

#
# A fresh 1.2 has the same objects as 1.0 + both updates
#
sql('CREATE DATABASE fresh');
sql('CREATE EXTENSION konvox_webhooks', 'fresh');
is(sql("SELECT extversion FROM pg_extension WHERE extname = 'konvox_webhooks'",
		'fresh'),
	'1.2', 'a fresh CREATE EXTENSION installs 1.2');

my %catalog = (
	schema => q{
SELECT n.nspname || ' ' || coalesce(n.nspacl::text, '-') || ' ' ||
       coalesce(obj_description(n.oid, 'pg_namespace'), '-')
  FROM pg_namespace n WHERE n.nspname = 'webhooks'},
	relations => q{
SELECT c.relname || ' ' || c.relkind::text || ' ' || c.relpersistence::text || ' ' ||
       coalesce(array_to_string(c.reloptions, ','), '-') || ' ' ||
       coalesce(c.relacl::text, '-') || ' ' ||
       coalesce(obj_description(c.oid, 'pg_class'), '-')
  FROM pg_class c WHERE c.relnamespace = 'webhooks'::regnamespace},
	columns => q{
SELECT c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod) ||
       CASE WHEN a.attnotnull THEN ' not null' ELSE '' END ||
       ' identity=' || a.attidentity::text || ' generated=' || a.attgenerated::text ||
       ' default=' || coalesce(pg_get_expr(d.adbin, d.adrelid), '-') || ' ' ||
       coalesce(a.attacl::text, '-') || ' ' ||
       coalesce(col_description(c.oid, a.attnum), '-')
  FROM pg_attribute a
  JOIN pg_class c ON c.oid = a.attrelid
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE c.relnamespace = 'webhooks'::regnamespace AND c.relkind IN ('r', 'v', 'p')
   AND a.attnum > 0 AND NOT a.attisdropped},
	indexes => q{
SELECT pg_get_indexdef(i.indexrelid) || ' ' ||
       coalesce(obj_description(i.indexrelid, 'pg_class'), '-')
  FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
 WHERE c.relnamespace = 'webhooks'::regnamespace},
	constraints => q{
SELECT conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
  FROM pg_constraint WHERE connamespace = 'webhooks'::regnamespace},
	functions => q{
SELECT p.oid::regprocedure || ' ' || coalesce(p.proacl::text, '-') || ' ' ||
       coalesce(obj_description(p.oid, 'pg_proc'), '-') || E'\n' ||
       pg_get_functiondef(p.oid)
  FROM pg_proc p WHERE p.pronamespace = 'webhooks'::regnamespace},
	views => q{
SELECT c.relname || ' ' || pg_get_viewdef(c.oid)
  FROM pg_class c WHERE c.relnamespace = 'webhooks'::regnamespace AND c.relkind = 'v'},
	triggers => q{
SELECT pg_get_triggerdef(t.oid) || ' ' || t.tgenabled::text || ' ' ||
       coalesce(obj_description(t.oid, 'pg_trigger'), '-')
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
 WHERE c.relnamespace = 'webhooks'::regnamespace AND NOT t.tgisinternal},
	sequences => q{
SELECT s.seqrelid::regclass || ' ' || s.seqtypid::regtype || ' ' || s.seqstart ||
       ' ' || s.seqincrement || ' ' || s.seqmin || ' ' || s.seqmax || ' ' ||
       s.seqcache || ' ' || s.seqcycle
  FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
 WHERE c.relnamespace = 'webhooks'::regnamespace},
	members => q{
SELECT pg_describe_object(d.classid, d.objid, d.objsubid)
  FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
 WHERE d.refclassid = 'pg_extension'::regclass AND e.extname = 'konvox_webhooks'
   AND d.deptype = 'e'},
	dump_config => q{
SELECT x.reloid::regclass || ' ' || x.condition
  FROM pg_extension e, unnest(e.extconfig, e.extcondition) x(reloid, condition)
 WHERE e.extname = 'konvox_webhooks'},
	builtin_event_types => q{
SELECT row(name, description, fields, sample)::text
  FROM webhooks.event_types WHERE name <> 'invoice.paid'},);

for my $what (sort keys %catalog)
{
	my $q = "SELECT string_agg(x, E'\\n' ORDER BY x) FROM ($catalog{$what}) s(x)";
	my $fresh = sql($q, 'fresh');
	my $upgraded = sql($q);
	isnt($fresh, '', "fresh 1.2 has $what");
	is($upgraded, $fresh, "1.0 + updates have the same $what as a fresh 1.2");
}

# the comparison would see an object of 1.1 or 1.2 missing from either side
like(
	sql(
		"SELECT string_agg(x, E'\\n') FROM ($catalog{columns}) s(x)", 'fresh'),
	qr/^deliveries\.redelivery_of bigint /m,
	'the listing shows the columns added by 1.1');
like(sql("SELECT string_agg(x, E'\\n') FROM ($catalog{indexes}) s(x)"),
	qr/deliveries_redelivery_idx/, 'and the indexes');
like(
	sql(
		"SELECT string_agg(x, E'\\n') FROM ($catalog{columns}) s(x)", 'fresh'),
	qr/^endpoints\.headers jsonb not null identity= generated= default='\{\}'::jsonb /m,
	'the listing shows the columns added by 1.2');
like(
	sql(
		"SELECT string_agg(x, E'\\n') FROM ($catalog{columns}) s(x)", 'fresh'),
	qr/^events\.idempotency_key text identity= generated= default=- /m,
	'the key of idempotent emits');
like(sql("SELECT string_agg(x, E'\\n') FROM ($catalog{indexes}) s(x)"),
	qr/CREATE UNIQUE INDEX events_idempotency_idx .* WHERE \(idempotency_key IS NOT NULL\)/,
	'and its index');
my $functions =
  sql("SELECT string_agg(x, E'\\n') FROM ($catalog{functions}) s(x)");
for my $f (
	'set_headers(bigint,jsonb)', 'create_endpoint(text,text,text[],text,jsonb)',
	'emit(text,text,jsonb,text)', 'metrics()',
	'delivery_counters()', 'attempt_counters()')
{
	like($functions, qr/^webhooks\.\Q$f\E /m, "and the function $f");
}
unlike($functions, qr/^webhooks\.create_endpoint\(text,text,text\[\],text\) /m,
	'and not the create_endpoint() that 1.2 replaced');
like(sql("SELECT string_agg(x, E'\\n') FROM ($catalog{relations}) s(x)"),
	qr/^deleted_endpoints r p /m, 'and the table of deleted endpoints');
like(sql("SELECT string_agg(x, E'\\n') FROM ($catalog{triggers}) s(x)"),
	qr/CREATE TRIGGER endpoints_truncated_ids BEFORE TRUNCATE ON webhooks\.endpoints /,
	'and its triggers');

# on the updated database, a deleted endpoint leaves its id
sql("DELETE FROM webhooks.endpoints WHERE id = $ep{inv}");
is(sql('SELECT id FROM webhooks.deleted_endpoints'),
	$ep{inv}, '1.2: a deleted endpoint leaves its id');

$node->stop;
done_testing();
