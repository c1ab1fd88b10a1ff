# Signatures of real deliveries, checked by the reference Standard Webhooks
# verifier (the npm package standardwebhooks, run by test/verify.js) and by
# a second implementation on Python's hmac (test/verify.py), which must give
# the same verdicts: the endpoint's secret verifies and another's does not;
# during a rotation overlap both the old and the new secret verify, after
# it only the new; tampering is rejected; the exact raw bytes are signed;
# and webhooks.sign() gives the header.  Then the code samples of the
# "Verifying deliveries" documentation are run against real deliveries.
#
# Every assertion includes something that holds only when signing works (a
# rejection is always asserted together with an acceptance, a header against
# a signature computed independently here), so that none of them can pass
# with signing broken.  The samples of the documentation are taken from
# README.md, or doc-drafts/verifying.md until the section is merged.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../test";
use KwTest;
use Digest::SHA qw(hmac_sha256);
use File::Basename qw(dirname);
use HTTP::Tiny;
use IPC::Run;
use JSON::PP;
use MIME::Base64;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $srcdir = dirname($FindBin::RealBin);
my $json = JSON::PP->new->utf8->canonical->allow_nonref;

# Stop with a message when something the test relies on is not so: these
# are not assertions about signing, but without them the assertions below
# would not mean what they say.
sub need
{
	my ($cond, $what) = @_;
	die "test setup: $what\n" unless $cond;
	return $cond;
}

# The verifiers: the reference one in Node, and ours in Python.
my @node_verifier = ('node', "$srcdir/test/verify.js");
my @python_verifier = ('/usr/bin/python3', "$srcdir/test/verify.py");

# Run a verifier over cases (see test/verify.js for their shape); returns
# its verdicts, one list per case, each "ok" or "rejected: <message>".
sub run_verifier
{
	my ($cmd, @cases) = @_;
	my $in = $json->encode({ cases => \@cases });
	my ($out, $err) = ('', '');
	IPC::Run::run($cmd, '<', \$in, '>', \$out, '2>', \$err)
	  or die "@$cmd failed with exit status " . ($? >> 8) . ": $err";
	my $res = $json->decode($out);
	die "@$cmd gave verdicts for "
	  . scalar(@{ $res->{cases} })
	  . " of "
	  . scalar(@cases)
	  . " cases"
	  unless @{ $res->{cases} } == @cases;
	return [
		map {
			[ map { $_->{ok} ? 'ok' : "rejected: $_->{error}" } @{ $_->{results} } ]
		} @{ $res->{cases} }
	];
}

my ($node_version, $vout, $verr) = ('', '', '');
need(IPC::Run::run([ 'node', '--version' ], '>', \$node_version),
	'node runs (make test installs it)');
need(IPC::Run::run(\@node_verifier, '<', \'{"cases": []}', '>', \$vout, '2>', \$verr),
	"test/verify.js runs: $verr");
my $verifier_version = $json->decode($vout)->{verifier};
need($verifier_version =~ /^standardwebhooks 1\./,
	"test/verify.js uses standardwebhooks 1.x, not $verifier_version");
chomp $node_version;
note("node $node_version, $verifier_version");

my $node = kw_node('signatures');
my $r = kw_receiver();

# A case for the verifiers from a logged request: its headers and raw body,
# changed as asked (headers to set, headers to drop, another body), verified
# with each of the secrets.
sub vcase
{
	my ($name, $req, $secrets, %opt) = @_;
	my %headers = (%{ $req->{headers} }, %{ $opt{headers} // {} });
	delete @headers{ @{ $opt{drop} // [] } };
	$_ = "$_" for values %headers;    # a number is sent as a string
	return {
		name => $name,
		request => {
			headers => \%headers,
			body_b64 => encode_base64($opt{body} // $req->{body}, ''),
		},
		secrets => $secrets,
		payload => $opt{payload} // 'buffer',
	};
}

# Each argument is a check: [label, [case, [expected verdict per secret]],
# ...].  All cases go to the reference verifier; those that hand it the raw
# bytes go to the Python one as well, which must give the same verdicts.
# One assertion per check.  A case may serve several checks; it is verified
# once.
sub check_signatures
{
	my @checks = @_;
	my (@cases, %seen);
	for my $case (map { my ($label, @pairs) = @$_; map { $_->[0] } @pairs } @checks)
	{
		my $other = $seen{ $case->{name} };
		die "two cases are named $case->{name}" if $other && $other != $case;
		push @cases, $case unless $other;
		$seen{ $case->{name} } = $case;
	}
	my @raw = grep { $_->{payload} eq 'buffer' } @cases;

	my $by_node = run_verifier(\@node_verifier, @cases);
	my $by_python = run_verifier(\@python_verifier, @raw);
	my (%node, %python);
	@node{ map { $_->{name} } @cases } = @$by_node;
	@python{ map { $_->{name} } @raw } = @$by_python;

	for my $check (@checks)
	{
		my ($label, @pairs) = @$check;
		my (%got, %want);
		for my $pair (@pairs)
		{
			my ($case, $expected) = @$pair;
			my $n = $case->{name};
			$got{"standardwebhooks: $n"} = $node{$n};
			$want{"standardwebhooks: $n"} = $expected;
			next unless exists $python{$n};
			$got{"python: $n"} = $python{$n};
			$want{"python: $n"} = $expected;
		}
		is_deeply(\%got, \%want, $label);
	}
	return;
}

# webhooks.sign() of a raw body, passed as base64 so that no byte of it
# meets SQL quoting.
sub sql_sign
{
	my ($secret, $id, $ts, $body) = @_;
	my $b64 = encode_base64($body, '');
	return $node->safe_psql('postgres',
		"SELECT webhooks.sign('$secret', '$id', $ts, convert_from(decode('$b64', 'base64'), 'UTF8'))"
	);
}

# The same signature computed here, independently of the extension.
sub perl_sign
{
	my ($secret, $id, $ts, $body) = @_;
	(my $key = $secret) =~ s/^whsec_//;
	return 'v1,' . encode_base64(hmac_sha256("$id.$ts.$body", decode_base64($key)), '');
}

# Assert that a webhook-signature header holds exactly the entries of these
# secrets, in this order, for the id, timestamp and raw body, as computed
# both by webhooks.sign() and by perl_sign().
sub header_is
{
	my ($header, $id, $ts, $body, $secrets, $label) = @_;
	my @entries = split / /, $header, -1;
	is_deeply(
		{ 'webhooks.sign()' => \@entries, 'Digest::SHA' => \@entries },
		{
			'webhooks.sign()' => [ map { sql_sign($_, $id, $ts, $body) } @$secrets ],
			'Digest::SHA' => [ map { perl_sign($_, $id, $ts, $body) } @$secrets ],
		},
		$label);
	return;
}

# Emit contact.replied for a company, wait until its one endpoint has it,
# and return the event id and the requests the receiver logged for it
# (one, unless another count is expected).
sub deliver
{
	my ($company, $data, $count) = @_;
	$count //= 1;
	my $id = $node->safe_psql('postgres',
		"SELECT webhooks.emit('contact.replied', '$company', \$kw\$$data\$kw\$)");
	$node->poll_query_until('postgres',
		"SELECT status = 'delivered' FROM webhooks.deliveries WHERE event_id = '$id'"
	) or die "the delivery of $id did not happen";
	my @req =
	  grep { ($_->{headers}{'webhook-id'} // '') eq $id } receiver_log($r);
	need(@req == $count,
		"event $id arrived $count times, not " . scalar(@req));
	return ($id, @req);
}

# The secret of an endpoint, read as the superuser.
sub secret_of
{
	my ($endpoint) = @_;
	return $node->safe_psql('postgres',
		"SELECT secret FROM webhooks.endpoints WHERE id = $endpoint");
}

# Endpoints: acme's, whose deliveries are checked; another company's, whose
# secret must not verify them; and one that fails its first attempt.
my ($ep_a, $ep_b, $ep_retry) = map {
	my ($company, $path) = @$_;
	$node->safe_psql('postgres',
		    "SELECT id FROM webhooks.create_endpoint('$company', '"
		  . receiver_url($r, $path)
		  . "', ARRAY['contact.replied'])");
} ([ 'acme', '/a' ], [ 'other', '/b' ], [ 'retry', '/retry?fail_first=1' ]);
my $secret_a = secret_of($ep_a);
my $secret_b = secret_of($ep_b);
need($secret_a =~ /^whsec_[A-Za-z0-9+\/]+=*$/, "a secret, not '$secret_a'");
need($secret_a ne $secret_b, 'endpoints have their own secrets');

# Data that puts bytes in the body which a careless verifier would change:
# non-ASCII text of two, three and four bytes per character; what JSON
# escapes (quote, backslash, newline, tab, a control character); a number
# that JavaScript cannot hold and one whose trailing zero it drops.
# (jsonb text cannot hold \u0000.)
my $subject = "R\x{e9} \x{2713} \x{65e5}\x{672c} \"quoted\" back\\slash\n"
  . "line two\tafter a tab \x{1F600} </script>";
my $data =
    '{"contactId": "c1", "channel": "email", "subject": '
  . $json->encode($subject)
  . q{, "escapes": "\u00e9\u0001\/", "big": 12345678901234567890, }
  . q{"price": 1.50, "nested": {"list": [1, 2.0, "x"], "none": null}}
  . '}';

my ($id1, $req1) = deliver('acme', $data);
my $body1 = $req1->{body};
my $ts1 = $req1->{headers}{'webhook-timestamp'};
for my $bytes (
	"R\xc3\xa9 \xe2\x9c\x93 \xe6\x97\xa5\xe6\x9c\xac", "\xf0\x9f\x98\x80",
	'\\"quoted\\"', 'back\\\\slash', 'slash\\nline two',
	'two\\tafter', '\\u0001', '12345678901234567890',
	'"price": 1.50')
{
	need(index($body1, $bytes) >= 0,
		"the body holds the bytes $bytes; body: $body1");
}
need($ts1 =~ /^\d+$/ && abs($ts1 - time()) < 60,
	"webhook-timestamp $ts1 is a fresh unix time");

# A normal delivery verifies with the endpoint's secret only, and only as
# raw bytes.
check_signatures(
	[
		"a delivery verifies with its endpoint's secret, not with another endpoint's",
		[ vcase('normal', $req1, [ $secret_a, $secret_b ]), [ 'ok', 'rejected: No matching signature found' ] ],
	],
	[
		'the raw bytes verify; the same body as a latin1 string or re-serialized JSON does not',
		[ vcase('as a Buffer', $req1, [$secret_a]), ['ok'] ],
		[ vcase('as latin1', $req1, [$secret_a], payload => 'latin1'), ['rejected: No matching signature found'] ],
		[ vcase('re-serialized', $req1, [$secret_a], payload => 'reserialized'), ['rejected: No matching signature found'] ],
	]);

# Tampering.  The changed bodies are still valid JSON, and the changed
# timestamps still fresh, so only the signature can reject them.
(my $body_ascii = $body1) =~ s/"contactId": "c1"/"contactId": "c2"/
  or die "no contactId in the body";
(my $body_utf8 = $body1) =~ s/R\xc3\xa9/R\xc3\xa8/ or die "no é in the body";
(my $id_changed = $id1) =~ s/(.)$/$1 eq '0' ? '1' : '0'/e;
my $sig1 = $req1->{headers}{'webhook-signature'};
(my $sig_changed = $sig1) =~ s/^v1,(.)/'v1,' . ($1 eq 'A' ? 'B' : 'A')/e;
my $ts_old = $ts1 - 600;
my $ts_new = $ts1 + 600;
my $resigned = sub {
	my ($ts) = @_;
	return vcase("timestamp $ts, re-signed", $req1, [$secret_a],
		headers => {
			'webhook-timestamp' => $ts,
			'webhook-signature' => sql_sign($secret_a, $id1, $ts, $body1)
		});
};
my $untouched = [ vcase('untouched', $req1, [$secret_a]), ['ok'] ];
my $no_match = ['rejected: No matching signature found'];
check_signatures(
	[
		'a body with one ASCII byte changed is rejected',
		$untouched,
		[ vcase('c1 -> c2', $req1, [$secret_a], body => $body_ascii), $no_match ],
	],
	[
		'a body with one byte of a UTF-8 character changed is rejected',
		$untouched,
		[ vcase('é -> è', $req1, [$secret_a], body => $body_utf8), $no_match ],
	],
	[
		'a body with a byte added is rejected',
		$untouched,
		[ vcase('newline added', $req1, [$secret_a], body => "$body1\n"), $no_match ],
	],
	[
		'a changed webhook-id is rejected',
		$untouched,
		[ vcase('other id', $req1, [$secret_a], headers => { 'webhook-id' => $id_changed }), $no_match ],
	],
	[
		'a webhook-timestamp one second later or earlier is rejected',
		$untouched,
		[ vcase('ts + 1', $req1, [$secret_a], headers => { 'webhook-timestamp' => $ts1 + 1 }), $no_match ],
		[ vcase('ts - 1', $req1, [$secret_a], headers => { 'webhook-timestamp' => $ts1 - 1 }), $no_match ],
	],
	[
		'a changed signature is rejected, a missing one refused',
		$untouched,
		[ vcase('other signature', $req1, [$secret_a], headers => { 'webhook-signature' => $sig_changed }), $no_match ],
		[ vcase('no signature', $req1, [$secret_a], drop => ['webhook-signature']), ['rejected: Missing required headers'] ],
	],
	[
		'a validly signed timestamp more than 5 minutes old or ahead is rejected',
		[ $resigned->($ts1 - 1), ['ok'] ],
		[ $resigned->($ts_old), ['rejected: Message timestamp too old'] ],
		[ $resigned->($ts_new), ['rejected: Message timestamp too new'] ],
	]);

# webhooks.sign() gives the header for the received id, timestamp and
# raw body.
header_is($sig1, $id1, $ts1, $body1, [$secret_a],
	'webhooks.sign() of the received id, timestamp and body is the header');

# The worker sends UTF-8 whatever the database encoding, so webhooks.sign()
# signs the UTF-8 bytes of the body in a LATIN1 database too.
$node->safe_psql('postgres',
	"CREATE DATABASE latin1 TEMPLATE template0 ENCODING 'LATIN1' LOCALE 'C'");
$node->safe_psql('latin1', 'CREATE EXTENSION konvox_webhooks');
my $latin1_body = qq{{"subject": "R\xc3\xa9 \\u00e9"}};
is( $node->safe_psql(
		'latin1',
		"SELECT webhooks.sign('$secret_a', '$id1', $ts1, convert_from(decode('"
		  . encode_base64($latin1_body, '')
		  . "', 'base64'), 'UTF8'))"),
	perl_sign($secret_a, $id1, $ts1, $latin1_body),
	'in a LATIN1 database webhooks.sign() signs the body as UTF-8');

# Every attempt is signed: a retry carries the same id and body, its own
# timestamp, and verifies.
my ($id_r, @attempts) = deliver('retry', $data, 2);
need($attempts[0]{status} == 500 && $attempts[1]{status} == 200,
	'the retry endpoint got a failed and a successful attempt');
my $secret_r = secret_of($ep_retry);
check_signatures(
	[
		'the failed attempt and its retry each verify with the secret, and not with another',
		[ vcase('attempt 1', $attempts[0], [ $secret_r, $secret_a ]), [ 'ok', $no_match->[0] ] ],
		[ vcase('attempt 2', $attempts[1], [ $secret_r, $secret_a ]), [ 'ok', $no_match->[0] ] ],
	]);
need($attempts[1]{body} eq $attempts[0]{body}, 'a retry sends the same body');
header_is($_->{headers}{'webhook-signature'}, $id_r,
	$_->{headers}{'webhook-timestamp'}, $_->{body}, [$secret_r],
	"attempt $_->{n} is signed with its own timestamp")
  for map { +{ %{ $attempts[$_] }, n => $_ + 1 } } 0 .. 1;

# Rotation.  With the default overlap, deliveries carry two entries, the
# new secret's first, and both secrets verify.
my $old = $secret_a;
my $new = $node->safe_psql('postgres', "SELECT webhooks.rotate_secret($ep_a)");
need(
	$node->safe_psql(
		'postgres', qq{
SELECT secret = '$new' AND previous_secret = '$old'
       AND previous_secret_expires_at > now() + interval '23 hours'
  FROM webhooks.endpoints WHERE id = $ep_a}) eq 't',
	'rotate_secret() kept the old secret for 24 hours');
my ($id2, $req2) = deliver('acme', $data);
my $ts2 = $req2->{headers}{'webhook-timestamp'};
header_is($req2->{headers}{'webhook-signature'}, $id2, $ts2, $req2->{body},
	[ $new, $old ],
	'during the overlap the header has two v1 entries: the new secret\'s, then the old one\'s'
);
check_signatures(
	[
		'during the overlap the delivery verifies with the new and the old secret',
		[ vcase('overlap', $req2, [ $new, $old, $secret_b ]), [ 'ok', 'ok', $no_match->[0] ] ],
	]);

# With no overlap, the old secret stops signing at once.
my $newer =
  $node->safe_psql('postgres', "SELECT webhooks.rotate_secret($ep_a, '0')");
my ($id3, $req3) = deliver('acme', $data);
header_is($req3->{headers}{'webhook-signature'}, $id3,
	$req3->{headers}{'webhook-timestamp'}, $req3->{body}, [$newer],
	'after a rotation without overlap the header has one entry, the new secret\'s'
);
check_signatures(
	[
		'after a rotation without overlap only the new secret verifies',
		[ vcase('no overlap', $req3, [ $newer, $new, $old ]), [ 'ok', $no_match->[0], $no_match->[0] ] ],
	]);

# The same once an overlap has ended.
my $newest = $node->safe_psql('postgres', "SELECT webhooks.rotate_secret($ep_a)");
$node->safe_psql('postgres',
	"UPDATE webhooks.endpoints SET previous_secret_expires_at = now() - interval '1 second' WHERE id = $ep_a"
);
my ($id4, $req4) = deliver('acme', $data);
header_is($req4->{headers}{'webhook-signature'}, $id4,
	$req4->{headers}{'webhook-timestamp'}, $req4->{body}, [$newest],
	'once the overlap has ended the header has one entry, the new secret\'s');
check_signatures(
	[
		'once the overlap has ended only the new secret verifies',
		[ vcase('overlap ended', $req4, [ $newest, $newer ]), [ 'ok', $no_match->[0] ] ],
	]);

#
# The code samples of "Verifying deliveries": README.md once the section is
# there, the draft until then.  Each fenced block in the section is preceded
# by <!-- kw-test: NAME [ARGS] --> and is run or checked below.
#
my ($doc_file) =
  grep { -e $_ && slurp_file($_) =~ /^## Verifying deliveries$/m }
  ("$srcdir/README.md", "$srcdir/doc-drafts/verifying.md");
need($doc_file, 'a "## Verifying deliveries" section in README.md or doc-drafts/verifying.md');
my ($section) =
  slurp_file($doc_file) =~ /^(## Verifying deliveries\n.*?)(?=^## |\z)/ms;
my %sample;
while ($section =~ /^(?:<!-- kw-test: ([^>]*?) -->\n)?```(\w*)\n(.*?)^```$/gms)
{
	my ($marker, $text) = ($1, $3);
	need(defined $marker,
		"every code block of $doc_file has a kw-test marker, this one does not:\n$text"
	);
	my ($name, @args) = split ' ', $marker;
	$sample{$name} = { args => \@args, text => $text };
}
need($sample{$_}, "a kw-test: $_ block in $doc_file")
  for qw(example-request example-rotation receiver.js verify_webhook.py rotate.sql);
note("documentation samples from $doc_file");
my $tmp = PostgreSQL::Test::Utils::tempdir();

# The example request: what the documented secret signs, with the headers a
# real delivery has.
my ($head, $ex_body) = split /\n\n/, $sample{'example-request'}{text}, 2;
$ex_body =~ s/\n\z//;
my ($request_line, @header_lines) = split /\n/, $head;
my %ex = map { /^([^:]+): (.*)$/ ? (lc $1 => $2) : die "bad header line $_" }
  @header_lines;
my ($ex_secret) = @{ $sample{'example-request'}{args} };
is_deeply(
	{
		'webhooks.sign()' => $ex{'webhook-signature'},
		'Digest::SHA' => $ex{'webhook-signature'},
		'content-type' => $ex{'content-type'},
		'user-agent' => $ex{'user-agent'},
		'content-length' => $ex{'content-length'},
		'other headers' => [ grep { !exists $req1->{headers}{$_} } sort keys %ex ],
	},
	{
		'webhooks.sign()' => sql_sign($ex_secret, $ex{'webhook-id'}, $ex{'webhook-timestamp'}, $ex_body),
		'Digest::SHA' => perl_sign($ex_secret, $ex{'webhook-id'}, $ex{'webhook-timestamp'}, $ex_body),
		'content-type' => $req1->{headers}{'content-type'},
		'user-agent' => $req1->{headers}{'user-agent'},
		'content-length' => length($ex_body),
		'other headers' => [],
	},
	'docs: the example request is signed by its secret and has the headers of a real one'
);
my ($rot_line) = $sample{'example-rotation'}{text} =~ /^webhook-signature: (.*)$/m;
header_is($rot_line // '', $ex{'webhook-id'}, $ex{'webhook-timestamp'},
	$ex_body, $sample{'example-rotation'}{args},
	'docs: the rotation example has the entries of the new and the old secret');

# The Python sample, driven over the same cases as the verifiers above.
my $snippet = "$tmp/verify_webhook.py";
append_to_file($snippet, $sample{'verify_webhook.py'}{text});
my $driver = "$tmp/drive_verify_webhook.py";
append_to_file($driver, <<'EOF');
import base64, json, sys
sample = {}
exec(compile(open(sys.argv[1]).read(), sys.argv[1], "exec"), sample)
out = []
for case in json.load(sys.stdin)["cases"]:
    body = base64.b64decode(case["request"]["body_b64"])
    results = []
    for secret in case["secrets"]:
        try:
            sample["verify_webhook"](secret, case["request"]["headers"], body)
            results.append({"ok": True})
        except ValueError as err:
            results.append({"ok": False, "error": str(err)})
    out.append({"name": case["name"], "results": results})
print(json.dumps({"cases": out}))
EOF
my @doc_cases = (
	vcase('normal', $req1, [ $secret_a, $secret_b ]),
	vcase('overlap', $req2, [ $new, $old, $secret_b ]),
	vcase('no overlap', $req3, [ $newer, $new ]),
	vcase('body changed', $req1, [$secret_a], body => $body_ascii),
	vcase('ts + 1', $req1, [$secret_a], headers => { 'webhook-timestamp' => $ts1 + 1 }),
	$resigned->($ts_old),
	$resigned->($ts_new),
	vcase('no signature', $req1, [$secret_a], drop => ['webhook-signature']),
);
my $expected = [
	[ 'ok', 'rejected' ], [ 'ok', 'ok', 'rejected' ],
	[ 'ok', 'rejected' ], ['rejected'],
	['rejected'], ['rejected'],
	['rejected'], ['rejected']
];
my $accepts = sub {
	return [ map { [ map { /^ok$/ ? 'ok' : 'rejected' } @$_ ] } @{ $_[0] } ];
};
is_deeply(
	{
		'the Python sample' => $accepts->(
			run_verifier([ '/usr/bin/python3', $driver, $snippet ], @doc_cases)),
		'standardwebhooks' => $accepts->(run_verifier(\@node_verifier, @doc_cases)),
	},
	{ 'the Python sample' => $expected, 'standardwebhooks' => $expected },
	'docs: the Python sample accepts and rejects what standardwebhooks does');

# The Node receiver, on an ephemeral port, with the secret of its endpoint.
my $receiver_js = "$tmp/receiver.js";
append_to_file($receiver_js, $sample{'receiver.js'}{text});
my $docs_secret = $node->safe_psql('postgres', 'SELECT webhooks.generate_secret()');
my $docs_out = "$tmp/receiver.out";
my $docs_receiver;
END
{
	local $?;
	eval { $docs_receiver->kill_kill(grace => 2) } if $docs_receiver;
}
{
	local $ENV{WEBHOOK_SECRET} = $docs_secret;
	local $ENV{PORT} = '0';
	local $ENV{NODE_PATH} = "$srcdir/test/node_modules";
	$docs_receiver = IPC::Run::start([ 'node', $receiver_js ],
		'>', $docs_out, '2>', "$tmp/receiver.err");
}

# Wait until a file matches a pattern; returns the first capture, or undef
# after the default timeout.
sub wait_for_output
{
	my ($file, $re) = @_;
	my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
	while (time() < $deadline)
	{
		if (-e $file && slurp_file($file) =~ $re)
		{
			return $1 // 1;
		}
		usleep(50_000);
	}
	return undef;
}
my $docs_port = wait_for_output($docs_out, qr/^listening on port (\d+)$/m);
need($docs_port,
	"the documented Node receiver listens; stderr: "
	  . (-e "$tmp/receiver.err" ? slurp_file("$tmp/receiver.err") : ''));
my $docs_url = "http://127.0.0.1:$docs_port/hooks";
my $ep_docs = $node->safe_psql(
	'postgres', qq{
INSERT INTO webhooks.endpoints (company_id, url, events, secret)
VALUES ('docs', '$docs_url', ARRAY['contact.replied'], '$docs_secret')
RETURNING id});
$node->safe_psql('postgres',
	"SELECT webhooks.create_endpoint('docs-wrong', '$docs_url', ARRAY['contact.replied'])"
);

# Emit for a company and return the event id and the HTTP status of the
# first attempt of its delivery.
sub first_answer
{
	my ($company) = @_;
	my $id = $node->safe_psql('postgres',
		"SELECT webhooks.emit('contact.replied', '$company', \$kw\$$data\$kw\$)");
	my $q = qq{
SELECT a.status_code FROM webhooks.delivery_attempts a
  JOIN webhooks.deliveries d ON d.id = a.delivery_id
 WHERE d.event_id = '$id' AND a.attempt = 1};
	$node->poll_query_until('postgres', "SELECT EXISTS ($q)")
	  or die "no attempt to deliver $id";
	return ($id, $node->safe_psql('postgres', $q));
}

my ($docs_id, $good) = first_answer('docs');
my (undef, $wrong) = first_answer('docs-wrong');
my $printed = $good eq '204'
  && wait_for_output($docs_out, qr/^received \Q$docs_id\E contact\.replied /m);
is_deeply(
	[ $good, $wrong, $printed ? 'printed' : 'not printed' ],
	[ 204, 400, 'printed' ],
	'docs: the Node receiver accepts and prints a delivery for its secret, answers 400 to one for another'
);

# Replayed by hand: a repeat is accepted but handled once; a stale or
# tampered request is refused.
my $http = HTTP::Tiny->new(timeout => 10, no_proxy => '127.0.0.1');
my $post = sub {
	my ($id, $ts, $body, $sig_body) = @_;
	return $http->post(
		$docs_url,
		{
			headers => {
				'content-type' => 'application/json',
				'webhook-id' => $id,
				'webhook-timestamp' => $ts,
				'webhook-signature' =>
				  sql_sign($docs_secret, $id, $ts, $sig_body // $body),
			},
			content => $body,
		})->{status};
};
my $now = time();
is_deeply(
	[
		$post->($id1, $now, $body1),
		$post->($id1, $now, $body1),
		$post->($id1, $now - 600, $body1),
		$post->($id1, $now, $body_utf8, $body1),
	],
	[ 204, 204, 400, 400 ],
	'docs: the Node receiver accepts a repeat, refuses a stale or tampered request'
);
# (the receiver prints before it answers, so the answers order the output)
my @received = slurp_file($docs_out) =~ /^received \Q$id1\E /mg;
is(scalar @received, 1, 'docs: the Node receiver handles a repeated webhook-id once');

# Rotation as the receiver sees it: still on the old secret, it accepts
# deliveries during the overlap; after the documented rotations, the last
# without overlap, it refuses them.
$node->safe_psql('postgres', "SELECT webhooks.rotate_secret($ep_docs)");
my (undef, $during) = first_answer('docs');
(my $rotate_sql = $sample{'rotate.sql'}{text}) =~ s/\b42\b/$ep_docs/g;
my @rotated = split /\n/, $node->safe_psql('postgres', $rotate_sql);
need(
	@rotated == 3
	  && $rotated[2] eq secret_of($ep_docs)
	  && $node->safe_psql('postgres',
		"SELECT previous_secret_expires_at <= now() FROM webhooks.endpoints WHERE id = $ep_docs"
	  ) eq 't',
	'the documented rotations returned three secrets, the last without overlap');
my (undef, $after) = first_answer('docs');
is_deeply([ $during, $after ], [ 204, 400 ],
	'docs: a receiver on the old secret accepts during the overlap, refuses after a rotation without one'
);

# An endpoint of company $name, at /$name of the receiver, whose secret is
# then set to $secret with the endpoint's checks bypassed (as a restore
# with triggers disabled does), and an event emitted to it: its id and the
# event's.
sub endpoint_with_secret
{
	my ($name, $secret) = @_;
	my $ep = $node->safe_psql('postgres',
		    "SELECT id FROM webhooks.create_endpoint('$name', '"
		  . receiver_url($r, "/$name")
		  . "', ARRAY['contact.replied'])");
	$node->safe_psql(
		'postgres', qq{
SET session_replication_role = replica;
UPDATE webhooks.endpoints SET secret = '$secret' WHERE id = $ep;
});
	my $event = $node->safe_psql('postgres',
		qq{SELECT webhooks.emit('contact.replied', '$name', '{"contactId": "c1", "channel": "email"}')}
	);
	return ($ep, $event);
}

# Signing fails closed.  A secret that cannot be decoded is never a reason
# to send unsigned: the attempt is a failure that says why, the receiver
# gets nothing, and once the endpoint has a valid secret the retry goes out
# signed with it.
my ($ep_bad, $bad_event) =
  endpoint_with_secret('badsecret', 'not a whsec_ secret');
need(
	$node->poll_query_until(
		'postgres',
		"SELECT count(*) = 1 FROM webhooks.delivery_attempts a JOIN webhooks.deliveries d ON d.id = a.delivery_id WHERE d.event_id = '$bad_event'"
	),
	'the delivery with the broken secret has its first attempt');
is( $node->safe_psql(
		'postgres', qq{
SELECT coalesce(a.status_code::text, 'NULL') || '|' || a.error || '|' || d.status
  FROM webhooks.delivery_attempts a JOIN webhooks.deliveries d ON d.id = a.delivery_id
 WHERE d.event_id = '$bad_event'}),
	"NULL|not sent: the endpoint's secret is not a valid signing secret; give it a new one with webhooks.rotate_secret()|pending",
	'a secret that cannot be decoded: not sent, the attempt says why, a retry is due');
is(scalar(grep { $_->{path} eq '/badsecret' } receiver_log($r)),
	0, 'the receiver got nothing unsigned');
$node->safe_psql('postgres', "SELECT webhooks.rotate_secret($ep_bad, '0')");
need(
	$node->poll_query_until(
		'postgres',
		"SELECT status = 'delivered' FROM webhooks.deliveries WHERE event_id = '$bad_event'"
	),
	'the retry of the delivery with the broken secret was delivered');
my ($bad_req) = grep { $_->{path} eq '/badsecret' } receiver_log($r);
header_is(
	$bad_req->{headers}{'webhook-signature'},
	$bad_event, $bad_req->{headers}{'webhook-timestamp'},
	$bad_req->{body}, [ secret_of($ep_bad) ],
	'once rotated, the retry goes out signed with the new secret');

# An empty secret, after deliveries signed with other secrets: the workers
# keep contexts keyed with the secrets they signed with last, and an empty
# secret must never be taken for one of them, on the first attempt or on
# the retries (the first attempt's failure once left a context keyed with
# another endpoint's secret under an empty name).
my (undef, $empty_event) = endpoint_with_secret('emptysecret', '');
need(
	$node->poll_query_until(
		'postgres',
		"SELECT status <> 'pending' FROM webhooks.deliveries WHERE event_id = '$empty_event'"
	),
	'the delivery with the empty secret is finished');
is( $node->safe_psql(
		'postgres', qq{
SELECT d.status || '|' || count(*) || '|'
       || count(*) FILTER (WHERE a.status_code IS NULL
                             AND a.error LIKE 'not sent: the endpoint''s secret is not a valid signing secret%')
  FROM webhooks.delivery_attempts a JOIN webhooks.deliveries d ON d.id = a.delivery_id
 WHERE d.event_id = '$empty_event'
 GROUP BY d.status}),
	'failed|3|3',
	'an empty secret: failed after three attempts, none sent, each saying why');
is(scalar(grep { $_->{path} eq '/emptysecret' } receiver_log($r)),
	0, 'the receiver of the endpoint with the empty secret got nothing');

done_testing();
