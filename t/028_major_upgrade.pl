# The major-upgrade path: a database using the extension is dumped from a
# cluster of an older PostgreSQL release and restored into a cluster of the
# release under test, with deliveries pending at dump time.  Each of them
# goes out from the restored database, once, with its event id and signed
# with the carried secret; endpoints, event types, events and history come
# through as they were, and the identity sequences go on from there.
#
# The dump is taken as PostgreSQL's documentation advises for an upgrade:
# with the newer release's pg_dump, connected to the older server.
#
# The older release is the one whose pg_config KW_UPGRADE_FROM_PG_CONFIG
# names, with konvox_webhooks installed in it.  make test-all sets it, for
# every release but the oldest, to the oldest release's pg_config (except
# for a release it tests in a chroot of another Debian, where the oldest is
# not installed); a plain make test leaves it unset, and this test is
# skipped.

use strict;
use warnings;

use File::Basename qw(dirname);
use FindBin;
use lib "$FindBin::RealBin/../test";
use KwTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $old_pg_config = $ENV{KW_UPGRADE_FROM_PG_CONFIG} // '';
plan skip_all =>
  'KW_UPGRADE_FROM_PG_CONFIG is not set: no older release to dump from (make test-all sets it to the oldest release, for the newer ones on this system)'
  if $old_pg_config eq '';

# what pg_config of the older release says for one option
sub old_config
{
	my ($stdout, $stderr) = run_command([ $old_pg_config, $_[0] ]);
	chomp $stdout;
	die "$old_pg_config $_[0] failed: $stderr" if $stdout eq '';
	return $stdout;
}
my ($new_version) = run_command([ 'pg_config', '--version' ]);
chomp $new_version;
my $old_version = old_config('--version');
my ($old_major) = $old_version =~ /PostgreSQL (\d+)/;
my ($new_major) = $new_version =~ /PostgreSQL (\d+)/;
plan skip_all =>
  "KW_UPGRADE_FROM_PG_CONFIG names this release ($new_version), not an older one"
  if $old_major >= $new_major;
for my $f (old_config('--pkglibdir') . '/konvox_webhooks.so',
	old_config('--sharedir') . '/extension/konvox_webhooks.control')
{
	die "$f is missing: install konvox_webhooks into the older release "
	  . "(make install PG_CONFIG=$old_pg_config) first"
	  unless -f $f;
}
note("a dump of $old_version restored on $new_version");

my $r = kw_receiver();
my $old = kw_node('old', install_path => dirname(old_config('--bindir')));
sub src { return $old->safe_psql('postgres', $_[0]); }
like(src('SELECT version()'), qr/^PostgreSQL $old_major\./,
	"the source cluster runs PostgreSQL $old_major");

#
# History on the older release, delivered there
#
src(q{INSERT INTO webhooks.event_types (name, description, fields, sample)
VALUES ('invoice.paid', 'An invoice was paid.',
        '[{"name": "invoiceId", "type": "string", "required": true}]',
        '{"invoiceId": "inv_sample"}')});
my %ep;
for my $e ([ 'a', 'acme', q{'contact.replied'} ],
	[ 'inv', 'acme', q{'invoice.paid'} ],
	[ 'g', 'globex', q{'contact.replied', 'invoice.paid'} ])
{
	my ($name, $company, $events) = @$e;
	$ep{$name} = src("SELECT id FROM webhooks.create_endpoint('$company', '"
		  . receiver_url($r, "/$name")
		  . "', ARRAY[$events], '$name endpoint')");
}
src("SELECT webhooks.rotate_secret($ep{a}, interval '1 day')");
src(q{
SELECT webhooks.emit('contact.replied', 'acme', '{"contactId": "h1", "channel": "email"}');
SELECT webhooks.emit('invoice.paid', 'globex', '{"invoiceId": "inv_h1"}');
});
ok( $old->poll_query_until(
		'postgres',
		"SELECT count(*) = 2 AND bool_and(status = 'delivered') FROM webhooks.deliveries"
	),
	'the older release delivers the history');

#
# Its worker leaves the database: what is emitted now stays pending
#
$old->append_conf('postgresql.conf',
	"konvox_webhooks.database_name = 'elsewhere'\n");
$old->restart;
src(q{
SELECT webhooks.emit('contact.replied', 'acme',
                     jsonb_build_object('contactId', 'p' || i, 'channel', 'email'))
  FROM generate_series(1, 3) i;
SELECT webhooks.emit('invoice.paid', 'acme', '{"invoiceId": "inv_p1"}');
SELECT webhooks.emit('contact.replied', 'globex', '{"contactId": "pg", "channel": "sms"}');
});
my @pending = split /\n/, src(
	q{
SELECT d.id || ' ' || d.event_id || ' ' || ep.url
  FROM webhooks.deliveries d JOIN webhooks.endpoints ep ON ep.id = d.endpoint_id
 WHERE d.status = 'pending' AND d.attempts = 0
 ORDER BY d.id});
is(scalar @pending, 5, 'five deliveries pending at dump time');
my $pending_ids = join(',', map { (split / /)[0] } @pending);

# what must come through, as text
my %carried = (
	endpoints => 'SELECT e::text FROM webhooks.endpoints e',
	event_types => 'SELECT t::text FROM webhooks.event_types t',
	events => 'SELECT e::text FROM webhooks.events e',
	history => "SELECT d::text FROM webhooks.deliveries d
	             WHERE id NOT IN ($pending_ids)",
	pending => "SELECT row(id, event_id, endpoint_id, created_at)::text
	              FROM webhooks.deliveries WHERE id IN ($pending_ids)",
	attempts => "SELECT a::text FROM webhooks.delivery_attempts a
	              WHERE delivery_id NOT IN ($pending_ids)",);
my %before;
for my $t (keys %carried)
{
	$before{$t} =
	  src("SELECT string_agg(x, E'\\n' ORDER BY x) FROM ($carried{$t}) s(x)");
}
my ($max_endpoint, $max_delivery) = split /\|/,
  src(
	'SELECT (SELECT max(id) FROM webhooks.endpoints), (SELECT max(id) FROM webhooks.deliveries)'
  );

my $dump = PostgreSQL::Test::Utils::tempdir() . '/old.dump';
my $extversion = $old->safe_psql('postgres',
	"SELECT extversion FROM pg_extension WHERE extname = 'konvox_webhooks'");
command_ok(
	[ 'pg_dump', '--format=custom', '--file', $dump, $old->connstr('postgres') ],
	"pg_dump $new_major of the PostgreSQL $old_major database");
$old->stop;

#
# The release under test, its worker serving the database restored into
#
my $new = kw_node(
	'new',
	no_extension => 1,
	conf => "konvox_webhooks.database_name = 'restored'\n");
$new->safe_psql('postgres', 'CREATE DATABASE restored');
sub dst { return $new->safe_psql('restored', $_[0]); }
command_ok(
	[
		'pg_restore', '--exit-on-error', '--dbname',
		$new->connstr('restored'), $dump
	],
	"pg_restore into PostgreSQL $new_major");
is(dst("SELECT extversion FROM pg_extension WHERE extname = 'konvox_webhooks'"),
	$extversion, "the extension is restored at its version, $extversion");

ok( $new->poll_query_until(
		'restored',
		"SELECT count(*) = 0 FROM webhooks.deliveries WHERE status = 'pending'"),
	'every delivery pending at dump time goes out after the restore');
is( dst(
		"SELECT count(*) FILTER (WHERE status = 'delivered') || '/' || count(*) FROM webhooks.deliveries"
	),
	'7/7',
	'all seven deliveries are delivered')
  or diag(
	dst(q{SELECT string_agg(id || ' ' || status || ' ' || attempts || ' '
                            || coalesce(last_error, '-'), E'\n' ORDER BY id)
            FROM webhooks.deliveries})
  );
is( dst(
		"SELECT count(*) FROM webhooks.delivery_attempts WHERE delivery_id IN ($pending_ids)"
	),
	'5',
	'one attempt each for the pending deliveries');
for my $t (sort keys %carried)
{
	is(dst("SELECT string_agg(x, E'\\n' ORDER BY x) FROM ($carried{$t}) s(x)"),
		$before{$t}, "restored: $t as they were");
}

# each pending delivery reached its endpoint once, with its event id and a
# signature made with the carried secrets
my @log = receiver_log($r);
for my $p (@pending)
{
	my ($id, $event_id, $url) = split / /, $p;
	(my $path = $url) =~ s{^http://[^/]+}{};
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
# Life goes on in the restored database
#
my $new_event = dst(
	q{SELECT webhooks.emit('contact.replied', 'acme', '{"contactId": "n1", "channel": "email"}')}
);
my ($new_delivery, $new_ep) = split /\|/, dst(
	"SELECT id, endpoint_id FROM webhooks.deliveries WHERE event_id = '$new_event'"
);
is($new_ep, $ep{a}, 'a new event goes to the restored endpoint');
ok($new_delivery > $max_delivery,
	"and its delivery gets id $new_delivery, after the restored ones ($max_delivery)"
);
ok( $new->poll_query_until(
		'restored',
		"SELECT status = 'delivered' FROM webhooks.deliveries WHERE id = $new_delivery"
	),
	'and is delivered');
my $another = dst("SELECT id FROM webhooks.create_endpoint('acme', '"
	  . receiver_url($r, '/new')
	  . "', ARRAY['contact.replied'])");
ok($another > $max_endpoint,
	"a new endpoint gets id $another, after the restored ones ($max_endpoint)");

$new->stop;
done_testing();
