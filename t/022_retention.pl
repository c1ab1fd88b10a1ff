# Retention: with konvox_webhooks.retention set by ALTER SYSTEM and a
# reload, the first worker deletes finished deliveries older than that, with
# their attempts and the events nothing refers to any more, in batches, with
# no one calling purge(); pending deliveries and their events stay; 0 turns
# it off.  And the worker logs per-delivery detail only at DEBUG1.
#
# When the worker looks: at its first turn, again at once after a batch
# that deleted something, otherwise 60 s after its last look; and never
# while retention is 0.  So the node starts with retention 0, and the worker
# that has never looked looks as soon as a reload sets a retention.  The
# second half restarts the node to be back in that state.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../test";
use KwTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

# A retry only an hour after a failure: failing deliveries stay pending.
my $node = kw_node(
	'retention', conf => q{
konvox_webhooks.retention = 0
konvox_webhooks.retry_base_delay = '1h'
});
my $r = kw_receiver();
my $retention = 3;    # seconds

sub sql { return $node->safe_psql('postgres', $_[0]); }

is(sql('SHOW konvox_webhooks.retention'), '0', 'retention starts at 0');

# Set a parameter with ALTER SYSTEM and reload; wait until a new session
# sees it (the postmaster has read the file and signalled its children).
sub set_and_reload
{
	my ($name, $value) = @_;
	sql("ALTER SYSTEM SET $name = '$value'");
	sql('SELECT pg_reload_conf()');
	$node->poll_query_until('postgres',
		"SELECT current_setting('$name') = '$value'")
	  or die "$name did not become $value";
	return;
}

my $ok = sql(
	"SELECT id FROM webhooks.create_endpoint('acme', '"
	  . receiver_url($r, '/ok')
	  . "', ARRAY['contact.replied', 'message.approved'])");
my $refused = sql(
	"SELECT id FROM webhooks.create_endpoint('acme', 'http://127.0.0.1:"
	  . unused_port()
	  . "/refused', ARRAY['enrollment.created', 'message.approved'])");
my $down = sql(
	"SELECT id FROM webhooks.create_endpoint('globex', '"
	  . receiver_url($r, '/down?status=500')
	  . "', ARRAY['contact.replied'])");

#
# The old history
#
sql(q{
SELECT webhooks.emit('contact.replied', 'acme',
                     jsonb_build_object('contactId', 'old' || i, 'channel', 'email'))
  FROM generate_series(1, 5) i;
SELECT webhooks.emit('enrollment.created', 'acme',
                     jsonb_build_object('enrollmentId', 'e' || i, 'contactId', 'c', 'campaignId', 'k'))
  FROM generate_series(1, 3) i;
SELECT webhooks.emit('contact.replied', 'globex',
                     jsonb_build_object('contactId', 'g' || i, 'channel', 'email'))
  FROM generate_series(1, 2) i;
SELECT webhooks.emit('message.approved', 'acme', '{"messageId": "m1", "contactId": "c"}');
SELECT webhooks.emit('enrollment.completed', 'nobody',
                     jsonb_build_object('enrollmentId', 'e' || i, 'contactId', 'c', 'campaignId', 'k'))
  FROM generate_series(1, 2) i;
});
# and a longer one, written as the worker would have: 1200 delivered
# deliveries with an attempt each, more than one batch of 1000
sql(qq{
WITH ev AS (
    INSERT INTO webhooks.events (event, company_id, data)
    SELECT 'contact.replied', 'acme', jsonb_build_object('contactId', 'bulk' || i, 'channel', 'email')
      FROM generate_series(1, 1200) i
    RETURNING id
), d AS (
    INSERT INTO webhooks.deliveries (event_id, endpoint_id, status, attempts,
                                     next_attempt_at, last_status_code, finished_at)
    SELECT id, $ok, 'delivered', 1, NULL, 200, now() FROM ev
    RETURNING id
)
INSERT INTO webhooks.delivery_attempts (delivery_id, attempt, started_at, duration_ms, status_code)
SELECT id, 1, now(), 3, 200 FROM d});

# ok: delivered; refused: failed once, retry in an hour; down: failed once,
# then deactivated, which fails its deliveries
ok( $node->poll_query_until(
		'postgres', qq{
SELECT count(*) FILTER (WHERE endpoint_id = $ok AND status = 'delivered') = 1206
   AND count(*) FILTER (WHERE endpoint_id = $refused AND status = 'pending' AND attempts = 1) = 4
   AND count(*) FILTER (WHERE endpoint_id = $down AND attempts = 1) = 2
  FROM webhooks.deliveries}),
	'the history is delivered, or failed once');
sql("UPDATE webhooks.endpoints SET active = false WHERE id = $down");

my $counts_query = q{
SELECT (SELECT count(*) FROM webhooks.events) || ' events, ' ||
       (SELECT count(*) FROM webhooks.deliveries) || ' deliveries (' ||
       (SELECT count(*) FROM webhooks.deliveries WHERE status = 'pending') || ' pending), ' ||
       (SELECT count(*) FROM webhooks.delivery_attempts) || ' attempts'};
is(sql($counts_query),
	'1213 events, 1212 deliveries (4 pending), 1212 attempts',
	'the history before retention');
my $pending_before = sql(
	q{
SELECT string_agg(row(d.id, d.event_id, d.attempts, d.next_attempt_at, a.started_at)::text, ','
                  ORDER BY d.id)
  FROM webhooks.deliveries d JOIN webhooks.delivery_attempts a ON a.delivery_id = d.id
 WHERE d.status = 'pending'});

# it has to be older than the retention
ok( $node->poll_query_until(
		'postgres',
		"SELECT max(created_at) < now() - interval '$retention s' - interval '500 ms' FROM webhooks.events"
	),
	"the history is more than $retention s old");

# and some recent history, which stays
sql(q{
SELECT webhooks.emit('contact.replied', 'acme',
                     jsonb_build_object('contactId', 'new' || i, 'channel', 'email'))
  FROM generate_series(1, 2) i;
SELECT webhooks.emit('enrollment.completed', 'nobody',
                     '{"enrollmentId": "new", "contactId": "c", "campaignId": "k"}');
});
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) = 0 FROM webhooks.deliveries WHERE endpoint_id = $ok AND status = 'pending'"
	),
	'the recent history is delivered');

#
# Retention on, by reload: the worker deletes, by itself
#
my $t0 = time();
set_and_reload('konvox_webhooks.retention', "${retention}s");
ok( $node->poll_query_until(
		'postgres', qq{
SELECT count(*) = 0 FROM webhooks.deliveries
 WHERE status <> 'pending' AND created_at < now() - interval '$retention s'}),
	'the worker deleted the finished deliveries past the retention');
my $elapsed = time() - $t0;
ok( $node->poll_query_until(
		'postgres', qq{
SELECT count(*) = 0 FROM webhooks.events e
 WHERE created_at < now() - interval '$retention s'
   AND NOT EXISTS (SELECT FROM webhooks.deliveries d WHERE d.event_id = e.id)}),
	'and the events that nothing refers to');
# 1200 and more at 1000 a batch, at once: had the worker waited for its
# next look after the first batch, that would have taken a minute
ok($elapsed < 30,
	sprintf('in batches that follow each other at once: %.1f s', $elapsed));

is(sql($counts_query),
	'7 events, 6 deliveries (4 pending), 6 attempts',
	'left: the pending deliveries and the recent ones, with their events and attempts'
);
is( sql(
		q{
SELECT string_agg(row(d.id, d.event_id, d.attempts, d.next_attempt_at, a.started_at)::text, ','
                  ORDER BY d.id)
  FROM webhooks.deliveries d JOIN webhooks.delivery_attempts a ON a.delivery_id = d.id
 WHERE d.status = 'pending'}),
	$pending_before,
	'the pending deliveries and their attempts are untouched');
is( sql(
		q{
SELECT string_agg(e.event || ' ' || e.company_id || ' ' ||
                  coalesce(e.data ->> 'enrollmentId', e.data ->> 'messageId',
                           e.data ->> 'contactId'), ', '
                  ORDER BY e.event, e.data::text)
  FROM webhooks.events e}),
	'contact.replied acme new1, contact.replied acme new2, '
	  . 'enrollment.completed nobody new, '
	  . 'enrollment.created acme e1, enrollment.created acme e2, enrollment.created acme e3, '
	  . 'message.approved acme m1',
	'the events left: the recent ones, and those of pending deliveries');
is( sql(
		"SELECT count(*) FROM webhooks.delivery_attempts a WHERE NOT EXISTS (SELECT FROM webhooks.deliveries d WHERE d.id = a.delivery_id)"
	),
	'0',
	'no attempt is left without its delivery');

# at LOG level, nothing of this is in the log, nor of any delivery
my $log = kw_log_since($node, 0);
like(
	$log,
	qr/konvox_webhooks worker 1 of 2 started for database "postgres"/,
	'the log says that the workers started, and where');
unlike($log, qr/konvox_webhooks: delivery \d+ attempt/,
	'log_min_messages = info: no line per delivery');
unlike($log, qr/past retention/, 'nor per batch of retention');
# every line the workers wrote (log_line_prefix has the pid in brackets):
# that they started, and waited for the extension until it was created
my @wpids = kw_worker_pids($node);
my @worker_lines = grep {
	my $line = $_;
	grep { index($line, "[$_]") >= 0 } @wpids
} split /\n/, $log;
ok(@worker_lines >= @wpids, 'the workers wrote to the log');
is_deeply(
	[
		grep {
			!/LOG:  konvox_webhooks worker \d+ of \d+ started for database "postgres"$/
			  && !/LOG:  konvox_webhooks worker waiting: extension "konvox_webhooks" is not installed in database "postgres"$/
			  && !/HINT:  Run CREATE EXTENSION konvox_webhooks in that database\.$/
			  && !/LOG:  konvox_webhooks worker found the extension in database "postgres"$/
		} @worker_lines
	],
	[],
	'only that they started, waited for the extension and found it')
  or diag(join("\n", @worker_lines));

#
# Retention 0: nothing is deleted.  With log_min_messages = debug1, from
# the restart on, the worker logs every attempt and every batch.
#
set_and_reload('konvox_webhooks.retention', '0');
set_and_reload('log_min_messages', 'debug1');
sql(q{
SELECT webhooks.emit('contact.replied', 'acme',
                     jsonb_build_object('contactId', 'kept' || i, 'channel', 'email'))
  FROM generate_series(1, 3) i});
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) = 0 FROM webhooks.deliveries WHERE endpoint_id = $ok AND status = 'pending'"
	),
	'more history is delivered');
ok( $node->poll_query_until(
		'postgres',
		"SELECT max(created_at) < now() - interval '$retention s' - interval '500 ms' FROM webhooks.events"
	),
	"all of it is more than $retention s old");
my $before_restart = sql($counts_query);
$node->restart;
my $log_offset = -s $node->logfile;

# Deliveries made after the restart are attempted; then, once every
# worker waits idle, each has made a turn of its loop, and the first one's
# turn is when it would have deleted, were retention on.
my $marker = sql(
	q{SELECT webhooks.emit('contact.replied', 'acme', '{"contactId": "marker", "channel": "email"}')}
);
sql(q{SELECT webhooks.emit('enrollment.created', 'acme',
                           '{"enrollmentId": "marker", "contactId": "c", "campaignId": "k"}')});
ok( $node->poll_query_until(
		'postgres', qq{
SELECT count(*) = 2 FROM webhooks.deliveries d JOIN webhooks.events e ON e.id = d.event_id
 WHERE e.data ->> 'contactId' = 'marker' AND d.attempts = 1
    OR e.data ->> 'enrollmentId' = 'marker' AND d.attempts = 1}),
	'after the restart, the worker has made its first attempts');
ok( $node->poll_query_until(
		'postgres', q{
SELECT count(*) = current_setting('konvox_webhooks.workers')::int
       AND bool_and(state = 'idle' AND wait_event_type = 'Extension')
  FROM pg_stat_activity WHERE backend_type = 'konvox_webhooks worker'}),
	'every worker has made a turn of its loop');
like(
	sql($counts_query),
	qr/^12 events, 11 deliveries \(5 pending\), 11 attempts$/,
	'retention 0: nothing was deleted, though most of it is past 3 s');
is($before_restart, '10 events, 9 deliveries (4 pending), 9 attempts',
	'(what there was before the restart)');

$log = kw_log_since($node, $log_offset);
my $marker_id = sql(
	"SELECT d.id FROM webhooks.deliveries d WHERE d.event_id = '$marker'");
like($log, qr/konvox_webhooks: delivery $marker_id attempt 1: delivered/,
	'debug1: the log has a line for a delivered attempt');
like(
	$log,
	qr/konvox_webhooks: delivery \d+ attempt 1: pending, [^\n]*connect/i,
	'and one, with the error, for a failed attempt');

# and on again: the worker, which has not looked since the restart, looks
# at once
ok( $node->poll_query_until(
		'postgres',
		"SELECT max(created_at) < now() - interval '$retention s' - interval '500 ms' FROM webhooks.events"
	),
	"the markers are more than $retention s old");
set_and_reload('konvox_webhooks.retention', "${retention}s");
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) = 0 FROM webhooks.deliveries WHERE status <> 'pending'"),
	'retention back on: the finished deliveries are deleted');
is(sql($counts_query),
	'5 events, 5 deliveries (5 pending), 5 attempts',
	'the pending deliveries and their events and attempts stay');
like(
	kw_log_since($node, $log_offset),
	qr/konvox_webhooks: deleted \d+ deliveries and \d+ events past retention/,
	'debug1: the log has a line per batch of retention');

$node->stop;
done_testing();
