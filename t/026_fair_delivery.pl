# One company's broken endpoint must not delay anyone else's webhooks.
#
# - A hanging endpoint with a backlog beside a healthy one: the healthy
#   one's events are all delivered before the first hanging request has
#   even timed out, and the hanging one never holds more than its cap.
# - The per-endpoint cap, from the endpoint's own max_concurrency and from
#   the setting, over both workers together, changed by a reload.
# - A worker whose requests fill an endpoint's cap with another's waits
#   for its answers instead of claiming over and over; so do the workers
#   while a failing endpoint's probe hangs.
# - max_concurrency over both workers: each worker takes its share.
# - A read of an endpoint's queue from its start never leaves a request in
#   flight after the cursor, to be claimed again.
# - The circuit breaker: after breaker_failures failed requests in a row
#   the endpoint gets one probe at a time, its other deliveries are
#   recorded as not sent; a successful probe closes the breaker and the
#   backlog drains; every delivery ends delivered or failed.  A failing
#   endpoint's backlog is recorded as not sent at a bounded pace.
# - Retry-After: nothing goes to the endpoint before it, and the retry of
#   the delivery that got it is no earlier.
# - A thousand endpoints due at once: one claim takes them all, and no
#   worker crashes (a claim's candidates, 360 kB, were once allocated where
#   its commit freed them).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../test";
use KwTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = kw_node(
	'fair', conf => q{
konvox_webhooks.request_timeout = '5s'
konvox_webhooks.retry_base_delay = '500ms'
konvox_webhooks.max_attempts = 6
konvox_webhooks.max_concurrency_per_endpoint = 8
konvox_webhooks.breaker_failures = 5
konvox_webhooks.breaker_probe_interval = '1s'
});
my $r = kw_receiver();

sub sql
{
	return $node->safe_psql('postgres', $_[0]);
}

sub endpoint
{
	my ($company, $path) = @_;
	return sql("SELECT id FROM webhooks.create_endpoint('$company', '"
		  . receiver_url($r, $path)
		  . "', ARRAY['enrollment.created'])");
}

# What a company's deliveries have come to: "delivered pending failed".
sub outcome
{
	my ($company) = @_;
	return sql(
		qq{
SELECT count(*) FILTER (WHERE d.status = 'delivered') || ' ' ||
       count(*) FILTER (WHERE d.status = 'pending') || ' ' ||
       count(*) FILTER (WHERE d.status = 'failed')
  FROM webhooks.deliveries d JOIN webhooks.events e ON e.id = d.event_id
 WHERE e.company_id = '$company'});
}

# Transactions the database commits while waiting for $condition (test
# $name).  A worker that claims over and over commits hundreds of
# thousands a second; the workers' paced looks, the batches of not-sent
# deliveries and this test's polls, a few hundred in 5 s: under $no_spin.
my $no_spin = 2500;

sub commits_until
{
	my ($condition, $name) = @_;
	my $commits =
	  "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()";
	my $before = sql($commits);
	ok($node->poll_query_until('postgres', $condition), $name);
	return sql($commits) - $before;
}

###
### A hanging endpoint with a backlog, beside a healthy one
###
my $hang = endpoint('hangco', '/hang?delay_ms=60000');
my $ok = endpoint('okco', '/ok');
kw_emit_many($node, 'postgres', 'hangco', 1000);
ok( $node->poll_query_until(
		'postgres',
		"SELECT in_flight = 8 FROM webhooks.endpoint_health WHERE endpoint_id = $hang"
	),
	'the hanging endpoint holds its cap of 8 requests');

# 20 events of the healthy company, each in a transaction of its own, in
# one session, well within the hanging requests' 5 s
sql(join(
		'',
		map {
			"SELECT webhooks.emit('enrollment.created', 'okco', '{\"enrollmentId\": \"e$_\", \"contactId\": \"c\", \"campaignId\": \"k\"}');\n"
		} 1 .. 20));
ok( $node->poll_query_until(
		'postgres', q{
SELECT count(*) = 20 FROM webhooks.deliveries d
  JOIN webhooks.events e ON e.id = d.event_id
 WHERE e.company_id = 'okco' AND d.status = 'delivered'}),
	'every event of the healthy company is delivered');
is( sql(
		"SELECT count(*) FROM webhooks.delivery_attempts a JOIN webhooks.deliveries d ON d.id = a.delivery_id WHERE d.endpoint_id = $hang"
	),
	'0',
	'... before the first request to the hanging endpoint has timed out');
is(receiver_path_stats($r, '/hang')->{max_in_flight},
	8, 'the hanging endpoint never had more than its cap in flight');
like(
	sql("SELECT busiest_endpoints::text FROM webhooks.worker_status()"),
	qr/^\[\{"in_flight": 8, "endpoint_id": $hang\}/,
	'worker_status() names it as the busiest endpoint');
sql("DELETE FROM webhooks.endpoints WHERE id = $hang");

###
### The cap over both workers: the endpoint's own, the setting's, a reload
###
my $capped = endpoint('capco', '/capped?delay_ms=300');
sql("UPDATE webhooks.endpoints SET max_concurrency = 3 WHERE id = $capped");
my $uncapped = endpoint('capco', '/uncapped?delay_ms=300');
kw_emit_many($node, 'postgres', 'capco', 40);
kw_wait_drained($node, 'postgres', 'capco');
is(receiver_path_stats($r, '/capped')->{max_in_flight},
	3, "an endpoint's own max_concurrency of 3 holds over both workers");
is(receiver_path_stats($r, '/uncapped')->{max_in_flight},
	8, 'another gets max_concurrency_per_endpoint, 8');

my ($ret, $out, $err) = $node->psql('postgres',
	"UPDATE webhooks.endpoints SET max_concurrency = 0 WHERE id = $capped");
like($err, qr/max_concurrency of an endpoint must be between 1 and 10000/,
	'a max_concurrency of 0 is refused');
is(sql("SELECT max_concurrency FROM webhooks.endpoints WHERE id = $capped"),
	'3', 'and nothing is stored');

my $offset = -s $node->logfile;
sql("ALTER SYSTEM SET konvox_webhooks.max_concurrency_per_endpoint = 4; SELECT pg_reload_conf()");
$node->wait_for_log(
	qr/parameter "konvox_webhooks.max_concurrency_per_endpoint" changed to "4"/,
	$offset);
# for an endpoint that the workers had read before, as soon as no
# endpoint was written since
receiver_path_stats($r, '/uncapped', 1);
kw_emit_many($node, 'postgres', 'capco', 40);
kw_wait_drained($node, 'postgres', 'capco');
is(receiver_path_stats($r, '/uncapped')->{max_in_flight},
	4, 'after a reload, the new max_concurrency_per_endpoint of 4 holds for an endpoint read before it');
my $reloaded = endpoint('reloadco', '/reloaded?delay_ms=300');
kw_emit_many($node, 'postgres', 'reloadco', 40);
kw_wait_drained($node, 'postgres', 'reloadco');
is(receiver_path_stats($r, '/reloaded')->{max_in_flight},
	4, '... and for a new one');

###
### A full cap with requests of this worker's own in it: the worker waits
### for their answers instead of claiming over and over
###
# A cap of 3 over two workers: one takes its share of 2, the other 1, and
# has room under its share but none under the cap until a request ends.
my $full = endpoint('fullco', '/full?delay_ms=60000');
sql("UPDATE webhooks.endpoints SET max_concurrency = 3 WHERE id = $full");
kw_emit_many($node, 'postgres', 'fullco', 20);
ok( $node->poll_query_until(
		'postgres',
		"SELECT in_flight = 3 FROM webhooks.endpoint_health WHERE endpoint_id = $full"
	),
	'an endpoint with a cap of 3 that never answers holds 3 requests');
my $during = commits_until(
	"SELECT count(*) >= 3 FROM webhooks.delivery_attempts a JOIN webhooks.deliveries d ON d.id = a.delivery_id WHERE d.endpoint_id = $full",
	'... until they time out');
cmp_ok($during, '<', $no_spin,
	"meanwhile (5 s) the database committed $during transactions: no worker claimed over and over"
);
sql("DELETE FROM webhooks.endpoints WHERE id = $full");
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) = 0 FROM webhooks._endpoint_states() WHERE endpoint_id = $full AND in_flight > 0"
	),
	'once it is deleted, its last requests time out');

###
### max_concurrency over both workers: each takes its share, so that the
### first to claim does not leave the other idle
###
sql("ALTER SYSTEM SET konvox_webhooks.max_concurrency = 8; SELECT pg_reload_conf()");
$node->poll_query_until('postgres',
	"SELECT current_setting('konvox_webhooks.max_concurrency') = '8'")
  or die 'reload did not happen';
# 4 endpoints with room for 2 requests of each worker (a cap of 4 each):
# 16 requests would fit under their caps, 8 under max_concurrency
endpoint('shareco', "/share$_?delay_ms=3000") for 1 .. 4;
kw_emit_many($node, 'postgres', 'shareco', 3);
$node->poll_query_until('postgres',
	"SELECT sum(in_flight) = 8 FROM webhooks._worker_slots()")
  or die 'the workers did not take the room of max_concurrency';
is( sql("SELECT array_agg(in_flight ORDER BY worker) FROM webhooks._worker_slots()"),
	'{4,4}',
	'max_concurrency 8 with two workers: each has its share of 4 in flight');
kw_wait_drained($node, 'postgres', 'shareco');
sql("ALTER SYSTEM RESET konvox_webhooks.max_concurrency; SELECT pg_reload_conf()");

###
### A read of an endpoint's queue from its start that stops at a request
### in flight, with another after it, leaves the cursor where no later read
### takes that other one again
###
{
	# a cap of 3: 2 requests in flight leave room for 1
	my $dup = endpoint('dupco', '/dup?delay_ms=4000');
	sql("UPDATE webhooks.endpoints SET max_concurrency = 3 WHERE id = $dup");
	my $emit_dup = q{SELECT webhooks.emit('enrollment.created', 'dupco', '{"enrollmentId": "%s", "contactId": "c", "campaignId": "k"}')};
	my $late = $node->background_psql('postgres', on_error_stop => 1);
	$late->query_safe('BEGIN');
	my @events = (
		$late->query_safe(sprintf($emit_dup, 'late1')),
		$late->query_safe(sprintf($emit_dup, 'late2')));
	push @events, sql(sprintf($emit_dup, "flight$_")) for 1 .. 2;
	receiver_wait($r, sub { (grep { $_->{path} eq '/dup' } @_) == 2 })
	  or die 'the two requests did not arrive';
	# the late transaction's first delivery is answered at once; the read
	# from the start that takes it reads the second, then the first request
	# in flight, and stops
	receiver_control($r, '/dup', 'delay_ms=0');
	$late->query_safe('COMMIT');
	$late->quit;
	kw_wait_drained($node, 'postgres', 'dupco');
	my %sent;
	$sent{ $_->{headers}{'webhook-id'} // '' }++
	  for grep { $_->{path} eq '/dup' } receiver_log($r);
	is(join(' ', map { $sent{$_} // 0 } @events), '1 1 1 1',
		'each of four events sent once: none of those in flight again');
	sql("DELETE FROM webhooks.endpoints WHERE id = $dup");
}

###
### The circuit breaker
###
my $down = endpoint('downco', '/down?status=500');
kw_emit_many($node, 'postgres', 'downco', 30);
ok( $node->poll_query_until(
		'postgres', qq{
SELECT count(*) > 0 FROM webhooks.delivery_attempts a
  JOIN webhooks.deliveries d ON d.id = a.delivery_id
 WHERE d.endpoint_id = $down AND a.error LIKE 'not sent: endpoint failing since %'}),
	'after 5 failures in a row, deliveries are recorded as not sent');
is( sql(
		qq{
SELECT state <> 'healthy', consecutive_failures >= 5, last_error
  FROM webhooks.endpoint_health WHERE endpoint_id = $down}),
	't|t|HTTP 500',
	'endpoint_health: failing, with its failures and last error');
is( sql(
		qq{
SELECT count(*) FILTER (WHERE a.status_code IS NOT NULL) = 0,
       bool_and(a.error LIKE 'not sent: endpoint failing since % last error: HTTP 500')
  FROM webhooks.delivery_attempts a JOIN webhooks.deliveries d ON d.id = a.delivery_id
 WHERE d.endpoint_id = $down AND a.error LIKE 'not sent:%'}),
	't|t',
	'a not-sent attempt has no status code and says why, with the last error');

# while failing, the receiver gets one probe at a time, a probe interval
# apart
my $opened = sql(
	qq{
SELECT extract(epoch FROM min(a.started_at)) FROM webhooks.delivery_attempts a
  JOIN webhooks.deliveries d ON d.id = a.delivery_id
 WHERE d.endpoint_id = $down AND a.error LIKE 'not sent:%'});
# (requests claimed just before it opened may still land in its first
# half second)
my $since = sub {
	return map { $_->{t} }
	  grep { $_->{path} eq '/down' && $_->{t} > $opened + 0.5 } @_;
};
my $log = receiver_wait($r, sub { $since->(@_) >= 3 });
my @probes = $since->(@{ $log // [] });
my @gaps = map { sprintf('%.2f', $probes[$_] - $probes[ $_ - 1 ]) } 1 .. $#probes;
ok(@probes >= 3 && !grep({ $_ < 0.9 } @gaps),
	'while failing, the endpoint gets one probe at a time, breaker_probe_interval apart (gaps: '
	  . join(', ', @gaps) . ' s)');

# it recovers: a probe succeeds, the breaker closes, what is left drains
receiver_control($r, '/down', 'status=200');
ok( $node->poll_query_until(
		'postgres', q{
SELECT count(*) FILTER (WHERE d.status = 'pending') = 0
  FROM webhooks.deliveries d JOIN webhooks.events e ON e.id = d.event_id
 WHERE e.company_id = 'downco'}),
	'after the probe succeeds, nothing is left pending');
is(sql("SELECT state FROM webhooks.endpoint_health WHERE endpoint_id = $down"),
	'healthy', 'the endpoint is healthy again');
my ($delivered, $pending, $failed) = split / /, outcome('downco');
is($delivered + $failed, 30, "every delivery ended delivered ($delivered) or failed ($failed)");
like(kw_log_since($node, 0), qr/endpoint $down is failing after 5 failed requests in a row, the last: HTTP 500/,
	'the log says when it started failing');
like(kw_log_since($node, 0), qr/endpoint $down answers again/,
	'and when it recovered');
if ($failed > 0)
{
	is(sql("SELECT webhooks.redeliver_failed($down, now() - interval '1 hour')"),
		$failed, 'redeliver_failed() sends the failed ones again');
	kw_wait_drained($node, 'postgres', 'downco');
	is(sql(q{SELECT count(*) FROM webhooks.deliveries WHERE status = 'delivered' AND redelivery_of IS NOT NULL}),
		$failed, 'and they are delivered');
}

###
### A failing endpoint's backlog is recorded as not sent a batch at a time,
### 25 every 25 ms, not all at once: forty batches for a thousand.
###

my $paced = endpoint('pacedco', '/paced?status=500');
kw_emit_many($node, 'postgres', 'pacedco', 1000);
ok( $node->poll_query_until(
		'postgres', qq{
SELECT count(*) >= 900 FROM webhooks.delivery_attempts a
  JOIN webhooks.deliveries d ON d.id = a.delivery_id
 WHERE d.endpoint_id = $paced AND a.attempt = 1 AND a.error LIKE 'not sent:%'}),
	'the backlog of a failing endpoint is recorded as not sent');
my $span = sql(
	qq{
SELECT round(extract(epoch FROM max(a.started_at) - min(a.started_at))::numeric, 2)
  FROM webhooks.delivery_attempts a JOIN webhooks.deliveries d ON d.id = a.delivery_id
 WHERE d.endpoint_id = $paced AND a.attempt = 1 AND a.error LIKE 'not sent:%'});
cmp_ok($span, '>=', 0.5,
	"and paced: its first attempts took $span s to record (all at once, a few hundredths of a second)");
sql("UPDATE webhooks.endpoints SET active = false WHERE id = $paced");
kw_wait_drained($node, 'postgres', 'pacedco');

###
### While a failing endpoint's probe hangs, its backlog is still recorded
### a batch at a time: no worker claims over and over meanwhile
###
my $probing = endpoint('probingco', '/probing?status=500');
kw_emit_many($node, 'postgres', 'probingco', 3000);
ok( $node->poll_query_until(
		'postgres',
		"SELECT state = 'failing' FROM webhooks.endpoint_health WHERE endpoint_id = $probing"
	),
	'an endpoint with a backlog of 3,000 fails');
receiver_control($r, '/probing', 'delay_ms=60000');
ok( $node->poll_query_until(
		'postgres',
		"SELECT state = 'probing' FROM webhooks.endpoint_health WHERE endpoint_id = $probing"
	),
	'... and gets a probe, which hangs');
my $commits_probing = commits_until(
	"SELECT state = 'failing' FROM webhooks.endpoint_health WHERE endpoint_id = $probing",
	'... until it times out');
cmp_ok($commits_probing, '<', $no_spin,
	"meanwhile (5 s) the database committed $commits_probing transactions: no worker claimed over and over"
);
sql("UPDATE webhooks.endpoints SET active = false WHERE id = $probing");
kw_wait_drained($node, 'postgres', 'probingco');

###
### Retry-After
###
my $ra = endpoint('raco', '/ra?status=429&retry_after=3');
# one request at a time, so that none is on its way when a hold begins
sql("UPDATE webhooks.endpoints SET max_concurrency = 1 WHERE id = $ra");
kw_emit_many($node, 'postgres', 'raco', 3);
ok( $node->poll_query_until(
		'postgres', qq{
SELECT count(DISTINCT a.delivery_id) = 3 FROM webhooks.delivery_attempts a
  JOIN webhooks.deliveries d ON d.id = a.delivery_id WHERE d.endpoint_id = $ra}),
	'every delivery was answered 429 with Retry-After: 3');
my $hold = sql("SELECT retry_after_until FROM webhooks.endpoint_health WHERE endpoint_id = $ra");
isnt($hold, '', "endpoint_health shows the hold ($hold)");
receiver_control($r, '/ra', 'status=200');
kw_emit_many($node, 'postgres', 'raco', 1);
kw_wait_drained($node, 'postgres', 'raco');
is(outcome('raco'), '4 0 0', 'then all four were delivered');
is( sql(
		qq{
SELECT bool_and(a.next_attempt_at >= a.started_at + interval '3 seconds')
  FROM webhooks.delivery_attempts a JOIN webhooks.deliveries d ON d.id = a.delivery_id
 WHERE d.endpoint_id = $ra AND a.status_code = 429}),
	't', 'the retry after a 429 is no earlier than its Retry-After');
is( sql(
		qq{
SELECT count(*)
  FROM webhooks.delivery_attempts a JOIN webhooks.deliveries d ON d.id = a.delivery_id,
       webhooks.delivery_attempts b JOIN webhooks.deliveries e ON e.id = b.delivery_id
 WHERE d.endpoint_id = $ra AND e.endpoint_id = $ra AND a.status_code = 429
   AND b.status_code IS NOT NULL
   AND b.started_at > a.started_at + a.duration_ms * interval '1 ms'
   AND b.started_at < a.started_at + a.duration_ms * interval '1 ms' + interval '3 seconds'}),
	'0',
	'nothing, not even a new event, went to the endpoint in the 3 s after a Retry-After');

###
### A thousand endpoints due at once
###
my $log_many = -s $node->logfile;
sql(q{SELECT count(webhooks.create_endpoint('many' || i, '}
	  . receiver_url($r, '/many/')
	  . q{' || i, ARRAY['enrollment.created'])) FROM generate_series(1, 1000) i});
sql(q{SELECT count(webhooks.emit('enrollment.created', 'many' || i, '{"enrollmentId": "e", "contactId": "c", "campaignId": "k"}'))
        FROM generate_series(1, 1000) i});
ok( $node->poll_query_until(
		'postgres', q{
SELECT count(*) = 1000 FROM webhooks.deliveries d JOIN webhooks.events e ON e.id = d.event_id
 WHERE e.company_id LIKE 'many%' AND d.status = 'delivered'}),
	'1,000 endpoints due at once: every delivery is delivered');
unlike(kw_log_since($node, $log_many), qr/terminated by signal/,
	'... and no worker crashed');

done_testing();
