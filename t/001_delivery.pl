# Delivery against a real receiver: the request, its headers and body.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../test";
use KwTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = kw_node('delivery');
my $r = kw_receiver();
my $url = receiver_url($r, '/hook');

$node->safe_psql('postgres',
	"SELECT webhooks.create_endpoint('acme', '$url', ARRAY['contact.replied'])");
my $id = $node->safe_psql('postgres',
	q{SELECT webhooks.emit('contact.replied', 'acme', '{"contactId": "c1", "channel": "email"}')});

$node->poll_query_until('postgres',
	"SELECT status = 'delivered' FROM webhooks.deliveries")
  or die "delivery did not happen";

my @log = receiver_log($r);
is(scalar @log, 1, 'one request');
is($log[0]{headers}{'webhook-id'}, $id, 'webhook-id is the event id');

done_testing();
