# Concurrent emitters: pgbench clients, logged in as an application role that
# may only execute emit(), commit and roll back events in parallel while the
# workers deliver; an endpoint is created and another deactivated in the
# middle of it.  Every committed event reaches every endpoint it should, at
# least once; no rolled-back event ever arrives; duplicates are counted.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../test";
use KwTest;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $node = kw_node('concurrent_emitters');
my $r = kw_receiver();

my $ncompanies = 6;
my $clients = 8;
my $transactions = 250;

# The application: a role with USAGE on the schema and EXECUTE on emit()
# only, and a ledger of the event ids it committed.
$node->safe_psql(
	'postgres', q{
CREATE ROLE kw_app LOGIN;
GRANT USAGE ON SCHEMA webhooks TO kw_app;
GRANT EXECUTE ON FUNCTION webhooks.emit(text, text, jsonb) TO kw_app;
CREATE TABLE ledger (id uuid PRIMARY KEY, company text NOT NULL);
GRANT INSERT ON ledger TO kw_app;
});

# Endpoints: company co<i> has endpoints /co<i>/a (both events) and, for
# odd i, /co<i>/b (enrollment.created only).
my %endpoint;    # path => id
for my $i (1 .. $ncompanies)
{
	my @eps = ([ 'a', "ARRAY['enrollment.created', 'contact.replied']" ]);
	push @eps, [ 'b', "ARRAY['enrollment.created']" ] if $i % 2;
	for my $ep (@eps)
	{
		my $path = "/co$i/$ep->[0]";
		$endpoint{$path} = $node->safe_psql('postgres',
			"SELECT id FROM webhooks.create_endpoint('co$i', '"
			  . receiver_url($r, $path)
			  . "', $ep->[1])");
	}
}

# One pgbench transaction (400 a second in all, so that the run lasts a few
# seconds): 1 to 3 events of one company, committed; or, one
# time in ten, an event marked doomed, rolled back.
my $script = $node->basedir . '/emit.sql';
append_to_file(
	$script, qq{
\\set company random(1, $ncompanies)
\\set n random(1, 3)
\\set fate random(1, 10)
\\set kind random(1, 2)
BEGIN;
\\if :fate = 1
INSERT INTO ledger SELECT webhooks.emit('enrollment.created', 'co' || :company, jsonb_build_object('enrollmentId', 'doomed', 'contactId', 'c', 'campaignId', 'k', 'client', :client_id)), 'co' || :company;
ROLLBACK;
\\elif :kind = 1
INSERT INTO ledger SELECT webhooks.emit('enrollment.created', 'co' || :company, jsonb_build_object('enrollmentId', 'e' || i, 'contactId', 'c', 'campaignId', 'k', 'client', :client_id)), 'co' || :company FROM generate_series(1, :n) i;
COMMIT;
\\else
INSERT INTO ledger SELECT webhooks.emit('contact.replied', 'co' || :company, jsonb_build_object('contactId', 'c' || i, 'channel', 'email', 'client', :client_id)), 'co' || :company FROM generate_series(1, :n) i;
COMMIT;
\\endif
});

my ($out, $err) = ('', '');
my $t0 = time();
my $pgbench = IPC::Run::start(
	[
		'pgbench', '-n', '-c', $clients, '-j', 2, '-t', $transactions, '-R', 400,
		'-f', $script, '-U', 'kw_app', '-h', $node->host, '-p', $node->port,
		'postgres'
	],
	'>', \$out, '2>', \$err);

# While pgbench runs: a new endpoint for co2, and co1's /a deactivated.
# Each change is followed by a timestamp taken after its commit, so that any
# transaction that started later must see it.
sub ledger_count
{
	return $node->safe_psql('postgres', 'SELECT count(*) FROM ledger');
}
$node->poll_query_until('postgres', 'SELECT count(*) >= 300 FROM ledger')
  or die "pgbench did not get going";
$endpoint{'/co2/new'} = $node->safe_psql('postgres',
	"SELECT id FROM webhooks.create_endpoint('co2', '"
	  . receiver_url($r, '/co2/new')
	  . "', ARRAY['enrollment.created', 'contact.replied'])");
my $t_created = $node->safe_psql('postgres', 'SELECT clock_timestamp()');
my $ledger_at_create = ledger_count();

$node->poll_query_until('postgres',
	"SELECT count(*) >= $ledger_at_create + 300 FROM ledger")
  or die "pgbench stopped";
$node->safe_psql('postgres',
	"UPDATE webhooks.endpoints SET active = false WHERE id = $endpoint{'/co1/a'}"
);
my $t_deactivated = $node->safe_psql('postgres', 'SELECT clock_timestamp()');
my $ledger_at_deactivate = ledger_count();

$pgbench->finish;
my $pgbench_secs = time() - $t0;
is($? >> 8, 0, 'pgbench ran without errors') or diag($err);
like($out, qr/number of transactions actually processed: @{[$clients * $transactions]}/,
	'pgbench processed every transaction');
my $ledger_total = ledger_count();
cmp_ok($ledger_at_deactivate, '<', $ledger_total,
	'the endpoint changes came while events were still being emitted');

# Wait for the workers to finish.
$node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM webhooks.deliveries WHERE status = 'pending'")
  or die "deliveries did not finish";

# The outbox holds exactly the committed events: those in the ledger.
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM ledger l FULL JOIN webhooks.events ev ON ev.id = l.id
 WHERE l.id IS NULL OR ev.id IS NULL OR ev.company_id <> l.company}),
	'0',
	'the outbox holds exactly the events the application committed');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM webhooks.events WHERE data ->> 'enrollmentId' = 'doomed'"
	),
	'0',
	'no rolled-back event is stored');

# Every delivery ended delivered, or failed because its endpoint was
# deactivated.
is( $node->safe_psql(
		'postgres', qq{
SELECT count(*) FROM webhooks.deliveries
 WHERE NOT (status = 'delivered'
            OR (status = 'failed' AND endpoint_id = $endpoint{'/co1/a'}
                AND last_error = 'endpoint deactivated'))}),
	'0',
	"every delivery is 'delivered', or 'failed' because its endpoint was deactivated"
);

# The fan-out: each event has a delivery to each active endpoint of its
# company subscribed to it, with the endpoint changes taking effect for every
# transaction that began after them.
is( $node->safe_psql(
		'postgres', qq{
SELECT count(*) FROM webhooks.events ev
  JOIN webhooks.endpoints ep ON ep.company_id = ev.company_id
                            AND ep.events \@> ARRAY[ev.event]
 WHERE ep.id NOT IN ($endpoint{'/co1/a'}, $endpoint{'/co2/new'})
   AND NOT EXISTS (SELECT FROM webhooks.deliveries d
                    WHERE d.event_id = ev.id AND d.endpoint_id = ep.id)}),
	'0',
	'every event has a delivery to each unchanged endpoint subscribed to it');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM webhooks.deliveries d
  JOIN webhooks.events ev ON ev.id = d.event_id
  JOIN webhooks.endpoints ep ON ep.id = d.endpoint_id
 WHERE ep.company_id <> ev.company_id OR NOT ep.events @> ARRAY[ev.event]}),
	'0',
	'no delivery to an endpoint of another company or not subscribed');
is( $node->safe_psql(
		'postgres', qq{
SELECT count(*) FROM webhooks.events ev
 WHERE ev.company_id = 'co2' AND ev.created_at > '$t_created'
   AND NOT EXISTS (SELECT FROM webhooks.deliveries d
                    WHERE d.event_id = ev.id
                      AND d.endpoint_id = $endpoint{'/co2/new'})}),
	'0',
	'the endpoint created mid-run got every co2 event of a later transaction'
);
my $new_count = $node->safe_psql('postgres',
	"SELECT count(*) FROM webhooks.deliveries WHERE endpoint_id = $endpoint{'/co2/new'}"
);
cmp_ok($new_count, '>', 0, "it got $new_count deliveries");
is( $node->safe_psql(
		'postgres', qq{
SELECT count(*) FROM webhooks.deliveries d JOIN webhooks.events ev ON ev.id = d.event_id
 WHERE d.endpoint_id = $endpoint{'/co1/a'} AND ev.created_at > '$t_deactivated'}),
	'0',
	'the endpoint deactivated mid-run got no delivery for a later transaction');

# What the receiver got: every delivered (event, endpoint) at least once,
# nothing else, no doomed event, and how many more than once.
my %expected;    # "id path" => 1
my %path_of = reverse %endpoint;
for my $row (
	split /\n/,
	$node->safe_psql('postgres',
		"SELECT event_id, endpoint_id FROM webhooks.deliveries WHERE status = 'delivered'"
	))
{
	my ($id, $ep) = split /\|/, $row;
	$expected{"$id $path_of{$ep}"} = 1;
}
# A request already in flight when its endpoint was deactivated still
# arrives, though its delivery is marked failed: allowed, and counted.
my %in_flight_at_deactivation;
for my $row (
	split /\n/,
	$node->safe_psql(
		'postgres', qq{
SELECT d.event_id FROM webhooks.deliveries d JOIN webhooks.events ev ON ev.id = d.event_id
 WHERE d.endpoint_id = $endpoint{'/co1/a'} AND d.status = 'failed'
   AND ev.created_at < '$t_deactivated'}))
{
	$in_flight_at_deactivation{"$row /co1/a"} = 1;
}
my %seen;
my $doomed = 0;
my @log = receiver_log($r);
for my $req (@log)
{
	$seen{"$req->{headers}{'webhook-id'} $req->{path}"}++;
	$doomed++ if $req->{body} =~ /"doomed"/;
}
my @missing = grep { !$seen{$_} } keys %expected;
my @unexpected =
  grep { !$expected{$_} && !$in_flight_at_deactivation{$_} } keys %seen;
my $late_arrivals = grep { $in_flight_at_deactivation{$_} } keys %seen;
my $dups = grep { $_ > 1 } values %seen;
is(scalar @missing, 0,
	'every delivered (event, endpoint) reached the receiver at least once');
is(scalar @unexpected, 0,
	'the receiver got nothing but delivered (event, endpoint) pairs, and requests in flight when their endpoint was deactivated'
)
  or diag("unexpected: @unexpected[0 .. 4]");
is($doomed, 0, 'no rolled-back event ever arrived');
is($dups, 0, 'no event reached an endpoint twice (no crash, so no resend)');

my $nevents = $node->safe_psql('postgres', 'SELECT count(*) FROM webhooks.events');
note(
	sprintf(
		'concurrent emitters: %d pgbench clients x %d transactions as an emit-only role in %.1f s, 1 in 10 rolled back; %d events committed, %d deliveries, %d requests received; endpoint created and another deactivated mid-run (%d requests in flight to it then still arrived, their deliveries marked failed); duplicates %d, lost %d, rolled back arrived %d',
		$clients, $transactions, $pgbench_secs, $nevents,
		scalar(keys %expected), scalar(@log), $late_arrivals, $dups,
		scalar(@missing), $doomed));

unlike(kw_log_since($node, 0), qr/terminated by signal|exited with exit code/,
	'no server process crashed');

done_testing();
