# Crashes: the worker killed with SIGKILL mid-drain, and an immediate
# shutdown mid-drain.  Afterwards every event reaches the receiver at least
# once and every delivery ends 'delivered'.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../test";
use KwTest;
use PostgreSQL::Test::Utils;
use Test::More;

# the framework turns restart_after_crash off; a crash restart is the point
my $node = kw_node('crash', conf => "restart_after_crash = on\n");
my $r = kw_receiver();
my $nevents = 5000;

# The workers are visible, typed backends: as many as konvox_webhooks.workers
# asks for, where that setting exists, else one.
my $nworkers = $node->safe_psql('postgres',
	"SELECT coalesce(current_setting('konvox_webhooks.workers', true)::int, 1)"
);
my $worker_query =
  "SELECT pid FROM pg_stat_activity WHERE backend_type = 'konvox_webhooks worker'";
ok( $node->poll_query_until(
		'postgres', "SELECT count(*) = $nworkers FROM ($worker_query) w"),
	"$nworkers worker(s) in pg_stat_activity as 'konvox_webhooks worker'");
my @worker_pids = kw_worker_pids($node);
my $worker_pid = $worker_pids[0];
like($worker_pid, qr/^\d+$/, 'a worker pid');

# Emit $nevents events for a company whose endpoint answers after 20 ms, and
# wait until some but not all have been delivered.
sub start_drain
{
	my ($company) = @_;
	$node->safe_psql('postgres',
		"SELECT webhooks.create_endpoint('$company', '"
		  . receiver_url($r, "/$company?delay_ms=20")
		  . "', ARRAY['enrollment.created'])");
	$node->safe_psql('postgres',
		"SELECT webhooks.emit('enrollment.created', '$company', jsonb_build_object('enrollmentId', 'e' || i, 'contactId', 'c' || i, 'campaignId', 'k')) FROM generate_series(1, $nevents) i"
	);
	$node->poll_query_until('postgres',
		"SELECT count(*) >= $nevents / 10 FROM webhooks.deliveries d JOIN webhooks.endpoints ep ON ep.id = d.endpoint_id WHERE ep.company_id = '$company' AND d.status = 'delivered'"
	) or die "$company: deliveries did not start";
	return;
}

sub delivered
{
	my ($company) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM webhooks.deliveries d JOIN webhooks.endpoints ep ON ep.id = d.endpoint_id WHERE ep.company_id = '$company' AND d.status = 'delivered'"
	);
}

# After a recovery: wait for the drain to end, then check that it lost
# nothing, and say how many events were sent more than once.
sub check_drain
{
	my ($company, $at_crash) = @_;

	kw_wait_drained($node, 'postgres', $company);
	is( $node->safe_psql(
			'postgres',
			"SELECT count(*), count(*) FILTER (WHERE d.status = 'delivered') FROM webhooks.deliveries d JOIN webhooks.endpoints ep ON ep.id = d.endpoint_id WHERE ep.company_id = '$company'"
		),
		"$nevents|$nevents",
		"$company: every delivery ended 'delivered'");

	my %seen;
	$seen{ $_->{headers}{'webhook-id'} }++
	  for grep { $_->{path} eq "/$company" } receiver_log($r);
	my @expected = split /\n/,
	  $node->safe_psql('postgres',
		"SELECT id FROM webhooks.events WHERE company_id = '$company' ORDER BY id"
	  );
	is(scalar @expected, $nevents, "$company: $nevents events stored");
	is_deeply([ sort keys %seen ],
		\@expected,
		"$company: the receiver got every event, and nothing else");
	my $requests = 0;
	$requests += $_ for values %seen;
	my $dups = grep { $seen{$_} > 1 } keys %seen;
	note(
		"$company: $requests requests for $nevents events; $dups events arrived more than once "
		  . "($at_crash were recorded delivered when it went down)");
	return;
}

###
### kill -9 of the worker: the postmaster resets every backend and starts
### again; deliveries in flight stay pending and go out again.
###
start_drain('killed');
my $log_offset = -s $node->logfile;
my $at_kill = delivered('killed');
ok(kill('KILL', $worker_pid), "sent SIGKILL to worker $worker_pid");
cmp_ok($at_kill, '<', $nevents, "the kill came mid-drain ($at_kill of $nevents delivered)");

# Wait for the crash restart and a new worker.  Queries are sent only once
# the postmaster has begun reinitializing: before that a psql may be cut off
# before reading its input, which IPC::Run takes badly.
$node->wait_for_log(
	qr/background worker "konvox_webhooks worker" \(PID $worker_pid\) was terminated by signal 9/,
	$log_offset);
pass('the postmaster saw the worker die');
$node->wait_for_log(qr/all server processes terminated; reinitializing/,
	$log_offset);
pass('and reinitialized');
$node->poll_query_until('postgres', undef, '')
  or die "no connections after the crash";
my $old_pids = join(', ', @worker_pids);
$node->poll_query_until('postgres',
	"SELECT count(*) = $nworkers FROM ($worker_query) w WHERE pid NOT IN ($old_pids)"
) or die "no new workers after the crash";
check_drain('killed', $at_kill);

###
### The same with an immediate shutdown and a start.
###
start_drain('restarted');
my $at_stop = delivered('restarted');
$node->stop('immediate');
cmp_ok($at_stop, '<', $nevents, "the stop came mid-drain ($at_stop of $nevents delivered)");
$node->start;
$node->poll_query_until('postgres',
	"SELECT count(*) = $nworkers FROM ($worker_query) w")
  or die "no workers after the restart";
check_drain('restarted', $at_stop);

done_testing();
