# Monitoring a live node: webhooks.worker_status() (running, workers, pids,
# requests in flight, deliveries due now, the next scheduled retry) and what
# the workers show in pg_stat_activity, while idle, while slow requests are
# in flight, and when the workers do not run at all.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../test";
use KwTest;
use PostgreSQL::Test::Utils;
use Test::More;

# a failed attempt is retried 30 s later (+-10%), well after this test ends
my $node = kw_node('monitoring',
	conf => "konvox_webhooks.retry_base_delay = '30s'\n");
my $r = kw_receiver();

sub sql { return $node->safe_psql('postgres', $_[0]); }

my $nworkers = sql("SELECT current_setting('konvox_webhooks.workers')");
like($nworkers, qr/^\d+$/, "konvox_webhooks.workers = $nworkers");
my $activity_query = q{
SELECT string_agg(state || ' ' || coalesce(query, ''), ', ' ORDER BY pid)
  FROM pg_stat_activity WHERE backend_type = 'konvox_webhooks worker'};

#
# Idle
#
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) = $nworkers FROM pg_stat_activity WHERE backend_type = 'konvox_webhooks worker' AND state = 'idle'"
	),
	'the workers are in pg_stat_activity, idle');
my @pids = kw_worker_pids($node);
is(scalar @pids, $nworkers, "$nworkers worker pids");
is( sql(
		q{SELECT running, workers, in_flight, due_now, next_retry_at IS NULL,
       array_to_string(ARRAY(SELECT unnest(pids) ORDER BY 1), ',')
  FROM webhooks.worker_status()}),
	join('|', 't', $nworkers, 0, 0, 't', join(',', sort { $a <=> $b } @pids)),
	'worker_status(): running, every worker with its pid, nothing in flight or due');
is( sql(
		q{SELECT count(*) || ' ' || (array_agg(pid ORDER BY worker) = (SELECT pids FROM webhooks.worker_status()))
  FROM webhooks._worker_slots()}),
	"$nworkers true",
	'one slot per worker, with the pid worker_status() shows');

#
# Slow requests in flight
#
my $slow = sql(
	"SELECT id FROM webhooks.create_endpoint('slow', '"
	  . receiver_url($r, '/slow?delay_ms=3000')
	  . "', ARRAY['contact.replied'])");
# a cap of 6 gives each of the two workers a share of 3
sql("UPDATE webhooks.endpoints SET max_concurrency = 6 WHERE id = $slow");
sql(q{SELECT webhooks.emit('contact.replied', 'slow',
                           jsonb_build_object('contactId', 'c' || i, 'channel', 'email'))
        FROM generate_series(1, 6) i});
ok( $node->poll_query_until(
		'postgres',
		"SELECT in_flight = 6 AND due_now = 6 FROM webhooks.worker_status()"),
	'worker_status(): 6 requests in flight, and due');
# handed to libcurl is not yet received: look until the receiver has them
# all, within the 3 s they take
my $stats;
for (1 .. 100)
{
	$stats = receiver_stats($r);
	last if $stats->{in_flight} == 6;
	select(undef, undef, undef, 0.02);
}
is($stats->{in_flight}, 6, 'the receiver is handling 6 requests');
is( sql($activity_query),
	join(', ', ('active delivering webhooks') x $nworkers),
	'pg_stat_activity: every worker is active, "delivering webhooks"');
is( sql(
		"SELECT count(*) FROM webhooks.deliveries WHERE status = 'pending' AND endpoint_id = $slow"
	),
	'6',
	'the deliveries in flight are still pending');

ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) = 6 FROM webhooks.deliveries WHERE status = 'delivered' AND endpoint_id = $slow"
	),
	'the slow requests are answered');
ok( $node->poll_query_until(
		'postgres', "SELECT in_flight = 0 FROM webhooks.worker_status()"),
	'worker_status(): nothing in flight afterwards');
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) = $nworkers FROM pg_stat_activity WHERE backend_type = 'konvox_webhooks worker' AND state = 'idle'"
	),
	'pg_stat_activity: the workers are idle again');
is(sql('SELECT due_now FROM webhooks.worker_status()'),
	'0', 'nothing is due');

#
# A failing endpoint: its retry is scheduled
#
my $fail = sql(
	"SELECT id FROM webhooks.create_endpoint('fail', '"
	  . receiver_url($r, '/fail?status=503')
	  . "', ARRAY['contact.replied'])");
sql(q{SELECT webhooks.emit('contact.replied', 'fail', '{"contactId": "f", "channel": "email"}')});
ok( $node->poll_query_until(
		'postgres',
		"SELECT attempts = 1 FROM webhooks.deliveries WHERE endpoint_id = $fail"),
	'the failing endpoint has had one attempt');
is( sql(
		qq{
SELECT s.next_retry_at = d.next_attempt_at,
       s.next_retry_at = a.next_attempt_at,
       s.next_retry_at BETWEEN a.started_at + interval '27 s'
                           AND a.started_at + a.duration_ms * interval '1 ms' + interval '33 s',
       s.due_now
  FROM webhooks.worker_status() s, webhooks.deliveries d
  JOIN webhooks.delivery_attempts a ON a.delivery_id = d.id
 WHERE d.endpoint_id = $fail}),
	't|t|t|0',
	'worker_status(): next_retry_at is the retry scheduled after the failure, 30 s +-10% on; nothing due now'
);
# made due now (as if its time had come), it goes out at once
sql(
	"UPDATE webhooks.deliveries SET next_attempt_at = now() WHERE endpoint_id = $fail"
);
ok( $node->poll_query_until(
		'postgres',
		"SELECT attempts = 2 FROM webhooks.deliveries WHERE endpoint_id = $fail"),
	'the retry, made due, is attempted');
is( sql(
		"SELECT next_retry_at = (SELECT next_attempt_at FROM webhooks.deliveries WHERE endpoint_id = $fail), due_now FROM webhooks.worker_status()"
	),
	't|0',
	'worker_status(): the next retry is the one scheduled after the second failure');

#
# Workers that do not run: their database does not exist
#
$node->append_conf('postgresql.conf',
	"konvox_webhooks.database_name = 'elsewhere'\n");
my $offset = -s $node->logfile;
$node->restart;
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'konvox_webhooks launcher'"
	),
	'after a restart with a database that does not exist, the launcher runs');
# what follows is read once the launcher has looked for the database
$node->wait_for_log(
	qr/konvox_webhooks waiting for database "elsewhere" to exist/, $offset);
is( sql(
		'SELECT running, workers, pids, in_flight, due_now, next_retry_at IS NOT NULL FROM webhooks.worker_status()'
	),
	'f|0|{}|0|0|t',
	'worker_status(): not running, no workers, no pids; the queue is still read');
is( sql(
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'konvox_webhooks worker'"
	),
	'0',
	'pg_stat_activity shows no worker');

$node->stop;
done_testing();
