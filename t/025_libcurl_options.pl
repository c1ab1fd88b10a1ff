# The options that keep a customer's URL from reaching inside (the address
# checks, the protocol restriction, no redirects, no proxy from the
# environment) are checked when they are set: if the libcurl at hand does
# not take one, as an older one would not, nothing is sent.  The test loads
# test/refuse_setopt.c into the server with LD_PRELOAD, to make libcurl
# refuse one option at a time, and checks that each delivery ends as an
# attempt that says why, that the receiver gets nothing, and that the
# server log says it once.

use strict;
use warnings;

use Config;
use FindBin;
use lib "$FindBin::RealBin/../test";
use KwTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $srcdir = "$FindBin::RealBin/..";
my $dir = PostgreSQL::Test::Utils::tempdir();
my $shim = "$dir/refuse_setopt.so";
system_or_bail($Config{cc} // 'cc', '-shared', '-fPIC', '-o', $shim,
	"$srcdir/test/refuse_setopt.c", '-ldl', '-lcurl');

my $r = kw_receiver();

for my $option (qw(CURLOPT_PREREQFUNCTION CURLOPT_PROTOCOLS_STR))
{
	my $node;
	{
		local $ENV{LD_PRELOAD} = $shim;
		local $ENV{KW_REFUSE_OPTION} = $option;
		$node = kw_node(lc $option);
	}
	my $path = '/' . lc $option;
	$node->safe_psql('postgres',
		"SELECT webhooks.create_endpoint('acme', '"
		  . receiver_url($r, $path)
		  . "', ARRAY['contact.replied'])");
	$node->safe_psql('postgres',
		q{SELECT webhooks.emit('contact.replied', 'acme', jsonb_build_object('contactId', 'c' || i, 'channel', 'email'))
		    FROM generate_series(1, 3) i});
	ok( $node->poll_query_until(
			'postgres',
			"SELECT count(*) = 3 FROM webhooks.delivery_attempts WHERE attempt = 1"),
		"$option refused: every delivery has its first attempt");
	like(
		$node->safe_psql(
			'postgres',
			"SELECT string_agg(DISTINCT coalesce(status_code::text, 'NULL') || '|' || error, ' / ') FROM webhooks.delivery_attempts"
		),
		qr/^NULL\|not sent: libcurl \d+\.\d+\.\d+\S* does not support \Q$option\E$/,
		"$option refused: the attempts say so, with no status code");
	is(scalar(grep { $_->{path} eq $path } receiver_log($r)),
		0, "$option refused: the receiver got nothing");
	my @warnings = kw_log_since($node, 0) =~
	  /WARNING:  konvox_webhooks sends nothing: libcurl \S+ does not support \Q$option\E/g;
	ok(@warnings >= 1 && @warnings <= $node->safe_psql('postgres', 'SHOW konvox_webhooks.workers'),
		"$option refused: the server log says so once per worker");
	$node->stop;
}

# Without the stand-in, the same deliveries go out.
my $node = kw_node('real_libcurl');
$node->safe_psql('postgres',
	"SELECT webhooks.create_endpoint('acme', '"
	  . receiver_url($r, '/real')
	  . "', ARRAY['contact.replied'])");
$node->safe_psql('postgres',
	q{SELECT webhooks.emit('contact.replied', 'acme', '{"contactId": "c1", "channel": "email"}')});
ok( $node->poll_query_until(
		'postgres',
		"SELECT status = 'delivered' FROM webhooks.deliveries"),
	'with the real libcurl the delivery goes out');

done_testing();
