# Helpers shared by the konvox_webhooks TAP tests: a cluster with the worker
# preloaded, and the scriptable receiver of test/receiver.py, over HTTP or
# HTTPS.
#
# With KW_TEST_HTTPS set in the environment, every receiver serves HTTPS
# with a certificate of the tests' own CA, and every cluster trusts that CA
# (konvox_webhooks.ca_file): a test written for HTTP runs over HTTPS
# unchanged.

package KwTest;

use strict;
use warnings;

use Exporter 'import';
use File::Basename qw(dirname);
use HTTP::Tiny;
use IO::Socket::INET;
use IPC::Run;
use JSON::PP;
use MIME::Base64;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

our @EXPORT = qw(kw_node kw_receiver receiver_log receiver_url
  receiver_wait receiver_control receiver_stats receiver_path_stats unused_port
  kw_worker_pids kw_log_since kw_emit_many kw_wait_drained kw_tls);

my $srcdir = dirname(dirname(__FILE__));

# The receivers started by kw_receiver(), stopped when the test ends.
my @receivers;

# The certificates of test/tls-certs, made once per test script: returns a
# hash with ca (the test CA's file) and, for each of good, expired,
# wrong_host and untrusted, [certificate file, key file].
my $tls;

sub kw_tls
{
	return $tls if $tls;
	my $dir = PostgreSQL::Test::Utils::tempdir();
	my ($out, $err) = ('', '');
	IPC::Run::run([ "$srcdir/test/tls-certs", $dir ], '>', \$out, '2>', \$err)
	  or die "test/tls-certs failed: $err";
	$tls = { ca => "$dir/ca.pem" };
	$tls->{$_} = [ "$dir/$_.pem", "$dir/$_.key" ]
	  for qw(good expired wrong_host untrusted);
	return $tls;
}

# A started cluster serving database "postgres" with the extension created.
# Extra postgresql.conf lines may be given; the defaults make retries quick
# and let the worker reach the loopback receiver.  With ca_file => 1, or
# KW_TEST_HTTPS set, konvox_webhooks.ca_file names the test CA of kw_tls().
# install_path => DIR runs the PostgreSQL installed there (DIR/bin) instead
# of the one under test.
sub kw_node
{
	my ($name, %opts) = @_;
	my $ca_file =
	  ($opts{ca_file} // $ENV{KW_TEST_HTTPS})
	  ? "konvox_webhooks.ca_file = '" . kw_tls()->{ca} . "'\n"
	  : '';
	my $node = PostgreSQL::Test::Cluster->new($name,
		defined $opts{install_path}
		? (install_path => $opts{install_path})
		: ());
	$node->init(extra => [ '--encoding=UTF8', '--no-locale' ]);
	$node->append_conf(
		'postgresql.conf', qq{
shared_preload_libraries = 'konvox_webhooks'
konvox_webhooks.database_name = 'postgres'
konvox_webhooks.allow_private_targets = on
konvox_webhooks.retry_base_delay = '500ms'
konvox_webhooks.request_timeout = '5s'
log_min_messages = 'info'
} . $ca_file . ($opts{conf} // ''));
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION konvox_webhooks')
	  unless $opts{no_extension};
	return $node;
}

# Start test/receiver.py on 127.0.0.1 and an ephemeral port (or the port
# given as kw_receiver($name, port => N)).  With tls => NAME it serves HTTPS
# with that certificate of kw_tls() (good, expired, wrong_host, untrusted);
# with KW_TEST_HTTPS set, tls defaults to good (tls => undef: plain HTTP).
# Returns a hash with port, scheme, log (path of the JSON-lines request log)
# and the IPC::Run handle, which is killed when the test ends.
sub kw_receiver
{
	my ($name, %opts) = @_;
	$name //= 'receiver';
	my $cert =
	  exists $opts{tls} ? $opts{tls} : ($ENV{KW_TEST_HTTPS} ? 'good' : undef);
	my $dir = PostgreSQL::Test::Utils::tempdir();
	my $port_file = "$dir/port";
	my $log = "$dir/requests.log";
	my @port = defined $opts{port} ? ('--port', $opts{port}) : ();
	my @tls =
	  defined $cert
	  ? ('--tls-cert', kw_tls()->{$cert}[0], '--tls-key', kw_tls()->{$cert}[1])
	  : ();
	my $h = IPC::Run::start(
		[
			'/usr/bin/python3', "$srcdir/test/receiver.py",
			'--port-file', $port_file, '--log', $log, @port, @tls
		],
		'>', "$dir/stdout", '2>', "$dir/stderr");
	for (my $i = 0; $i < 100 && !-s $port_file; $i++)
	{
		select(undef, undef, undef, 0.1);
	}
	push @receivers, $h;
	die "receiver did not start" unless -s $port_file;
	my $port = slurp_file($port_file);
	chomp $port;
	return {
		port => $port,
		scheme => defined $cert ? 'https' : 'http',
		log => $log,
		handle => $h,
		dir => $dir
	};
}

# IPC::Run leaves a started child running when the script exits, so stop
# the receivers here: SIGTERM, then SIGKILL if one is still there.
END
{
	local $?;
	for my $h (@receivers)
	{
		eval { $h->kill_kill(grace => 2) };
	}
}

# URL of a path on the receiver, e.g. receiver_url($r, '/hook?status=500').
sub receiver_url
{
	my ($r, $path) = @_;
	return "$r->{scheme}://127.0.0.1:$r->{port}$path";
}

# An HTTP client for the test's own requests to a receiver.  It does not
# verify the receiver's certificate, which may be one made to fail: these
# requests are the test's, not the workers'.
sub receiver_client
{
	return HTTP::Tiny->new(
		timeout => 10,
		no_proxy => '127.0.0.1',
		verify_SSL => 0);
}

# Every request the receiver has logged, oldest first, each with its raw
# body decoded into {body}.
sub receiver_log
{
	my ($r) = @_;
	return () unless -e $r->{log};
	my @out;
	open(my $fh, '<', $r->{log}) or die "cannot read $r->{log}: $!";
	while (my $line = <$fh>)
	{
		next unless $line =~ /\}\s*$/;
		my $rec = decode_json($line);
		$rec->{body} = decode_base64($rec->{body_b64});
		push @out, $rec;
	}
	close $fh;
	return @out;
}

# Poll the receiver's log until $cond->(@log) returns true, where @log is
# what receiver_log() returns.  Gives up after $timeout seconds (default
# $PostgreSQL::Test::Utils::timeout_default).  Returns the log that
# satisfied the condition as an array reference, or undef on timeout.
sub receiver_wait
{
	my ($r, $cond, $timeout) = @_;
	$timeout //= $PostgreSQL::Test::Utils::timeout_default;
	my $deadline = Time::HiRes::time() + $timeout;
	while (1)
	{
		my @log = receiver_log($r);
		return \@log if $cond->(@log);
		if (Time::HiRes::time() > $deadline)
		{
			diag("receiver_wait: gave up after $timeout s with "
				  . scalar(@log)
				  . " requests logged");
			return undef;
		}
		usleep(50_000);
	}
}

# Replace the script of a receiver path, e.g.
# receiver_control($r, '/hook', 'status=200') makes /hook answer 200 from
# now on, whatever its registered query string says.
sub receiver_control
{
	my ($r, $path, $query) = @_;
	my $res = receiver_client()->post(receiver_url($r, "/_control$path?$query"));
	die "receiver control of $path failed: $res->{status} $res->{reason}"
	  unless $res->{success};
	return;
}

# The receiver's counters (see GET /_stats in test/receiver.py): requests,
# in_flight, max_in_flight, connections, max_connections, and accepted,
# handshakes, resumed, tls_failures.  With $reset true the maxima start
# again after this call.
sub receiver_stats
{
	my ($r, $reset) = @_;
	my $res = receiver_client()
	  ->get(receiver_url($r, '/_stats' . ($reset ? '?reset=1' : '')));
	die "receiver stats failed: $res->{status} $res->{reason}"
	  unless $res->{success};
	return decode_json($res->{content});
}

# The counters of one path of the receiver: requests, in_flight and
# max_in_flight.  With $reset true its maximum starts again after this call.
sub receiver_path_stats
{
	my ($r, $path, $reset) = @_;
	my $res = receiver_client()
	  ->get(receiver_url($r, "/_stats?path=$path" . ($reset ? '&reset=1' : '')));
	die "receiver stats failed: $res->{status} $res->{reason}"
	  unless $res->{success};
	return decode_json($res->{content});
}

# The pids of the running delivery workers, in ascending order.
sub kw_worker_pids
{
	my ($node, $dbname) = @_;
	return split /\n/,
	  $node->safe_psql($dbname // 'postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'konvox_webhooks worker' ORDER BY pid"
	  );
}

# Emit $n enrollment.created events for a company, in one statement.
sub kw_emit_many
{
	my ($node, $db, $company, $n) = @_;
	$node->safe_psql($db,
		"SELECT count(webhooks.emit('enrollment.created', '$company', jsonb_build_object('enrollmentId', 'e' || i, 'contactId', 'c' || i, 'campaignId', 'k'))) FROM generate_series(1, $n) i"
	);
	return;
}

# Wait until no delivery of the companies' events is pending; dies on
# timeout.
sub kw_wait_drained
{
	my ($node, $db, @companies) = @_;
	my $in = join(', ', map { "'$_'" } @companies);
	$node->poll_query_until(
		$db, qq{
SELECT count(*) FILTER (WHERE d.status = 'pending') = 0
  FROM webhooks.deliveries d JOIN webhooks.events ev ON ev.id = d.event_id
 WHERE ev.company_id IN ($in)})
	  or die "deliveries of @companies did not finish";
	return;
}

# What the server log holds from byte $offset on (e.g. an earlier
# -s $node->logfile).
sub kw_log_since
{
	my ($node, $offset) = @_;
	return slurp_file($node->logfile, $offset // 0);
}

# A TCP port on 127.0.0.1 with nothing listening on it: bound, read and
# closed again, so that connecting to it is refused.
sub unused_port
{
	my $sock = IO::Socket::INET->new(
		LocalAddr => '127.0.0.1',
		LocalPort => 0,
		Proto => 'tcp',
		Listen => 1) or die "cannot bind 127.0.0.1: $!";
	my $port = $sock->sockport;
	close $sock;
	return $port;
}

1;
