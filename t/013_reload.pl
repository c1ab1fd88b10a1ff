# Settings that reload on SIGHUP: max_attempts, retry_base_delay,
# request_timeout and max_concurrency, each changed by ALTER SYSTEM and
# pg_reload_conf() and shown to govern the next attempts, without the
# workers being restarted.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../test";
use KwTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = kw_node(
	'reload', conf => q{
konvox_webhooks.max_attempts = 3
konvox_webhooks.retry_base_delay = '500ms'
konvox_webhooks.request_timeout = '5s'
konvox_webhooks.max_concurrency = 50
});
my $r = kw_receiver();
my $rc = kw_receiver('concurrency');

# Every konvox_webhooks process, launcher included, as "type:pid" lines.
my $procs_query =
  "SELECT string_agg(backend_type || ':' || pid, ',' ORDER BY backend_type, pid) FROM pg_stat_activity WHERE backend_type LIKE 'konvox_webhooks%'";
my $procs = $node->safe_psql('postgres', $procs_query);
like($procs, qr/konvox_webhooks worker:\d+/, "the processes: $procs");

for my $c (qw(fail slow))
{
	my $path = { fail => '/fail?status=500', slow => '/slow?delay_ms=2500' }->{$c};
	$node->safe_psql('postgres',
		"SELECT webhooks.create_endpoint('$c', '"
		  . receiver_url($r, $path)
		  . "', ARRAY['enrollment.created'])");
}
$node->safe_psql('postgres',
	"SELECT webhooks.create_endpoint('conc', '"
	  . receiver_url($rc, '/conc?delay_ms=300')
	  . "', ARRAY['enrollment.created'])");

# Emit one event (or $n) for a company; returns the id of the last.
sub emit
{
	my ($company, $n) = @_;
	$n //= 1;
	return $node->safe_psql('postgres',
		"SELECT max(webhooks.emit('enrollment.created', '$company', jsonb_build_object('enrollmentId', 'e' || i, 'contactId', 'c', 'campaignId', 'k'))::text) FROM generate_series(1, $n) i"
	);
}

# Change settings with ALTER SYSTEM and a reload, and wait until the
# postmaster has applied them (it signals the workers right after).
my $log_offset = 0;

sub reload
{
	my (%set) = @_;
	my $sql = '';
	$sql .= "ALTER SYSTEM SET konvox_webhooks.$_ = '$set{$_}';\n" for sort keys %set;
	$node->safe_psql('postgres', $sql . 'SELECT pg_reload_conf();');
	for my $name (sort keys %set)
	{
		$log_offset = $node->wait_for_log(
			qr/parameter "konvox_webhooks\.$name" changed to "\Q$set{$name}\E"/,
			$log_offset);
	}
	return;
}

sub wait_finished
{
	my ($id) = @_;
	$node->poll_query_until('postgres',
		"SELECT status <> 'pending' FROM webhooks.deliveries WHERE event_id = '$id'"
	) or die "delivery of $id did not finish";
	return;
}

# "status|attempts" of an event's delivery, and its attempts' errors.
sub delivery
{
	my ($id) = @_;
	return $node->safe_psql('postgres',
		"SELECT status, attempts FROM webhooks.deliveries WHERE event_id = '$id'");
}

# ms between the end of attempt 1 and the retry it scheduled
sub first_wait_ms
{
	my ($id) = @_;
	return $node->safe_psql(
		'postgres', qq{
SELECT round(extract(epoch FROM next_attempt_at
                     - (started_at + duration_ms * interval '1 ms')) * 1000)
  FROM webhooks.delivery_history WHERE event_id = '$id' AND attempt = 1});
}

sub requests_for
{
	my ($rcv, $id) = @_;
	return scalar grep { $_->{headers}{'webhook-id'} eq $id } receiver_log($rcv);
}

###
### Before: 3 attempts 500 ms apart, a 2.5 s answer is within the 5 s
### timeout, and requests run up to 50 at once.
###
receiver_stats($rc, 1);
my $fail0 = emit('fail');
my $slow0 = emit('slow');
emit('conc', 40);
wait_finished($_) for $fail0, $slow0;
kw_wait_drained($node, 'postgres', 'conc');
is(delivery($fail0), 'failed|3', 'before: max_attempts 3 gives 3 attempts');
is(requests_for($r, $fail0), 3, 'before: the receiver saw 3 requests');
my $w0 = first_wait_ms($fail0);
ok($w0 >= 400 && $w0 <= 600, "before: the first retry waited $w0 ms (500 ms +-20%)");
is( $node->safe_psql('postgres',
		"SELECT status, status_code, duration_ms >= 2500 FROM webhooks.delivery_history WHERE event_id = '$slow0'"
	),
	'delivered|200|t',
	'before: a 2.5 s answer is within request_timeout 5 s');
my $before = receiver_stats($rc);
cmp_ok($before->{max_in_flight}, '>', 4,
	"before: $before->{max_in_flight} requests in flight at once");

###
### max_attempts 3 -> 2
###
reload(max_attempts => 2);
my $fail1 = emit('fail');
wait_finished($fail1);
is(delivery($fail1), 'failed|2', 'max_attempts 2: failed after 2 attempts');
is(requests_for($r, $fail1), 2, 'max_attempts 2: the receiver saw 2 requests');
my $w1 = first_wait_ms($fail1);
ok($w1 >= 400 && $w1 <= 600, "max_attempts 2: the retry still waited $w1 ms");

###
### retry_base_delay 500ms -> 2s
###
reload(retry_base_delay => '2s');
my $fail2 = emit('fail');
wait_finished($fail2);
is(delivery($fail2), 'failed|2', 'retry_base_delay 2s: 2 attempts');
my $w2 = first_wait_ms($fail2);
ok($w2 >= 1600 && $w2 <= 2400,
	"retry_base_delay 2s: the retry waited $w2 ms (2000 ms +-20%)");
is( $node->safe_psql(
		'postgres', qq{
SELECT extract(epoch FROM a2.started_at - a1.started_at) >= 1.6
  FROM webhooks.delivery_history a1 JOIN webhooks.delivery_history a2 USING (event_id)
 WHERE a1.event_id = '$fail2' AND a1.attempt = 1 AND a2.attempt = 2}),
	't',
	'retry_base_delay 2s: attempt 2 started at least 1.6 s after attempt 1');

###
### request_timeout 5s -> 1s
###
reload(request_timeout => '1s');
my $slow1 = emit('slow');
$node->poll_query_until('postgres',
	"SELECT attempts >= 1 FROM webhooks.deliveries WHERE event_id = '$slow1'")
  or die "attempt did not happen";
my ($code, $error, $ms) = split /\|/,
  $node->safe_psql('postgres',
	"SELECT coalesce(status_code::text, 'NULL'), error, round(duration_ms) FROM webhooks.delivery_history WHERE event_id = '$slow1' AND attempt = 1"
  );
is("$code|$error", 'NULL|Timeout was reached',
	'request_timeout 1s: the 2.5 s answer is now a timeout');
ok($ms >= 900 && $ms <= 2000, "request_timeout 1s: cut off after $ms ms");

###
### max_concurrency 50 -> 4
###
reload(max_concurrency => 4);
receiver_stats($rc, 1);
emit('conc', 40);
kw_wait_drained($node, 'postgres', 'conc');
my $after = receiver_stats($rc);
cmp_ok($after->{max_in_flight}, '<=', 4,
	"max_concurrency 4: at most $after->{max_in_flight} requests in flight");
is($after->{requests}, 80, 'max_concurrency 4: all 80 requests arrived');

###
### the same processes throughout
###
is($node->safe_psql('postgres', $procs_query),
	$procs, 'no konvox_webhooks process was restarted');
unlike(kw_log_since($node, 0), qr/terminated by signal|exited with exit code/,
	'no process crashed or exited');
note(
	"reload: max_attempts 3->2 (3 then 2 attempts), retry_base_delay 500ms->2s (first retry after $w0 then $w2 ms), "
	  . "request_timeout 5s->1s (a 2.5 s answer delivered, then cut off after $ms ms), "
	  . "max_concurrency 50->4 ($before->{max_in_flight} then $after->{max_in_flight} in flight); same pids");

done_testing();
