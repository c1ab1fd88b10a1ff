# Failed attempts and retries: max_attempts, the backoff schedule, what
# counts as a failure (5xx, 4xx, 3xx, connection refused, reset, timeout),
# recovery on a later attempt, and an endpoint that stays active.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../test";
use KwTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $base_ms = 1000;
my $node = kw_node(
	'retries', conf => qq{
konvox_webhooks.retry_base_delay = '${base_ms}ms'
konvox_webhooks.request_timeout = '1s'
});
my $r = kw_receiver();

is($node->safe_psql('postgres', 'SHOW konvox_webhooks.max_attempts'),
	'3', 'max_attempts defaults to 3');
my $max_attempts = 3;

# One company per scenario, each with one endpoint, so that an emit goes to
# exactly that endpoint.
my $redirect_target = receiver_url($r, '/redirected');
(my $location = $redirect_target) =~ s/([^A-Za-z0-9])/sprintf('%%%02X', ord $1)/ge;
my %url = (
	s500 => receiver_url($r, '/s500?status=500'),
	recover => receiver_url($r, '/recover?fail_first=2'),
	s302 => receiver_url($r, "/s302?status=302&location=$location"),
	s302bare => receiver_url($r, '/s302bare?status=302'),
	s404 => receiver_url($r, '/s404?status=404'),
	refused => 'http://127.0.0.1:' . unused_port() . '/refused',
	reset => receiver_url($r, '/reset?reset=1'),
	timeout => receiver_url($r, '/timeout?delay_ms=3000'),
);
for my $c (sort keys %url)
{
	$node->safe_psql('postgres',
		"SELECT webhooks.create_endpoint('$c', '$url{$c}', ARRAY['enrollment.completed'])"
	);
}

# Emit an event for a company; returns the event id.
sub emit
{
	my ($company, $n) = @_;
	return $node->safe_psql('postgres',
		"SELECT webhooks.emit('enrollment.completed', '$company', '{\"enrollmentId\": \"e$n\", \"contactId\": \"c$n\", \"campaignId\": \"k$n\"}')"
	);
}

my %id;
my $n = 0;
$id{$_} = emit($_, $n++) for sort keys %url;

my $ids = join(', ', map { "'$_'" } values %id);
$node->poll_query_until('postgres',
	"SELECT bool_and(status <> 'pending') FROM webhooks.deliveries WHERE event_id IN ($ids)"
) or die "deliveries did not finish";

# Where each delivery ended, and its attempts.
sub delivery
{
	my ($c) = @_;
	return $node->safe_psql('postgres',
		"SELECT status, attempts, last_status_code, last_error FROM webhooks.deliveries WHERE event_id = '$id{$c}'"
	);
}

sub attempts
{
	my ($c) = @_;
	return $node->safe_psql(
		'postgres', qq{
SELECT string_agg(attempt || ':' || coalesce(status_code::text, 'NULL') || ':' ||
                  coalesce(error, 'NULL'), ' / ' ORDER BY attempt)
  FROM webhooks.delivery_history WHERE event_id = '$id{$c}'});
}

sub requests
{
	my ($path) = @_;
	return grep { $_->{path} eq $path } receiver_log($r);
}

# 5xx: three attempts, then failed
is(delivery('s500'), 'failed|3|500|HTTP 500',
	'500: failed after max_attempts with the last status and error');
is( attempts('s500'),
	'1:500:HTTP 500 / 2:500:HTTP 500 / 3:500:HTTP 500',
	'500: three attempts recorded');
my @s500 = requests('/s500');
is(scalar @s500, $max_attempts, '500: the receiver saw exactly 3 requests');
is_deeply(
	[ map { $_->{headers}{'webhook-id'} } @s500 ],
	[ ($id{s500}) x $max_attempts ],
	'500: the same webhook-id on every retry');
is_deeply(
	[ map { $_->{body} } @s500[ 1 .. $#s500 ] ],
	[ ($s500[0]{body}) x ($max_attempts - 1) ],
	'500: the same body bytes on every retry');
ok(length($s500[0]{body}) > 0, '500: the body is not empty');

# The backoff schedule of every delivery that used all its attempts: the
# wait after attempt n is base * 2^(n-1) within +-20%, counted from the end
# of the attempt; the last attempt schedules nothing; and no attempt starts
# before its scheduled time (a few ms of slack for clock granularity).
my @exhausted = qw(s500 s302 s302bare s404 refused reset timeout);
for my $c (@exhausted)
{
	my @rows = split /\n/,
	  $node->safe_psql(
		'postgres', qq{
SELECT attempt,
       extract(epoch FROM next_attempt_at
                          - (started_at + duration_ms * interval '1 ms')) * 1000,
       extract(epoch FROM started_at
                          - lag(next_attempt_at) OVER (ORDER BY attempt)) * 1000,
       next_attempt_at IS NULL
  FROM webhooks.delivery_history WHERE event_id = '$id{$c}'
 ORDER BY attempt});
	is(scalar @rows, $max_attempts, "$c: $max_attempts attempts");
	for my $row (@rows)
	{
		my ($attempt, $wait, $late, $last) = split /\|/, $row;
		$wait = sprintf('%.1f', $wait) if $wait ne '';
		$late = sprintf('%.1f', $late) if $late ne '';
		if ($attempt < $max_attempts)
		{
			my $want = $base_ms * 2**($attempt - 1);
			ok( $wait >= 0.8 * $want && $wait <= 1.2 * $want,
				"$c: wait after attempt $attempt is ${wait} ms, within 20% of $want ms"
			);
		}
		else
		{
			is($last, 't', "$c: the last attempt schedules no retry");
		}
		ok($late >= -5, "$c: attempt $attempt started ${late} ms after it was due")
		  if $attempt > 1;
	}
}

# recovery on the third attempt
is(delivery('recover'), 'delivered|3|200|',
	'fail_first=2: delivered on attempt 3, no last error');
is( attempts('recover'),
	'1:500:HTTP 500 / 2:500:HTTP 500 / 3:200:NULL',
	'fail_first=2: two failures, then 200');
is(scalar(requests('/recover')), 3, 'fail_first=2: three requests');

# 3xx is a failure and is not followed, with or without a Location
is(delivery('s302'), 'failed|3|302|HTTP 302', '302: a failed attempt');
is(scalar(requests('/s302')), 3, '302: three requests');
is(scalar(requests('/redirected')), 0, '302: the Location was not followed');
is(delivery('s302bare'), 'failed|3|302|HTTP 302',
	'302 without Location: a failed attempt');

# 4xx is a failure
is(delivery('s404'), 'failed|3|404|HTTP 404', '404: failed');
is( attempts('s404'),
	'1:404:HTTP 404 / 2:404:HTTP 404 / 3:404:HTTP 404',
	'404: three attempts');

# nothing listening: no status, libcurl's words ("Couldn't connect to
# server" in Debian 12's libcurl, "Could not ..." in newer ones)
my $refused = qr/Could(?:n't| not) connect to server/;
like(
	attempts('refused'),
	qr{^1:NULL:$refused / 2:NULL:$refused / 3:NULL:$refused$},
	'connection refused: no status code, libcurl error text');
like(
	delivery('refused'),
	qr/^failed\|3\|\|$refused$/,
	'connection refused: failed');

# a connection closed without an answer
my @reset = split /\n/,
  $node->safe_psql('postgres',
	"SELECT status_code IS NULL, error FROM webhooks.delivery_history WHERE event_id = '$id{reset}' ORDER BY attempt"
  );
is(scalar @reset, 3, 'reset: three attempts');
for my $row (@reset)
{
	my ($nocode, $error) = split /\|/, $row, 2;
	is($nocode, 't', 'reset: no status code');
	ok(length($error) > 0 && $error !~ /^HTTP /,
		"reset: a transport error ($error)");
}
like(delivery('reset'), qr/^failed\|3\|\|./, 'reset: failed');
ok(scalar(requests('/reset')) >= 3, 'reset: the receiver saw the requests');

# a receiver slower than request_timeout
is( attempts('timeout'),
	join(' / ', map { "$_:NULL:Timeout was reached" } 1 .. 3),
	'timeout: no status code, "Timeout was reached"');
is(delivery('timeout'), 'failed|3||Timeout was reached', 'timeout: failed');
for my $d (
	split /\n/,
	$node->safe_psql('postgres',
		"SELECT duration_ms FROM webhooks.delivery_history WHERE event_id = '$id{timeout}'"
	))
{
	ok($d >= 900 && $d < 2900,
		"timeout: attempt cut off after about 1 s ($d ms), before the receiver's 3 s"
	);
}

# The failing endpoint stays active and still gets new events: once it
# answers 200 again, a later event is delivered.
is( $node->safe_psql(
		'postgres',
		"SELECT active FROM webhooks.endpoints WHERE company_id = 's500'"),
	't',
	'the failing endpoint stays active');
receiver_control($r, '/s500', 'status=200');
$id{later} = emit('s500', $n++);
$node->poll_query_until('postgres',
	"SELECT status = 'delivered' FROM webhooks.deliveries WHERE event_id = '$id{later}'"
) or die "later event was not delivered";
my @later =
  grep { $_->{headers}{'webhook-id'} eq $id{later} } requests('/s500');
is(scalar @later, 1, 'a later event reached the endpoint that had failed');
is($node->safe_psql('postgres',
	"SELECT status FROM webhooks.deliveries WHERE event_id = '$id{s500}'"),
	'failed', 'the earlier delivery stays failed');

# Many attempts: with max_attempts = 100, base * 2^(n-1) passes the range
# of a timestamp long before the last attempt.  The wait is clamped to
# max_retry_delay, however far n goes.  A delivery is set by hand to have
# made 70 attempts already; its 71st fails, and its next is due within
# max_retry_delay (2 s), not in the past and not out of range.
$node->safe_psql('postgres',
	"ALTER SYSTEM SET konvox_webhooks.max_attempts = 100; ALTER SYSTEM SET konvox_webhooks.max_retry_delay = '2s'; SELECT pg_reload_conf()"
);
$node->poll_query_until('postgres',
	"SELECT current_setting('konvox_webhooks.max_attempts') = '100' AND current_setting('konvox_webhooks.max_retry_delay') = '2s'"
) or die 'the reload did not happen';
receiver_control($r, '/s500', 'status=500');
my $many = $node->safe_psql('postgres', q{
INSERT INTO webhooks.deliveries (event_id, endpoint_id, attempts, next_attempt_at)
SELECT (SELECT event_id FROM webhooks.deliveries WHERE endpoint_id = e.id LIMIT 1),
       e.id, 70, now() + interval '1 hour'
  FROM webhooks.endpoints e WHERE e.company_id = 's500'
RETURNING id});
$node->safe_psql('postgres',
	"UPDATE webhooks.deliveries SET next_attempt_at = now() WHERE id = $many");
ok( $node->poll_query_until(
		'postgres',
		"SELECT attempts = 72 FROM webhooks.deliveries WHERE id = $many"),
	'attempts 71 and 72 of a delivery with max_attempts = 100 were made');
is( $node->safe_psql(
		'postgres', qq{
SELECT bool_and(next_attempt_at > started_at
                AND next_attempt_at <= started_at + duration_ms * interval '1 ms'
                                       + interval '2 seconds')
  FROM webhooks.delivery_attempts WHERE delivery_id = $many AND attempt IN (71, 72)}),
	't',
	'each retry was scheduled within max_retry_delay of the end of the attempt before');

done_testing();
