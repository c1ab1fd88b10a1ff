# The extension's lifecycle around a running worker: DROP EXTENSION and
# CREATE EXTENSION while requests are in flight, an endpoint's breaker that
# must not outlive its extension, a server started before the extension was
# created, and a server whose konvox_webhooks.database_name does not exist
# yet.  In each case the worker waits, says so once, never
# crash-loops, and delivers once the extension is there.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../test";
use KwTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

# The crash signatures of the postmaster's log: a process killed by a
# signal, or a worker that exited with an error and will be restarted.
my $crash_re = qr/terminated by signal|exited with exit code/;

# Lines of a log text that match a pattern.
sub count_lines
{
	my ($text, $re) = @_;
	return scalar(grep { /$re/ } split /\n/, $text);
}

# An endpoint of a company at a receiver's path, subscribed to
# enrollment.created; returns its id.
sub create_endpoint
{
	my ($node, $db, $company, $r, $path) = @_;
	return $node->safe_psql($db,
		"SELECT id FROM webhooks.create_endpoint('$company', '"
		  . receiver_url($r, $path)
		  . "', ARRAY['enrollment.created'])");
}

# The extension dropped and created again in one transaction.
sub recreate_extension
{
	my ($node) = @_;
	$node->safe_psql('postgres',
		'DROP EXTENSION konvox_webhooks CASCADE; CREATE EXTENSION konvox_webhooks'
	);
	return;
}

# Every event of a company is delivered and reached the receiver path, each
# exactly once.
sub check_delivered
{
	my ($node, $db, $r, $company, $path, $n) = @_;
	is( $node->safe_psql(
			$db, qq{
SELECT count(*), count(*) FILTER (WHERE d.status = 'delivered')
  FROM webhooks.deliveries d JOIN webhooks.events ev ON ev.id = d.event_id
 WHERE ev.company_id = '$company'}),
		"$n|$n",
		"$company: all $n deliveries delivered");
	my @ids = split /\n/,
	  $node->safe_psql($db,
		"SELECT id FROM webhooks.events WHERE company_id = '$company' ORDER BY id"
	  );
	my %seen;
	$seen{ $_->{headers}{'webhook-id'} }++
	  for grep { $_->{path} eq $path } receiver_log($r);
	my @missing = grep { !$seen{$_} } @ids;
	is(scalar @missing, 0,
		"$company: every event reached the receiver (" . scalar(@missing) . ' missing)');
	is(scalar(grep { $_ > 1 } values %seen), 0, "$company: each once");
	return scalar @missing;
}

###
### 1. DROP EXTENSION while requests are in flight, then CREATE EXTENSION.
###

my $node = kw_node('lifecycle');
my $r = kw_receiver();
my @pids = kw_worker_pids($node);
my $nworkers = scalar @pids;
ok($nworkers >= 1, "$nworkers worker(s) running");
my $offset = -s $node->logfile;

my $n_slow = 100;
create_endpoint($node, 'postgres', 'old', $r, '/old?delay_ms=2000');
kw_emit_many($node, 'postgres', 'old', $n_slow);
receiver_wait($r, sub { grep({ $_->{path} eq '/old' } @_) >= $n_slow })
  or die "the slow requests did not go out";

$node->safe_psql('postgres', 'DROP EXTENSION konvox_webhooks CASCADE');
my $t_drop = time();

# Each worker notices when its requests come back, says so once, and waits.
my $wait_re = qr/konvox_webhooks worker waiting: extension "konvox_webhooks" is not installed/;
my $waited = 0;
while (time() - $t_drop < 20)
{
	$waited = count_lines(kw_log_since($node, $offset), $wait_re);
	last if $waited >= $nworkers;
	usleep(100_000);
}
is($waited, $nworkers, 'after DROP EXTENSION each worker logged that it waits');
sleep(6);    # the worker must stay quiet: longer than its 5 s between looks
my $log = kw_log_since($node, $offset);
is(count_lines($log, $wait_re),
	$nworkers, 'and logged it once, not again while waiting');
unlike($log, $crash_re, 'no worker crashed or exited');
is_deeply([ kw_worker_pids($node) ], \@pids, 'the workers kept their pids');

$node->safe_psql('postgres', 'CREATE EXTENSION konvox_webhooks');
create_endpoint($node, 'postgres', 'new', $r, '/new');
kw_emit_many($node, 'postgres', 'new', 50);
kw_wait_drained($node, 'postgres', 'new');
check_delivered($node, 'postgres', $r, 'new', '/new', 50);
$log = kw_log_since($node, $offset);
like(
	$log,
	qr/konvox_webhooks worker found the extension in database "postgres"/,
	'the workers logged that the extension is back');
is_deeply([ kw_worker_pids($node) ], \@pids, 'the same workers delivered');

###
### 2. DROP EXTENSION and CREATE EXTENSION at once, with requests in flight:
### the new outbox numbers its deliveries from 1 again, so the ids of the
### requests still in flight are now those of new deliveries.  The answers to
### the old requests must not be taken for the new deliveries: every new
### event reaches its receiver.
###

create_endpoint($node, 'postgres', 'old2', $r, '/old2?delay_ms=3000');
kw_emit_many($node, 'postgres', 'old2', $n_slow);
receiver_wait($r, sub { grep({ $_->{path} eq '/old2' } @_) >= $n_slow })
  or die "the slow requests did not go out";
my $in_flight_ids = $node->safe_psql('postgres',
	"SELECT min(id) || '..' || max(id) FROM webhooks.deliveries WHERE status = 'pending'"
);
$node->safe_psql(
	'postgres', qq{
DROP EXTENSION konvox_webhooks CASCADE;
CREATE EXTENSION konvox_webhooks;
SELECT webhooks.create_endpoint('new2', '@{[ receiver_url($r, '/new2') ]}', ARRAY['enrollment.created']);
});
my $n_new2 = 3 * $n_slow;
kw_emit_many($node, 'postgres', 'new2', $n_new2);
note("requests of deliveries $in_flight_ids in flight across DROP and CREATE EXTENSION; $n_new2 new deliveries");
kw_wait_drained($node, 'postgres', 'new2');
my $lost2 = check_delivered($node, 'postgres', $r, 'new2', '/new2', $n_new2);
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM webhooks.delivery_history
 WHERE company_id = 'new2' AND duration_ms >= 2500}),
	'0',
	'no new delivery carries the 3 s answer of an old request as its attempt');
$log = kw_log_since($node, $offset);
unlike($log, $crash_re, 'no worker crashed or exited');
is_deeply([ kw_worker_pids($node) ], \@pids, 'the workers kept their pids');
note(
	"extension lifecycle: DROP EXTENSION with $n_slow requests in flight, then CREATE EXTENSION: "
	  . "50 new events delivered, lost 0; DROP + CREATE at once with $n_slow requests in flight: "
	  . "$n_new2 new events, lost $lost2; worker pids unchanged, no crash");

###
### 2b. What the workers learnt of an endpoint (its breaker open) is not
### taken for the endpoint of the same id in an extension created again.
###

recreate_extension($node);
my $broken = create_endpoint($node, 'postgres', 'broken', $r, '/broken?status=500');
kw_emit_many($node, 'postgres', 'broken', 20);
ok( $node->poll_query_until(
		'postgres',
		"SELECT state = 'failing' FROM webhooks.endpoint_health WHERE endpoint_id = $broken"
	),
	"endpoint $broken fails and its breaker opens");
recreate_extension($node);
my $healthy = create_endpoint($node, 'postgres', 'healthy', $r, '/healthy');
is($healthy, $broken, "the new extension's first endpoint has the same id, $healthy");
is( $node->safe_psql(
		'postgres',
		"SELECT state FROM webhooks.endpoint_health WHERE endpoint_id = $healthy"),
	'healthy',
	'endpoint_health shows it healthy, not the breaker of the dropped one');
kw_emit_many($node, 'postgres', 'healthy', 20);
kw_wait_drained($node, 'postgres', 'healthy');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FILTER (WHERE d.status = 'delivered') || ' ' ||
       (SELECT count(*) FROM webhooks.delivery_attempts WHERE error LIKE 'not sent:%')
  FROM webhooks.deliveries d}),
	'20 0',
	'its deliveries are sent and delivered, none recorded as not sent for the old breaker');

###
### 3. The server starts before the extension is created.
###

my $bare = kw_node('no_extension', no_extension => 1);
my $rb = kw_receiver('bare');
my @bare_pids = kw_worker_pids($bare);
is(scalar @bare_pids, $nworkers, 'the workers run without the extension');
my $t_start = time();
my $started_re = qr/konvox_webhooks.*\bstarted\b/;
my $waits;
while (time() - $t_start < 20)
{
	$waits = count_lines(kw_log_since($bare, 0), $wait_re);
	last if $waits >= $nworkers;
	usleep(100_000);
}
is($waits, $nworkers, 'each worker logged that it waits for the extension');
sleep(6);    # longer than the 5 s restart interval of a crashed worker
$log = kw_log_since($bare, 0);
is(count_lines($log, $wait_re), $nworkers, 'once each, over 6 s of waiting');
is(count_lines($log, $started_re), $nworkers, 'the workers started once each');
unlike($log, $crash_re, 'no worker crashed or exited');
is_deeply([ kw_worker_pids($bare) ], \@bare_pids, 'the same workers are waiting');

$bare->safe_psql('postgres', 'CREATE EXTENSION konvox_webhooks');
create_endpoint($bare, 'postgres', 'late', $rb, '/late');
kw_emit_many($bare, 'postgres', 'late', 20);
kw_wait_drained($bare, 'postgres', 'late');
check_delivered($bare, 'postgres', $rb, 'late', '/late', 20);
is_deeply([ kw_worker_pids($bare) ], \@bare_pids, 'by the workers that waited');
$bare->stop;

###
### 4. The database named by konvox_webhooks.database_name does not exist.
###    The server runs; the workers wait for it, say so once, and do not
###    crash-loop; once the database and the extension exist, deliveries
###    flow.
###

my $nodb = kw_node(
	'no_database',
	no_extension => 1,
	conf => "konvox_webhooks.database_name = 'kwdb'\n");
my $rn = kw_receiver('nodb');
is($nodb->safe_psql('postgres', 'SELECT 1'), '1', 'the server runs');
my $db_wait_re = qr/konvox_webhooks.*wait.*kwdb|konvox_webhooks.*kwdb.*wait/i;
my $fatal_re = qr/FATAL:\s+database "kwdb" does not exist/;
$nodb->wait_for_log($db_wait_re, 0);
my $early = kw_log_since($nodb, 0);
# a window to count restarts in, not a wait for a condition: longer than
# two restart intervals of a crashing worker
sleep(11);
$log = kw_log_since($nodb, 0);
my $db_waits = count_lines($log, $db_wait_re);
note(
	sprintf(
		'database missing, over ~11 s: %d "started" lines (%d at the first wait), %d waiting lines, %d FATAL "does not exist", %d worker exits',
		count_lines($log, $started_re), count_lines($early, $started_re),
		$db_waits, count_lines($log, $fatal_re), count_lines($log, $crash_re)));
ok($db_waits >= 1, 'the worker logged that it waits for database "kwdb"');
ok($db_waits <= $nworkers + 1, 'once (per worker at most)');
is($db_waits, count_lines($early, $db_wait_re),
	'and not again in the 11 s after the first');
is(count_lines($log, $started_re),
	count_lines($early, $started_re),
	'nothing started again in those 11 s: no crash loop');
is(count_lines($log, $fatal_re), 0, 'no FATAL "database does not exist"');
is(count_lines($log, $crash_re), 0, 'no worker crashed or exited');

$nodb->safe_psql('postgres', 'CREATE DATABASE kwdb');
$nodb->poll_query_until('kwdb',
	"SELECT count(*) = $nworkers FROM pg_stat_activity WHERE backend_type = 'konvox_webhooks worker' AND datname = 'kwdb'"
) or diag('the workers did not connect to kwdb');
$nodb->safe_psql('kwdb', 'CREATE EXTENSION konvox_webhooks');
create_endpoint($nodb, 'kwdb', 'kw', $rn, '/kw');
kw_emit_many($nodb, 'kwdb', 'kw', 20);
kw_wait_drained($nodb, 'kwdb', 'kw');
check_delivered($nodb, 'kwdb', $rn, 'kw', '/kw', 20);

done_testing();
