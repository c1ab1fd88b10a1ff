# The workers' statements keep their plans whatever the statistics say: on
# empty tables never analyzed, with 200,000 rows of history analyzed while
# the queue was empty, and analyzed while it held thousands of pending
# deliveries.  auto_explain logs the plan of every statement the workers
# run (each is marked with a comment naming it); each must be the intended
# shape -- nested loops over index scans of the right indexes -- and none
# may sort, hash, merge or scan a table sequentially or by bitmap.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../test";
use KwTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = kw_node(
	'plans', conf => q{
shared_preload_libraries = 'konvox_webhooks, auto_explain'
auto_explain.log_nested_statements = on
auto_explain.log_min_duration = -1
autovacuum = off
konvox_webhooks.retry_base_delay = '200ms'
});
my $r = kw_receiver();

sub sql
{
	return $node->safe_psql('postgres', $_[0]);
}

my $ep = sql("SELECT id FROM webhooks.create_endpoint('acme', '"
	  . receiver_url($r, '/ok')
	  . "', ARRAY['enrollment.created'])");
my $flaky = sql("SELECT id FROM webhooks.create_endpoint('acme', '"
	  . receiver_url($r, '/flaky?fail_first=50')
	  . "', ARRAY['enrollment.created'])");

# The plans the workers logged since byte $offset of the server log, by
# statement: name => [plan text, ...].
sub worker_plans
{
	my ($offset) = @_;
	my %plans;
	my $log = kw_log_since($node, $offset);
	while ($log =~ /LOG:  duration: [\d.]+ ms  plan:\n\tQuery Text: \/\* konvox_webhooks: ([a-z' ]+) \*\/.*?\n((?:\t.*\n)+)/g)
	{
		push @{ $plans{$1} }, $2;
	}
	return %plans;
}

# What each statement's plans must show, and must not.
my %shape = (
	'list the queue' => [ qr/Index (Only )?Scan using deliveries_due_idx on deliveries d/ ],
	'load endpoints' => [ qr/Index Scan using endpoints_pkey on endpoints/ ],
	'claim' => [
		qr/Nested Loop/,
		qr/Function Scan on (unnest )?q/,
		qr/Index Scan using deliveries_due_idx on deliveries d/,
		qr/Index Scan using events_pkey on events x/
	],
	'record outcomes' => [ qr/Index Scan using deliveries_pkey on deliveries d/ ],
);
my $forbidden = qr/Seq Scan|Bitmap|Hash|Merge|Sort|Materialize/;

# What the plans of the statements that fail deliveries must show: those
# of a phase of deliveries that cannot be sent.
my %fail_shape = (
	'missing endpoints' => [
		qr/Index (Only )?Scan using endpoints_pkey on endpoints e/,
		qr/Index (Only )?Scan using deleted_endpoints_pkey on deleted_endpoints t/
	],
	"fail an endpoint's deliveries" => [
		qr/Nested Loop/,
		qr/Index Scan using deliveries_(due|endpoint)_idx on deliveries d/
	],
	'fail deliveries' => [
		qr/Nested Loop/, qr/Index Scan using deliveries_pkey on deliveries d/
	],
);

# With auto_explain on, do the work of a phase and wait until the
# company's deliveries are all done (or, without a company, every
# delivery); then check the plans of that phase, of the statements of
# %shape or of those given.
sub check_phase
{
	my ($phase, $work, $company, $shape) = @_;
	$shape //= \%shape;
	my $offset = -s $node->logfile;
	sql("ALTER SYSTEM SET auto_explain.log_min_duration = 0; SELECT pg_reload_conf()");
	$node->wait_for_log(qr/parameter "auto_explain.log_min_duration" changed to "0"/,
		$offset);
	$work->();
	if (defined $company)
	{
		kw_wait_drained($node, 'postgres', $company);
	}
	else
	{
		$node->poll_query_until('postgres',
			"SELECT count(*) = 0 FROM webhooks.deliveries WHERE status = 'pending'")
		  or die "the deliveries did not finish";
	}
	sql("ALTER SYSTEM SET auto_explain.log_min_duration = -1; SELECT pg_reload_conf()");

	my %plans = worker_plans($offset);
	for my $stmt (sort keys %$shape)
	{
		my @p = @{ $plans{$stmt} // [] };
		ok(@p > 0, "$phase: the workers ran '$stmt' (" . scalar(@p) . ' plans logged)');
		my @bad = grep {
			my $plan = $_;
			$plan =~ $forbidden || grep { $plan !~ $_ } @{ $shape->{$stmt} }
		} @p;
		is(scalar @bad, 0, "$phase: every plan of '$stmt' has its shape")
		  or diag("a plan of '$stmt':\n" . $bad[0]);
	}
	return;
}

# 1. empty tables, never analyzed
check_phase('empty tables', sub { kw_emit_many($node, 'postgres', 'acme', 300) }, 'acme');

# 2. 200,000 delivered deliveries of history, with their events and
#    attempts, analyzed while the queue is empty
sql(qq{
INSERT INTO webhooks.events (id, event, company_id, data, created_at)
SELECT webhooks.new_event_id(), 'enrollment.created', 'history',
       '{"enrollmentId": "e", "contactId": "c", "campaignId": "k"}', now() - interval '1 day'
  FROM generate_series(1, 200000);
INSERT INTO webhooks.deliveries (event_id, endpoint_id, status, attempts, next_attempt_at,
                                 last_status_code, created_at, finished_at)
SELECT id, $ep, 'delivered', 1, NULL, 200, created_at, created_at
  FROM webhooks.events WHERE company_id = 'history';
INSERT INTO webhooks.delivery_attempts (delivery_id, attempt, started_at, duration_ms, status_code)
SELECT d.id, 1, d.created_at, 0.5, 200
  FROM webhooks.deliveries d JOIN webhooks.events e ON e.id = d.event_id
 WHERE e.company_id = 'history';
});
sql('VACUUM ANALYZE webhooks.events, webhooks.deliveries, webhooks.delivery_attempts, webhooks.endpoints');
is(sql("SELECT reltuples >= 190000 FROM pg_class WHERE oid = 'webhooks.deliveries'::regclass"),
	't', 'the statistics know the history');
check_phase('history analyzed, queue empty',
	sub { kw_emit_many($node, 'postgres', 'acme', 1000) }, 'acme');

# 3. analyzed while 20,000 deliveries were pending (due in an hour), then
#    made due
my $history_ep = sql("SELECT id FROM webhooks.create_endpoint('history', '"
	  . receiver_url($r, '/history')
	  . "', ARRAY['enrollment.created'])");
sql(qq{
INSERT INTO webhooks.deliveries (event_id, endpoint_id, next_attempt_at)
SELECT id, $history_ep, now() + interval '1 hour'
  FROM webhooks.events WHERE company_id = 'history' LIMIT 20000;
});
sql('ANALYZE webhooks.deliveries, webhooks.endpoints');
is( sql(
		"SELECT reltuples >= 15000 FROM pg_class WHERE oid = 'webhooks.deliveries_due_idx'::regclass"
	),
	't',
	'the statistics see a full queue');
check_phase(
	'analyzed with a full queue',
	sub {
		sql("UPDATE webhooks.deliveries SET next_attempt_at = now() WHERE status = 'pending'");
	},
	'history');

# 4. with those statistics, deliveries that cannot be sent: some whose
#    event has been missing for two days, and a backlog to an endpoint deleted meanwhile (its
#    id in deleted_endpoints, as the endpoints' trigger leaves it)
check_phase(
	'deliveries that cannot be sent',
	sub {
		sql(qq{
INSERT INTO webhooks.deliveries (event_id, endpoint_id, created_at)
SELECT gen_random_uuid(), $ep, now() - interval '2 days' FROM generate_series(1, 3);
INSERT INTO webhooks.deleted_endpoints (id) VALUES (999999999);
INSERT INTO webhooks.deliveries (event_id, endpoint_id)
SELECT id, 999999999 FROM webhooks.events WHERE company_id = 'history' LIMIT 500;
});
	},
	undef,
	\%fail_shape);
is( sql(
		"SELECT string_agg(DISTINCT last_error, ', ' ORDER BY last_error) FROM webhooks.deliveries WHERE endpoint_id = 999999999 OR (endpoint_id = $ep AND status = 'failed')"
	),
	'endpoint deleted, event missing',
	'they are failed, endpoint deleted and event missing');

done_testing();
