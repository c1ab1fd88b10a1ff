# Idempotent emit under concurrency: sessions that emit one key at once make
# exactly one event, and every one of them gets its id; when the first
# transaction rolls back, one of the others writes the event; under
# REPEATABLE READ, a key taken by a transaction that committed after the
# snapshot is a serialization failure, and the retry returns the event;
# 8 pgbench clients emitting 20 keys over and over leave one event per key,
# delivered once.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../test";
use KwTest;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = kw_node('idempotent');
my $r = kw_receiver();

sub sql { return $node->safe_psql('postgres', $_[0]); }

sql("SELECT webhooks.create_endpoint('acme', '"
	  . receiver_url($r, '/hook')
	  . "', ARRAY['contact.replied'])");

# emit() with a key, as SQL
sub emit_sql
{
	my ($key, $contact) = @_;
	$contact //= $key;
	return
	  "SELECT webhooks.emit('contact.replied', 'acme', '{\"contactId\": \"$contact\", \"channel\": \"email\"}', '$key')";
}

# A session in an open transaction, with its backend pid.
sub session
{
	my ($isolation) = @_;
	my $s = $node->background_psql('postgres', on_error_stop => 0);
	$s->{pid} = $s->query_safe('SELECT pg_backend_pid()');
	$s->query_safe('BEGIN' . ($isolation ? " ISOLATION LEVEL $isolation" : ''));
	return $s;
}

# Start a statement that will wait, and return at once.
sub start_waiting
{
	my ($s, $query) = @_;
	$s->query_until(qr/started\n/, "\\echo started\n$query;\n");
	return;
}

# Wait until these sessions wait for another transaction.
sub wait_blocked
{
	my @pids = map { $_->{pid} } @_;
	my $list = join(', ', @pids);
	$node->poll_query_until(
		'postgres', qq{
SELECT count(*) = @{[scalar @pids]} FROM pg_stat_activity
 WHERE pid IN ($list) AND wait_event_type = 'Lock' AND wait_event = 'transactionid'})
	  or die "sessions $list did not wait";
	return;
}

# The output of a session's waiting statement, once it is done: COMMIT
# (or the statement given) after it, and what came before.
sub finish
{
	my ($s, $then) = @_;
	my ($out, $err) = $s->query($then // 'COMMIT');
	return ($out, $s->{stderr});
}

sub events_of
{
	my ($key) = @_;
	return sql(
		"SELECT count(*) || ' ' || coalesce(min(id::text), '-') FROM webhooks.events WHERE idempotency_key = '$key'"
	);
}

#
# Three sessions, one key: the first commits, the others wait for it and
# get its id
#
my ($s1, $s2, $s3) = (session(), session(), session());
my $id1 = $s1->query_safe(emit_sql('k1', 'first'));
like($id1, qr/^[0-9a-f-]{36}$/, 'the first session emits k1');
start_waiting($s2, emit_sql('k1', 'second'));
start_waiting($s3, emit_sql('k1', 'third'));
wait_blocked($s2, $s3);
pass('the other two wait for the first transaction');
is(events_of('k1'), '0 -', 'nothing committed yet');
$s1->query_safe('COMMIT');
my ($out2, $err2) = finish($s2);
my ($out3, $err3) = finish($s3);
is($out2, $id1, 'the second session gets the id of the first event');
is($out3, $id1, 'and so does the third');
is($err2 . $err3, '', 'without an error');
is(events_of('k1'), "1 $id1", 'one event for k1');
is( sql(
		"SELECT data ->> 'contactId' FROM webhooks.events WHERE idempotency_key = 'k1'"),
	'first', 'the first session\'s');
is(sql("SELECT count(*) FROM webhooks.deliveries WHERE event_id = '$id1'"),
	'1', 'with one delivery');

#
# The first rolls back: one of the others writes the event, the other gets
# its id
#
($s1, $s2, $s3) = (session(), session(), session());
my $doomed = $s1->query_safe(emit_sql('k2', 'doomed'));
start_waiting($s2, emit_sql('k2', 'second'));
start_waiting($s3, emit_sql('k2', 'third'));
wait_blocked($s2, $s3);
$s1->query_safe('ROLLBACK');
# one of them now has the key, and the other waits for its transaction
$node->poll_query_until(
	'postgres', qq{
SELECT count(*) = 1 FROM pg_stat_activity
 WHERE pid IN ($s2->{pid}, $s3->{pid}) AND wait_event = 'transactionid'})
  or die "neither session went on";
my $waiting = sql(
	"SELECT pid FROM pg_stat_activity WHERE pid IN ($s2->{pid}, $s3->{pid}) AND wait_event = 'transactionid'"
);
my ($winner, $loser) = $waiting == $s2->{pid} ? ($s3, $s2) : ($s2, $s3);
my ($won) = finish($winner);
my ($lost) = finish($loser);
like($won, qr/^[0-9a-f-]{36}$/, 'one of the waiting sessions writes the event');
isnt($won, $doomed, 'a new one, not the rolled-back one');
is($lost, $won, 'the other gets its id');
is(events_of('k2'), "1 $won", 'one event for k2');

#
# REPEATABLE READ: a key taken by a transaction that committed after the
# snapshot is a serialization failure; the retry returns the event
#
my $rr = session('REPEATABLE READ');
$rr->query_safe('SELECT count(*) FROM webhooks.events');    # the snapshot
my $id3 = sql(emit_sql('k3', 'committed'));
my ($rr_out, $rr_failed) = $rr->query(emit_sql('k3', 'repeatable'));
is($rr_failed, 1, 'REPEATABLE READ: emit() of a key committed since the snapshot fails');
like($rr->{stderr},
	qr/ERROR:  could not serialize access due to concurrent update/,
	'with a serialization failure');
$rr->query('ROLLBACK');
$rr->{stderr} = '';
$rr->query_safe('BEGIN ISOLATION LEVEL REPEATABLE READ');
is($rr->query_safe(emit_sql('k3', 'repeatable')),
	$id3, 'the retried transaction gets the committed event\'s id');
$rr->query_safe('COMMIT');

# and when it waits for that transaction
my $rr2 = session('REPEATABLE READ');
$rr2->query_safe('SELECT count(*) FROM webhooks.events');
my $other = session();
my $id4 = $other->query_safe(emit_sql('k4', 'other'));
start_waiting($rr2, emit_sql('k4', 'repeatable'));
wait_blocked($rr2);
$other->query_safe('COMMIT');
my (undef, $rr2_err) = finish($rr2, 'ROLLBACK');
like($rr2_err, qr/could not serialize access due to concurrent update/,
	'REPEATABLE READ: waiting for the transaction that commits the key, too');
is(events_of('k4'), "1 $id4", 'one event for k4');

$_->quit for ($s1, $s2, $s3, $rr, $rr2, $other);

#
# 8 pgbench clients, 20 keys, 50 transactions each that hold the key a
# moment before they commit
#
sql('CREATE TABLE ledger (key int, id uuid)');
my $script = $node->basedir . '/emit.sql';
append_to_file(
	$script, q{
\set key random(1, 20)
BEGIN;
INSERT INTO ledger SELECT :key, webhooks.emit('contact.replied', 'acme', jsonb_build_object('contactId', 'client' || :client_id, 'channel', 'email'), 'stress-' || :key);
\sleep 2 ms
COMMIT;
});
my ($out, $err) = ('', '');
IPC::Run::run(
	[
		'pgbench', '-n', '-c', 8, '-j', 2, '-t', 50, '-f', $script,
		'-h', $node->host, '-p', $node->port, 'postgres'
	],
	'>', \$out, '2>', \$err);
is($? >> 8, 0, 'pgbench ran without errors') or diag($err);
like($out, qr/number of transactions actually processed: 400/,
	'400 emits');
is( sql(
		q{
SELECT count(*) || ' keys, ' || sum(n) || ' emits, ' || count(*) FILTER (WHERE ids = 1) || ' with one id'
  FROM (SELECT key, count(*) AS n, count(DISTINCT id) AS ids FROM ledger GROUP BY key) s}
	),
	'20 keys, 400 emits, 20 with one id',
	'every emit of a key got the same id');
is( sql(
		q{
SELECT count(*) || ' events, ' || count(*) FILTER (WHERE EXISTS (
           SELECT FROM ledger l WHERE l.id = e.id AND 'stress-' || l.key = e.idempotency_key))
       || ' returned'
  FROM webhooks.events e WHERE e.idempotency_key LIKE 'stress-%'}),
	'20 events, 20 returned',
	'one event per key, the one its emits returned');
kw_wait_drained($node, 'postgres', 'acme');
my %seen;
$seen{ $_->{headers}{'webhook-id'} }++ for receiver_log($r);
my @stress = split /\n/,
  sql("SELECT id FROM webhooks.events WHERE idempotency_key LIKE 'stress-%'");
is(scalar(grep { ($seen{$_} // 0) == 1 } @stress),
	20, 'the receiver got each of them once');
is(scalar(keys %seen), 24, 'and nothing else than the 24 events');

$node->stop;
done_testing();
