# Receiver faults at volume: a receiver that is down (connection refused)
# and then comes up, one that resets every connection, one that answers 500,
# one that hangs past request_timeout -- each for a while and then recovers,
# and each for good -- a receiver that answers with a 10 MB body, and one
# that answers slowly to thousands of requests.  Every delivery ends
# 'delivered' or 'failed', none is lost, what the receiver saw matches the
# attempts recorded, the worker's memory stays flat and the number of
# requests in flight never exceeds max_concurrency.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../test";
use KwTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $max_attempts = 6;
my $max_concurrency = 50;
my $node = kw_node(
	'receiver_faults', conf => qq{
konvox_webhooks.retry_base_delay = '200ms'
konvox_webhooks.request_timeout = '1s'
konvox_webhooks.max_attempts = $max_attempts
konvox_webhooks.max_concurrency = $max_concurrency
# each attempt meets the fault itself: the circuit breaker, which would
# record attempts as not sent instead, is tested in t/026_fair_delivery.pl
konvox_webhooks.breaker_failures = 0
});
my $r = kw_receiver();

# Register one endpoint of a company for enrollment.created.
sub endpoint
{
	my ($company, $url) = @_;
	$node->safe_psql('postgres',
		"SELECT webhooks.create_endpoint('$company', '$url', ARRAY['enrollment.created'])"
	);
	return;
}

# The ids of a company's events.
sub event_ids
{
	my ($company) = @_;
	return split /\n/,
	  $node->safe_psql('postgres',
		"SELECT id FROM webhooks.events WHERE company_id = '$company' ORDER BY id"
	  );
}

# "total|delivered|failed|pending" deliveries of a company.
sub outcome
{
	my ($company) = @_;
	return $node->safe_psql(
		'postgres', qq{
SELECT count(*), count(*) FILTER (WHERE d.status = 'delivered'),
       count(*) FILTER (WHERE d.status = 'failed'),
       count(*) FILTER (WHERE d.status = 'pending')
  FROM webhooks.deliveries d JOIN webhooks.events ev ON ev.id = d.event_id
 WHERE ev.company_id = '$company'});
}

# Wait until every delivery of the companies has made at least one attempt.
sub wait_first_attempts
{
	my (@companies) = @_;
	my $list = join(', ', map { "'$_'" } @companies);
	$node->poll_query_until(
		'postgres', qq{
SELECT bool_and(d.attempts >= 1)
  FROM webhooks.deliveries d JOIN webhooks.events ev ON ev.id = d.event_id
 WHERE ev.company_id IN ($list)})
	  or die "first attempts of @companies did not happen";
	return;
}

# attempts recorded per event id of a company, as a hash
sub attempts_by_event
{
	my ($company) = @_;
	my %h;
	for my $row (
		split /\n/,
		$node->safe_psql(
			'postgres', qq{
SELECT d.event_id, d.attempts
  FROM webhooks.deliveries d JOIN webhooks.events ev ON ev.id = d.event_id
 WHERE ev.company_id = '$company'}))
	{
		my ($id, $n) = split /\|/, $row;
		$h{$id} = $n;
	}
	return %h;
}

# Requests the receiver logged for a path: count per webhook-id, and count
# per webhook-id of those it answered with the given status.
sub requests_by_event
{
	my ($receiver, $path, $status) = @_;
	my (%all, %answered);
	for my $req (grep { $_->{path} eq $path } receiver_log($receiver))
	{
		my $id = $req->{headers}{'webhook-id'};
		$all{$id}++;
		$answered{$id}++ if defined $status && $req->{status} == $status;
	}
	return (\%all, \%answered);
}

# The receiver saw one request per recorded attempt.  Except after a reset:
# when a reused keep-alive connection dies before any answer, libcurl sends
# the request again within the same attempt ("Connection died, retrying a
# fresh connect"), up to 5 times (CONN_MAX_RETRIES), so there the receiver
# may see up to six requests per attempt.  Returns the number of extra
# requests.
sub check_requests_per_attempt
{
	my ($c, $seen, $attempts) = @_;
	if ($c !~ /^reset/)
	{
		is_deeply($seen, $attempts,
			"$c: the receiver saw one request per recorded attempt");
		return 0;
	}
	my ($extra, $bad) = (0, 0);
	for my $id (keys %$attempts)
	{
		my $n = $seen->{$id} // 0;
		if ($n < $attempts->{$id} || $n > 6 * $attempts->{$id})
		{
			$bad++;
			diag("$c: event $id: $attempts->{$id} attempts recorded, $n requests seen");
		}
		$extra += $n - $attempts->{$id};
	}
	is($bad, 0,
		"$c: the receiver saw one to six requests per recorded attempt");
	note("$c: $extra requests more than recorded attempts (libcurl resending on a fresh connection after a reset)");
	return $extra;
}

# RssAnon of a process in kB.
sub rss_anon
{
	my ($pid) = @_;
	open(my $fh, '<', "/proc/$pid/status") or return undef;
	while (my $line = <$fh>)
	{
		return $1 if $line =~ /^RssAnon:\s+(\d+)\s+kB/;
	}
	return undef;
}

# The summary lines for doc-drafts/reliability.md and the test output.
my @summary;

sub summary
{
	my ($line) = @_;
	push @summary, $line;
	note($line);
	return;
}

###
### Phase 1: faults that last a while and then end, and faults that never do.
### All run at once against one node, as they would in production.
###

my $n_recover = 100;
my $n_forever = 10;
my $down_port = unused_port();

my %recovering = (
	down => "http://127.0.0.1:$down_port/down",
	reset => receiver_url($r, '/reset?reset=1'),
	s500 => receiver_url($r, '/s500?status=500'),
	hang => receiver_url($r, '/hang?delay_ms=20000'),
);
my %forever = (
	dead => 'http://127.0.0.1:' . unused_port() . '/dead',
	reset_forever => receiver_url($r, '/reset_forever?reset=1'),
	s500_forever => receiver_url($r, '/s500_forever?status=500'),
	hang_forever => receiver_url($r, '/hang_forever?delay_ms=20000'),
);
my %n = (
	(map { $_ => $n_recover } keys %recovering),
	(map { $_ => $n_forever } keys %forever),
	hang => 20,
	hang_forever => 5);
endpoint($_, $recovering{$_}) for sort keys %recovering;
endpoint($_, $forever{$_}) for sort keys %forever;

my $log_offset = -s $node->logfile;
my $t_phase1 = time();
kw_emit_many($node, 'postgres', $_, $n{$_}) for sort keys %n;

# Once every recovering delivery has failed at least once, the faults end:
# a receiver starts on the port that refused connections, and the others
# answer 201 from now on (201, so that the log tells the answers that
# counted from those that came before).
wait_first_attempts(sort keys %recovering);
my $late = kw_receiver('late', port => $down_port);
receiver_control($r, "/$_", 'status=201') for qw(reset s500 hang);

kw_wait_drained($node, 'postgres', keys %n);
my $phase1_secs = time() - $t_phase1;

# the recovering faults: every delivery delivered, after a failed attempt
for my $c (sort keys %recovering)
{
	is(outcome($c), "$n{$c}|$n{$c}|0|0", "$c: all $n{$c} deliveries delivered");
	is( $node->safe_psql(
			'postgres', qq{
SELECT count(*) FROM webhooks.deliveries d JOIN webhooks.events ev ON ev.id = d.event_id
 WHERE ev.company_id = '$c' AND d.attempts >= 2}),
		$n{$c},
		"$c: each after at least one failed attempt");
}

# what the failed attempts say; libcurl's words for a refused connection
# are "Couldn't connect to server" in Debian 12's libcurl, "Could not ..."
# in newer ones
my $refused = "Could(?:n't| not) connect to server";
my %first_error = (
	down => "NULL:$refused",
	s500 => '500:HTTP 500',
	hang => 'NULL:Timeout was reached',
);
for my $c (sort keys %first_error)
{
	like(
		$node->safe_psql(
			'postgres', qq{
SELECT string_agg(DISTINCT coalesce(status_code::text, 'NULL') || ':' || error, ' / ')
  FROM webhooks.delivery_history
 WHERE company_id = '$c' AND attempt = 1}),
		qr/^$first_error{$c}$/,
		"$c: the first attempts failed with $first_error{$c}");
}
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FILTER (WHERE status_code IS NULL AND error IS NOT NULL
                          AND error NOT LIKE 'HTTP %'), count(*)
  FROM webhooks.delivery_history WHERE company_id = 'reset' AND attempt = 1}),
	"$n{reset}|$n{reset}",
	'reset: the first attempts failed with a transport error and no status');
is( $node->safe_psql(
		'postgres', q{
SELECT bool_and(duration_ms BETWEEN 900 AND 3000)
  FROM webhooks.delivery_history WHERE company_id = 'hang' AND attempt = 1}),
	't',
	'hang: the first attempts were cut off after about request_timeout (1 s)');

# What the receivers saw matches what was recorded: one request per
# recorded attempt, exactly one answer that counted per event, and no other
# event.
for my $c (qw(reset s500 hang))
{
	my %attempts = attempts_by_event($c);
	my ($seen, $ok) = requests_by_event($r, "/$c", 201);
	my @ids = sort keys %attempts;
	is_deeply([ sort keys %$seen ], \@ids,
		"$c: the receiver saw every event and no other");
	check_requests_per_attempt($c, $seen, \%attempts);
	is_deeply($ok, { map { $_ => 1 } @ids },
		"$c: every event was answered 201 exactly once");
	my $requests = 0;
	$requests += $_ for values %$seen;
	my $dups = grep { $_ > 1 } values %$ok;
	summary(
		sprintf(
			'%s: %d events; fault: %s until each had failed once, then 201; %d requests; delivered %d, duplicates %d, lost %d',
			$c, scalar @ids,
			{ reset => 'connection reset', s500 => 'HTTP 500', hang => 'no answer within request_timeout (1 s)' }->{$c},
			$requests, scalar(keys %$ok), $dups, scalar(@ids) - scalar(keys %$ok)));
}

{
	my @ids = event_ids('down');
	my ($seen) = requests_by_event($late, '/down');
	is_deeply([ sort keys %$seen ], \@ids,
		'down: the receiver that came up got every event');
	my $dups = grep { $_ > 1 } values %$seen;
	is($dups, 0, 'down: each once');
	summary(
		sprintf(
			'down: %d events; fault: connection refused (nothing listening) until each had failed once, then a receiver started on that port; delivered %d, duplicates %d, lost %d',
			scalar @ids, scalar keys %$seen, $dups, scalar(@ids) - scalar(keys %$seen)));
}

# the faults that never end: every delivery failed after max_attempts, and
# every attempt reached the receiver (except where nothing listened)
for my $c (sort keys %forever)
{
	is(outcome($c), "$n{$c}|0|$n{$c}|0", "$c: all $n{$c} deliveries failed");
	is( $node->safe_psql(
			'postgres', qq{
SELECT count(*) FROM webhooks.deliveries d JOIN webhooks.events ev ON ev.id = d.event_id
 WHERE ev.company_id = '$c' AND d.attempts = $max_attempts
   AND d.finished_at IS NOT NULL AND d.next_attempt_at IS NULL}),
		$n{$c},
		"$c: each after $max_attempts attempts, finished, nothing scheduled");
	next if $c eq 'dead';
	my %attempts = attempts_by_event($c);
	my ($seen) = requests_by_event($r, "/$c");
	check_requests_per_attempt($c, $seen, \%attempts);
}
like(
	$node->safe_psql(
		'postgres', q{
SELECT string_agg(DISTINCT company_id || ':' || coalesce(status_code::text, 'NULL') || ':' || error, ' / ')
  FROM webhooks.delivery_history
 WHERE company_id IN ('dead', 's500_forever', 'hang_forever')}),
	qr{^dead:NULL:$refused / hang_forever:NULL:Timeout was reached / s500_forever:500:HTTP 500$},
	'the permanent faults recorded the expected error on every attempt');
for my $c (sort keys %forever)
{
	summary(
		sprintf(
			'%s: %d events; fault: %s for good; failed %d after %d attempts each, lost 0',
			$c, $n{$c},
			{
				dead => 'connection refused',
				reset_forever => 'connection reset',
				s500_forever => 'HTTP 500',
				hang_forever => 'no answer within request_timeout'
			}->{$c},
			$n{$c}, $max_attempts));
}
note(sprintf('phase 1 took %.1f s', $phase1_secs));

###
### Phase 2: a 10 MB response body.  The first 4 kB are kept, the rest is
### swallowed, the attempt succeeds, and the workers' memory stays flat.
###

# A 1 s request_timeout is too short to move dozens of 10 MB bodies at once
# on a small machine; a reload raises it (013_reload.pl shows that it takes).
$node->safe_psql('postgres',
	"ALTER SYSTEM SET konvox_webhooks.request_timeout = '20s'; SELECT pg_reload_conf()"
);
$node->wait_for_log(
	qr/parameter "konvox_webhooks.request_timeout" changed to "20s"/,
	$log_offset);

my $big_bytes = 10 * 1024 * 1024;
my $n_big = 30;
endpoint('big', receiver_url($r, "/big?body_bytes=$big_bytes"));
my @pids = kw_worker_pids($node);
ok(@pids >= 1, 'the worker pids are known');
my %base = map { $_ => rss_anon($_) } @pids;
ok(!grep({ !defined $base{$_} } @pids), 'RssAnon of the workers is readable');

kw_emit_many($node, 'postgres', 'big', $n_big);
my %peak = %base;
my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
my $done = 0;
for (my $i = 0; !$done && time() < $deadline; $i++)
{
	for my $pid (@pids)
	{
		my $rss = rss_anon($pid) // next;
		$peak{$pid} = $rss if $rss > $peak{$pid};
	}
	$done = $node->safe_psql('postgres',
		"SELECT count(*) FILTER (WHERE d.status = 'pending') = 0 FROM webhooks.deliveries d JOIN webhooks.events ev ON ev.id = d.event_id WHERE ev.company_id = 'big'"
	) eq 't'
	  if $i % 10 == 0;
	usleep(10_000);
}
ok($done, 'the 10 MB responses were all received');
is(outcome('big'), "$n_big|$n_big|0|0",
	"all $n_big deliveries answered with 10 MB bodies are delivered");
is( $node->safe_psql(
		'postgres', q{
SELECT count(*), max(octet_length(a.response_body)),
       bool_and(a.response_body = repeat('x', 4096))
  FROM webhooks.delivery_attempts a
  JOIN webhooks.deliveries d ON d.id = a.delivery_id
  JOIN webhooks.events ev ON ev.id = d.event_id
 WHERE ev.company_id = 'big'}),
	"$n_big|4096|t",
	'response_body holds the first 4096 bytes of each 10 MB body');
is(scalar(grep { $_->{path} eq '/big' } receiver_log($r)),
	$n_big, "the receiver answered $n_big requests with 10 MB each");
my $max_growth = 0;
for my $pid (@pids)
{
	my $after = rss_anon($pid);
	my $growth_peak = $peak{$pid} - $base{$pid};
	my $growth_after = $after - $base{$pid};
	$max_growth = $growth_peak if $growth_peak > $max_growth;
	cmp_ok($growth_peak, '<', 6 * 1024,
		"worker $pid: RssAnon peaked $growth_peak kB above its $base{$pid} kB before the 10 MB bodies"
	);
	cmp_ok($growth_after, '<', 4 * 1024,
		"worker $pid: RssAnon is $growth_after kB above it afterwards");
}
is_deeply([ kw_worker_pids($node) ], \@pids, 'the same workers throughout');
summary(
	sprintf(
		'big: %d events answered 200 with a %d MB body; delivered %d, response_body capped at 4096 bytes, worker RssAnon grew at most %d kB',
		$n_big, $big_bytes / 1024 / 1024, $n_big, $max_growth));

# A body that is not valid text: each byte that ends a valid run (here an
# invalid UTF-8 byte, a NUL, and a character cut short by the 4 kB cap)
# becomes '?', and the rest is kept as it came.
my $odd = '6f6bff00' . '78' . ('e282ac' x 1363) . 'e282ac';
endpoint('odd', receiver_url($r, "/odd?body_hex=$odd"));
kw_emit_many($node, 'postgres', 'odd', 1);
kw_wait_drained($node, 'postgres', 'odd');
is( $node->safe_psql(
		'postgres', q{
SELECT d.status, a.response_body = 'ok??x' || repeat(U&'\20AC', 1363) || '??'
  FROM webhooks.delivery_attempts a
  JOIN webhooks.deliveries d ON d.id = a.delivery_id
  JOIN webhooks.events ev ON ev.id = d.event_id
 WHERE ev.company_id = 'odd'}),
	'delivered|t',
	'invalid and NUL bytes of a response body are stored as ?');

###
### Phase 3: a slow receiver (200 ms per request) and thousands of events.
### The requests in flight never exceed max_concurrency, and descriptors do
### not run out.
###

my $n_slow = 2000;
my $slow = kw_receiver('slow');
endpoint('slow', receiver_url($slow, '/slow?delay_ms=200'));
receiver_stats($slow, 1);
my $t_slow = time();
kw_emit_many($node, 'postgres', 'slow', $n_slow);
kw_wait_drained($node, 'postgres', 'slow');
my $slow_secs = time() - $t_slow;
my $stats = receiver_stats($slow);
is(outcome('slow'), "$n_slow|$n_slow|0|0", "all $n_slow slow deliveries delivered");
cmp_ok($stats->{max_in_flight}, '<=', $max_concurrency,
	"requests in flight at the receiver peaked at $stats->{max_in_flight}, within max_concurrency $max_concurrency"
);
cmp_ok($stats->{max_in_flight}, '>=', 10,
	'and requests did go out concurrently (the bound was tested)');
{
	my @ids = event_ids('slow');
	my ($seen) = requests_by_event($slow, '/slow');
	is_deeply([ sort keys %$seen ], \@ids, 'the slow receiver got every event');
	my $dups = grep { $_ > 1 } values %$seen;
	is($dups, 0, 'each once');
	is($stats->{requests}, $n_slow, "$n_slow requests in all");
	summary(
		sprintf(
			'slow: %d events to a receiver taking 200 ms per request, max_concurrency %d; delivered %d in %.1f s, at most %d requests in flight (%d connections open) at the receiver, duplicates %d, lost %d',
			$n_slow, $max_concurrency, scalar keys %$seen, $slow_secs,
			$stats->{max_in_flight}, $stats->{max_connections}, $dups,
			scalar(@ids) - scalar(keys %$seen)));
}

###
### The server throughout
###
my $log = kw_log_since($node, $log_offset);
unlike($log, qr/Too many open files/, 'the log never says "Too many open files"');
unlike($log, qr/terminated by signal|exited with exit code/,
	'no server process crashed or exited');
is_deeply([ kw_worker_pids($node) ], \@pids, 'the workers kept their pids');

done_testing();
