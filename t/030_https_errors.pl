# HTTPS failures are data.  Against real TLS servers on 127.0.0.1 (the test
# receiver with certificates made by test/tls-certs): a certificate of a CA
# that is not trusted, one for another host name, an expired one, a plain
# HTTP server on an https URL, and a server that accepts the connection but
# never answers the handshake.  Each ends as failed attempts with no status
# code and an error that says what happened, retried like any failure until
# max_attempts, and the receiver never gets the request: the certificate is
# verified before anything is sent.
#
# konvox_webhooks.ca_file: empty, the test CA is unknown; set by a reload,
# it is trusted and a redelivery goes through; emptied again, it is no
# longer trusted, even on a connection kept alive from before.  A file that
# cannot be read is refused, and only the server's configuration sets it.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../test";
use KwTest;
use IO::Socket::INET;
use PostgreSQL::Test::Utils;
use Test::More;

# one worker, so that its kept-alive connections are the ones tested below
my $node = kw_node(
	'https_errors', conf => q{
konvox_webhooks.workers = 1
konvox_webhooks.max_attempts = 2
konvox_webhooks.retry_base_delay = '200ms'
konvox_webhooks.request_timeout = '1s'
});
my $ca = kw_tls()->{ca};
my %r = map { $_ => kw_receiver($_, tls => $_) }
  qw(good expired wrong_host untrusted);
my $plain = kw_receiver('plain', tls => undef);

# accepts TCP connections (the kernel does, into the backlog) and never
# reads from them: a TLS handshake that hangs
my $silent = IO::Socket::INET->new(
	LocalAddr => '127.0.0.1',
	LocalPort => 0,
	Proto => 'tcp',
	Listen => 16) or die "cannot listen on 127.0.0.1: $!";
my $silent_port = $silent->sockport;

is($node->safe_psql('postgres', 'SHOW konvox_webhooks.ca_file'),
	'', 'ca_file is empty by default');

# Register an endpoint of its own company for each case, emit one event to
# each, wait until every delivery is finished.  Returns case => delivery id.
sub deliver
{
	my (%url) = @_;
	my %id;
	for my $case (sort keys %url)
	{
		$node->safe_psql('postgres',
			"SELECT webhooks.create_endpoint('$case', '$url{$case}', ARRAY['enrollment.created'])"
		);
		my $event = $node->safe_psql('postgres',
			"SELECT webhooks.emit('enrollment.created', '$case', '{\"enrollmentId\": \"e\", \"contactId\": \"c\", \"campaignId\": \"k\"}')"
		);
		$id{$case} = $node->safe_psql('postgres',
			"SELECT id FROM webhooks.deliveries WHERE event_id = '$event'");
	}
	wait_finished(values %id);
	return %id;
}

# Wait until none of these deliveries is pending.
sub wait_finished
{
	my $ids = join(', ', @_);
	$node->poll_query_until('postgres',
		"SELECT bool_and(status <> 'pending') FROM webhooks.deliveries WHERE id IN ($ids)"
	) or die "deliveries $ids did not finish";
	return;
}

# A delivery's attempts, "attempt|status code|error" joined by " / ", then
# " => " and its status.
sub outcome
{
	my ($id) = @_;
	return $node->safe_psql(
		'postgres', qq{
SELECT string_agg(a.attempt || '|' || coalesce(a.status_code::text, 'NULL') || '|'
                  || coalesce(a.error, 'NULL'), ' / ' ORDER BY a.attempt)
       || ' => ' || min(d.status)
  FROM webhooks.deliveries d JOIN webhooks.delivery_attempts a ON a.delivery_id = d.id
 WHERE d.id = $id});
}

# What max_attempts (2) failed attempts with this error look like.
sub failed_twice
{
	my ($error) = @_;
	return "1|NULL|$error / 2|NULL|$error => failed";
}

# Set ca_file by ALTER SYSTEM and a reload, and wait until it is applied.
my $log_offset = 0;

sub set_ca_file
{
	my ($value) = @_;
	$node->safe_psql('postgres',
		"ALTER SYSTEM SET konvox_webhooks.ca_file = '$value'; SELECT pg_reload_conf()"
	);
	$log_offset = $node->wait_for_log(
		qr/parameter "konvox_webhooks.ca_file" changed to "\Q$value\E"/,
		$log_offset);
	return;
}

###
### ca_file empty: the system's trust store does not know the test CA.
###
my %id = deliver(unknown_ca => receiver_url($r{good}, '/unknown_ca'));
is( outcome($id{unknown_ca}),
	failed_twice('TLS certificate not accepted: unable to get local issuer certificate'),
	'a CA the trust store does not know: two failed attempts, then failed');
my $stats = receiver_stats($r{good});
is_deeply(
	[ scalar(receiver_log($r{good})), $stats->{handshakes}, $stats->{tls_failures} ],
	[ 0, 0, 2 ],
	'the receiver got no request; both handshakes were broken off by the worker');

###
### ca_file names the test CA (a reload): it is trusted.
###
set_ca_file($ca);
my $redelivery = $node->safe_psql('postgres',
	"SELECT webhooks.redeliver($id{unknown_ca})");
wait_finished($redelivery);
is(outcome($redelivery), '1|200|NULL => delivered',
	'ca_file set by a reload: the redelivery goes through');
my @got = receiver_log($r{good});
is_deeply(
	[ map { "$_->{path} $_->{tls}{version}" } @got ],
	['/unknown_ca TLSv1.3'],
	'and the receiver got it, over TLS 1.3');

%id = deliver(
	by_name => "https://localhost:$r{good}{port}/by_name",
	expired => receiver_url($r{expired}, '/expired'),
	wrong_host => receiver_url($r{wrong_host}, '/wrong_host'),
	untrusted => receiver_url($r{untrusted}, '/untrusted'),
	plain_http => receiver_url($plain, '/plain_http') =~ s/^http:/https:/r,
	hang => "https://127.0.0.1:$silent_port/hang");

is(outcome($id{by_name}), '1|200|NULL => delivered',
	'a URL with the host name the certificate is for: delivered');
is( outcome($id{expired}),
	failed_twice('TLS certificate not accepted: certificate has expired'),
	'an expired certificate: two failed attempts, then failed');
is( outcome($id{wrong_host}),
	failed_twice(
		'TLS certificate not accepted: it is not valid for the host name of the URL'),
	'a certificate for another host name: two failed attempts, then failed');
is( outcome($id{untrusted}),
	failed_twice('TLS certificate not accepted: unable to get local issuer certificate'),
	'a certificate of another CA than ca_file\'s: two failed attempts, then failed');
is( outcome($id{plain_http}),
	failed_twice(
		'TLS handshake failed: the server did not answer in TLS (is it plain HTTP?)'),
	'a plain HTTP server on an https URL: two failed attempts, then failed');
is( outcome($id{hang}),
	failed_twice('Timeout was reached during the TLS handshake'),
	'a handshake that hangs: two failed attempts, then failed');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FILTER (WHERE duration_ms BETWEEN 900 AND 3000)
		   FROM webhooks.delivery_attempts WHERE delivery_id = $id{hang}"),
	'2',
	'each hung handshake was cut off after request_timeout (1 s)');
is( $node->safe_psql(
		'postgres',
		"SELECT next_attempt_at IS NOT NULL FROM webhooks.delivery_attempts
		  WHERE delivery_id = $id{expired} AND attempt = 1"),
	't',
	'a TLS failure schedules a retry like any failure');

for my $name (qw(expired untrusted))
{
	$stats = receiver_stats($r{$name});
	is_deeply(
		[ scalar(receiver_log($r{$name})), $stats->{handshakes}, $stats->{tls_failures} ],
		[ 0, 0, 2 ],
		"$name: the receiver got no request; both handshakes were broken off");
}
# libcurl checks the host name once the handshake is done, before sending
is(scalar(receiver_log($r{wrong_host})), 0,
	'wrong_host: the receiver got no request');
is(scalar(receiver_log($plain)), 0, 'the plain HTTP server got no request');

###
### ca_file emptied again, with the worker's connection to the good receiver
### kept alive: that connection was verified under the old setting and is
### not used.
###
set_ca_file('');
%id = deliver(emptied => receiver_url($r{good}, '/emptied'));
is( outcome($id{emptied}),
	failed_twice('TLS certificate not accepted: unable to get local issuer certificate'),
	'ca_file emptied again: the test CA is no longer trusted');
is_deeply(
	[ map { $_->{path} } receiver_log($r{good}) ],
	[ '/unknown_ca', '/by_name' ],
	'and the receiver got no request, though a connection to it was open');

###
### Who may set it.
###
my ($ret, $out, $err) = $node->psql('postgres',
	"ALTER SYSTEM SET konvox_webhooks.ca_file = '/nonexistent/ca.pem'");
like(
	$err,
	qr/invalid value for parameter "konvox_webhooks.ca_file".*\n.*File "\/nonexistent\/ca.pem" cannot be read: No such file or directory/,
	'a file that cannot be read is refused');
($ret, $out, $err) = $node->psql('postgres',
	"SET konvox_webhooks.ca_file = '$ca'");
like(
	$err,
	qr/parameter "konvox_webhooks.ca_file" cannot be changed now/,
	'a session cannot set it');
$node->safe_psql('postgres', 'CREATE ROLE kw_admin LOGIN CREATEROLE CREATEDB');
($ret, $out, $err) = $node->psql('postgres',
	"SET ROLE kw_admin; ALTER SYSTEM SET konvox_webhooks.ca_file = '$ca'");
like(
	$err,
	qr/permission denied to set parameter "konvox_webhooks.ca_file"/,
	'a role that is not superuser cannot ALTER SYSTEM it');
is( $node->safe_psql(
		'postgres',
		"SELECT string_agg(name, ', ') FROM pg_settings
		  WHERE name LIKE 'konvox\\_webhooks.%' AND name ~ '(verif|insecure|ssl|tls)'"),
	'',
	'no setting turns verification off');

done_testing();
