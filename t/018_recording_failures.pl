# Recording outcomes that keeps failing must not stall or loop delivery.
# A trigger of the user's on delivery_attempts errors for a while: the
# workers cannot write what became of the requests they sent.  Those
# deliveries are not sent again meanwhile (each event reaches the receiver
# once), the log says so once (not per row, not per try), recording is
# tried again with a growing wait that commits' wake-ups do not cut short,
# and once the trigger is gone every outcome is written: one attempt each.
# Deliveries of other events keep going out while recording fails.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../test";
use KwTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = kw_node('recording');
my $r = kw_receiver();

sub sql
{
	return $node->safe_psql('postgres', $_[0]);
}

sql("SELECT webhooks.create_endpoint('acme', '"
	  . receiver_url($r, '/hook')
	  . "', ARRAY['enrollment.created'])");

# the user's trigger, which refuses every attempt of company acme's
# events while "broken" says so (it names its table with its schema: the
# workers' sessions resolve names in pg_catalog only)
sql(q{
CREATE TABLE broken (on_ boolean);
INSERT INTO broken VALUES (true);
CREATE SEQUENCE refusals;
CREATE FUNCTION refuse_attempts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT on_ FROM public.broken) THEN
        PERFORM pg_catalog.nextval('public.refusals');
        RAISE EXCEPTION 'audit system unavailable';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refuse BEFORE INSERT ON webhooks.delivery_attempts
    FOR EACH ROW EXECUTE FUNCTION refuse_attempts();
});

my $offset = -s $node->logfile;
kw_emit_many($node, 'postgres', 'acme', 20);
ok(defined receiver_wait($r, sub { @_ >= 20 }), 'the 20 events were sent');

$node->wait_for_log(qr/could not record the outcomes of \d+ deliveries: audit system unavailable/,
	$offset);
my $t = time();

# commits keep waking the workers while recording fails
for my $i (1 .. 10)
{
	sql("SELECT webhooks.wake_worker()");
}

# a window to count resends and tries in, not a wait for a condition: the
# first retries of recording come after 1 and 2 s
$node->poll_query_until('postgres',
	"SELECT now() > to_timestamp($t) + interval '3.5 seconds'");

my %seen;
$seen{ $_->{headers}{'webhook-id'} }++ for receiver_log($r);
is(scalar(keys %seen), 20, 'the receiver got the 20 events');
is(scalar(grep { $_ > 1 } values %seen), 0,
	'and none twice while its outcome could not be recorded');
is(sql("SELECT count(*) FROM webhooks.deliveries WHERE status = 'pending' AND attempts = 0"),
	'20', 'the deliveries are still pending, with no attempt recorded');

# Each try of a worker refuses a row of each statement it runs: the batch,
# plainly and carefully, then each of its rows.  Tried again after 1 and
# 3 s, the 20 cost at most a few dozen refusals in this window; tried at
# every turn of the loop, or at every wake-up, they would cost hundreds.
cmp_ok(sql(q{SELECT last_value FROM refusals}), '<', 200,
	'recording is tried again only after a wait, wake-ups or not');

my $log = kw_log_since($node, $offset);
my @said = $log =~ /could not record the outcomes of/g;
is(scalar @said, 1, 'the log says so once');
my @errors = $log =~ /ERROR:  audit system unavailable/g;
cmp_ok(scalar @errors, '<=', 2 * $node->safe_psql('postgres', 'SHOW konvox_webhooks.workers'),
	'and the error itself once per worker, not at every try or row');

# meanwhile another company's events go out and are recorded
sql("SELECT webhooks.create_endpoint('globex', '"
	  . receiver_url($r, '/other')
	  . "', ARRAY['contact.replied'])");
sql(q{UPDATE broken SET on_ = false});
sql(q{CREATE OR REPLACE FUNCTION refuse_attempts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT on_ FROM public.broken) OR NOT EXISTS (
           SELECT FROM webhooks.deliveries d JOIN webhooks.events e ON e.id = d.event_id
            WHERE d.id = NEW.delivery_id AND e.company_id = 'globex') THEN
        RAISE EXCEPTION 'audit system unavailable';
    END IF;
    RETURN NEW;
END $$});
sql(q{SELECT webhooks.emit('contact.replied', 'globex', '{"contactId": "g", "channel": "email"}')});
ok( $node->poll_query_until(
		'postgres', q{
SELECT d.status = 'delivered' FROM webhooks.deliveries d
  JOIN webhooks.events e ON e.id = d.event_id WHERE e.company_id = 'globex'}),
	'another delivery goes out and is recorded meanwhile');

# the trigger is gone: every outcome is recorded, once
sql(q{DROP TRIGGER refuse ON webhooks.delivery_attempts});
kw_wait_drained($node, 'postgres', 'acme');
is( sql(
		q{SELECT count(*) || ' ' || sum(attempts) FROM webhooks.deliveries d
	   JOIN webhooks.events e ON e.id = d.event_id
	  WHERE e.company_id = 'acme' AND d.status = 'delivered'}),
	'20 20',
	'once recording works again, the 20 are delivered with one attempt each');
%seen = ();
$seen{ $_->{headers}{'webhook-id'} }++
  for grep { $_->{path} eq '/hook' } receiver_log($r);
is(scalar(grep { $_ != 1 } values %seen), 0, 'each was sent exactly once');
like(kw_log_since($node, $offset), qr/records delivery outcomes again/,
	'the log says when recording works again');

# An attempt row that is already there, as after someone set a delivery's
# attempts back by hand: the recording's plain insert fails on it, and the
# careful try that follows keeps that row and records the rest, quietly.
sql("SELECT webhooks.create_endpoint('initech', '"
	  . receiver_url($r, '/initech')
	  . "', ARRAY['contact.replied'])");
$offset = -s $node->logfile;
sql(q{
BEGIN;
SELECT webhooks.emit('contact.replied', 'initech', '{"contactId": "i", "channel": "email"}')
  FROM generate_series(1, 3);
INSERT INTO webhooks.delivery_attempts (delivery_id, attempt, started_at, duration_ms, status_code)
SELECT min(d.id), 1, now(), 4242, 299
  FROM webhooks.deliveries d JOIN webhooks.events e ON e.id = d.event_id
 WHERE e.company_id = 'initech';
COMMIT;
});
ok( $node->poll_query_until(
		'postgres', q{
SELECT count(*) FILTER (WHERE d.status = 'delivered' AND d.attempts = 1) = 3
  FROM webhooks.deliveries d JOIN webhooks.events e ON e.id = d.event_id
 WHERE e.company_id = 'initech'}),
	'deliveries whose attempt row is already there are recorded');
is( sql(
		q{SELECT count(*) || ' ' || count(*) FILTER (WHERE a.duration_ms = 4242)
  FROM webhooks.delivery_attempts a JOIN webhooks.deliveries d ON d.id = a.delivery_id
  JOIN webhooks.events e ON e.id = d.event_id WHERE e.company_id = 'initech'}),
	'3 1',
	'one attempt row each, the one that was there kept');
$log = kw_log_since($node, $offset);
unlike($log, qr/duplicate key|could not record/,
	'and the log says nothing of it');

done_testing();
