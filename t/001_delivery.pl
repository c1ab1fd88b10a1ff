# Delivery against a real receiver: the request, its headers and the exact
# bytes of its body, fan-out of one event to two endpoints, and the history
# row of a successful attempt.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../test";
use KwTest;
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $node = kw_node('delivery');
my $r = kw_receiver();

# Requests the receiver logged for one event id.
sub requests_for
{
	my ($id, @log) = @_;
	return grep { ($_->{headers}{'webhook-id'} // '') eq $id } @log;
}

# Data with non-ASCII text and characters that JSON must escape.  It goes
# into SQL as UTF-8 and must come out of the receiver as the same characters.
my $subject = "R\x{e9} \x{2713} \"quoted\" back\\slash\nnext line";
my $data = {
	contactId => 'c1',
	channel => 'email',
	subject => $subject,
	campaignId => undef,
	enrollmentId => 'enr-1',
};
my $data_json = JSON::PP->new->utf8->canonical->encode($data);
like($data_json, qr/R\xc3\xa9 \xe2\x9c\x93/, 'test input is UTF-8 encoded');

my $url = receiver_url($r, '/hook');
my $secret = $node->safe_psql('postgres',
	"SELECT secret FROM webhooks.create_endpoint('acme', '$url', ARRAY['contact.replied'])"
);

my $before = time();
my $id = $node->safe_psql('postgres',
	"SELECT webhooks.emit('contact.replied', 'acme', \$json\$$data_json\$json\$)"
);
like($id, qr/^[0-9a-f-]{36}$/, 'emit returns an event id');

$node->poll_query_until('postgres',
	"SELECT status = 'delivered' FROM webhooks.deliveries WHERE event_id = '$id'"
) or die "delivery did not happen";
my $after = time();

my @log = receiver_log($r);
my @req = requests_for($id, @log);
is(scalar @req, 1, 'the delivery arrived once');
my $req = $req[0];

# the request line and headers
is($req->{method}, 'POST', 'method is POST');
is($req->{path}, '/hook', 'sent to the registered path');
is($req->{headers}{'content-type'},
	'application/json', 'Content-Type is application/json');
is($req->{headers}{'user-agent'},
	'konvox_webhooks/1.2', 'User-Agent names the extension and version');
is($req->{headers}{'webhook-id'}, $id, 'webhook-id is the event id');
my $ts = $req->{headers}{'webhook-timestamp'};
like($ts, qr/^\d+$/, 'webhook-timestamp is an integer');
ok( $ts >= int($before) - 5 && $ts <= $after + 5,
	"webhook-timestamp $ts is unix seconds near now ($before .. $after)");
my $sig = $req->{headers}{'webhook-signature'};
like($sig, qr/^v1,[A-Za-z0-9+\/]+=*$/, 'webhook-signature is a v1 signature');
is(length($req->{body}),
	$req->{headers}{'content-length'},
	'Content-Length matches the body');

# The envelope, built here from the stored event: the framing and key order
# of the reference, the timestamp as UTC with milliseconds and Z, and the
# data in the text form PostgreSQL gives jsonb.
my $row = $node->safe_psql(
	'postgres', qq{
SELECT to_char(created_at AT TIME ZONE 'UTC',
               'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
       '{"event": ' || to_json(event)::text ||
       ', "timestamp": ' ||
       to_json(to_char(created_at AT TIME ZONE 'UTC',
                       'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))::text ||
       ', "companyId": ' || to_json(company_id)::text ||
       ', "data": ' || data::text || '}'
  FROM webhooks.events WHERE id = '$id'});
my ($created, $expected_body) = split /\|/, $row, 2;
like($created, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/,
	'created_at formats as ISO 8601 UTC with milliseconds');
is($req->{body}, $expected_body, 'the body bytes are the expected envelope');

# the same, decoded, against what the test passed to emit()
my $decoded = eval { JSON::PP->new->utf8->decode($req->{body}) };
ok(defined $decoded, 'the body is valid UTF-8 JSON') or diag($@);
is_deeply(
	$decoded,
	{
		event => 'contact.replied',
		timestamp => $created,
		companyId => 'acme',
		data => $data,
	},
	'the decoded body is the envelope of the emitted event');
is_deeply([ sort keys %$decoded ],
	[qw(companyId data event timestamp)], 'no other top-level keys');
like($req->{body}, qr/^\{"event": "contact\.replied", "timestamp": "/,
	'envelope keys come in the documented order');

# raw bytes: UTF-8 as such, escapes as JSON escapes
ok(index($req->{body}, "R\xc3\xa9 \xe2\x9c\x93") >= 0,
	'non-ASCII text is sent as UTF-8, byte for byte');
ok(index($req->{body}, '\\"quoted\\"') >= 0, 'a quote is escaped as \\"');
ok(index($req->{body}, 'back\\\\slash') >= 0,
	'a backslash is escaped as \\\\');
ok(index($req->{body}, 'slash\\nnext line') >= 0,
	'a newline is escaped as \\n');
unlike($req->{body}, qr/\n/, 'the body holds no raw newline');

# the signature covers exactly these bytes
my $body_sql = $req->{body};
die "body contains the dollar-quote tag" if $body_sql =~ /\$body\$/;
is( $node->safe_psql(
		'postgres',
		"SELECT webhooks.sign('$secret', '$id', $ts, \$body\$$body_sql\$body\$)"
	),
	$sig,
	'webhook-signature signs webhook-id, webhook-timestamp and the body');

# the history shows one successful attempt
is( $node->safe_psql(
		'postgres', qq{
SELECT attempt, status_code, error IS NULL, status, url, next_attempt_at IS NULL
  FROM webhooks.delivery_history WHERE event_id = '$id'}),
	"1|200|t|delivered|$url|t",
	'history: attempt 1, status 200, no error, delivered');
is( $node->safe_psql(
		'postgres', qq{
SELECT attempts, last_status_code, last_error IS NULL, finished_at IS NOT NULL
  FROM webhooks.deliveries WHERE event_id = '$id'}),
	'1|200|t|t',
	'the delivery records one attempt, status 200 and when it finished');

# The same event to two endpoints of a company: identical body bytes, the
# same webhook-id, each signed with its own secret.
my $url_a = receiver_url($r, '/a');
my $url_b = receiver_url($r, '/b');
$node->safe_psql(
	'postgres', qq{
SELECT webhooks.create_endpoint('globex', '$url_a', ARRAY['enrollment.created']);
SELECT webhooks.create_endpoint('globex', '$url_b', ARRAY['enrollment.created', 'contact.replied']);
});
my $id2 = $node->safe_psql('postgres',
	q{SELECT webhooks.emit('enrollment.created', 'globex', '{"enrollmentId": "e\u00e9", "contactId": "c2", "campaignId": "k2"}')}
);
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM webhooks.deliveries WHERE event_id = '$id2'"),
	'2',
	'one delivery per subscribed endpoint');
$node->poll_query_until('postgres',
	"SELECT bool_and(status = 'delivered') FROM webhooks.deliveries WHERE event_id = '$id2'"
) or die "fan-out deliveries did not happen";

@log = receiver_log($r);
my @a = grep { $_->{path} eq '/a' } requests_for($id2, @log);
my @b = grep { $_->{path} eq '/b' } requests_for($id2, @log);
is(scalar @a, 1, 'endpoint a got the event once');
is(scalar @b, 1, 'endpoint b got the event once');
is($a[0]{body}, $b[0]{body}, 'both endpoints got identical body bytes');
ok(index($a[0]{body}, "e\xc3\xa9") >= 0,
	'a \\u escape in the input arrives as UTF-8');
isnt($a[0]{headers}{'webhook-signature'},
	$b[0]{headers}{'webhook-signature'},
	'each endpoint has its own signature');

# nothing else arrived: the first event still exactly once, and nothing for
# another company's events reached these endpoints
is(scalar(requests_for($id, @log)), 1, 'the first event was not sent again');
is(scalar(@log), 3, 'three requests in all');

done_testing();
