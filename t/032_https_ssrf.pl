# The SSRF guard over HTTPS.  With allow_private_targets off, an https URL
# whose address is loopback is refused when the connection would be
# opened, so before any TLS handshake: the TLS receiver on 127.0.0.1, whose
# certificate the cluster trusts and which would have answered, accepts no
# connection at all.  Turned on by SIGHUP, the same URLs are delivered over
# TLS; turned off again, they are refused again, on kept-alive TLS
# connections too (the check before every request).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../test";
use KwTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = kw_node(
	'https_ssrf',
	ca_file => 1,
	conf => q{
konvox_webhooks.allow_private_targets = off
konvox_webhooks.max_attempts = 1
konvox_webhooks.request_timeout = '1s'
konvox_webhooks.workers = 1
});
my $r = kw_receiver('tls', tls => 'good');
my $p = $r->{port};

# The URLs, one company each: the certificate is valid for both hosts.
my %url = (
	v4 => "https://127.0.0.1:$p/v4",
	name => "https://localhost:$p/name",);
for my $company (sort keys %url)
{
	$node->safe_psql('postgres',
		"SELECT webhooks.create_endpoint('$company', '$url{$company}', ARRAY['enrollment.created'])"
	);
}

# the last delivery id of the previous emit_all()
my $done = 0;

# Emit 4 events to each company and wait until their deliveries are
# finished.  One worker, so that the requests after the setting is turned
# off are made by the worker that kept the connections of those before:
# only the check on a kept-alive connection can refuse them.  Returns company => the
# distinct "status code|error|status" of its deliveries.
sub emit_all
{
	my %out;
	for my $company (sort keys %url)
	{
		kw_emit_many($node, 'postgres', $company, 4);
	}
	kw_wait_drained($node, 'postgres', keys %url);
	for my $company (sort keys %url)
	{
		$out{$company} = $node->safe_psql(
			'postgres', qq{
SELECT string_agg(DISTINCT coalesce(d.last_status_code::text, 'NULL') || '|'
                           || coalesce(d.last_error, 'NULL') || '|' || d.status, ' / ')
  FROM webhooks.deliveries d JOIN webhooks.events e ON e.id = d.event_id
 WHERE e.company_id = '$company' AND d.id > $done});
	}
	$done = $node->safe_psql('postgres', 'SELECT max(id) FROM webhooks.deliveries');
	return %out;
}

# Flip allow_private_targets by SIGHUP and wait until it is applied.
my $offset = 0;

sub set_private
{
	my ($value) = @_;
	$node->safe_psql('postgres',
		"ALTER SYSTEM SET konvox_webhooks.allow_private_targets = $value; SELECT pg_reload_conf()"
	);
	$offset = $node->wait_for_log(
		qr/parameter "konvox_webhooks.allow_private_targets" changed to "$value"/,
		$offset);
	return;
}

my %got = emit_all();
for my $company (sort keys %url)
{
	like(
		$got{$company},
		qr/^NULL\|[^|\/]*not allowed[^|\/]*\|failed$/,
		"off: $url{$company} refused, no status code, failed");
}
my $stats = receiver_stats($r);
is_deeply(
	[ scalar(receiver_log($r)), $stats->{accepted}, $stats->{handshakes} ],
	[ 0, 0, 0 ],
	'off: the TLS receiver accepted no connection, so no handshake and no request'
);

set_private('on');
%got = emit_all();
is_deeply(
	\%got,
	{ v4 => '200|NULL|delivered', name => '200|NULL|delivered' },
	'on by SIGHUP: both delivered');
my @log = receiver_log($r);
is_deeply(
	[ scalar(@log), [ sort keys %{ { map { $_->{tls}{version} => 1 } @log } } ] ],
	[ 8, ['TLSv1.3'] ],
	'the receiver got the 8 requests, over TLS 1.3');
my $accepted = receiver_stats($r)->{accepted};

set_private('off');
%got = emit_all();
for my $company (sort keys %url)
{
	like(
		$got{$company},
		qr/^NULL\|[^|\/]*not allowed[^|\/]*\|failed$/,
		"off again: $url{$company} refused again");
}
is(scalar(receiver_log($r)), 8,
	'off again: the receiver got no request, though TLS connections to it were kept alive'
);
is(receiver_stats($r)->{accepted}, $accepted,
	'off again: and accepted no new connection');

done_testing();
