# An endpoint's own headers (a receiver's credential): the receiver sees
# them on the first attempt, on a retry, on a test and on a redelivery;
# set_headers() applies from the next attempt on; a refused name and a
# value with a line break are errors that store nothing; headers written
# past the checks are not sent; and no header value reaches the history or
# the server log, even at DEBUG1.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../test";
use KwTest;
use PostgreSQL::Test::Utils;
use Test::More;

# retries 3 s apart: time enough to change the headers in between
my $node = kw_node('headers',
	conf => "konvox_webhooks.retry_base_delay = '3s'\n");
my $r = kw_receiver();

sub sql { return $node->safe_psql('postgres', $_[0]); }

# The outcome of psql: (exit code, stdout, stderr).
sub try_sql
{
	my ($query) = @_;
	my ($stdout, $stderr);
	my $ret = $node->psql('postgres', $query,
		stdout => \$stdout, stderr => \$stderr);
	return ($ret, $stdout, $stderr);
}

# Every secret of this test is built in SQL from two halves, so that the
# statements in the server log never hold one whole: the log is then
# searched for them.
my %secret = (
	bearer => 'Bearer tok-' . 'a1b2c3d4e5',
	key => 'key-' . 'f6g7h8i9',
	rotated => 'Bearer tok-' . 'rotated77',
	refused => 'refused-' . 'value55',
	crlf => 'crlf-' . 'value66');
sub split_literal
{
	my ($s) = @_;
	my $half = int(length($s) / 2);
	return "'" . substr($s, 0, $half) . "' || '" . substr($s, $half) . "'";
}

# the workers log each outcome at DEBUG1: no value may be there either
$node->append_conf('postgresql.conf', "log_min_messages = debug1\n");
$node->reload;

my $ep = sql(
	"SELECT id FROM webhooks.create_endpoint('acme', '"
	  . receiver_url($r, '/hook?fail_first=1')
	  . "', ARRAY['contact.replied'], headers => jsonb_build_object("
	  . "'Authorization', "
	  . split_literal($secret{bearer})
	  . ", 'X-Api-Key', "
	  . split_literal($secret{key}) . "))");

#
# The first attempt (answered 500) and its retry both carry the headers
#
my $event = sql(
	q{SELECT webhooks.emit('contact.replied', 'acme', '{"contactId": "c1", "channel": "email"}')}
);
ok( $node->poll_query_until(
		'postgres',
		"SELECT status = 'delivered' AND attempts = 2 FROM webhooks.deliveries WHERE event_id = '$event'"
	),
	'delivered on the second attempt');
my @hook = grep { $_->{path} eq '/hook' } receiver_log($r);
is(scalar @hook, 2, 'the receiver got two requests');
for my $i (0, 1)
{
	my $h = $hook[$i]{headers};
	is($h->{authorization}, $secret{bearer},
		"attempt @{[$i + 1]}: Authorization as set");
	is($h->{'x-api-key'}, $secret{key}, "attempt @{[$i + 1]}: X-Api-Key as set");
	is($h->{'webhook-id'}, $event, "attempt @{[$i + 1]}: webhook-id still ours");
	is($h->{'content-type'}, 'application/json',
		"attempt @{[$i + 1]}: Content-Type still ours");
	like($h->{'webhook-signature'}, qr/^v1,\S+$/,
		"attempt @{[$i + 1]}: signed as ever");
}

#
# A test and a redelivery carry them too
#
my $test = sql("SELECT webhooks.send_test($ep)");
ok( $node->poll_query_until(
		'postgres',
		"SELECT status = 'delivered' FROM webhooks.deliveries WHERE id = $test"),
	'send_test() delivered');
my $redelivery = sql(
	"SELECT webhooks.redeliver((SELECT id FROM webhooks.deliveries WHERE event_id = '$event'))"
);
ok( $node->poll_query_until(
		'postgres',
		"SELECT status = 'delivered' FROM webhooks.deliveries WHERE id = $redelivery"
	),
	'the redelivery delivered');
@hook = grep { $_->{path} eq '/hook' } receiver_log($r);
is(scalar @hook, 4, 'the receiver got the test and the redelivery');
is_deeply(
	[ map { [ $_->{headers}{authorization}, $_->{headers}{'x-api-key'} ] }
		  @hook[ 2, 3 ] ],
	[ [ $secret{bearer}, $secret{key} ], [ $secret{bearer}, $secret{key} ] ],
	'the test and the redelivery carry both headers');
is($hook[3]{headers}{'webhook-id'}, $event,
	'the redelivery is the same event');

#
# set_headers() applies from the next attempt on, a retry included
#
receiver_control($r, '/hook', 'status=503');
my $event2 = sql(
	q{SELECT webhooks.emit('contact.replied', 'acme', '{"contactId": "c2", "channel": "email"}')}
);
ok( $node->poll_query_until(
		'postgres',
		"SELECT attempts = 1 FROM webhooks.deliveries WHERE event_id = '$event2'"),
	'a second event failed once');
sql("SELECT webhooks.set_headers($ep, jsonb_build_object('Authorization', "
	  . split_literal($secret{rotated}) . '))');
receiver_control($r, '/hook', 'status=200');
ok( $node->poll_query_until(
		'postgres',
		"SELECT status = 'delivered' FROM webhooks.deliveries WHERE event_id = '$event2'"
	),
	'and was delivered on its retry');
my @second = grep { $_->{headers}{'webhook-id'} eq $event2 } receiver_log($r);
is($second[0]{headers}{authorization}, $secret{bearer},
	'its first attempt had the old Authorization');
is($second[-1]{headers}{authorization}, $secret{rotated},
	'its retry has the new one');
ok(!exists $second[-1]{headers}{'x-api-key'},
	'and no X-Api-Key, which set_headers() removed');

#
# Refused: an engine-owned name, a value with a line break; nothing stored
#
my $before = sql(
	'SELECT count(*) || md5(string_agg(headers::text, \',\' ORDER BY id)) FROM webhooks.endpoints'
);
my @bad = (
	[
		'webhook-signature, in another case',
		"jsonb_build_object('Webhook-Signature', " . split_literal($secret{refused}) . ')',
		qr/header "Webhook-Signature" is set by konvox_webhooks/
	],
	[
		'a value with CR LF',
		"jsonb_build_object('X-Api-Key', "
		  . split_literal($secret{crlf})
		  . " || E'\\r\\nX-Injected: 1')",
		qr/value of header "X-Api-Key" contains a line break/
	]);
for my $b (@bad)
{
	my ($what, $headers, $message) = @$b;
	my ($ret, $out, $err) = try_sql(
		"SELECT webhooks.create_endpoint('acme', '"
		  . receiver_url($r, '/other')
		  . "', ARRAY['contact.replied'], headers => $headers)");
	isnt($ret, 0, "create_endpoint() with $what fails");
	like($err, $message, "... saying why");
	unlike($err, qr/value55|value66/, '... without showing the value');
	($ret, $out, $err) = try_sql("SELECT webhooks.set_headers($ep, $headers)");
	isnt($ret, 0, "set_headers() with $what fails");
	like($err, $message, "... saying why");
}
is( sql(
		'SELECT count(*) || md5(string_agg(headers::text, \',\' ORDER BY id)) FROM webhooks.endpoints'
	),
	$before,
	'no endpoint was added and no headers changed');

#
# Headers written past the checks (a restore with triggers disabled) are
# not sent: the attempt says why, and the receiver gets nothing
#
sql(qq{
ALTER TABLE webhooks.endpoints DISABLE TRIGGER endpoints_check;
UPDATE webhooks.endpoints SET headers = '{"Host": "elsewhere.example"}' WHERE id = $ep;
ALTER TABLE webhooks.endpoints ENABLE TRIGGER endpoints_check;
});
my $requests = scalar(receiver_log($r));
my $event3 = sql(
	q{SELECT webhooks.emit('contact.replied', 'acme', '{"contactId": "c3", "channel": "email"}')}
);
ok( $node->poll_query_until(
		'postgres',
		"SELECT attempts >= 1 FROM webhooks.deliveries WHERE event_id = '$event3'"),
	'an event for the endpoint with bad headers was attempted');
like(
	sql(
		"SELECT a.error FROM webhooks.delivery_attempts a JOIN webhooks.deliveries d ON d.id = a.delivery_id WHERE d.event_id = '$event3' AND a.attempt = 1"
	),
	qr/^not sent: the endpoint's headers are not valid; set them again with webhooks\.set_headers\(\)$/,
	'not sent, and the attempt says why');
is(scalar(receiver_log($r)), $requests, 'the receiver got nothing');
sql("SELECT webhooks.set_headers($ep, '{}')");
ok( $node->poll_query_until(
		'postgres',
		"SELECT status = 'delivered' FROM webhooks.deliveries WHERE event_id = '$event3'"
	),
	'set_headers() repairs it: the retry is delivered');

#
# No value in the history, the attempts or the server log
#
my $values = join('|', map { quotemeta } values %secret);
is( sql(
		"SELECT count(*) FROM webhooks.delivery_history h WHERE h::text ~ '$values'"),
	'0',
	'no header value in delivery_history');
is( sql(
		"SELECT count(*) FROM webhooks.delivery_attempts a WHERE a::text ~ '$values'"),
	'0',
	'nor in delivery_attempts');
my $log = kw_log_since($node, 0);
like($log, qr/DEBUG:  konvox_webhooks: delivery \d+ attempt 2: delivered/,
	'the server log has the DEBUG1 outcomes');
unlike($log, qr/$values/, 'and no header value anywhere');

$node->stop;
done_testing();
