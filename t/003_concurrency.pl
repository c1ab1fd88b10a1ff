# Concurrency and transactions: a slow endpoint does not hold up a fast one,
# a burst of events is delivered beside busy slow requests, only committed
# events go out, and a commit wakes an idle worker at once.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../test";
use KwTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $node = kw_node('concurrency',
	conf => "konvox_webhooks.request_timeout = '10s'\n");
my $r = kw_receiver();

# Register an endpoint of a company for contact.replied.
sub endpoint
{
	my ($company, $path) = @_;
	my $url = receiver_url($r, $path);
	$node->safe_psql('postgres',
		"SELECT webhooks.create_endpoint('$company', '$url', ARRAY['contact.replied'])"
	);
	return $url;
}

# Emit one contact.replied for a company, optionally through another
# session; returns the event id.
sub emit
{
	my ($company, $tag) = @_;
	return $node->safe_psql('postgres', emit_sql($company, $tag));
}

sub emit_sql
{
	my ($company, $tag) = @_;
	return
	  "SELECT webhooks.emit('contact.replied', '$company', '{\"contactId\": \"$tag\", \"channel\": \"email\"}')";
}

# The requests that reached a path, and the webhook-ids among them.
sub requests
{
	my ($path, @log) = @_;
	return grep { $_->{path} eq $path } @log;
}

sub ids_at
{
	my ($path, @log) = @_;
	return map { $_->{headers}{'webhook-id'} } requests($path, @log);
}

sub delivery_status
{
	my ($id) = @_;
	return $node->safe_psql('postgres',
		"SELECT string_agg(status || '/' || attempts, ',') FROM webhooks.deliveries WHERE event_id = '$id'"
	);
}

###
### Wake-up on commit: an idle worker sends a new event at once, not at its
### next periodic look at the queue.
###
endpoint('wake', '/wake');
my $warm = emit('wake', 'warm-up');
$node->poll_query_until('postgres',
	"SELECT status = 'delivered' FROM webhooks.deliveries WHERE event_id = '$warm'"
) or die "warm-up delivery did not happen";

# idle: nothing pending, every worker sleeping on its latch, and none has
# turned its loop for 1.5 s.  While a worker still knows of an endpoint
# with deliveries it looks at the queue again every second; once it knows
# of none, it looks only every minute unless a commit wakes it.
$node->poll_query_until(
	'postgres', q{
SELECT (SELECT count(*) FROM webhooks.deliveries WHERE status = 'pending') = 0
   AND (SELECT count(*) > 0
               AND bool_and(state = 'idle' AND wait_event_type = 'Extension'
                            AND state_change < now() - interval '1.5 s')
          FROM pg_stat_activity
         WHERE backend_type = 'konvox_webhooks worker')})
  or die "worker did not go idle";

my $t0 = time();
my $wake = emit('wake', 'wake-up');
my $log = receiver_wait($r, sub { grep { $_ eq $wake } ids_at('/wake', @_) });
ok($log, 'the event emitted while the worker was idle arrived');
my ($arrival) = map { $_->{t} }
  grep { $_->{headers}{'webhook-id'} eq $wake } @{ $log // [] };
$arrival //= 1e12;
ok( $arrival - $t0 < 30,
	sprintf(
		'it arrived %.3f s after emit() was called, not at the next look a minute on',
		$arrival - $t0));

###
### A slow endpoint beside a fast one, for the same event: the fast delivery
### completes while the slow request is still in flight.
###
endpoint('mixed', '/slow?delay_ms=4000');
endpoint('mixed', '/fast');
my $mixed = emit('mixed', 'mixed');
$node->poll_query_until(
	'postgres', qq{
SELECT d.status = 'delivered'
  FROM webhooks.deliveries d JOIN webhooks.endpoints ep ON ep.id = d.endpoint_id
 WHERE d.event_id = '$mixed' AND ep.url LIKE '%/fast'})
  or die "fast delivery did not happen";
is( $node->safe_psql(
		'postgres', qq{
SELECT d.status, d.attempts
  FROM webhooks.deliveries d JOIN webhooks.endpoints ep ON ep.id = d.endpoint_id
 WHERE d.event_id = '$mixed' AND ep.url LIKE '%/slow%'}),
	'pending|0',
	'when the fast delivery is done, the slow one is not');
my @slow = grep { $_ eq $mixed } ids_at('/slow', receiver_log($r));
is(scalar @slow, 1,
	'the slow request had already reached its receiver: both were in flight together'
);
$node->poll_query_until('postgres',
	"SELECT bool_and(status = 'delivered') FROM webhooks.deliveries WHERE event_id = '$mixed'"
) or die "slow delivery did not happen";
is( $node->safe_psql(
		'postgres',
		"SELECT status_code, error IS NULL, duration_ms >= 4000 FROM webhooks.delivery_history WHERE event_id = '$mixed' AND url LIKE '%/slow%'"
	),
	'200|t|t',
	'the slow endpoint got its delivery too, after its 4 s answer');

###
### A burst of events to a fast endpoint while slow requests are busy: all of
### them are delivered, each once, and none waited for the slow ones.
###
endpoint('busy', '/busy?delay_ms=8000');
endpoint('bulk', '/bulk');
my $busy_ids = $node->safe_psql('postgres',
	"SELECT string_agg(webhooks.emit('contact.replied', 'busy', jsonb_build_object('contactId', 'b' || i, 'channel', 'email'))::text, ',') FROM generate_series(1, 5) i"
);
my @busy = split /,/, $busy_ids;
receiver_wait($r, sub { requests('/busy', @_) == 5 })
  or die "busy requests did not arrive";

my $nbulk = 200;
$node->safe_psql('postgres',
	"SELECT webhooks.emit('contact.replied', 'bulk', jsonb_build_object('contactId', 'x' || i, 'channel', 'email')) FROM generate_series(1, $nbulk) i"
);
$node->poll_query_until(
	'postgres', qq{
SELECT count(*) FILTER (WHERE d.status = 'delivered') = $nbulk
  FROM webhooks.deliveries d JOIN webhooks.events ev ON ev.id = d.event_id
 WHERE ev.company_id = 'bulk'})
  or die "bulk deliveries did not happen";
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM webhooks.deliveries d JOIN webhooks.events ev ON ev.id = d.event_id WHERE ev.company_id = 'busy' AND d.status = 'pending' AND d.attempts = 0"
	),
	'5',
	"all $nbulk bulk deliveries finished while the 5 slow requests were in flight"
);
my @bulk_log = requests('/bulk', receiver_log($r));
my %bulk_ids = map { $_->{headers}{'webhook-id'} => 1 } @bulk_log;
my $bulk_expected = $node->safe_psql('postgres',
	"SELECT string_agg(id::text, ',' ORDER BY id) FROM webhooks.events WHERE company_id = 'bulk'"
);
is(join(',', sort keys %bulk_ids),
	$bulk_expected, "the receiver got every one of the $nbulk events");
is(scalar @bulk_log, $nbulk, 'each of them once');

###
### Only committed events are delivered.
###
endpoint('tx', '/tx');

# a rolled-back emit: never sent, nothing stored
my $rolled_back = $node->safe_psql('postgres',
	"BEGIN;\n" . emit_sql('tx', 'rolled-back') . ";\nROLLBACK;");
like($rolled_back, qr/^[0-9a-f-]{36}$/, 'emit in a rolled-back transaction returned an id');

# an emit in a transaction still open in another session
my $open = $node->background_psql('postgres');
$open->query_safe('BEGIN');
my $uncommitted = $open->query_safe(emit_sql('tx', 'uncommitted'));
like($uncommitted, qr/^[0-9a-f-]{36}$/, 'emit in an open transaction returned an id');

# a marker committed after both: once it has arrived, the worker has looked
# at the queue after the rollback and beside the open transaction
my $marker = emit('tx', 'marker');
receiver_wait($r, sub { grep { $_ eq $marker } ids_at('/tx', @_) })
  or die "marker did not arrive";
my @tx_ids = ids_at('/tx', receiver_log($r));
ok(!grep({ $_ eq $rolled_back } @tx_ids),
	'the rolled-back event never arrived');
ok(!grep({ $_ eq $uncommitted } @tx_ids),
	'the uncommitted event has not arrived');
is( $node->safe_psql(
		'postgres',
		"SELECT (SELECT count(*) FROM webhooks.events WHERE id = '$rolled_back') + (SELECT count(*) FROM webhooks.deliveries WHERE event_id = '$rolled_back')"
	),
	'0',
	'nothing of the rolled-back event is stored');

# once committed, the open transaction's event goes out
$open->query_safe('COMMIT');
$open->quit;
$node->poll_query_until('postgres',
	"SELECT status = 'delivered' FROM webhooks.deliveries WHERE event_id = '$uncommitted'"
) or die "committed event was not delivered";
@tx_ids = ids_at('/tx', receiver_log($r));
is(scalar(grep { $_ eq $uncommitted } @tx_ids),
	1, 'after its commit the event arrived, once');
ok(!grep({ $_ eq $rolled_back } @tx_ids),
	'and the rolled-back one still never did');

done_testing();
