# Connections and TLS sessions are reused.  A worker's request slots share
# one TLS session cache (libcurl's share interface), so a slot that opens
# its first connection to a receiver resumes the session another slot
# negotiated, instead of a full handshake; a receiver without keep-alive
# costs resumed handshakes; and keep-alive connections are reused over
# HTTPS as over HTTP.  Counted on the server side: the test receiver counts
# completed handshakes and those that resumed a session.
#
# Not every reconnection can resume: OpenSSL lets a TLS 1.3 session be
# resumed once, and libcurl (7.88) keeps one session per host, the newest;
# a connection that starts after another has resumed that session and
# before the next session arrives shakes hands in full.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../test";
use KwTest;
use PostgreSQL::Test::Utils;
use Test::More;

# one worker with 8 slots, so that the counts below are exact
my $node = kw_node(
	'https_sessions',
	ca_file => 1,
	conf => q{
konvox_webhooks.workers = 1
konvox_webhooks.max_concurrency = 8
});
my $r = kw_receiver('tls', tls => 'good');
for my $company (qw(warmup burst reconnect keepalive))
{
	my $url = receiver_url($r,
		"/$company" . ($company =~ /^(burst|reconnect)$/ ? '?close=1' : ''));
	$node->safe_psql('postgres',
		"SELECT webhooks.create_endpoint('$company', '$url', ARRAY['enrollment.created'])"
	);
}

# Deliver n events of a company; returns the receiver's counters of
# completed handshakes and of resumed ones during that drain, and the
# requests it logged for the company.
sub drain
{
	my ($company, $n) = @_;
	my $before = receiver_stats($r);
	kw_emit_many($node, 'postgres', $company, $n);
	kw_wait_drained($node, 'postgres', $company);
	my $after = receiver_stats($r);
	my $requests = grep { $_->{path} eq "/$company" } receiver_log($r);
	return (
		$after->{handshakes} - $before->{handshakes},
		$after->{resumed} - $before->{resumed}, $requests);
}

# One delivery: one slot connects, with a full handshake.
my ($handshakes, $resumed, $requests) = drain('warmup', 1);
is_deeply([ $handshakes, $resumed, $requests ], [ 1, 0, 1 ],
	'the first connection: one full handshake');

# Then 8 at once, keep-alive off on the receiver: the slots that had never
# connected (all but the one whose connection is still open) connect at the
# same time, resuming the sessions of connections that other slots made.
# Without the share, each would shake hands in full.  How many resume
# depends on the libcurl: 7.88 resumes every one of them from the one
# session it keeps per host; 8.x keeps the TLS 1.3 tickets, each good for
# one resumption, and the first connection brought only a few.
($handshakes, $resumed, $requests) = drain('burst', 8);
is($requests, 8, 'a burst of 8: the 8 requests arrived');
cmp_ok($handshakes, '>=', 7, 'a burst of 8: 7 or 8 new connections');
cmp_ok($resumed, '>=', 1,
	"a burst of 8: new slots resumed the session of another slot's connection ($resumed of $handshakes)");

# Keep-alive off: every request needs a connection of its own, and
# handshakes resume sessions.  How many depends on timing (see the top):
# make bench measures the share against nginx; here the bound only says
# that resumption works through a drain.
($handshakes, $resumed, $requests) = drain('reconnect', 200);
is($requests, 200, 'keep-alive off: the 200 requests arrived');
cmp_ok($handshakes, '>=', 200, 'keep-alive off: a connection per request');
cmp_ok($resumed / $handshakes, '>=', 0.25,
	'keep-alive off: handshakes resumed sessions all through the drain');
note("keep-alive off: $resumed of $handshakes handshakes resumed");

# Keep-alive on: the slots' connections carry the 200 requests.
($handshakes, $resumed, $requests) = drain('keepalive', 200);
is($requests, 200, 'keep-alive on: the 200 requests arrived');
cmp_ok($handshakes, '<=', 8,
	'keep-alive on: at most one connection per slot for 200 requests');

my @log = receiver_log($r);
is_deeply(
	[ sort keys %{ { map { ($_->{tls}{version} // 'none') => 1 } @log } } ],
	['TLSv1.3'], 'every request came over TLS 1.3');
note("sessions: "
	  . scalar(@log)
	  . " requests; the receiver's counters: "
	  . join(', ', map { "$_ " . receiver_stats($r)->{$_} } qw(handshakes resumed tls_failures)));

done_testing();
