# Fuzzing emit() and create_endpoint() with seeded random input: random JSON
# (nested, unicode, huge numbers, deep nesting, long strings, wrong types for
# the known fields, invalid text), random event names and company ids, and
# random URLs (spaces, credentials, odd schemes, control characters, unicode
# hosts, very long ones).  Every case ends in success or in a clean ERROR of
# SQLSTATE class 22 (data exception), 23 (integrity constraint) or 54
# (program limit); the server never crashes; what succeeded is stored exactly
# and what failed left nothing behind.  Also the payload size limit at its
# exact boundary.
#
# The seed is printed; KW_FUZZ_SEED=<n> replays a run, KW_FUZZ_CASES=<n>
# changes the number of cases of each kind.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../test";
use KwTest;
use Encode qw(encode_utf8);
use MIME::Base64 qw(encode_base64);
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $seed = $ENV{KW_FUZZ_SEED} // 20261126;
my $ncases = $ENV{KW_FUZZ_CASES} // 5000;
srand($seed);
note("fuzz seed $seed, $ncases cases of each kind (replay: KW_FUZZ_SEED=$seed)");

# The worker serves database "postgres"; the fuzz runs in another, so that
# its deliveries stay exactly as emit() wrote them.
my $node = kw_node('fuzz');
$node->safe_psql('postgres', 'CREATE DATABASE fuzz');
$node->safe_psql('fuzz', 'CREATE EXTENSION konvox_webhooks');
my $started = $node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');

my @known_events = qw(contact.replied enrollment.created
  enrollment.unsubscribed enrollment.completed message.approved
  message.rejected);
my %fields;    # event => [ [name, type, required], ... ]
for my $row (
	split /\n/,
	$node->safe_psql(
		'fuzz', q{
SELECT t.name, f ->> 'name', f ->> 'type', f ->> 'required'
  FROM webhooks.event_types t, jsonb_array_elements(t.fields) f
 ORDER BY t.name, f ->> 'name'}))
{
	my ($ev, $name, $type, $req) = split /\|/, $row;
	push @{ $fields{$ev} }, [ $name, $type, $req eq 'true' ];
}
is(scalar keys %fields, 6, 'the six documented event types are known');

###
### The generator
###

sub pick { return $_[ int(rand(@_)) ]; }
sub chance { return rand() < $_[0]; }

# A random character: mostly ASCII, then escapes, accents, CJK, RTL,
# astral (emoji), combining marks, zero-width and BOM.
my @specials = (
	"\"", "\\", "/", "\b", "\f", "\n", "\r", "\t", "\x{01}", "\x{1f}",
	"\x{7f}", "\x{e9}", "\x{f1}", "\x{df}", "\x{4e2d}", "\x{6587}",
	"\x{5d0}", "\x{627}", "\x{1f600}", "\x{1f4a9}", "\x{301}", "\x{200d}",
	"\x{feff}", "\x{2028}", "\x{fffd}", "\x{10ffff}", "\x{a0}");

sub rand_char
{
	return chance(0.7) ? chr(32 + int(rand(95))) : pick(@specials);
}

sub rand_string
{
	my ($max) = @_;
	$max //= 20;
	my $len = chance(0.002) ? int(rand(100_000)) : int(rand($max));
	return join('', map { rand_char() } 1 .. $len) if $len < 1000;
	# long: a repeated chunk, cheaper to make
	my $chunk = join('', map { rand_char() } 1 .. 100);
	return substr($chunk x (int($len / 100) + 1), 0, $len);
}

# JSON text of a string, with the escapes JSON requires (and, sometimes,
# escapes it does not: \u00e9, \u0000, lone surrogates).
sub json_string
{
	my ($s) = @_;
	$s =~ s/(["\\])/\\$1/g;
	$s =~ s/([\x00-\x1f])/sprintf('\\u%04x', ord($1))/ge;
	$s =~ s/([\x{80}-\x{ffff}])/chance(0.1) ? sprintf('\\u%04x', ord($1)) : $1/ge
	  if length($s) < 1000;
	$s .= '\\u0000' if chance(0.01);
	$s .= '\\ud800' if chance(0.01);
	$s .= '\\ud83d\\ude00' if chance(0.01);
	return '"' . $s . '"';
}

sub rand_number
{
	return pick(
		int(rand(1000)), -int(rand(1e9)), rand(1e6), '0', '-0', '1e308',
		'1e-400', '-1.5E+10', '123456789012345678901234567890',
		'9' x (1 + int(rand(2000))), '1e1000000', '0.' . ('0' x 500) . '1',
		'1e131072', '1e-16383');
}

# Random JSON text of a value, nested up to $depth.
sub rand_json
{
	my ($depth) = @_;
	my $k = int(rand($depth > 0 ? 7 : 4));
	return rand_number() if $k == 0;
	return json_string(rand_string()) if $k == 1;
	return pick('true', 'false', 'null') if $k == 2;
	return json_string(rand_string(5)) if $k == 3;
	if ($k == 4 || $k == 5)
	{
		my $n = int(rand(6));
		return '{'
		  . join(', ',
			map { json_string(rand_string(8)) . ': ' . rand_json($depth - 1) }
			  1 .. $n)
		  . '}';
	}
	my $n = int(rand(6));
	return '[' . join(', ', map { rand_json($depth - 1) } 1 .. $n) . ']';
}

# A value of a JSON type, right or (with $wrong) of another type.
sub value_of_type
{
	my ($type) = @_;
	return json_string(rand_string(12)) if $type eq 'string';
	return rand_number() if $type eq 'number';
	return pick('true', 'false') if $type eq 'boolean';
	return '{"a": ' . rand_json(1) . '}' if $type eq 'object';
	return '[' . rand_json(1) . ']';
}

sub wrong_type
{
	my ($type) = @_;
	return value_of_type(pick(grep { $_ ne $type } qw(string number boolean object array)));
}

# Data for an event: its fields, right or mutated, with extra fields.
sub event_data
{
	my ($ev) = @_;
	my @parts;
	for my $f (@{ $fields{$ev} // [] })
	{
		my ($name, $type, $required) = @$f;
		my $r = rand();
		next if $r < 0.05 || (!$required && $r < 0.3);    # missing
		my $value =
		    $r < 0.1 ? 'null'
		  : $r < 0.17 ? wrong_type($type)
		  :             value_of_type($type);
		push @parts, json_string($name) . ': ' . $value;
	}
	push @parts, json_string(rand_string(8)) . ': ' . rand_json(3)
	  for 1 .. int(rand(3));
	push @parts, '"pad": ' . json_string('p' x (250_000 + int(rand(20_000))))
	  if chance(0.003);
	return '{' . join(', ', @parts) . '}';
}

# Text that is not quite JSON, or not at all.
sub broken_json
{
	my $j = rand_json(3);
	return pick(
		substr($j, 0, int(rand(length($j) + 1))),
		$j . ',', "{'a': 1}", '{"a": NaN}', '{"a": Infinity}', '[1, 2,]',
		'{"a" 1}', '', ' ', rand_string(30), "\x{feff}{}", '{"a": "\x{1}"}',
		"{\"a\": 1}\x{0}");
}

sub deep_json
{
	my $depth = pick(100, 1000, 5000, 10_000, 50_000);
	my ($open, $close) = chance(0.5) ? ('[', ']') : ('{"a": ', '}');
	return '{"x": ' . ($open x $depth) . '1' . ($close x $depth) . '}';
}

my @companies = qw(acme globex initech umbrella);
my @all_companies = (@companies, 'hooli', 'stark');    # the last two: no endpoints

sub rand_company
{
	my $r = rand();
	return pick(@all_companies) if $r < 0.75;
	return undef if $r < 0.77;
	return pick('', ' ', "\t\n", 'x' x 255, 'x' x 256, 'y' x 1000) if $r < 0.82;
	return rand_string(30);
}

sub rand_event
{
	my $r = rand();
	return pick(@known_events) if $r < 0.8;
	return undef if $r < 0.82;
	return pick('', 'contact', 'contact.replied ', 'CONTACT.REPLIED',
		'x' x 300, "contact.replied\x{0301}") if $r < 0.9;
	return rand_string(30);
}

sub rand_data
{
	my ($ev) = @_;
	my $r = rand();
	return event_data(defined $ev && $fields{$ev} ? $ev : pick(@known_events))
	  if $r < 0.55;
	return rand_json(4) if $r < 0.8;
	return broken_json() if $r < 0.92;
	return deep_json() if $r < 0.93;
	return undef if $r < 0.95;
	return pick('[]', '"s"', '1', 'null', 'true', '{}');
}

my @schemes = ('http', 'https', 'HTTP', 'HttPs', 'ftp', 'file', 'gopher',
	'javascript', 'data', 'ws', 'mailto', 'ldap', 'dict', 'telnet', '');
my @hosts = ('example.com', 'hooks.example.org', '127.0.0.1', '[::1]',
	'[2001:db8::1]', "b\x{fc}cher.example", "\x{4f8b}\x{3048}.jp",
	'xn--bcher-kva.example', 'a' x 300, 'exa mple.com', 'ex%41mple.com',
	'-bad-.example', 'localhost', '0', '[::ffff:10.0.0.1]', '[fe80::1%25eth0]',
	'example.com.', 'EXAMPLE.COM', '10.0.0.1', 'evil.example#@good.example');

sub rand_url
{
	# half of them well formed, so that the mutations below are tried on
	# URLs that would otherwise pass
	return pick('http', 'https') . '://' . pick(@hosts[0 .. 8])
	  . pick('', ':8080') . pick('/', '/hooks', '/h?x=1', '/a/b#f')
	  if chance(0.5);
	my $scheme = pick(@schemes);
	my $host = pick(@hosts);
	$host = rand_string(15) if chance(0.1);
	my $url = $scheme;
	$url .= pick('://', '://', '://', ':/', ':', ':///', '//', '');
	$url .= pick('user:pass@', 'user@', ':@', '@', 'a%40b@') if chance(0.1);
	$url .= $host;
	$url .= ':' . pick(80, 443, 8080, 0, 65535, 65536, 99999, -1, 'abc', '')
	  if chance(0.2);
	$url .= pick('', '/', '/hooks', '/a b', "/\t", "/\x{7f}", '/%00', "/\x{e9}",
		'/?q=1', '/#frag', '/..%2f..', '/' . ('p' x 5000), "/\n/", '/?a=b c');
	$url = ' ' . $url if chance(0.03);
	$url .= ' ' if chance(0.03);
	$url = rand_string(40) if chance(0.05);
	$url = undef if chance(0.01);
	return $url;
}

sub rand_events_array
{
	my $r = rand();
	return undef if $r < 0.02;
	return [] if $r < 0.05;
	my @ev = map { pick(@known_events) } 1 .. 1 + int(rand(4));
	push @ev, rand_event() if $r > 0.8;
	return \@ev;
}

# SQL literal of a text as base64 of its UTF-8, decoded in the server; NULL
# stays NULL.
sub b64
{
	my ($s) = @_;
	return 'NULL' unless defined $s;
	my $b = encode_base64(encode_utf8($s), '');
	return "'$b'";
}

# SQL literal of a text array: base64 of each element.
sub b64_array
{
	my ($a) = @_;
	return 'NULL' unless defined $a;
	return "ARRAY[]::text[]" unless @$a;
	return 'ARRAY[' . join(', ', map { b64($_) } @$a) . ']::text[]';
}

###
### emit(): fixed endpoints for the known companies, then the cases
###

my %endpoints_of;    # company => [ [events...], ... ]
for my $c (@companies)
{
	for my $n (1 .. 1 + int(rand(3)))
	{
		my @ev = grep { chance(0.5) } @known_events;
		@ev = (pick(@known_events)) unless @ev;
		push @{ $endpoints_of{$c} }, \@ev;
		$node->safe_psql('fuzz',
			"SELECT webhooks.create_endpoint('$c', 'https://$c.example/hook$n', ARRAY["
			  . join(', ', map { "'$_'" } @ev) . '])');
	}
}

$node->safe_psql(
	'fuzz', q{
CREATE TABLE fuzz_emit (i int PRIMARY KEY, event text, company text, data text);
CREATE TABLE fuzz_endpoint (i int PRIMARY KEY, company text, url text, events text[], description text);
CREATE TABLE fuzz_result (kind text, i int, stage text, sqlstate text, message text, id text,
                          PRIMARY KEY (kind, i));
});

my $t_gen = time();
my @emit_cases;
my $sql = '';
for my $i (1 .. $ncases)
{
	my $ev = rand_event();
	my $co = rand_company();
	my $data = rand_data($ev);
	push @emit_cases, [ $ev, $co, $data ];
	$sql .= "INSERT INTO fuzz_emit VALUES ($i, " . b64($ev) . ', ' . b64($co) . ', ' . b64($data) . ");\n";
}
note(sprintf('emit cases generated in %.1f s, %.1f MB of SQL', time() - $t_gen, length($sql) / 1e6));
$node->safe_psql('fuzz', $sql);
undef $sql;
note(sprintf('and loaded in %.1f s', time() - $t_gen));

# Run the cases in the server in batches, each case in its own
# subtransaction; the stage says whether the input itself (decoding, the
# cast to jsonb) or the function under test failed.
sub run_cases
{
	my ($kind, $call) = @_;
	my $table = "fuzz_$kind";
	my $t0 = time();
	for (my $from = 1; $from <= $ncases; $from += 500)
	{
		my $to = $from + 499;
		$node->safe_psql(
			'fuzz', qq{
DO \$fuzz\$
DECLARE
    r record;
    stage text;
    result text;
BEGIN
    FOR r IN SELECT * FROM $table WHERE i BETWEEN $from AND $to ORDER BY i LOOP
        BEGIN
            stage := 'input';
            $call
            INSERT INTO fuzz_result VALUES ('$kind', r.i, 'ok', '00000', NULL, result);
        EXCEPTION WHEN OTHERS THEN
            INSERT INTO fuzz_result VALUES ('$kind', r.i, stage, SQLSTATE, SQLERRM, NULL);
        END;
    END LOOP;
END
\$fuzz\$;});
	}
	return time() - $t0;
}

my $emit_secs = run_cases(
	'emit', q{
            DECLARE
                ev text := convert_from(decode(r.event, 'base64'), 'UTF8');
                co text := convert_from(decode(r.company, 'base64'), 'UTF8');
                dj jsonb := convert_from(decode(r.data, 'base64'), 'UTF8')::jsonb;
            BEGIN
                stage := 'emit';
                result := webhooks.emit(ev, co, dj)::text;
            END;});

# Outcomes, and the allowed ones.
sub check_outcomes
{
	my ($kind) = @_;
	my %by_state;
	for my $row (
		split /\n/,
		$node->safe_psql('fuzz',
			"SELECT stage || ' ' || sqlstate, count(*) FROM fuzz_result WHERE kind = '$kind' GROUP BY 1 ORDER BY 1"
		))
	{
		my ($k, $n) = split /\|/, $row;
		$by_state{$k} = $n;
	}
	my $total = 0;
	$total += $_ for values %by_state;
	is($total, $ncases, "$kind: every case ran to an outcome");
	my @bad = grep { !/^(ok 00000|\w+ (22|23|54)...)$/ } keys %by_state;
	is_deeply(\@bad, [],
		"$kind: every outcome is success or an ERROR of class 22, 23 or 54");
	for my $k (@bad)
	{
		diag("$kind: $k: "
			  . $node->safe_psql('fuzz',
				"SELECT string_agg(DISTINCT message, ' / ') FROM (SELECT message FROM fuzz_result WHERE kind = '$kind' AND stage || ' ' || sqlstate = '$k' LIMIT 5) m"
			  ));
	}
	note("$kind outcomes: "
		  . join(', ', map { "$_: $by_state{$_}" } sort keys %by_state));
	return %by_state;
}

my %emit_outcome = check_outcomes('emit');
my $emit_ok = $emit_outcome{'ok 00000'} // 0;
cmp_ok($emit_ok, '>', $ncases / 10, "emit: $emit_ok cases succeeded");
cmp_ok(scalar(grep { /^emit 22/ } keys %emit_outcome),
	'>=', 1, 'emit: and emit() itself rejected some');

# What succeeded is stored exactly; nothing else is.
is($node->safe_psql('fuzz', 'SELECT count(*) FROM webhooks.events'),
	$emit_ok, 'emit: one event row per success, none for the errors');
is( $node->safe_psql(
		'fuzz', q{
SELECT count(*) FROM fuzz_result r
  JOIN fuzz_emit f ON f.i = r.i AND r.kind = 'emit'
  JOIN webhooks.events ev ON ev.id = r.id::uuid
 WHERE ev.event = convert_from(decode(f.event, 'base64'), 'UTF8')
   AND ev.company_id = convert_from(decode(f.company, 'base64'), 'UTF8')
   AND ev.data = convert_from(decode(f.data, 'base64'), 'UTF8')::jsonb}),
	$emit_ok,
	'emit: each stored event holds exactly the event, company and data given');

# An independent check of the validation: every stored event is of a known
# type, its data an object within the size limit, every required field
# present, non-null and of its type, every nullable one null or of its type.
is( $node->safe_psql(
		'fuzz', q{
SELECT count(*) FROM webhooks.events ev
 WHERE jsonb_typeof(ev.data) <> 'object'
    OR pg_column_size(ev.data || '{}') > 262144 + 4
    OR NOT EXISTS (SELECT FROM webhooks.event_types t WHERE t.name = ev.event)
    OR EXISTS (SELECT FROM webhooks.event_types t, jsonb_array_elements(t.fields) f
                WHERE t.name = ev.event
                  AND CASE WHEN coalesce(jsonb_typeof(ev.data -> (f ->> 'name')), 'null') = 'null'
                           THEN (f ->> 'required')::boolean
                           ELSE jsonb_typeof(ev.data -> (f ->> 'name')) <> f ->> 'type' END)
    OR btrim(ev.company_id, E' \t\r\n') = '' OR octet_length(ev.company_id) > 255}),
	'0',
	'emit: no stored event breaks the rules emit() enforces');

# The fan-out, computed here from the endpoints made above.
my %ok_id;
for my $row (
	split /\n/,
	$node->safe_psql('fuzz',
		"SELECT i, id FROM fuzz_result WHERE kind = 'emit' AND stage = 'ok'"))
{
	my ($i, $id) = split /\|/, $row;
	$ok_id{$i} = $id;
}
my %deliveries_of;
for my $row (
	split /\n/,
	$node->safe_psql('fuzz',
		'SELECT event_id, count(*) FROM webhooks.deliveries GROUP BY 1'))
{
	my ($id, $n) = split /\|/, $row;
	$deliveries_of{$id} = $n;
}
my ($fanout_wrong, $expected_deliveries) = (0, 0);
for my $i (keys %ok_id)
{
	my ($ev, $co) = @{ $emit_cases[ $i - 1 ] };
	my $want = grep { my $e = $_; grep { $_ eq $ev } @$e } @{ $endpoints_of{$co} // [] };
	$expected_deliveries += $want;
	$fanout_wrong++ if ($deliveries_of{ $ok_id{$i} } // 0) != $want;
}
is($fanout_wrong, 0, 'emit: every stored event has exactly its expected deliveries');
is($node->safe_psql('fuzz', 'SELECT count(*) FROM webhooks.deliveries'),
	$expected_deliveries,
	"emit: $expected_deliveries deliveries in all, none for the errors");

###
### create_endpoint()
###

my @ep_cases;
$sql = '';
for my $i (1 .. $ncases)
{
	my $co = chance(0.8) ? pick(@all_companies) : rand_company();
	my $url = rand_url();
	my $events = rand_events_array();
	my $desc = chance(0.5) ? undef : rand_string(50);
	push @ep_cases, [ $co, $url, $events ];
	$sql .= "INSERT INTO fuzz_endpoint VALUES ($i, " . b64($co) . ', ' . b64($url) . ', '
	  . b64_array($events) . ', ' . b64($desc) . ");\n";
}
$node->safe_psql('fuzz', $sql);
undef $sql;
my $endpoints_before = $node->safe_psql('fuzz', 'SELECT count(*) FROM webhooks.endpoints');

my $ep_secs = run_cases(
	'endpoint', q{
            DECLARE
                co text := convert_from(decode(r.company, 'base64'), 'UTF8');
                url text := convert_from(decode(r.url, 'base64'), 'UTF8');
                ev text[] := (SELECT array_agg(convert_from(decode(e, 'base64'), 'UTF8') ORDER BY n)
                                FROM unnest(r.events) WITH ORDINALITY AS u(e, n));
                de text := convert_from(decode(r.description, 'base64'), 'UTF8');
            BEGIN
                IF r.events IS NOT NULL AND ev IS NULL THEN
                    ev := ARRAY[]::text[];
                END IF;
                stage := 'endpoint';
                result := (webhooks.create_endpoint(co, url, ev, de)).id::text;
            END;});

my %ep_outcome = check_outcomes('endpoint');
my $ep_ok = $ep_outcome{'ok 00000'} // 0;
cmp_ok($ep_ok, '>', $ncases / 20, "create_endpoint: $ep_ok cases succeeded");
is($node->safe_psql('fuzz', 'SELECT count(*) FROM webhooks.endpoints'),
	$endpoints_before + $ep_ok,
	'create_endpoint: one endpoint row per success, none for the errors');
is( $node->safe_psql(
		'fuzz', q{
SELECT count(*) FROM fuzz_result r
  JOIN fuzz_endpoint f ON f.i = r.i AND r.kind = 'endpoint'
  JOIN webhooks.endpoints ep ON ep.id = r.id::bigint
 WHERE ep.url = convert_from(decode(f.url, 'base64'), 'UTF8')
   AND ep.company_id = convert_from(decode(f.company, 'base64'), 'UTF8')
   AND ep.secret ~ '^whsec_[A-Za-z0-9+/]{43}=$'}),
	$ep_ok,
	'create_endpoint: each stored endpoint holds the url and company given, and a generated secret'
);

# An independent check of the URL rules on everything accepted: http or
# https, no space or control character, a host, no credentials; and every
# subscription a known event.
my @accepted = split /\n/,
  $node->safe_psql('fuzz',
	"SELECT encode(convert_to(url, 'UTF8'), 'hex') FROM webhooks.endpoints"
  );
my @bad_urls;
for my $hex (@accepted)
{
	my $url = pack('H*', $hex);
	my ($scheme, $authority) = $url =~ m{^([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)};
	push @bad_urls, $url
	  if !defined $scheme
	  || lc($scheme) !~ /^https?$/
	  || $url =~ /[\x00-\x20\x7f]/
	  || $authority eq ''
	  || $authority =~ /@/;
}
is(scalar @bad_urls, 0,
	'create_endpoint: every accepted url is http(s) with a host, no space, control character or credentials'
) or diag(join("\n", map { "  accepted: $_" } @bad_urls[ 0 .. ($#bad_urls < 9 ? $#bad_urls : 9) ]));
is( $node->safe_psql(
		'fuzz', q{
SELECT count(*) FROM webhooks.endpoints ep
 WHERE cardinality(ep.events) = 0
    OR EXISTS (SELECT FROM unnest(ep.events) e
                WHERE e IS NULL
                   OR NOT EXISTS (SELECT FROM webhooks.event_types t WHERE t.name = e))}),
	'0',
	'create_endpoint: every accepted subscription is a non-empty list of known events');
my $credentials_refused = $node->safe_psql(
	'fuzz', q{
SELECT count(*) FROM fuzz_result r JOIN fuzz_endpoint f ON f.i = r.i AND r.kind = 'endpoint'
 WHERE r.stage = 'endpoint' AND r.message LIKE 'invalid endpoint url%'
   AND convert_from(decode(f.url, 'base64'), 'UTF8') ~ '^https?://[^/?#]*@'});
cmp_ok($credentials_refused, '>', 0,
	"create_endpoint: URLs with credentials were refused ($credentials_refused)");

###
### The payload size limit, at its exact boundary (default 256 kB of
### stored jsonb), for a company with an endpoint: just under is stored with
### its delivery, one byte over is refused and stores nothing.
###
my $limit = $node->safe_psql('fuzz',
	"SELECT setting FROM pg_settings WHERE name = 'konvox_webhooks.max_payload_size'"
);
is($limit, 262144, 'max_payload_size defaults to 256 kB');
my $size_sql =
  "pg_column_size(jsonb_build_object('contactId', 'c', 'channel', 'email', 'pad', repeat('x', %d))) - 4";
my $base = $node->safe_psql('fuzz', sprintf("SELECT $size_sql", 0));
my $pad = $limit - $base;
is($node->safe_psql('fuzz', sprintf("SELECT $size_sql", $pad)),
	$limit, "a pad of $pad bytes makes data of exactly $limit bytes");
my $counts_sql = 'SELECT (SELECT count(*) FROM webhooks.events) || \'/\' || (SELECT count(*) FROM webhooks.deliveries)';
my $counts_before = $node->safe_psql('fuzz', $counts_sql);
my $emit_padded =
  "SELECT webhooks.emit('contact.replied', 'acme', jsonb_build_object('contactId', 'c', 'channel', 'email', 'pad', repeat('x', %d)))";
my ($ret, $out, $err) = $node->psql('fuzz', sprintf($emit_padded, $pad));
is($ret, 0, "data of exactly $limit bytes is accepted");
my ($ret2, $out2, $err2) = $node->psql('fuzz',
	"\\set VERBOSITY verbose\n" . sprintf($emit_padded, $pad + 1));
isnt($ret2, 0, 'one byte more is refused');
like($err2, qr/ERROR:\s+54000: event data is too large/,
	'with SQLSTATE 54000 and "event data is too large"');
my $fanout_acme = $node->safe_psql('fuzz',
	"SELECT count(*) FROM webhooks.endpoints WHERE company_id = 'acme' AND active AND events @> ARRAY['contact.replied']"
);
cmp_ok($fanout_acme, '>', 0, "acme has $fanout_acme endpoints for contact.replied");
my ($ev_before, $d_before) = split m{/}, $counts_before;
is( $node->safe_psql('fuzz', $counts_sql),
	($ev_before + 1) . '/' . ($d_before + $fanout_acme),
	'only the accepted one was stored, with its deliveries');

###
### The server throughout
###
is($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'),
	$started, 'the postmaster never restarted');
unlike(kw_log_since($node, 0), qr/terminated by signal|exited with exit code|server process .* was terminated/,
	'no server process crashed');
note(
	sprintf(
		'fuzz (seed %d): emit %d cases in %.1f s, %d succeeded; create_endpoint %d cases in %.1f s, %d succeeded; every error of class 22, 23 or 54; no crash',
		$seed, $ncases, $emit_secs, $emit_ok, $ncases, $ep_secs, $ep_ok));

done_testing();
