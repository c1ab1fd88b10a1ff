# Metrics for Prometheus: the real prometheus-postgres-exporter, started
# here against the cluster with monitoring/queries.yaml and a role granted
# only what the README's Monitoring section grants, scraped over HTTP on
# 127.0.0.1.  Known traffic (deliveries that succeed, answer 500, time out,
# find nothing listening) gives the counters it must; the gauges show a
# due delivery's age, requests in flight and a stopped worker; the counters
# do not go down when retention deletes the rows they counted.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../test";
use KwTest;
use HTTP::Tiny;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $srcdir = "$FindBin::RealBin/..";

# two attempts a delivery, a retry 200 ms after a failure, a timeout of 2 s
my $node = kw_node(
	'prometheus', conf => q{
konvox_webhooks.max_attempts = 2
konvox_webhooks.retry_base_delay = '200ms'
konvox_webhooks.request_timeout = '2s'
});
my $r = kw_receiver();

sub sql { return $node->safe_psql('postgres', $_[0]); }

my $nworkers = sql('SHOW konvox_webhooks.workers');

# the monitoring role, as the README grants it
sql(q{
CREATE ROLE kw_monitor LOGIN;
GRANT pg_monitor TO kw_monitor;
GRANT USAGE ON SCHEMA webhooks TO kw_monitor;
GRANT EXECUTE ON FUNCTION webhooks.metrics(), webhooks.attempt_counters() TO kw_monitor;
});

#
# The exporter, on 127.0.0.1
#
my $port = unused_port();
my $dir = PostgreSQL::Test::Utils::tempdir();
my $exporter = IPC::Run::start(
	[
		'prometheus-postgres-exporter',
		"--web.listen-address=127.0.0.1:$port",
		"--extend.query-path=$srcdir/monitoring/queries.yaml",
		'--disable-default-metrics',
		'--disable-settings-metrics'
	],
	'>', "$dir/stdout", '2>', "$dir/stderr",
	init => sub {
		$ENV{DATA_SOURCE_NAME} = 'host=' . $node->host . ' port=' . $node->port
		  . ' user=kw_monitor dbname=postgres sslmode=disable';
	});
END { local $?; eval { $exporter->kill_kill(grace => 2) } if $exporter; }

my $http = HTTP::Tiny->new(timeout => 10, no_proxy => '127.0.0.1');
my $body;

# Scrape /metrics; returns a hash of "name" or "name{outcome}" to value,
# and keeps the text in $body.
sub scrape
{
	my $res = $http->get("http://127.0.0.1:$port/metrics");
	return undef unless $res->{success};
	$body = $res->{content};
	my %m;
	for my $line (split /\n/, $body)
	{
		next if $line =~ /^#/;
		next unless $line =~ /^(\w+)(?:\{([^}]*)\})?\s+(\S+)$/;
		my ($name, $labels, $value) = ($1, $2 // '', $3);
		my ($outcome) = $labels =~ /outcome="([^"]*)"/;
		$m{ $name . (defined $outcome ? "{$outcome}" : '') } = $value;
	}
	return \%m;
}

# Scrape until $cond->($metrics) holds; returns the metrics, or undef after
# the default timeout.
sub scrape_until
{
	my ($cond) = @_;
	my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
	while (time() < $deadline)
	{
		my $m = scrape();
		return $m if $m && $cond->($m);
		usleep(100_000);
	}
	diag("last scrape:\n" . ($body // '(none)'));
	return undef;
}

my $m = scrape_until(sub { exists $_[0]{konvox_webhooks_workers} });
ok($m, 'the exporter answers /metrics with our metrics')
  or diag(slurp_file("$dir/stderr"));
is($m->{pg_up}, 1, 'it reached the cluster');
is($m->{pg_exporter_user_queries_load_error}, 0, 'and loaded queries.yaml');
is($m->{pg_exporter_last_scrape_error}, 0, 'with no error, as kw_monitor');

#
# The names follow Prometheus' rules: counters end in _total, units in
# seconds; each has its type
#
my %type = $body =~ /^# TYPE (konvox_webhooks_\w+) (\w+)$/mg;
is_deeply(
	\%type,
	{
		konvox_webhooks_workers => 'gauge',
		konvox_webhooks_workers_running => 'gauge',
		konvox_webhooks_requests_in_flight => 'gauge',
		konvox_webhooks_deliveries_pending => 'gauge',
		konvox_webhooks_deliveries_due => 'gauge',
		konvox_webhooks_oldest_due_delivery_age_seconds => 'gauge',
		konvox_webhooks_deliveries_delivered_total => 'counter',
		konvox_webhooks_deliveries_failed_total => 'counter',
		konvox_webhooks_endpoints_failing => 'gauge',
		konvox_webhooks_endpoints_held => 'gauge',
		konvox_webhooks_attempts_total => 'counter',
	},
	'the metrics and their types');
is( join(',', map { $m->{"konvox_webhooks_attempts_total{$_}"} // 'missing' }
		  qw(success http_error timeout network tls proxy address_refused not_sent)),
	'0,0,0,0,0,0,0,0',
	'an attempts counter for each outcome, at 0');
is( join(',',
		map { $m->{"konvox_webhooks_$_"} }
		  qw(workers workers_running requests_in_flight deliveries_pending
		  deliveries_due oldest_due_delivery_age_seconds
		  deliveries_delivered_total deliveries_failed_total)),
	"$nworkers,$nworkers,0,0,0,0,0,0",
	'idle: every worker running, nothing pending or counted');

sub endpoint
{
	my ($company, $url) = @_;
	sql("SELECT webhooks.create_endpoint('$company', '$url', ARRAY['contact.replied'])");
	return;
}
sub emit
{
	my ($company, $n) = @_;
	sql(qq{SELECT webhooks.emit('contact.replied', '$company',
                              jsonb_build_object('contactId', 'c' || i, 'channel', 'email'))
             FROM generate_series(1, $n) i});
	return;
}

#
# Requests in flight
#
endpoint('slow', receiver_url($r, '/slow?delay_ms=1500'));
emit('slow', 3);
ok(scrape_until(sub { $_[0]{konvox_webhooks_requests_in_flight} == 3 }),
	'requests_in_flight: 3 while a slow receiver holds them');
kw_wait_drained($node, 'postgres', 'slow');

#
# Known traffic: 10 delivered; failed after 2 attempts each: 3 answered
# 500, 1 timed out, 1 with nothing listening
#
endpoint('ok', receiver_url($r, '/ok'));
endpoint('s500', receiver_url($r, '/s500?status=500'));
endpoint('hang', receiver_url($r, '/hang?delay_ms=4000'));
endpoint('down', 'http://127.0.0.1:' . unused_port() . '/down');
emit('ok', 10);
emit('s500', 3);
emit('hang', 1);
emit('down', 1);
kw_wait_drained($node, 'postgres', qw(ok s500 hang down));
$m = scrape_until(
	sub { $_[0]{konvox_webhooks_deliveries_failed_total} == 5 });
ok($m, 'after the traffic');
is($m->{konvox_webhooks_deliveries_delivered_total},
	13, 'deliveries_delivered_total: the 3 slow ones and the 10');
is($m->{konvox_webhooks_deliveries_failed_total},
	5, 'deliveries_failed_total: 3 + 1 + 1');
is( join(',', map { $m->{"konvox_webhooks_attempts_total{$_}"} }
		  qw(success http_error timeout network tls proxy address_refused not_sent)),
	'13,6,2,2,0,0,0,0',
	'attempts_total by outcome: 13 success, 6 http_error, 2 timeout, 2 network');
is( sql(
		q{SELECT count(*) FILTER (WHERE status = 'delivered') || ',' ||
                 count(*) FILTER (WHERE status = 'failed') || ',' ||
                 (SELECT count(*) FROM webhooks.delivery_attempts)
            FROM webhooks.deliveries}),
	'13,5,23', 'the same as the rows: 13 delivered, 5 failed, 23 attempts');
is($m->{konvox_webhooks_deliveries_pending}, 0, 'nothing pending');

#
# A due delivery that waits (its event is missing, as in a restore): its
# age since it fell due
#
my $ep = sql("SELECT id FROM webhooks.endpoints WHERE company_id = 'ok'");
sql(qq{INSERT INTO webhooks.deliveries (event_id, endpoint_id, next_attempt_at)
       VALUES (gen_random_uuid(), $ep, now() - interval '1 hour')});
$m = scrape_until(sub { $_[0]{konvox_webhooks_deliveries_pending} == 1 });
is($m->{konvox_webhooks_deliveries_due}, 1, 'deliveries_due: 1');
my $age = $m->{konvox_webhooks_oldest_due_delivery_age_seconds};
ok($age >= 3600 && $age < 3660,
	"oldest_due_delivery_age_seconds: $age, an hour, in seconds");
sql('DELETE FROM webhooks.deliveries WHERE status = \'pending\'');

#
# Counters are not row counts: retention deletes the rows, not the counts
#
is(sql("SELECT webhooks.purge('0')"), '18', 'purge() deletes the 18 deliveries');
$m = scrape();
is( join(',',
		$m->{konvox_webhooks_deliveries_delivered_total},
		$m->{konvox_webhooks_deliveries_failed_total},
		$m->{'konvox_webhooks_attempts_total{success}'}),
	'13,5,13',
	'the counters stay where they were');

#
# Endpoint health: one failing (breaker open after 2 failures in a row),
# one held by Retry-After
#
sql(q{ALTER SYSTEM SET konvox_webhooks.breaker_failures = 2;
      ALTER SYSTEM SET konvox_webhooks.max_attempts = 5;
      SELECT pg_reload_conf()});
$node->poll_query_until('postgres',
	"SELECT current_setting('konvox_webhooks.breaker_failures') = '2'")
  or die 'the reload did not happen';
endpoint('broken', receiver_url($r, '/broken?status=500'));
endpoint('busy', receiver_url($r, '/busy?status=429&retry_after=3600'));
emit('broken', 3);
emit('busy', 1);
$m = scrape_until(
	sub {
		$_[0]{konvox_webhooks_endpoints_failing} == 1
		  && $_[0]{konvox_webhooks_endpoints_held} == 1;
	});
ok($m, 'endpoints_failing: 1, endpoints_held: 1');
is( sql(
		q{SELECT string_agg(h.state || ' ' || (h.retry_after_until IS NOT NULL), ', ' ORDER BY e.company_id)
	   FROM webhooks.endpoint_health h JOIN webhooks.endpoints e ON e.id = h.endpoint_id
	  WHERE e.company_id IN ('broken', 'busy')}),
	'failing false, healthy true',
	'as endpoint_health shows them');

#
# A worker that stops shows in workers_running until the launcher starts
# it again.  The launcher would do so at once: it is stopped first, and
# the postmaster starts it again 5 s later.
#
my @pids = kw_worker_pids($node);
my $launcher = sql(
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'konvox_webhooks launcher'"
);
like($launcher, qr/^\d+$/, 'the launcher runs');
kill 'TERM', $launcher;
$node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $launcher")
  or die "the launcher did not stop";
kill 'TERM', $pids[0];
ok( scrape_until(
		sub { $_[0]{konvox_webhooks_workers_running} == $nworkers - 1 }),
	'workers_running: one fewer once a worker stopped');
ok(scrape_until(sub { $_[0]{konvox_webhooks_workers_running} == $nworkers }),
	'and all of them once the launcher started it again');

$node->stop;
done_testing();
