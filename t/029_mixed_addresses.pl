# A host name with several addresses, one of which is not allowed: the
# refused one is skipped and named only in the server log, and the attempt
# records what happened with the others -- here, that the connection was
# refused -- so that the tenant sees the real error and no internal address.
#
# Without a name server of its own, the test loads test/fake_resolver.c
# into the server with LD_PRELOAD: mixed.konvox.test resolves to 10.20.30.40
# (private, refused) and 203.0.113.7, whose connections the same stand-in
# refuses at once, so that nothing leaves the machine.

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
my $shim = "$dir/fake_resolver.so";
system_or_bail($Config{cc} // 'cc', '-shared', '-fPIC', '-o', $shim,
	"$srcdir/test/fake_resolver.c", '-ldl');

my $node;
{
	local $ENV{LD_PRELOAD} = $shim;
	$node = kw_node(
		'mixed', conf => q{
konvox_webhooks.allow_private_targets = off
konvox_webhooks.request_timeout = '2s'
konvox_webhooks.max_attempts = 1
});
}
my $log_start = -s $node->logfile;

$node->safe_psql('postgres',
	q{SELECT webhooks.create_endpoint('acme', 'http://mixed.konvox.test:8080/hook', ARRAY['contact.replied'])}
);
$node->safe_psql('postgres',
	q{SELECT webhooks.emit('contact.replied', 'acme', '{"contactId": "c1", "channel": "email"}')}
);
my $delivery = $node->safe_psql('postgres', 'SELECT id FROM webhooks.deliveries');
ok($node->poll_query_until('postgres',
		"SELECT status = 'failed' FROM webhooks.deliveries WHERE id = $delivery"),
	'the delivery to a name with a refused address ends failed');

my $error = $node->safe_psql('postgres',
	"SELECT coalesce(status_code::text, 'NULL') || '|' || error FROM webhooks.delivery_attempts WHERE delivery_id = $delivery"
);
like(
	$error,
	qr/^NULL\|Could(?:n't| not) connect to server \(1 of 2 addresses not allowed\)$/,
	'the attempt keeps the error of the address that was tried, and counts the refused one'
);
unlike($error, qr/10\.20\.30\.40/,
	'the history does not name the refused address');
like(
	kw_log_since($node, $log_start),
	qr/LOG:  konvox_webhooks refused delivery $delivery to http:\/\/mixed\.konvox\.test:8080\/hook: address 10\.20\.30\.40 is not allowed/,
	'the server log names it');

done_testing();
