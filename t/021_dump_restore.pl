# pg_dump and pg_restore of a database using the extension: endpoints
# (secrets included, one subscribed to a user-added event type), user-added
# event types, events, deliveries and attempts are carried; the identity
# sequences go on from where they were; and the deliveries that were pending
# at dump time go out from the restored database.
#
# The source node delivers the history, then is restarted with its worker
# serving another database, so that the events emitted next stay pending,
# untouched, until the dump.  The target node's worker serves the database
# the dump is restored into, and is already running there when the restore
# starts: what wakes it are the statement triggers on the tables restored.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../test";
use KwTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $r = kw_receiver();
my $src = kw_node('source');

sub src { return $src->safe_psql('postgres', $_[0]); }

#
# History, delivered by the source's worker
#
src(q{INSERT INTO webhooks.event_types (name, description, fields, sample)
VALUES ('invoice.paid', 'An invoice was paid.',
        '[{"name": "invoiceId", "type": "string", "required": true},
          {"name": "amount", "type": "number", "required": false}]',
        '{"invoiceId": "inv_sample", "amount": 10}'),
       ('invoice.voided', 'An invoice was voided.', '[]', '{}')});

my %ep;
sub endpoint
{
	my ($name, $company, $path, $events) = @_;
	$ep{$name} = src("SELECT id FROM webhooks.create_endpoint('$company', '"
		  . receiver_url($r, $path)
		  . "', ARRAY[$events], '$name endpoint')");
	return;
}
endpoint('a', 'acme', '/a', q{'contact.replied'});
endpoint('inv', 'acme', '/inv', q{'invoice.paid'});
endpoint('g', 'globex', '/g?fail_first=1', q{'contact.replied', 'invoice.paid'});
endpoint('down', 'acme', '/down?status=500', q{'contact.replied'});
# a rotated secret: both are carried, and both sign until the overlap ends
src("SELECT webhooks.rotate_secret($ep{a}, interval '1 day')");

src(q{
SELECT webhooks.emit('contact.replied', 'acme',
                     jsonb_build_object('contactId', 'h' || i, 'channel', 'email'))
  FROM generate_series(1, 2) i;
SELECT webhooks.emit('invoice.paid', 'acme', '{"invoiceId": "inv_h1", "amount": 12.5}');
SELECT webhooks.emit('contact.replied', 'globex', '{"contactId": "hg", "channel": "sms"}');
SELECT webhooks.emit('invoice.paid', 'globex', '{"invoiceId": "inv_hg"}');
});
ok( $src->poll_query_until(
		'postgres', qq{
SELECT count(*) FILTER (WHERE status = 'delivered') = 5
   AND count(*) FILTER (WHERE endpoint_id = $ep{down} AND attempts >= 1) = 2
  FROM webhooks.deliveries}),
	'source: the history is delivered, with a retry, and /down fails');
# the failing endpoint is deactivated, which fails its deliveries
src("UPDATE webhooks.endpoints SET active = false WHERE id = $ep{down}");

#
# The worker leaves this database: what is emitted now stays pending
#
$src->append_conf('postgresql.conf',
	"konvox_webhooks.database_name = 'elsewhere'\n");
$src->restart;
src(q{
SELECT webhooks.emit('contact.replied', 'acme',
                     jsonb_build_object('contactId', 'p' || i, 'channel', 'email'))
  FROM generate_series(1, 3) i;
SELECT webhooks.emit('invoice.paid', 'acme',
                     jsonb_build_object('invoiceId', 'inv_p' || i))
  FROM generate_series(1, 2) i;
SELECT webhooks.emit('invoice.paid', 'globex', '{"invoiceId": "inv_pg"}');
SELECT webhooks.emit('invoice.voided', 'acme', '{}');
});
my @pending = split /\n/, src(
	q{
SELECT d.id || ' ' || d.event_id || ' ' || ep.url
  FROM webhooks.deliveries d JOIN webhooks.endpoints ep ON ep.id = d.endpoint_id
 WHERE d.status = 'pending' AND d.attempts = 0
 ORDER BY d.id});
is(scalar @pending, 6, 'source: six deliveries pending at dump time');
is( src(
		"SELECT count(*) FILTER (WHERE status = 'pending'), count(*) FILTER (WHERE status = 'failed'), count(*) FROM webhooks.deliveries"
	),
	'6|2|13',
	'source: 6 pending, 2 failed, 13 deliveries in all');

# What must come through, as text, table by table; for the deliveries and
# attempts, the history (which the restored worker must leave alone) in
# full and the pending deliveries by what does not change when delivered.
my %carried = (
	endpoints => 'SELECT e::text FROM webhooks.endpoints e',
	event_types => 'SELECT t::text FROM webhooks.event_types t',
	events => 'SELECT e::text FROM webhooks.events e',
	history => q{SELECT d::text FROM webhooks.deliveries d
	              WHERE id IN (%HISTORY%)},
	pending => q{SELECT row(id, event_id, endpoint_id, created_at, redelivery_of)::text
	               FROM webhooks.deliveries WHERE id IN (%PENDING%)},
	attempts => q{SELECT a::text FROM webhooks.delivery_attempts a
	               WHERE delivery_id IN (%HISTORY%)},);
my $history_ids = join(',',
	split /\n/,
	src("SELECT id FROM webhooks.deliveries WHERE status <> 'pending'"));
my $pending_ids = join(',', map { (split / /)[0] } @pending);
my %before;
for my $t (keys %carried)
{
	$carried{$t} =~ s/%HISTORY%/$history_ids/;
	$carried{$t} =~ s/%PENDING%/$pending_ids/;
	$before{$t} = src(
		"SELECT string_agg(x, E'\\n' ORDER BY x) FROM ($carried{$t}) s(x)");
}
like($before{endpoints}, qr/invoice\.paid/,
	'an endpoint is subscribed to a user-added event type');
my ($max_endpoint, $max_delivery) = split /\|/,
  src(
	'SELECT (SELECT max(id) FROM webhooks.endpoints), (SELECT max(id) FROM webhooks.deliveries)'
  );

my $dump = PostgreSQL::Test::Utils::tempdir() . '/source.dump';
command_ok(
	[ 'pg_dump', '--format=custom', '--file', $dump, $src->connstr('postgres') ],
	'pg_dump of the source database');
$src->stop;

#
# The target: a node whose worker serves database "restored"
#
my $dst = kw_node(
	'target',
	no_extension => 1,
	conf => qq{
konvox_webhooks.database_name = 'restored'
track_commit_timestamp = on
});
$dst->safe_psql('postgres', 'CREATE DATABASE restored');
sub dst { return $dst->safe_psql('restored', $_[0]); }

# the workers are connected to it, waiting for the extension
ok( $dst->poll_query_until(
		'postgres',
		"SELECT count(*) = current_setting('konvox_webhooks.workers')::int FROM pg_stat_activity WHERE backend_type = 'konvox_webhooks worker' AND datname = 'restored'"
	),
	'target: the workers run in the empty database');

# pg_dump puts the data of deliveries before that of endpoints and events,
# and pg_restore commits each table by itself.  Restore in that order, in
# two runs: first the extension and the deliveries, then, once the workers
# have looked at the queue that this woke them for (and found deliveries
# whose events are not there yet), the rest.  A large events table makes
# the same gap within one pg_restore run; here it is made certain.
my $list_dir = PostgreSQL::Test::Utils::tempdir();
my ($toc) = run_command([ 'pg_restore', '--list', $dump ]);
my @toc = grep { !/^;/ && /\S/ } split /\n/, $toc;
my @first = grep { /EXTENSION|TABLE DATA webhooks deliveries / } @toc;
my @rest = grep { !/EXTENSION|TABLE DATA webhooks deliveries / } @toc;
is(scalar(@first), 3,
	'the dump holds the extension, its comment and the deliveries');
like(
	join("\n", @rest),
	qr/TABLE DATA webhooks endpoints .*TABLE DATA webhooks events .*SEQUENCE SET webhooks deliveries_id_seq/s,
	'and, after them, the other tables and the sequences');
append_to_file("$list_dir/first", join("\n", @first) . "\n");
append_to_file("$list_dir/rest", join("\n", @rest) . "\n");

my $t0 = time();
command_ok(
	[
		'pg_restore', '--exit-on-error', '--use-list', "$list_dir/first",
		'--dbname', $dst->connstr('restored'), $dump
	],
	'pg_restore of the extension and the deliveries');
my $loaded =
  dst('SELECT max(pg_xact_commit_timestamp(xmin)) FROM webhooks.deliveries');
ok( $dst->poll_query_until(
		'restored', qq{
SELECT count(*) = current_setting('konvox_webhooks.workers')::int
  FROM pg_stat_activity
 WHERE backend_type = 'konvox_webhooks worker' AND datname = 'restored'
   AND state = 'idle' AND query_start > '$loaded'}),
	'the workers were woken by the deliveries, looked, and are idle again');
is(dst("SELECT count(*) FROM webhooks.deliveries WHERE status = 'pending'"),
	'6', 'the pending deliveries are there, not sent yet');
command_ok(
	[
		'pg_restore', '--exit-on-error', '--use-list', "$list_dir/rest",
		'--dbname', $dst->connstr('restored'), $dump
	],
	'pg_restore of the rest');

ok( $dst->poll_query_until(
		'restored',
		"SELECT count(*) = 0 FROM webhooks.deliveries WHERE status = 'pending'"),
	'the deliveries pending at dump time go out after the restore');
my $elapsed = time() - $t0;
# A worker that holds deliveries whose endpoint is not there yet looks
# for it every second, and the restored endpoints and events wake it too
# (their triggers); either way well before the minute after which an idle
# worker looks at the queue again.
ok($elapsed < 30,
	sprintf('and promptly: %.1f s after the restore began', $elapsed));

#
# Everything was carried
#
for my $t (sort keys %carried)
{
	is(dst("SELECT string_agg(x, E'\\n' ORDER BY x) FROM ($carried{$t}) s(x)"),
		$before{$t}, "restored: $t as they were");
}
is( dst(
		"SELECT count(*) FILTER (WHERE status = 'delivered'), count(*) FILTER (WHERE status = 'failed'), count(*) FROM webhooks.deliveries"
	),
	'11|2|13',
	'restored: the pending deliveries are now delivered, the failed ones stay failed');
is( dst(
		"SELECT count(*) FROM webhooks.delivery_attempts WHERE delivery_id IN ($pending_ids)"
	),
	'6',
	'restored: one attempt each for the pending deliveries');
is( dst(
		"SELECT count(*) FROM webhooks.event_types WHERE name IN ('invoice.paid', 'invoice.voided')"
	),
	'2',
	'restored: the user-added event types');

# each pending delivery reached its endpoint exactly once, with its event id
# and a signature made with the carried secrets
my @log = receiver_log($r);
for my $p (@pending)
{
	my ($id, $event_id, $url) = split / /, $p;
	(my $path = $url) =~ s{^http://[^/]+}{};
	$path =~ s/\?.*//;
	my @got = grep {
		($_->{headers}{'webhook-id'} // '') eq $event_id
		  && $_->{path} eq $path
	} @log;
	is(scalar @got, 1, "delivery $id reached $path once");
	next unless @got;
	my $body = $got[0]{body};
	die "body contains the dollar-quote tag" if $body =~ /\$b\$/;
	my @expected = split /\n/, dst(
		qq{
SELECT webhooks.sign(s, '$event_id', $got[0]{headers}{'webhook-timestamp'}, \$b\$$body\$b\$)
  FROM webhooks.endpoints e,
       unnest(ARRAY[e.secret, CASE WHEN e.previous_secret_expires_at > now()
                                   THEN e.previous_secret END]) s
 WHERE e.url = '$url' AND s IS NOT NULL});
	is($got[0]{headers}{'webhook-signature'},
		join(' ', @expected), "delivery $id is signed with the carried secrets");
}

#
# The identity sequences go on from the dumped values
#
my $new_ep = dst(
	"SELECT id FROM webhooks.create_endpoint('acme', '"
	  . receiver_url($r, '/new')
	  . "', ARRAY['contact.replied'])");
ok($new_ep > $max_endpoint,
	"a new endpoint gets id $new_ep, after the restored ones ($max_endpoint)");
my $new_event =
  dst("SELECT webhooks.emit('contact.replied', 'acme', '{\"contactId\": \"n1\", \"channel\": \"email\"}')");
my $new_delivery = dst(
	"SELECT id FROM webhooks.deliveries WHERE event_id = '$new_event' AND endpoint_id = $new_ep"
);
ok($new_delivery > $max_delivery,
	"a new delivery gets id $new_delivery, after the restored ones ($max_delivery)");
is( dst(
		"SELECT count(*) FROM webhooks.deliveries WHERE event_id = '$new_event'"),
	'2',
	'the new event went to the restored endpoint subscribed to it, and the new one'
);
ok( $dst->poll_query_until(
		'restored',
		"SELECT count(*) = 0 FROM webhooks.deliveries WHERE status = 'pending'"),
	'and is delivered');
my $redelivery = dst(
	"SELECT webhooks.redeliver(min(id)) FROM webhooks.deliveries WHERE status = 'delivered'"
);
ok($redelivery > $new_delivery, 'a redelivery takes the next id too');

$dst->stop;
done_testing();
