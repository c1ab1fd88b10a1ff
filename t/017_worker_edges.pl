# Edges of the workers' bookkeeping: deliveries whose endpoint was
# deactivated or deleted while they were being written, a delivery reset by
# hand, a worker with no room left and a retry falling due, and a launcher
# restarted under running workers.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../test";
use KwTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = kw_node(
	'edges', conf => qq{
konvox_webhooks.retry_base_delay = '1s'
konvox_webhooks.request_timeout = '10s'
});
my $r = kw_receiver();
my $data = q{'{"contactId": "c1", "channel": "email"}'};

sub endpoint
{
	my ($company, $path) = @_;
	my $url = receiver_url($r, $path);
	return $node->safe_psql('postgres',
		"SELECT (webhooks.create_endpoint('$company', '$url', ARRAY['contact.replied'])).id");
}

sub requests_to
{
	my ($path) = @_;
	return scalar grep { $_->{path} eq $path } receiver_log($r);
}

###
### An emit that read an endpoint as active commits after the endpoint was
### deactivated, or deleted, in another session: the delivery is failed
### with the reason, never sent.  Deleted also when it was the last
### endpoint, which leaves webhooks.endpoints as empty as a restore that
### has not loaded it yet.
###
for my $case ('deactivated', 'deleted', 'deleted last')
{
	my ($change, $last) = split / /, $case;
	my $path = "/$change" . ($last ? '_last' : '');
	my $id = endpoint("race_$change", $path);
	$node->safe_psql('postgres',
		"DELETE FROM webhooks.endpoints WHERE id <> $id")
	  if $last;
	my $bg = $node->background_psql('postgres');
	$bg->query_safe('BEGIN');
	my $event = $bg->query_safe(
		"SELECT webhooks.emit('contact.replied', 'race_$change', $data)");
	$node->safe_psql('postgres',
		$change eq 'deactivated'
		? "UPDATE webhooks.endpoints SET active = false WHERE id = $id"
		: "DELETE FROM webhooks.endpoints WHERE id = $id");
	$bg->query_safe('COMMIT');
	$bg->quit;

	$node->poll_query_until('postgres',
		"SELECT status = 'failed' FROM webhooks.deliveries WHERE event_id = '$event'"
	) or die "the delivery to the $change endpoint did not end";
	is( $node->safe_psql('postgres',
			"SELECT last_error || '|' || attempts FROM webhooks.deliveries WHERE event_id = '$event'"
		),
		"endpoint $change|0",
		"endpoint $case meanwhile: failed with the reason, no attempt");
	is(requests_to($path), 0, "endpoint $case meanwhile: nothing sent");
}

###
### A delivery set back to pending by hand, its attempt 1 already recorded:
### sent once more, recorded, and not sent again in a loop.
###
{
	my $id = endpoint('reset', '/reset');
	my $event = $node->safe_psql('postgres',
		"SELECT webhooks.emit('contact.replied', 'reset', $data)");
	$node->poll_query_until('postgres',
		"SELECT status = 'delivered' FROM webhooks.deliveries WHERE event_id = '$event'"
	) or die 'first delivery did not happen';
	my $offset = -s $node->logfile;
	$node->safe_psql('postgres',
		"UPDATE webhooks.deliveries SET status = 'pending', attempts = 0, next_attempt_at = now(), finished_at = NULL WHERE event_id = '$event'"
	);
	$node->poll_query_until('postgres',
		"SELECT status = 'delivered' FROM webhooks.deliveries WHERE event_id = '$event'"
	) or die 'the reset delivery was not recorded';

	# a later event to the same endpoint shows the worker has moved on
	my $marker = $node->safe_psql('postgres',
		"SELECT webhooks.emit('contact.replied', 'reset', $data)");
	$node->poll_query_until('postgres',
		"SELECT status = 'delivered' FROM webhooks.deliveries WHERE event_id = '$marker'"
	) or die 'the marker was not delivered';
	my $sent = grep { ($_->{headers}{'webhook-id'} // '') eq $event }
	  receiver_log($r);
	is($sent, 2, 'a delivery reset by hand is sent exactly once more');
	unlike(kw_log_since($node, $offset), qr/ERROR/,
		'recording it raised no error');
}

###
### No room in a worker and a retry falling due: the worker waits for its
### requests, it does not spin.
###
{
	$node->safe_psql('postgres',
		"ALTER SYSTEM SET konvox_webhooks.max_concurrency = 16; SELECT pg_reload_conf()"
	);
	$node->poll_query_until('postgres',
		"SELECT current_setting('konvox_webhooks.max_concurrency') = '16'")
	  or die 'reload did not happen';
	# two failing deliveries, their retries due a second after their first
	# attempts ...
	endpoint('spinfail', '/spin?status=500');
	$node->safe_psql('postgres',
		"SELECT webhooks.emit('contact.replied', 'spinfail', $data) FROM generate_series(1, 2)"
	);
	$node->poll_query_until('postgres',
		"SELECT count(*) = 2 FROM webhooks.deliveries d JOIN webhooks.endpoints e ON e.id = d.endpoint_id WHERE e.company_id = 'spinfail' AND d.attempts = 1"
	) or die 'the first attempts did not happen';

	# ... and meanwhile all 16 requests that max_concurrency allows taken
	# by hanging ones, so that the retries cannot be sent when they fall due
	endpoint('spinhang', '/hang?delay_ms=6000');
	$node->safe_psql('postgres',
		"SELECT webhooks.emit('contact.replied', 'spinhang', $data) FROM generate_series(1, 16)"
	);
	$node->poll_query_until('postgres',
		"SELECT sum(in_flight) = 16 FROM webhooks._worker_slots()")
	  or die 'the workers did not fill their slots';

	my @pids = kw_worker_pids($node);
	my $cpu = sub {
		my $ticks = 0;
		for my $pid (@pids)
		{
			my @f = split ' ', slurp_file("/proc/$pid/stat");
			$ticks += $f[13] + $f[14];
		}
		return $ticks;
	};
	my $before = $cpu->();
	# a window of time to measure over, not a wait for a condition
	select(undef, undef, undef, 3);
	my $used = $cpu->() - $before;
	note "workers used $used clock ticks in 3 s with no room left";
	cmp_ok($used, '<', 100,
		'a worker with no room waits instead of spinning');
	is( $node->safe_psql('postgres',
			"SELECT count(*) FROM webhooks.deliveries d JOIN webhooks.endpoints e ON e.id = d.endpoint_id WHERE e.company_id = 'spinfail' AND d.attempts = 1 AND d.next_attempt_at < now()"
		),
		'2',
		'the retries fell due during that time');

	$node->safe_psql('postgres',
		"ALTER SYSTEM RESET konvox_webhooks.max_concurrency; SELECT pg_reload_conf()"
	);
}

###
### The launcher restarted while the workers ran, then a worker stops: the
### new launcher starts it again.
###
{
	my $launcher = sub {
		$node->safe_psql('postgres',
			"SELECT pid FROM pg_stat_activity WHERE backend_type = 'konvox_webhooks launcher'"
		);
	};
	my $old = $launcher->();
	$node->safe_psql('postgres', "SELECT pg_terminate_backend($old)");
	$node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'konvox_webhooks launcher' AND pid <> $old"
	) or die 'the launcher did not come back';

	my ($worker) = kw_worker_pids($node);
	$node->safe_psql('postgres', "SELECT pg_terminate_backend($worker)");
	ok( $node->poll_query_until(
			'postgres',
			"SELECT count(*) = current_setting('konvox_webhooks.workers')::int FROM pg_stat_activity WHERE backend_type = 'konvox_webhooks worker' AND pid <> $worker"
		),
		'a worker stopped after the launcher was restarted is started again');
}

done_testing();
