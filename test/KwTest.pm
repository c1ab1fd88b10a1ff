# Helpers shared by the konvox_webhooks TAP tests: a cluster with the worker
# preloaded, and the scriptable receiver of test/receiver.py.

package KwTest;

use strict;
use warnings;

use Exporter 'import';
use File::Basename qw(dirname);
use IPC::Run;
use JSON::PP;
use MIME::Base64;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

our @EXPORT = qw(kw_node kw_receiver receiver_log receiver_url);

my $srcdir = dirname(dirname(__FILE__));

# A started cluster serving database "postgres" with the extension created.
# Extra postgresql.conf lines may be given; the defaults make retries quick
# and let the worker reach the loopback receiver.
sub kw_node
{
	my ($name, %opts) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(extra => [ '--encoding=UTF8', '--no-locale' ]);
	$node->append_conf(
		'postgresql.conf', qq{
shared_preload_libraries = 'konvox_webhooks'
konvox_webhooks.database_name = 'postgres'
konvox_webhooks.allow_private_targets = on
konvox_webhooks.retry_base_delay = '500ms'
konvox_webhooks.request_timeout = '5s'
log_min_messages = 'info'
} . ($opts{conf} // ''));
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION konvox_webhooks')
	  unless $opts{no_extension};
	return $node;
}

# Start test/receiver.py on 127.0.0.1 and an ephemeral port.  Returns a hash
# with port, log (path of the JSON-lines request log) and the IPC::Run
# handle, which is killed when the test ends.
sub kw_receiver
{
	my ($name) = @_;
	$name //= 'receiver';
	my $dir = PostgreSQL::Test::Utils::tempdir();
	my $port_file = "$dir/port";
	my $log = "$dir/requests.log";
	my $h = IPC::Run::start(
		[
			'/usr/bin/python3', "$srcdir/test/receiver.py",
			'--port-file', $port_file, '--log', $log
		],
		'>', "$dir/stdout", '2>', "$dir/stderr");
	for (my $i = 0; $i < 100 && !-s $port_file; $i++)
	{
		select(undef, undef, undef, 0.1);
	}
	die "receiver did not start" unless -s $port_file;
	my $port = slurp_file($port_file);
	chomp $port;
	return { port => $port, log => $log, handle => $h, dir => $dir };
}

# URL of a path on the receiver, e.g. receiver_url($r, '/hook?status=500').
sub receiver_url
{
	my ($r, $path) = @_;
	return "http://127.0.0.1:$r->{port}$path";
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

1;
