# Delivery never stalls, loops or waits without bound:
#
# - the first event after the served database and the extension are
#   created goes out at once, not at the launcher's next look;
# - when a worker cannot start (no background worker slot), the others
#   send every delivery, and worker_status() says that fewer run than are
#   configured;
# - one bad row (an event whose created_at is infinity) fails alone, with
#   a reason, and the others go out;
# - a delivery whose event is missing is failed once old enough, and left
#   pending while young (a restore in progress); so is one whose endpoint
#   is missing but was not deleted, though its id was issued (a restore
#   that set the endpoints' id sequence before loading them);
# - rows committed late with an early next_attempt_at do not wait behind a
#   backlog to the same endpoint, nor, committed out of order, behind a
#   request in flight to it;
# - pg_terminate_backend ends a worker that waits on a lock.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../test";
use KwTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $r = kw_receiver();

###
### A database created after the server started, with one worker slot for
### two workers
###
my $a = kw_node(
	'late_database',
	no_extension => 1,
	conf => q{
konvox_webhooks.database_name = 'later'
max_worker_processes = 2
max_logical_replication_workers = 0
max_parallel_workers = 0
});
$a->wait_for_log(qr/konvox_webhooks waiting for database "later" to exist/);
$a->safe_psql('postgres', 'CREATE DATABASE later');
$a->safe_psql('later', 'CREATE EXTENSION konvox_webhooks');
$a->safe_psql('later',
	"SELECT webhooks.create_endpoint('acme', '"
	  . receiver_url($r, '/first')
	  . "', ARRAY['enrollment.created'])");
my $first_event = $a->safe_psql('later',
	q{SELECT webhooks.emit('enrollment.created', 'acme', '{"enrollmentId": "e", "contactId": "c", "campaignId": "k"}')});
ok( $a->poll_query_until(
		'later',
		"SELECT count(*) = 1 FROM webhooks.delivery_attempts a JOIN webhooks.deliveries d ON d.id = a.delivery_id WHERE d.event_id = '$first_event'"
	),
	'the first event was sent');
my $wait = $a->safe_psql('later',
	qq{SELECT extract(epoch FROM a.started_at - e.created_at)
	     FROM webhooks.delivery_attempts a JOIN webhooks.deliveries d ON d.id = a.delivery_id
	     JOIN webhooks.events e ON e.id = d.event_id WHERE e.id = '$first_event'});
# Unwoken, the launcher would find the database at its next look, 5 s
# after the line waited for, so the event (created over a second later,
# after CREATE DATABASE and CREATE EXTENSION) would wait 3 s or more.
cmp_ok($wait, '<', 2,
	"the first event after CREATE DATABASE and CREATE EXTENSION went out at once ($wait s)");

$a->wait_for_log(qr/could not start delivery worker 2: no background worker slot is free/);
is( $a->safe_psql('later',
		'SELECT running, workers, configured FROM webhooks.worker_status()'),
	'f|1|2',
	'worker_status(): not all running, 1 of the 2 configured');
kw_emit_many($a, 'later', 'acme', 20);
kw_wait_drained($a, 'later', 'acme');
is( $a->safe_psql('later',
		"SELECT count(*) FILTER (WHERE status = 'delivered') || ' of ' || count(*) FROM webhooks.deliveries"
	),
	'21 of 21',
	'the one worker sent every delivery');

# a restore in progress: the events and deliveries are loaded before the
# endpoints are, and the endpoints' id sequence may be set before them too
# (pg_restore -j).  The deliveries wait for their endpoint, and go out once
# it is loaded: an id issued is not an endpoint deleted.
$a->safe_psql('later',
	'DROP EXTENSION konvox_webhooks; CREATE EXTENSION konvox_webhooks');
my $restoring = $a->safe_psql(
	'later', q{
SELECT setval('webhooks.endpoints_id_seq', 7);
INSERT INTO webhooks.events (event, company_id, data)
VALUES ('enrollment.created', 'acme',
        '{"enrollmentId": "r", "contactId": "c", "campaignId": "k"}')
RETURNING id}) =~ s/^7\n//r;
my $log_offset = -s $a->logfile;
my $waiting = $a->safe_psql('later',
	"INSERT INTO webhooks.deliveries (event_id, endpoint_id) VALUES ('$restoring', 7) RETURNING id"
);
$a->wait_for_log(
	qr/holds the deliveries to 1 missing endpoint until it appears, as in a restore not finished/,
	$log_offset);
is( $a->safe_psql('later',
		"SELECT status || ' ' || attempts FROM webhooks.deliveries WHERE id = $waiting"
	),
	'pending 0',
	'a delivery whose endpoint a restore has not loaded, its id sequence set already, waits');
$a->safe_psql('later',
	"INSERT INTO webhooks.endpoints (id, company_id, url, events) OVERRIDING SYSTEM VALUE VALUES (7, 'acme', '"
	  . receiver_url($r, '/restored')
	  . "', ARRAY['enrollment.created'])");
ok( $a->poll_query_until(
		'later',
		"SELECT status = 'delivered' FROM webhooks.deliveries WHERE id = $waiting"
	),
	'and is delivered once its endpoint is loaded');
is(scalar(grep { $_->{path} eq '/restored' } receiver_log($r)),
	1, 'the receiver got it once');
$a->stop;

###
### One server for the rest
###
my $node = kw_node('hardening');

sub sql
{
	return $node->safe_psql('postgres', $_[0]);
}
my $ep = sql("SELECT id FROM webhooks.create_endpoint('acme', '"
	  . receiver_url($r, '/hook')
	  . "', ARRAY['enrollment.created'])");

# one bad row among good ones
my $bad = sql(qq{
WITH e AS (
    INSERT INTO webhooks.events (event, company_id, data, created_at)
    VALUES ('enrollment.created', 'acme',
            '{"enrollmentId": "bad", "contactId": "c", "campaignId": "k"}', 'infinity')
    RETURNING id)
INSERT INTO webhooks.deliveries (event_id, endpoint_id) SELECT id, $ep FROM e
RETURNING id});
kw_emit_many($node, 'postgres', 'acme', 5);
kw_wait_drained($node, 'postgres', 'acme');
is(sql("SELECT status || ': ' || last_error FROM webhooks.deliveries WHERE id = $bad"),
	"failed: the event's created_at is not a finite time",
	'a delivery whose request cannot be built fails alone, with the reason');
is( sql(
		"SELECT count(*) FROM webhooks.deliveries WHERE id <> $bad AND status = 'delivered'"),
	'5',
	'and the others were delivered');

# deliveries whose event is missing: one older than a day, one new
my ($old_orphan, $young_orphan) = split /\n/, sql(qq{
INSERT INTO webhooks.deliveries (event_id, endpoint_id, created_at)
VALUES (gen_random_uuid(), $ep, now() - interval '2 days'),
       (gen_random_uuid(), $ep, now())
RETURNING id});
ok( $node->poll_query_until(
		'postgres',
		"SELECT status = 'failed' AND last_error = 'event missing' FROM webhooks.deliveries WHERE id = $old_orphan"
	),
	'a delivery whose event has been missing for over a day is failed');
is(sql("SELECT status || ' ' || attempts FROM webhooks.deliveries WHERE id = $young_orphan"),
	'pending 0', 'a young one is left pending, as for a restore in progress');
sql("DELETE FROM webhooks.deliveries WHERE id = $young_orphan");

# a late commit beside a backlog: a transaction emits first and commits
# after 3,000 later events have started to drain, slowly (4 at a time, 20 ms
# each); its event goes out while most of the backlog still waits
my $slow = sql("SELECT id FROM webhooks.create_endpoint('slowco', '"
	  . receiver_url($r, '/slow?delay_ms=20')
	  . "', ARRAY['enrollment.created'])");
sql("UPDATE webhooks.endpoints SET max_concurrency = 4 WHERE id = $slow");
my $late = $node->background_psql('postgres', on_error_stop => 1);
$late->query_safe('BEGIN');
my $late_event = $late->query_safe(
	q{SELECT webhooks.emit('enrollment.created', 'slowco', '{"enrollmentId": "late", "contactId": "c", "campaignId": "k"}')});
kw_emit_many($node, 'postgres', 'slowco', 3000);
$node->poll_query_until('postgres',
	"SELECT count(*) >= 200 FROM webhooks.deliveries WHERE endpoint_id = $slow AND status = 'delivered'"
) or die 'the backlog did not start draining';
$late->query_safe('COMMIT');
ok( $node->poll_query_until(
		'postgres',
		"SELECT status = 'delivered' FROM webhooks.deliveries WHERE event_id = '$late_event'"
	),
	'the event committed late was delivered');
cmp_ok(
	sql("SELECT count(*) FROM webhooks.deliveries WHERE endpoint_id = $slow AND status = 'pending'"),
	'>=', 1000, '... while at least 1,000 of the backlog still waited');
$late->quit;
sql("DELETE FROM webhooks.endpoints WHERE id = $slow");

# a row committed out of order while another of its endpoint is in
# flight: a transaction emits first and commits second, and its event goes
# out at its commit, before an event committed after it (not at the next
# read of the endpoint's queue from its start, up to a second later)
my $order = sql("SELECT id FROM webhooks.create_endpoint('orderco', '"
	  . receiver_url($r, '/order?delay_ms=3000')
	  . "', ARRAY['enrollment.created'])");
my $emit_order = q{SELECT webhooks.emit('enrollment.created', 'orderco', '{"enrollmentId": "%s", "contactId": "c", "campaignId": "k"}')};
$late = $node->background_psql('postgres', on_error_stop => 1);
$late->query_safe('BEGIN');
my $first = $late->query_safe(sprintf($emit_order, 'first'));
my $second = sql(sprintf($emit_order, 'second'));
receiver_wait($r, sub { grep { $_->{path} eq '/order' } @_ })
  or die 'the second event was not sent';
$late->query_safe('COMMIT');
my $third = sql(sprintf($emit_order, 'third'));
$node->poll_query_until('postgres',
	"SELECT count(*) = 3 FROM webhooks.deliveries WHERE endpoint_id = $order AND status = 'delivered'"
) or die 'the three events were not delivered';
is( sql(
		"SELECT string_agg(d.event_id::text, ' ' ORDER BY a.started_at) FROM webhooks.delivery_attempts a JOIN webhooks.deliveries d ON d.id = a.delivery_id WHERE d.endpoint_id = $order"
	),
	"$second $first $third",
	'an event committed out of order goes out at its commit, before one committed after it');
$late->quit;
sql("DELETE FROM webhooks.endpoints WHERE id = $order");

# pg_terminate_backend ends a worker that waits on a lock
my $locker = $node->background_psql('postgres', on_error_stop => 1);
$locker->query_safe('BEGIN');
$locker->query_safe('LOCK TABLE webhooks.delivery_attempts IN ACCESS EXCLUSIVE MODE');
my $locked_event = sql(
	q{SELECT webhooks.emit('enrollment.created', 'acme', '{"enrollmentId": "locked", "contactId": "c", "campaignId": "k"}')});
ok( $node->poll_query_until(
		'postgres', q{
SELECT count(*) > 0 FROM pg_stat_activity
 WHERE backend_type = 'konvox_webhooks worker' AND wait_event_type = 'Lock'}),
	'a worker waits on the lock to record its outcome');
my $blocked = sql(q{
SELECT pid FROM pg_stat_activity
 WHERE backend_type = 'konvox_webhooks worker' AND wait_event_type = 'Lock' LIMIT 1});
my $offset = -s $node->logfile;
sql("SELECT pg_terminate_backend($blocked)");
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $blocked"),
	'pg_terminate_backend ended it');
like(kw_log_since($node, $offset), qr/terminating background worker .* due to administrator command/,
	'... by the termination, while the lock was still held');
unlike(kw_log_since($node, $offset), qr/lock timeout/, 'not by a lock timeout');
$locker->query_safe('ROLLBACK');
$locker->quit;
ok( $node->poll_query_until(
		'postgres',
		"SELECT status = 'delivered' FROM webhooks.deliveries WHERE event_id = '$locked_event'"
	),
	'once the lock is gone, the delivery is recorded (sent again by a restarted worker)');

done_testing();
