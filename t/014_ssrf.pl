# SSRF: with konvox_webhooks.allow_private_targets off, requests to
# loopback, private, link-local, shared, unspecified and multicast addresses
# are refused when the connection is opened -- after name resolution, so a
# name that resolves to loopback is refused too -- and recorded as a failed
# attempt saying only "address not allowed": which internal address a name
# resolves to goes to the server log, not to the tenant-visible history.
# Turning the setting on by SIGHUP lets loopback through; turning it off
# again stops it again.
#
# Only loopback may receive traffic from this test.  The non-loopback
# addresses are tried only after every loopback form has been refused (the
# same check guards them all), with one attempt each, a 1 s timeout and port
# 1, where nothing listens, so that even a broken check could at most send a
# connection attempt nobody answers.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../test";
use KwTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = kw_node(
	'ssrf', conf => q{
konvox_webhooks.allow_private_targets = off
konvox_webhooks.request_timeout = '1s'
konvox_webhooks.max_attempts = 1
konvox_webhooks.workers = 1
});
my $r = kw_receiver();
my $p = $r->{port};
my $log_start = -s $node->logfile;

is($node->safe_psql('postgres', 'SHOW konvox_webhooks.allow_private_targets'),
	'off', 'allow_private_targets is off');

# Register an endpoint per case (one company each), emit one event to each,
# and wait until all have their single attempt.  Returns case => "status
# code|error|delivery status".
sub try_targets
{
	my (%url) = @_;
	my %id;
	for my $case (sort keys %url)
	{
		my $ok = $node->psql('postgres',
			"SELECT webhooks.create_endpoint('$case', '$url{$case}', ARRAY['enrollment.created'])"
		);
		is($ok, 0, "$case: the endpoint $url{$case} can be registered");
		$id{$case} = $node->safe_psql('postgres',
			"SELECT webhooks.emit('enrollment.created', '$case', '{\"enrollmentId\": \"e\", \"contactId\": \"c\", \"campaignId\": \"k\"}')"
		);
	}
	my $ids = join(', ', map { "'$_'" } values %id);
	$node->poll_query_until('postgres',
		"SELECT bool_and(status <> 'pending') FROM webhooks.deliveries WHERE event_id IN ($ids)"
	) or die "deliveries did not finish";
	my %out;
	for my $case (keys %id)
	{
		$out{$case} = $node->safe_psql(
			'postgres', qq{
SELECT coalesce(a.status_code::text, 'NULL') || '|' || coalesce(a.error, 'NULL') || '|' || d.status
  FROM webhooks.deliveries d
  LEFT JOIN webhooks.delivery_attempts a ON a.delivery_id = d.id
 WHERE d.event_id = '$id{$case}'});
	}
	return %out;
}

###
### Loopback in all its spellings, pointed at the receiver: had the request
### gone out, the receiver would have logged it.
###
my %loopback = (
	v4 => [ "http://127.0.0.1:$p/v4", qr/127\.0\.0\.1/ ],
	other127 => [ "http://127.0.0.2:$p/other127", qr/127\.0\.0\.2/ ],
	name => [ "http://localhost:$p/name", qr/127\.0\.0\.1|::1/ ],
	v6 => [ "http://[::1]:$p/v6", qr/::1/ ],
	unspecified => [ "http://0.0.0.0:$p/unspecified", qr/0\.0\.0\.0/ ],
	short => [ "http://127.1:$p/short", qr/127\.0\.0\.1/ ],
	decimal => [ "http://2130706433:$p/decimal", qr/127\.0\.0\.1/ ],
	hex => [ "http://0x7f000001:$p/hex", qr/127\.0\.0\.1/ ],
	v4mapped => [ "http://[::ffff:127.0.0.1]:$p/v4mapped", qr/::ffff:127\.0\.0\.1/ ],
	https => [ "https://127.0.0.1:$p/https", qr/127\.0\.0\.1/ ],
);
my %got = try_targets(map { $_ => $loopback{$_}[0] } keys %loopback);
my $refused = 0;
for my $case (sort keys %loopback)
{
	my $re = $loopback{$case}[1];
	my $ok = is(
		$got{$case},
		'NULL|address not allowed|failed',
		"$case ($loopback{$case}[0]): refused, no status code, failed, no address in the history");
	$ok &&= like(kw_log_since($node, $log_start),
		qr/konvox_webhooks refused delivery \d+ to \Q$loopback{$case}[0]\E: address ($re)(, \S+)* is not allowed/,
		"$case: the server log names the address");
	$refused++ if $ok;
}
my @leaked = receiver_log($r);
is(scalar @leaked, 0, 'the receiver on 127.0.0.1 got no request')
  or diag(join(', ', map { $_->{path} } @leaked));
my $gate = ($refused == keys %loopback && !@leaked);

###
### Private, link-local, shared and multicast addresses: only once loopback
### was refused in every form, on port 1, with one 1 s attempt.
###
my %private = (
	p10 => [ 'http://10.0.0.1:1/', qr/10\.0\.0\.1/ ],
	p172 => [ 'http://172.16.0.1:1/', qr/172\.16\.0\.1/ ],
	p192 => [ 'http://192.168.1.1:1/', qr/192\.168\.1\.1/ ],
	metadata => [ 'http://169.254.169.254:1/latest/meta-data/', qr/169\.254\.169\.254/ ],
	shared => [ 'http://100.64.0.1:1/', qr/100\.64\.0\.1/ ],
	multicast => [ 'http://224.0.0.1:1/', qr/224\.0\.0\.1/ ],
	ula => [ 'http://[fc00::1]:1/', qr/fc00::1/ ],
	linklocal6 => [ 'http://[fe80::1]:1/', qr/fe80::1/ ],
	multicast6 => [ 'http://[ff02::1]:1/', qr/ff02::1/ ],
	benchmark => [ 'http://198.18.0.1:1/', qr/198\.18\.0\.1/ ],
	ietf => [ 'http://192.0.0.1:1/', qr/192\.0\.0\.1/ ],
	# IPv6 addresses that carry a private IPv4 one are judged by it
	nat64 => [ 'http://[64:ff9b::a9fe:a9fe]:1/', qr/64:ff9b::a9fe:a9fe/ ],
	sixtofour => [ 'http://[2002:a00:1::1]:1/', qr/2002:a00:1::1/ ],
	# IPv6 ranges that lead elsewhere or nowhere
	siit => [ 'http://[::ffff:0:a00:1]:1/', qr/::ffff:0:a00:1/ ],
	teredo => [ 'http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]:1/',
		qr/2001:0:4136:e378:8000:63bf:3fff:fdd2/ ],
	discard => [ 'http://[100::1]:1/', qr/100::1/ ],
	documentation6 => [ 'http://[2001:db8::1]:1/', qr/2001:db8::1/ ],
);
SKIP:
{
	if (!$gate)
	{
		fail('the private-address cases were not run: loopback got through');
		skip 'loopback refusal failed; sending nothing elsewhere', scalar keys %private;
	}
	%got = try_targets(map { $_ => $private{$_}[0] } keys %private);
	for my $case (sort keys %private)
	{
		my $re = $private{$case}[1];
		is($got{$case}, 'NULL|address not allowed|failed',
			"$case ($private{$case}[0]): refused, no status code, failed");
		like(kw_log_since($node, $log_start),
			qr/konvox_webhooks refused delivery \d+ to \Q$private{$case}[0]\E: address ($re) is not allowed/,
			"$case: the server log names the address");
	}
}

###
### allow_private_targets on by SIGHUP: loopback goes through.  Off again:
### refused again, even though a connection to it was just open.
###
my $offset = -s $node->logfile;
$node->safe_psql('postgres',
	"ALTER SYSTEM SET konvox_webhooks.allow_private_targets = on; SELECT pg_reload_conf()"
);
$offset = $node->wait_for_log(
	qr/parameter "konvox_webhooks.allow_private_targets" changed to "on"/, $offset);
$node->safe_psql('postgres',
	"SELECT webhooks.create_endpoint('flip', '"
	  . receiver_url($r, '/flip')
	  . "', ARRAY['enrollment.created'])");

# Four events to the receiver; returns their ids.  One worker, so that the
# requests after the setting is turned off are made by the worker that
# kept the connections of those before: only the check on a kept-alive
# connection can refuse them.
sub emit_flip
{
	my @ids = split /\n/,
	  $node->safe_psql('postgres',
		"SELECT webhooks.emit('enrollment.created', 'flip', '{\"enrollmentId\": \"e\", \"contactId\": \"c\", \"campaignId\": \"k\"}') FROM generate_series(1, 4)"
	  );
	my $ids = join(', ', map { "'$_'" } @ids);
	$node->poll_query_until('postgres',
		"SELECT bool_and(status <> 'pending') FROM webhooks.deliveries WHERE event_id IN ($ids)"
	) or die "deliveries did not finish";
	return @ids;
}

sub flip_outcome
{
	my (@ids) = @_;
	my $ids = join(', ', map { "'$_'" } @ids);
	return $node->safe_psql(
		'postgres', qq{
SELECT string_agg(DISTINCT coalesce(last_status_code::text, 'NULL') || '|' || coalesce(last_error, 'NULL') || '|' || status, ' / ')
  FROM webhooks.deliveries WHERE event_id IN ($ids)});
}

sub received
{
	my (@ids) = @_;
	my %want = map { $_ => 1 } @ids;
	return scalar grep { $want{ $_->{headers}{'webhook-id'} } } receiver_log($r);
}

my @on = emit_flip();
is(flip_outcome(@on), '200|NULL|delivered',
	'allow_private_targets on: 127.0.0.1 is delivered');
is(received(@on), 4, 'and the receiver got the 4 events');

$node->safe_psql('postgres',
	"ALTER SYSTEM SET konvox_webhooks.allow_private_targets = off; SELECT pg_reload_conf()"
);
$node->wait_for_log(
	qr/parameter "konvox_webhooks.allow_private_targets" changed to "off"/, $offset);
my @off = emit_flip();
is( flip_outcome(@off),
	'NULL|address not allowed|failed',
	'off again: 127.0.0.1 is refused again');
my $off_received = received(@off);
is($off_received, 0,
	'and the receiver got none of the 4 (no kept-alive connection reused)');

note(
	sprintf(
		'SSRF: %d loopback spellings and %d private/link-local/multicast targets tried with allow_private_targets off: %d loopback refused, receiver got %d requests; on by SIGHUP: delivered; off again: %s',
		scalar keys %loopback, scalar keys %private, $refused, scalar @leaked,
		$off_received ? "$off_received of 4 SENT" : 'refused'));

done_testing();
