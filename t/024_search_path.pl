# A database owner who is not a superuser must not become one through the
# extension.  The owner plants, in the public schema, look-alikes of every
# operator and function that the extension's SQL calls, for argument types
# that pg_catalog matches only through a cast or a polymorphic type (those
# are the ones an exact match in public wins over).  Each look-alike runs
# ALTER ROLE owner SUPERUSER.  Then events are emitted, delivered, retried,
# redelivered and purged, retention runs, endpoints are changed, and a
# superuser fires emit_trigger() with public in its search_path, as a
# migration would, and the owner emits with parallel workers running a
# superuser's check on the outbox.  The owner is never a superuser and no
# look-alike is ever called.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../test";
use KwTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = kw_node('search_path');
my $r = kw_receiver();
my $srcdir = "$FindBin::RealBin/..";

# The test's own queries run with a safe search_path, so that they cannot
# call a look-alike themselves; only the calls below that mean to do so
# keep the default one.
$ENV{PGOPTIONS} = '-c search_path=pg_catalog,pg_temp';

sub sql
{
	my ($query, %opts) = @_;
	local $ENV{PGOPTIONS} = '-c search_path="$user",public'
	  if $opts{public_path};
	return $node->safe_psql('postgres', $query,
		$opts{user} ? (extra_params => [ '-U', $opts{user} ]) : ());
}

#
# The owner: a database owner, not a superuser, who may emit
#
sql(q{
CREATE ROLE mallory LOGIN;
ALTER DATABASE postgres OWNER TO mallory;
GRANT USAGE ON SCHEMA webhooks TO mallory;
GRANT EXECUTE ON FUNCTION webhooks.emit(text, text, jsonb),
                          webhooks.emit(text, text, jsonb, text) TO mallory;
});
is(sql("SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'"),
	'f', 'the owner is not a superuser');

#
# The names the extension's SQL calls: every word followed by "(" in its
# scripts and C sources that names a pg_catalog function, and the
# operators that pg_catalog defines.
#
my %words;
for my $file (glob("$srcdir/konvox_webhooks--*.sql"), glob("$srcdir/*.c"))
{
	my $text = slurp_file($file);
	$words{ lc $1 } = 1 while $text =~ /\b([A-Za-z_][A-Za-z0-9_]*)\s*\(/g;
}
my $names = join(',', map { "'$_'" } sort keys %words);

# Argument types the extension's values have, and the look-alikes' body.
my $setup = slurp_file("$FindBin::RealBin/../test/plant_lookalikes.sql");
$setup =~ s/\@NAMES\@/$names/g;
sql($setup, user => 'mallory');
my $planted = sql(
	q{SELECT count(*) FILTER (WHERE kind = 'operator') || ' operators, ' ||
	         count(*) FILTER (WHERE kind <> 'operator') || ' functions'
	    FROM public.lookalikes});
note "planted $planted";
cmp_ok(sql("SELECT count(*) FROM public.lookalikes WHERE kind = 'operator'"),
	'>', 100, 'the owner planted operators');
cmp_ok(sql("SELECT count(*) FROM public.lookalikes WHERE kind <> 'operator'"),
	'>', 100, 'and functions');
is( sql(
		q{SELECT count(*) FROM public.lookalikes
	   WHERE signature IN ('%(bigint,integer)', 'unnest(text[])')}),
	'2',
	'among them the two of the report: %(bigint, integer) and unnest(text[])'
);

# Wait until $cond holds, or until a look-alike has been called; then
# check that none was, that the owner is not a superuser, and that $cond
# holds.
sub settle
{
	my ($phase, $cond) = @_;
	$node->poll_query_until('postgres',
		"SELECT ($cond) OR EXISTS (SELECT FROM public.lookalike_calls)");
	is( sql(
			"SELECT coalesce(string_agg(DISTINCT what || ' by ' || who, '; '), 'none') FROM public.lookalike_calls"
		),
		'none',
		"$phase: no look-alike was called");
	is(sql("SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'"),
		'f', "$phase: the owner is not a superuser");
	return is(sql("SELECT ($cond)"), 't', $phase);
}

#
# Work for every path of the extension's SQL
#
sql(q{CREATE SCHEMA shop; CREATE TABLE shop.replies (company_id text, contact_id text, channel text)},
	public_path => 1);
my $ok = sql(
	"SELECT id FROM webhooks.create_endpoint('acme', '"
	  . receiver_url($r, '/ok')
	  . "', ARRAY['contact.replied', 'enrollment.created'])",
	public_path => 1);
my $flaky = sql(
	"SELECT id FROM webhooks.create_endpoint('acme', '"
	  . receiver_url($r, '/flaky?fail_first=1')
	  . "', ARRAY['contact.replied'])",
	public_path => 1);
my $down = sql(
	"SELECT id FROM webhooks.create_endpoint('globex', '"
	  . receiver_url($r, '/down?status=500')
	  . "', ARRAY['contact.replied'])",
	public_path => 1);

# A superuser's own check on the outbox, through a SQL function of theirs
# that pins no search_path (as most do), and the owner's exact look-alike
# of the operator it uses, which wins for a caller with public ahead of
# pg_catalog.  emit() checks the constraint as any INSERT does, planning
# it (inlining the function) under the search_path of the moment: the one
# emit() declares, not the caller's.  Without that declaration the
# look-alike runs as the superuser who owns emit().
sql(q{
CREATE SCHEMA audit;
CREATE FUNCTION audit.company_ok(c text) RETURNS boolean
    LANGUAGE sql IMMUTABLE AS $$SELECT c <> ''$$;
ALTER TABLE webhooks.events ADD CONSTRAINT company_ok CHECK (audit.company_ok(company_id));
});
sql(q{
CREATE FUNCTION public.text_ne(a text, b text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM public.lookalike_called('<>(text, text)');
    RETURN pg_catalog.textne(a, b);
END;
$$;
CREATE OPERATOR public.<> (LEFTARG = text, RIGHTARG = text, FUNCTION = public.text_ne);
}, user => 'mallory');

# The owner emits, with public ahead of pg_catalog, in a new session: the
# path its caches would load under and its keyed insert and look-up be
# planned under, but for the search_path that emit() declares.  The second
# emit() with the key returns the first one's event.
my @emitted = split /\n/, sql(
	q{SET search_path = public, pg_catalog, pg_temp;
SELECT webhooks.emit('contact.replied', 'acme', '{"contactId": "c1", "channel": "email"}');
SELECT webhooks.emit('contact.replied', 'globex', '{"contactId": "g1", "channel": "email"}');
SELECT webhooks.emit('enrollment.created', 'acme',
       '{"enrollmentId": "e1", "contactId": "c1", "campaignId": "k1"}');
SELECT webhooks.emit('enrollment.created', 'acme',
       '{"enrollmentId": "e2", "contactId": "c1", "campaignId": "k1"}', 'key-1');
SELECT webhooks.emit('enrollment.created', 'acme',
       '{"enrollmentId": "e2", "contactId": "c1", "campaignId": "k1"}', 'key-1')},
	user => 'mallory');
is(scalar(@emitted), 5, 'the owner emitted with public ahead of pg_catalog');
is($emitted[4], $emitted[3],
	'and the keyed emit() found its event under that search_path');

# A second check of the superuser's, whose query a parallel worker runs
# when the owner asks for one.  A worker takes the leader's settings, not
# what else the leader resolves names through: emit() must pin the
# search_path setting (as its declaration does), not only where names
# resolve in its own process (as an override search path would), or the
# worker resolves lower() through the owner's path, as the superuser.
# The look-alike cannot write in a worker, so it warns, which the owner's
# session and the server log would show.  norm() tells which backend runs
# it when the session asks (a setting, which workers take too), so that
# the test knows a worker ran it.
sql(q{
CREATE TABLE audit.companies (id text PRIMARY KEY);
INSERT INTO audit.companies VALUES ('acme'), ('globex');
CREATE FUNCTION audit.norm(t text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    IF pg_catalog.current_setting('kwtest.report_backend', true) IS NOT NULL THEN
        RAISE NOTICE 'norm() ran in backend %', pg_catalog.pg_backend_pid();
    END IF;
    RETURN lower(t);
END$$;
CREATE FUNCTION audit.company_known(c text) RETURNS boolean
    LANGUAGE plpgsql STABLE AS $$
BEGIN
    PERFORM FROM audit.companies k WHERE audit.norm(k.id) = audit.norm(c);
    RETURN FOUND;
END$$;
ALTER TABLE webhooks.events ADD CONSTRAINT company_known
    CHECK (audit.company_known(company_id));
});
sql(q{
CREATE FUNCTION public.lower(t text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    RAISE WARNING 'look-alike lower(text) called by %', current_user;
    RETURN pg_catalog.lower(t);
END;
$$;
}, user => 'mallory');
{
	my $parallel =
	  $node->safe_psql('postgres', 'SHOW server_version_num') >= 160000
	  ? 'debug_parallel_query'
	  : 'force_parallel_mode';
	my ($ret, $out, $err) = $node->psql(
		'postgres', qq{SET search_path = public, pg_catalog, pg_temp;
SET kwtest.report_backend = on;
SELECT pg_catalog.pg_backend_pid();
SET $parallel = on;
SET parallel_leader_participation = off;
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SELECT webhooks.emit('enrollment.created', 'acme',
       '{"enrollmentId": "e3", "contactId": "c1", "campaignId": "k1"}');
SELECT webhooks.emit('enrollment.created', 'acme',
       '{"enrollmentId": "e4", "contactId": "c1", "campaignId": "k1"}', 'key-2')},
		extra_params => [ '-U', 'mallory' ]);
	is($ret, 0, 'the owner emitted with parallel workers asked for');
	my ($leader) = split /\n/, $out;
	my @backends = $err =~ /norm\(\) ran in backend (\d+)/g;
	ok( (grep { $_ != $leader } @backends),
		'a parallel worker ran the query of the check');
	unlike($err, qr/look-alike/,
		'no look-alike ran in a parallel worker beneath emit()');
}
sql('ALTER TABLE webhooks.events DROP CONSTRAINT company_known');

# a superuser's migration fires emit_trigger(), in both argument forms
sql(q{
CREATE TRIGGER replied AFTER INSERT ON shop.replies FOR EACH ROW
    EXECUTE FUNCTION webhooks.emit_trigger('contact.replied', 'company_id');
CREATE TRIGGER replied_mapped AFTER INSERT ON shop.replies FOR EACH ROW
    EXECUTE FUNCTION webhooks.emit_trigger('contact.replied', 'company_id',
                                           'contactId=contact_id', 'channel=channel');
}, public_path => 1);
{
	local $ENV{PGOPTIONS} = '-c search_path="$user",public';
	my ($ret, $out, $err) = $node->psql('postgres',
		"INSERT INTO shop.replies VALUES ('acme', 'c2', 'email')");
	is($err, '', 'the migration fired emit_trigger() without a word');
}

# delivered, retried, failed
settle(
	'deliveries went out, were retried and failed', qq{
SELECT count(*) FILTER (WHERE status = 'pending') = 0
   AND count(*) FILTER (WHERE endpoint_id = $flaky AND status = 'delivered') = 3
   AND sum(attempts) FILTER (WHERE endpoint_id = $flaky) = 4
   AND count(*) FILTER (WHERE endpoint_id = $down AND status = 'failed') = 1
  FROM webhooks.deliveries});

# redelivery, tests, stats and history, as a superuser
my $failed = sql("SELECT id FROM webhooks.deliveries WHERE endpoint_id = $down");
sql(qq{
SELECT webhooks.redeliver($failed);
SELECT webhooks.redeliver_failed($down, now() - interval '1 hour');
SELECT webhooks.send_test($ok);
SELECT webhooks.send_test($ok, 'enrollment.created');
SELECT webhooks.rotate_secret($ok);
SELECT count(*) FROM webhooks.endpoint_stats;
SELECT count(*) FROM webhooks.delivery_history;
SELECT * FROM webhooks.worker_status();
}, public_path => 1);
settle('redeliveries and tests went out',
	"SELECT count(*) = 0 FROM webhooks.deliveries WHERE status = 'pending'");

# endpoints changed and removed, an event type refused, data purged
sql(qq{
UPDATE webhooks.endpoints SET active = false WHERE id = $flaky;
DELETE FROM webhooks.endpoints WHERE id = $down;
SELECT webhooks.purge_company('globex');
SELECT webhooks.purge(interval '0');
}, public_path => 1);
my ($ret, $out, $err) = $node->psql(
	'postgres', "DELETE FROM webhooks.event_types WHERE name = 'enrollment.created'",
	on_error_stop => 0);
like($err, qr/is subscribed to by endpoints/,
	'a subscribed event type is still refused');

# retention, in the worker
$node->append_conf('postgresql.conf', "konvox_webhooks.retention = '1s'\n");
$node->reload;
settle(
	'retention deleted the history in the worker', q{
SELECT count(*) = 0 FROM webhooks.deliveries d
 WHERE d.created_at < now() - interval '1 second'});

#
# Nobody became a superuser, and no look-alike ran
#
is(sql("SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'"),
	'f', 'the owner is still not a superuser');
is(sql("SELECT coalesce(string_agg(DISTINCT what, '; '), 'none') FROM public.lookalike_calls"),
	'none', 'no look-alike was called');
unlike(kw_log_since($node, 0), qr/WARNING:\s+look-alike /,
	'the server log shows no call of a look-alike either');

done_testing();
