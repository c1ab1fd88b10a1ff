# Tenant isolation: 30 companies, some with ids that differ only by case,
# a trailing space, a LIKE wildcard or unicode normalization, with random
# endpoints and subscriptions (seeded), and thousands of random events from
# one long-lived session, before and after the endpoints change.  Every
# delivery goes to an endpoint of the event's company subscribed to its
# event; the receiver gets exactly the fan-out computed here, independently,
# and nothing for another company.  Non-ASCII text arrives byte for byte.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../test";
use KwTest;
use Encode qw(encode_utf8 decode_utf8);
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;

my $seed = $ENV{KW_TENANT_SEED} // 16016;
srand($seed);
note("tenant isolation seed $seed (replay: KW_TENANT_SEED=$seed)");

my $node = kw_node('tenant_isolation');
my $r = kw_receiver();
my $json = JSON::PP->new->canonical;

sub pick { return $_[ int(rand(@_)) ]; }
sub chance { return rand() < $_[0]; }

# A SQL literal of a (character) string.
sub lit
{
	my ($s) = @_;
	$s =~ s/'/''/g;
	return "'$s'";
}

# Run SQL given as characters.
sub sql
{
	my ($sql) = @_;
	return decode_utf8($node->safe_psql('postgres', encode_utf8($sql)));
}

my @events = qw(contact.replied enrollment.created enrollment.unsubscribed
  enrollment.completed message.approved message.rejected);
my %fields;    # event => [ [name, required], ... ] (all are strings)
for my $row (
	split /\n/,
	sql(q{
SELECT t.name, f ->> 'name', f ->> 'required'
  FROM webhooks.event_types t, jsonb_array_elements(t.fields) f
 ORDER BY t.name, f ->> 'name'}))
{
	my ($ev, $name, $req) = split /\|/, $row;
	push @{ $fields{$ev} }, [ $name, $req eq 'true' ];
}

# The companies: look-alike ids first, then plain ones.
my @companies = (
	'acme', 'ACME', 'Acme', 'acme ', ' acme', 'acme%', 'acm_', "ac'me",
	"acm\x{e9}", "acme\x{301}", "\x{0430}cme",    # Cyrillic a
	'acme.com', 'acme/1', 'acme\\', "\x{1f600}co",
	map { sprintf('co%02d', $_) } 1 .. 15);
is(scalar @companies, 30, '30 companies');
my @ghosts = ('ghost', 'acme  ', 'co1');    # no endpoints at all

# Endpoints: 0 to 4 per company, each with a random non-empty set of events
# and its own receiver path; one in ten inactive.
my @endpoints;    # { id, company, events => {ev => 1}, active, path }
for my $c (@companies)
{
	for (1 .. int(rand(5)))
	{
		my @ev = grep { chance(0.4) } @events;
		@ev = (pick(@events)) unless @ev;
		my $path = '/e' . (scalar(@endpoints) + 1);
		my $id = sql('SELECT id FROM webhooks.create_endpoint('
			  . lit($c) . ', '
			  . lit(receiver_url($r, $path))
			  . ', ARRAY[' . join(', ', map { lit($_) } @ev) . '])');
		push @endpoints,
		  {
			id => $id,
			company => $c,
			events => { map { $_ => 1 } @ev },
			active => 1,
			path => $path
		  };
	}
}
for my $ep (grep { chance(0.1) } @endpoints)
{
	sql("UPDATE webhooks.endpoints SET active = false WHERE id = $ep->{id}");
	$ep->{active} = 0;
}
my %ep_by_id = map { $_->{id} => $_ } @endpoints;
my %ep_by_path = map { $_->{path} => $_ } @endpoints;
note(sprintf('%d endpoints, %d inactive', scalar @endpoints,
		scalar grep { !$_->{active} } @endpoints));

# Non-ASCII text for the events: accents, CJK, RTL, emoji, combining marks,
# zero-width joiner, BOM, line separator -- nothing JSON must escape, so
# that the exact UTF-8 bytes can be looked for in the body.
my @alphabet = (
	'a' .. 'z', ' ', "\x{e9}", "\x{fc}", "\x{df}", "\x{4e2d}", "\x{6587}",
	"\x{5d0}", "\x{627}", "\x{1f600}", "\x{1f468}\x{200d}\x{1f469}",
	"\x{301}", "\x{feff}", "\x{2028}", "\x{10ffff}", "\x{a0}", "\x{fffd}");

sub note_text
{
	return join('', map { pick(@alphabet) } 1 .. 1 + int(rand(40)));
}

# A random valid event: company, type and data with a unique seq.
my $seq = 0;

sub random_event
{
	my $company = chance(0.05) ? pick(@ghosts) : pick(@companies);
	my $ev = pick(@events);
	my %data = (seq => ++$seq, note => note_text());
	for my $f (@{ $fields{$ev} })
	{
		my ($name, $required) = @$f;
		next if !$required && chance(0.3);
		$data{$name} = (!$required && chance(0.2)) ? undef : note_text();
	}
	return { seq => $seq, company => $company, event => $ev, data => \%data };
}

# The fan-out of an event as it should be: the active endpoints of exactly
# its company subscribed to its event.
sub fanout
{
	my ($e) = @_;
	return map { $_->{path} }
	  grep {
		     $_->{active}
		  && $_->{company} eq $e->{company}
		  && $_->{events}{ $e->{event} }
	  } @endpoints;
}

# Emit events through one session that lives across the endpoint changes,
# so that its cache of endpoints must follow them.
sql('CREATE TABLE to_emit (seq int PRIMARY KEY, ev text, co text, data text)');
sql('CREATE TABLE emitted (seq int PRIMARY KEY, id uuid NOT NULL)');
my $session = $node->background_psql('postgres');
my %sent;    # event id => event, with its expected paths

sub emit_batch
{
	my ($n) = @_;
	my @batch = map { random_event() } 1 .. $n;
	my $values = join(",\n",
		map { '(' . join(', ', $_->{seq}, lit($_->{event}), lit($_->{company}), lit($json->encode($_->{data}))) . ')' }
		  @batch);
	sql("INSERT INTO to_emit VALUES $values");
	$session->query_safe(
		"INSERT INTO emitted SELECT seq, webhooks.emit(ev, co, data::jsonb) FROM to_emit WHERE seq BETWEEN $batch[0]{seq} AND $batch[-1]{seq} ORDER BY seq"
	);
	my %by_seq = map { $_->{seq} => $_ } @batch;
	my $out = sql("SELECT seq, id FROM emitted WHERE seq BETWEEN $batch[0]{seq} AND $batch[-1]{seq}");
	for my $row (split /\n/, $out)
	{
		my ($s, $id) = split /\|/, $row;
		my $e = $by_seq{$s};
		$e->{id} = $id;
		$e->{paths} = [ fanout($e) ];
		$sent{$id} = $e;
	}
	return;
}

sub wait_drained
{
	$node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM webhooks.deliveries WHERE status = 'pending'")
	  or die "deliveries did not finish";
	return;
}

my $per_phase = 1500;
emit_batch(500) for 1 .. $per_phase / 500;
wait_drained();

# Change the endpoints: deactivate some, reactivate the inactive ones,
# resubscribe some, and add new ones -- committed by another session.
my @changes;
for my $ep (@endpoints)
{
	my $roll = rand();
	if (!$ep->{active})
	{
		push @changes, "UPDATE webhooks.endpoints SET active = true WHERE id = $ep->{id};";
		$ep->{active} = 1;
	}
	elsif ($roll < 0.1)
	{
		push @changes, "UPDATE webhooks.endpoints SET active = false WHERE id = $ep->{id};";
		$ep->{active} = 0;
	}
	elsif ($roll < 0.3)
	{
		my @ev = grep { chance(0.5) } @events;
		@ev = (pick(@events)) unless @ev;
		push @changes,
		  "UPDATE webhooks.endpoints SET events = ARRAY["
		  . join(', ', map { lit($_) } @ev)
		  . "] WHERE id = $ep->{id};";
		$ep->{events} = { map { $_ => 1 } @ev };
	}
}
my @new_eps;
for my $c (map { pick(@companies) } 1 .. 5)
{
	my $path = '/e' . (scalar(@endpoints) + 1);
	my $ev = pick(@events);
	my $id = sql('SELECT id FROM webhooks.create_endpoint(' . lit($c) . ', '
		  . lit(receiver_url($r, $path)) . ', ARRAY[' . lit($ev) . '])');
	my $ep = { id => $id, company => $c, events => { $ev => 1 }, active => 1, path => $path };
	push @endpoints, $ep;
	$ep_by_id{$id} = $ep;
	$ep_by_path{$path} = $ep;
}
sql(join("\n", @changes)) if @changes;
note(scalar(@changes) . ' endpoint changes and 5 new endpoints between the phases');

emit_batch(500) for 1 .. $per_phase / 500;
$session->quit;
wait_drained();

###
### What the outbox holds
###
my %expected;    # "event_id path" => 1
for my $e (values %sent)
{
	$expected{"$e->{id} $_"} = 1 for @{ $e->{paths} };
}
my %stored;
for my $row (split /\n/,
	sql('SELECT event_id, endpoint_id, status FROM webhooks.deliveries'))
{
	my ($id, $ep, $status) = split /\|/, $row;
	$stored{"$id $ep_by_id{$ep}{path}"} = $status;
}
is(scalar(keys %sent), 2 * $per_phase, 2 * $per_phase . ' events emitted');
is_deeply(
	[ sort keys %stored ],
	[ sort keys %expected ],
	'the deliveries are exactly the fan-out computed independently ('
	  . scalar(keys %expected) . ')');
is(scalar(grep { $_ ne 'delivered' } values %stored),
	0, 'and every one was delivered');
is( sql(q{
SELECT count(*) FROM webhooks.deliveries d
  JOIN webhooks.events ev ON ev.id = d.event_id
  JOIN webhooks.endpoints ep ON ep.id = d.endpoint_id
 WHERE ep.company_id <> ev.company_id}),
	'0',
	'no delivery joins an event to an endpoint of another company');

###
### What the receiver got
###
my (%received, $cross_tenant, $unsubscribed, $bytes_differ, $data_differ);
my %bodies;    # event id => body bytes
($cross_tenant, $unsubscribed, $bytes_differ, $data_differ) = (0, 0, 0, 0);
my @log = receiver_log($r);
for my $req (@log)
{
	my $id = $req->{headers}{'webhook-id'};
	$received{"$id $req->{path}"}++;
	my $ep = $ep_by_path{ $req->{path} };
	my $body = eval { JSON::PP->new->utf8->decode($req->{body}) };
	my $e = $sent{$id};
	if (!$ep || !$body || !$e)
	{
		$cross_tenant++;
		next;
	}
	$cross_tenant++
	  if $body->{companyId} ne $ep->{company} || $e->{company} ne $ep->{company};
	# subscribed when it was emitted (subscriptions change between phases)
	$unsubscribed++ unless grep { $_ eq $req->{path} } @{ $e->{paths} };
	$data_differ++
	  unless $json->encode($body->{data}) eq $json->encode($e->{data});
	$bytes_differ++
	  if index($req->{body}, encode_utf8($json->encode($e->{data}{note}))) < 0;
	$bodies{$id} //= $req->{body};
	$bytes_differ++ if $bodies{$id} ne $req->{body};
}
my @missing = grep { !$received{$_} } keys %expected;
my @extra = grep { !$expected{$_} } keys %received;
my $dups = grep { $_ > 1 } values %received;
is(scalar @missing, 0, 'the receiver got every expected (event, endpoint)');
is(scalar @extra, 0, 'and nothing else');
is($dups, 0, 'each exactly once');
is($cross_tenant, 0, "no request carried another company's event");
is($unsubscribed, 0, 'no request carried an event its endpoint was not subscribed to, or inactive, at emit time');
is($data_differ, 0, 'every body carries the data that was emitted');
is($bytes_differ, 0,
	'non-ASCII text arrived as the same UTF-8 bytes, identical for every endpoint of an event'
);
my $non_ascii = grep { $_->{body} =~ /[\x80-\xff]/ } @log;
cmp_ok($non_ascii, '>', @log / 2, "$non_ascii bodies held non-ASCII text");

note(
	sprintf(
		'tenant isolation (seed %d): %d companies (incl. look-alike ids), %d endpoints, %d events in two phases around %d endpoint changes; %d deliveries expected, %d requests received; cross-tenant %d, missing %d, extra %d, duplicates %d',
		$seed, scalar @companies, scalar @endpoints, scalar keys %sent,
		scalar @changes, scalar keys %expected, scalar @log, $cross_tenant,
		scalar @missing, scalar @extra, $dups));

done_testing();
