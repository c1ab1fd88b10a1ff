# Egress through a proxy: a real tinyproxy on 127.0.0.1, started here.
# Deliveries go through it in CONNECT tunnels (its log shows them, and not
# the endpoint's headers), over HTTP and HTTPS; konvox_webhooks.no_proxy
# hosts go direct; the server's environment has no say; a dead proxy, a
# proxy that wants credentials and one that refuses the CONNECT are each
# recorded as the proxy's failure, with no status code; the address checks
# still apply to direct requests and to IP addresses in URLs, while names
# are left to the proxy; the settings refuse what they cannot use.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../test";
use KwTest;
use IO::Socket::INET;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;

my @proxies;

# Start tinyproxy on 127.0.0.1 with extra configuration lines; returns a
# hash with port, url and log (its log file).
sub tinyproxy
{
	my ($extra) = @_;
	my $dir = PostgreSQL::Test::Utils::tempdir();
	my $port = unused_port();
	my $conf = "$dir/tinyproxy.conf";
	append_to_file(
		$conf, qq{
Port $port
Listen 127.0.0.1
Timeout 30
MaxClients 50
LogLevel Connect
LogFile "$dir/tinyproxy.log"
PidFile "$dir/tinyproxy.pid"
} . ($extra // ''));
	my $h = IPC::Run::start([ 'tinyproxy', '-d', '-c', $conf ],
		'>', "$dir/stdout", '2>', "$dir/stderr");
	push @proxies, $h;
	my $up = 0;
	for (my $i = 0; $i < 100 && !$up; $i++)
	{
		$up = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Proto => 'tcp');
		select(undef, undef, undef, 0.1) unless $up;
	}
	die "tinyproxy did not start: " . slurp_file("$dir/stderr") unless $up;
	return { port => $port, url => "http://127.0.0.1:$port", log => "$dir/tinyproxy.log" };
}

END
{
	local $?;
	eval { $_->kill_kill(grace => 2) } for @proxies;
}

# The CONNECT requests a proxy has logged, as "host:port"; in scalar
# context, how many.
sub connects
{
	my ($p) = @_;
	return () unless -e $p->{log};
	my @c = slurp_file($p->{log}) =~
	  /Request \(file descriptor \d+\): CONNECT (\S+) HTTP/g;
	return wantarray ? @c : scalar @c;
}

# The server's environment would send everything to a dead proxy, and
# nothing through a live one: it must have no say.
my $dead_port = unused_port();
local $ENV{http_proxy} = "http://127.0.0.1:$dead_port";
local $ENV{https_proxy} = "http://127.0.0.1:$dead_port";
local $ENV{HTTPS_PROXY} = "http://127.0.0.1:$dead_port";
local $ENV{ALL_PROXY} = "http://127.0.0.1:$dead_port";
local $ENV{no_proxy} = '*';
local $ENV{NO_PROXY} = '*';

# one attempt per delivery within this test
my $node = kw_node(
	'proxy',
	ca_file => 1,
	conf => "konvox_webhooks.retry_base_delay = '60s'\n");
my $r = kw_receiver('plain', tls => undef);
my $rtls = kw_receiver('tls', tls => 'good');

sub sql { return $node->safe_psql('postgres', $_[0]); }

my $log_offset = 0;
sub set_conf
{
	my (%set) = @_;
	my $q = '';
	$q .= "ALTER SYSTEM SET konvox_webhooks.$_ = '$set{$_}';\n" for sort keys %set;
	sql($q . 'SELECT pg_reload_conf();');
	my $start = $log_offset;
	for my $name (sort keys %set)
	{
		my $end = $node->wait_for_log(
			qr/parameter "konvox_webhooks\.$name" changed to "\Q$set{$name}\E"/,
			$start);
		$log_offset = $end if $end > $log_offset;
	}
	return;
}

# An endpoint of its own company for url; returns the company.
my $ncompanies = 0;
sub endpoint
{
	my ($url, $headers) = @_;
	my $company = 'co' . ++$ncompanies;
	sql("SELECT webhooks.create_endpoint('$company', '$url', ARRAY['contact.replied']"
		  . ($headers ? ", headers => '$headers'" : '') . ')');
	return $company;
}

# Emit to a company and wait for the first attempt; returns
# "status|status_code|error" of that attempt and the event id.
sub deliver
{
	my ($company) = @_;
	my $event = sql(
		"SELECT webhooks.emit('contact.replied', '$company', '{\"contactId\": \"c\", \"channel\": \"email\"}')"
	);
	$node->poll_query_until('postgres',
		"SELECT attempts >= 1 FROM webhooks.deliveries WHERE event_id = '$event'")
	  or die "no attempt for $company";
	return (
		sql(
			qq{SELECT d.status || '|' || coalesce(a.status_code::text, '') || '|' || coalesce(a.error, '')
  FROM webhooks.deliveries d JOIN webhooks.delivery_attempts a ON a.delivery_id = d.id
 WHERE d.event_id = '$event' AND a.attempt = 1}),
		$event);
}

sub received
{
	my ($rcv, $event) = @_;
	return grep { ($_->{headers}{'webhook-id'} // '') eq $event } receiver_log($rcv);
}

#
# No proxy set: direct, whatever the environment says
#
my $direct = endpoint(receiver_url($r, '/direct?close=1'));
my ($got, $event) = deliver($direct);
is($got, 'delivered|200|', 'no proxy set: delivered directly, the environment\'s proxy ignored');

#
# Through the proxy: HTTP and HTTPS receivers, one CONNECT per connection
#
my $p = tinyproxy();
set_conf(proxy => $p->{url});
my $via = endpoint(receiver_url($r, '/via?close=1'),
	'{"Authorization": "Bearer tunnel-secret-1"}');
my @ids;
for my $i (1 .. 3)
{
	($got, $event) = deliver($via);
	is($got, 'delivered|200|', "through the proxy: delivery $i delivered");
	push @ids, $event;
	my @req = received($r, $event);
	is($req[0]{headers}{authorization}, 'Bearer tunnel-secret-1',
		"... with the endpoint's header");
}
my @c = grep { $_ eq "127.0.0.1:$r->{port}" } connects($p);
is(scalar @c, 3, 'the proxy log shows a CONNECT to the receiver for each');
unlike(slurp_file($p->{log}), qr/tunnel-secret|webhook-id/i,
	'and neither the endpoint\'s header nor ours: they went inside the tunnel');

my $via_tls = endpoint(receiver_url($rtls, '/via-tls?close=1'));
($got, $event) = deliver($via_tls);
is($got, 'delivered|200|', 'through the proxy to an HTTPS receiver: delivered');
my @tls = received($rtls, $event);
like($tls[0]{tls}{version} // '', qr/^TLSv1\.[23]$/,
	'over TLS, end to end through the tunnel');
ok((grep { $_ eq "127.0.0.1:$rtls->{port}" } connects($p)),
	'the proxy log shows its CONNECT');

#
# no_proxy: the hosts it covers go direct
#
set_conf(no_proxy => 'localhost, 192.0.2.0/24');
my $named = endpoint("http://localhost:$r->{port}/named?close=1");
my $before = scalar connects($p);
($got, $event) = deliver($named);
is($got, 'delivered|200|', 'no_proxy localhost: delivered');
is(scalar connects($p), $before, 'directly: no CONNECT');
($got, $event) = deliver($via);
is($got, 'delivered|200|', '127.0.0.1, not in no_proxy: delivered');
is(scalar connects($p), $before + 1, 'through the proxy');

set_conf(no_proxy => '127.0.0.0/8');
$before = scalar connects($p);
($got, $event) = deliver($via);
is($got, 'delivered|200|', 'no_proxy 127.0.0.0/8: 127.0.0.1 delivered');
is(scalar connects($p), $before, 'directly: no CONNECT');
($got, $event) = deliver($named);
is(scalar connects($p), $before + 1,
	'localhost, a name that no CIDR range covers: through the proxy');

#
# The address checks: direct requests and IP addresses in URLs are checked
# here; a name through the proxy is the proxy's to resolve and judge
#
set_conf(no_proxy => 'localhost', allow_private_targets => 'off');
$before = scalar connects($p);
($got, $event) = deliver($named);
is($got, 'pending||address not allowed',
	'allow_private_targets off: localhost, direct, refused after DNS');
($got, $event) = deliver($via);
is($got, 'pending||address not allowed',
	'127.0.0.1 in a URL, through the proxy: refused before the proxy sees it');
is(scalar connects($p), $before, 'the proxy saw neither');
set_conf(no_proxy => 'example.invalid');
($got, $event) = deliver($named);
is($got, 'delivered|200|',
	'localhost, a name, through the proxy: the proxy resolves it, and lets it through');
is(scalar connects($p), $before + 1, 'through the proxy');
set_conf(allow_private_targets => 'on', no_proxy => '');

#
# Proxy failures are recorded as the proxy's, with no status code
#
my $requests = scalar receiver_log($r);
set_conf(proxy => "http://127.0.0.1:$dead_port");
($got) = deliver($via);
is($got, 'pending||proxy: could not connect to the proxy', 'a dead proxy');

my $auth = tinyproxy("BasicAuth kwuser kwpass\n");
set_conf(proxy => $auth->{url});
($got) = deliver($via);
is( $got,
	'pending||proxy: CONNECT answered HTTP 407 (proxy authentication required)',
	'a proxy that wants credentials');
set_conf(proxy => "http://kwuser:kwpass\@127.0.0.1:$auth->{port}");
($got) = deliver($via);
is($got, 'delivered|200|', 'given them in the URL: delivered');

my $strict = tinyproxy("ConnectPort 443\n");
set_conf(proxy => $strict->{url});
($got) = deliver($via);
is($got, 'pending||proxy: CONNECT answered HTTP 403',
	'a proxy that refuses the CONNECT');
is(scalar receiver_log($r), $requests + 1,
	'the receiver got only the delivery that the proxy let through');

# a receiver's own answer through a working proxy stays the receiver's
set_conf(proxy => $p->{url});
my $s503 = endpoint(receiver_url($r, '/s503?status=503&close=1'));
($got) = deliver($s503);
is($got, 'pending|503|HTTP 503', 'the receiver\'s 503 through the proxy is an HTTP 503');

#
# The settings refuse what they cannot use
#
for my $bad ('socks5://127.0.0.1:1080', 'https://127.0.0.1:3128',
	'http://127.0.0.1', '127.0.0.1:3128', 'http://127.0.0.1:3128/path')
{
	my ($ret, $out, $err) = $node->psql('postgres',
		"ALTER SYSTEM SET konvox_webhooks.proxy = '$bad'");
	isnt($ret, 0, "proxy = '$bad' is refused");
	like($err, qr/invalid value for parameter "konvox_webhooks\.proxy"/,
		'... as an invalid value');
}
for my $bad ('10.0.0.0/33', 'a b', 'host:80')
{
	my ($ret, $out, $err) = $node->psql('postgres',
		"ALTER SYSTEM SET konvox_webhooks.no_proxy = '$bad'");
	isnt($ret, 0, "no_proxy = '$bad' is refused");
	like($err, qr/is neither a host name, an IP address, a CIDR range nor \*/,
		'... naming the entry');
}
sql('CREATE ROLE kw_reader LOGIN');
my ($ret, $out, $err) = $node->psql('postgres', 'SHOW konvox_webhooks.proxy',
	extra_params => [ '-U', 'kw_reader' ]);
like($err, qr/must be superuser|permission denied/,
	'a role that is not superuser cannot read the proxy setting');

$node->stop;
done_testing();
