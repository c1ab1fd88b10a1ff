# The Konvox flow of examples/konvox.sql, end to end: each action on the
# example schema emits exactly the documented events, with exactly the
# documented fields (no others, the right JSON types, nulls where
# documented), and each event reaches exactly the endpoints of its company
# subscribed to it.  Two companies, each with an endpoint for everything and
# one for a subset of the events.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../test";
use KwTest;
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = kw_node('konvox_flow');
my $r = kw_receiver();

$node->safe_psql('postgres',
	slurp_file("$FindBin::RealBin/../examples/konvox.sql"));
is( $node->safe_psql(
		'postgres',
		q{SELECT string_agg(keyword, ',' ORDER BY keyword)
		    FROM konvox.opt_out_keywords WHERE company_id IS NULL}),
	'remove me,stop,unsubscribe',
	'examples/konvox.sql loads, with its opt-out keywords');

my @all_events = qw(contact.replied enrollment.created
  enrollment.unsubscribed enrollment.completed
  message.approved message.rejected);

# company => receiver path => subscribed events
my %subs = (
	clacme => {
		'/acme/all' => [@all_events],
		'/acme/replies' => [qw(contact.replied enrollment.unsubscribed)],
	},
	clglobex => {
		'/globex/all' => [@all_events],
		'/globex/messages' => [qw(message.approved message.rejected)],
	},
);
for my $company (sort keys %subs)
{
	for my $path (sort keys %{ $subs{$company} })
	{
		my $url = receiver_url($r, $path);
		my $events = join(', ', map { "'$_'" } @{ $subs{$company}{$path} });
		$node->safe_psql('postgres',
			"SELECT webhooks.create_endpoint('$company', '$url', ARRAY[$events])"
		);
	}
}

my $canonical = JSON::PP->new->canonical;
my %seen;         # ids of the events already checked
my $requests = 0; # requests the receiver must have logged so far

# An expected event: name, company, then the data as field => value pairs
# (undef for a JSON null).
sub ev
{
	my ($event, $company, @data) = @_;
	return { event => $event, company => $company, data => {@data} };
}

# The receiver paths that must get an event of a company, sorted (call it
# in list context).
sub paths_for
{
	my ($event, $company) = @_;
	my $s = $subs{$company};
	return sort grep {
		grep { $_ eq $event } @{ $s->{$_} }
	} keys %$s;
}

# One line per event: name, company and the data as canonical JSON, in
# which strings, numbers and nulls all look different.
sub describe
{
	my ($e) = @_;
	return "$e->{event} $e->{company} " . $canonical->encode($e->{data});
}

# Check that the events emitted since the last check are exactly @want (in
# any order), and that each reached exactly the subscribed endpoints of its
# company, with the envelope and data expected, and nothing else arrived.
sub check_events
{
	my ($name, @want) = @_;

	my @new;
	for my $line (
		split /\n/,
		$node->safe_psql(
			'postgres',
			"SELECT id || ' ' || event || ' ' || company_id || ' ' || data::text
			   FROM webhooks.events ORDER BY created_at, id"))
	{
		my ($id, $event, $company, $data) = split / /, $line, 4;
		next if $seen{$id}++;
		push @new,
		  {
			id => $id,
			event => $event,
			company => $company,
			data => decode_json($data)
		  };
	}
	is_deeply(
		[ sort map { describe($_) } @new ],
		[ sort map { describe($_) } @want ],
		"$name: the events emitted");

	for my $e (@new)
	{
		my @paths = paths_for($e->{event}, $e->{company});
		$requests += @paths;
	}
	$node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM webhooks.deliveries WHERE status = 'pending'"
	) or die "$name: deliveries still pending";
	is( $node->safe_psql(
			'postgres',
			"SELECT count(*) FILTER (WHERE status = 'delivered') || '/' || count(*)
			   FROM webhooks.deliveries"),
		"$requests/$requests",
		"$name: every delivery so far delivered");

	my @log = receiver_log($r);
	is(scalar @log, $requests, "$name: the receiver got $requests requests in all");
	for my $e (@new)
	{
		my @req = grep { ($_->{headers}{'webhook-id'} // '') eq $e->{id} } @log;
		is_deeply(
			[ sort map { $_->{path} } @req ],
			[ paths_for($e->{event}, $e->{company}) ],
			"$name: $e->{event} of $e->{company} went to the subscribed endpoints of that company"
		);
		for my $req (@req)
		{
			my $body = decode_json($req->{body});
			is_deeply([ sort keys %$body ],
				[qw(companyId data event timestamp)],
				"$name: $e->{event} to $req->{path}: the envelope keys");
			is( describe(
					{
						event => $body->{event},
						company => $body->{companyId},
						data => $body->{data}
					}),
				describe($e),
				"$name: $e->{event} to $req->{path}: the body");
		}
	}
	return;
}

# Run SQL, then check the events it emitted.  Returns the output of the SQL.
sub act
{
	my ($name, $sql, @want) = @_;
	my $out = $node->safe_psql('postgres', $sql);
	check_events($name, @want);
	return $out;
}

# Run SQL that must fail with an error matching $re, and emit nothing.
sub refused
{
	my ($name, $sql, $re) = @_;
	my ($ret, $out, $err) = $node->psql('postgres', $sql);
	isnt($ret, 0, "$name: refused");
	like($err, $re, "$name: the error");
	check_events($name);
	return;
}

# A value from SQL.
sub query
{
	return $node->safe_psql('postgres', $_[0]);
}

# The state (and paused_reason) of enrollments, as "id:state[:reason]"
# joined by spaces, in the order of the ids given.
sub states
{
	my $ids = join(', ', map { "'$_'" } @_);
	return query(
		"SELECT string_agg(id || ':' || state || coalesce(':' || paused_reason, ''), ' '
		                   ORDER BY array_position(ARRAY[$ids], id))
		   FROM konvox.enrollments WHERE id IN ($ids)");
}

###########################################################################
# The companies, their contacts and campaigns: no events
###########################################################################

act(
	'setup', q{
INSERT INTO konvox.companies (id, name) VALUES
    ('clacme', 'Acme'), ('clglobex', 'Globex');
INSERT INTO konvox.contacts (id, company_id, first_name) VALUES
    ('clada', 'clacme', 'Ada'), ('clbob', 'clacme', 'Bob'),
    ('clcy', 'clacme', 'Cy'), ('cldee', 'clacme', 'Dee'),
    ('cleve', 'clacme', 'Eve'), ('clfay', 'clacme', 'Fay'),
    ('clgus', 'clacme', 'Gus'), ('clhal', 'clacme', 'Hal'),
    ('clgil', 'clglobex', 'Gil');
INSERT INTO konvox.campaigns (id, company_id, name) VALUES
    ('cla1', 'clacme', 'Three steps'), ('cla2', 'clacme', 'Two steps'),
    ('cla3', 'clacme', 'One step'), ('clg1', 'clglobex', 'Globex');
INSERT INTO konvox.campaign_steps (company_id, campaign_id, position, channel, subject) VALUES
    ('clacme', 'cla1', 1, 'email', 'Quick question'),
    ('clacme', 'cla1', 2, 'linkedin', NULL),
    ('clacme', 'cla1', 3, 'email', 'Following up'),
    ('clacme', 'cla2', 1, 'email', 'Hello'),
    ('clacme', 'cla2', 2, 'email', 'Hello again'),
    ('clacme', 'cla3', 1, 'email', 'Once'),
    ('clglobex', 'clg1', 1, 'email', 'Hi');
});

is(query("SELECT count(*) FROM konvox.companies WHERE company_id = id"),
	'2', 'companies have company_id too');
refused(
	'a contact of one company in a campaign of another',
	q{INSERT INTO konvox.enrollments (company_id, contact_id, campaign_id)
	  VALUES ('clacme', 'clgil', 'cla1')},
	qr/violates foreign key constraint/);

###########################################################################
# enrollment.created
###########################################################################

my $ada_a1 = query(
	q{INSERT INTO konvox.enrollments (company_id, contact_id, campaign_id)
	  VALUES ('clacme', 'clada', 'cla1') RETURNING id});
like($ada_a1, qr/^c[0-9a-z]{24}$/, 'a generated id is cuid-like');
check_events(
	'an enrollment',
	ev( 'enrollment.created', 'clacme',
		enrollmentId => $ada_a1,
		contactId => 'clada',
		campaignId => 'cla1'));
is(states($ada_a1), "$ada_a1:active", 'a new enrollment is active at step 1');

my @enrolled = (
	[ 'clbob', 'cla1' ], [ 'clbob', 'cla2' ], [ 'clcy', 'cla1' ],
	[ 'clcy', 'cla2' ], [ 'clcy', 'cla3' ], [ 'cldee', 'cla2' ],
	[ 'cleve', 'cla1' ], [ 'clfay', 'cla1' ], [ 'clgus', 'cla1' ],
	[ 'clhal', 'cla1' ], [ 'clhal', 'cla2' ], [ 'clgil', 'clg1' ]);
# enrollment ids: e.g. clbob_a1
my %enr;
$enr{"$_->[0]_" . substr($_->[1], 2)} = [@$_] for @enrolled;
act(
	'twelve enrollments in one statement',
	'INSERT INTO konvox.enrollments (id, company_id, contact_id, campaign_id) VALUES '
	  . join(
		', ',
		map {
			my $c = $enr{$_}[0] eq 'clgil' ? 'clglobex' : 'clacme';
			"('$_', '$c', '$enr{$_}[0]', '$enr{$_}[1]')"
		} sort keys %enr),
	map {
		ev( 'enrollment.created',
			$enr{$_}[0] eq 'clgil' ? 'clglobex' : 'clacme',
			enrollmentId => $_,
			contactId => $enr{$_}[0],
			campaignId => $enr{$_}[1])
	} sort keys %enr);

###########################################################################
# message.approved, message.rejected
###########################################################################

act(
	'messages queued', qq{
INSERT INTO konvox.messages (id, company_id, contact_id, enrollment_id, channel, subject, body, ai_generated) VALUES
    ('clm_ada', 'clacme', 'clada', '$ada_a1', 'email', 'Quick question', 'Hi Ada', true),
    ('clm_eve', 'clacme', 'cleve', 'cleve_a1', 'email', 'Quick question', 'Hi Eve', true),
    ('clm_dee', 'clacme', 'cldee', NULL, 'linkedin', NULL, 'Hi Dee', true),
    ('clm_fay', 'clacme', 'clfay', 'clfay_a1', 'email', 'Written by a person', 'Hi Fay', false),
    ('clm_gil', 'clglobex', 'clgil', 'clgil_g1', 'email', 'Hi', 'Hi Gil', true);
});
is( query(
		"SELECT string_agg(id || ':' || coalesce(approval_state, '-') || ':' || queue_state || ':' || coalesce(campaign_id, '-'), ' ' ORDER BY id)
		   FROM konvox.messages"),
	'clm_ada:pending:queued:cla1 clm_dee:pending:queued:- clm_eve:pending:queued:cla1 '
	  . 'clm_fay:-:queued:cla1 clm_gil:pending:queued:clg1',
	'AI messages wait for approval, a person\'s do not; campaign_id follows the enrollment'
);

act(
	'approve an AI message',
	q{UPDATE konvox.messages SET approval_state = 'approved' WHERE id = 'clm_ada'},
	ev( 'message.approved', 'clacme',
		messageId => 'clm_ada',
		contactId => 'clada',
		campaignId => 'cla1',
		enrollmentId => $ada_a1));
act(
	'reject an AI message with a reason',
	q{UPDATE konvox.messages SET approval_state = 'rejected', rejection_reason = 'Too pushy'
	   WHERE id = 'clm_eve'},
	ev( 'message.rejected', 'clacme',
		messageId => 'clm_eve',
		contactId => 'cleve',
		campaignId => 'cla1',
		enrollmentId => 'cleve_a1',
		reason => 'Too pushy'));
act(
	'reject a one-off AI message without a reason',
	q{UPDATE konvox.messages SET approval_state = 'rejected' WHERE id = 'clm_dee'},
	ev( 'message.rejected', 'clacme',
		messageId => 'clm_dee',
		contactId => 'cldee',
		campaignId => undef,
		enrollmentId => undef,
		reason => undef));
act(
	'approve a message of the other company',
	q{UPDATE konvox.messages SET approval_state = 'approved' WHERE id = 'clm_gil'},
	ev( 'message.approved', 'clglobex',
		messageId => 'clm_gil',
		contactId => 'clgil',
		campaignId => 'clg1',
		enrollmentId => 'clgil_g1'));
is( query(
		"SELECT string_agg(id || ':' || approval_state || ':' || queue_state, ' ' ORDER BY id)
		   FROM konvox.messages WHERE decided_at IS NOT NULL"),
	'clm_ada:approved:queued clm_dee:rejected:removed clm_eve:rejected:removed clm_gil:approved:queued',
	'a rejected message leaves the queue, an approved one stays');
refused(
	'a decision is final',
	q{UPDATE konvox.messages SET approval_state = 'approved' WHERE id = 'clm_eve'},
	qr/message clm_eve is not pending approval/);
refused(
	'a message that needs no approval',
	q{UPDATE konvox.messages SET approval_state = 'approved' WHERE id = 'clm_fay'},
	qr/message clm_fay is not pending approval/);
act(
	'other changes to messages',
	q{UPDATE konvox.messages SET queue_state = 'sent' WHERE id IN ('clm_ada', 'clm_fay', 'clm_gil');
	  UPDATE konvox.messages SET body = body || '!' WHERE id = 'clm_eve'});

###########################################################################
# contact.replied
###########################################################################

act(
	'an email reply',
	qq{INSERT INTO konvox.replies (company_id, contact_id, enrollment_id, channel, subject, body)
	   VALUES ('clacme', 'clada', '$ada_a1', 'email', 'Re: Quick question',
	           'Sounds good, call me on Tuesday.')},
	ev( 'contact.replied', 'clacme',
		contactId => 'clada',
		channel => 'email',
		subject => 'Re: Quick question',
		campaignId => 'cla1',
		enrollmentId => $ada_a1));
is(states($ada_a1), "$ada_a1:replied", 'the answered enrollment is replied');

act(
	'a LinkedIn reply: subject null',
	q{INSERT INTO konvox.replies (company_id, contact_id, enrollment_id, channel, body)
	  VALUES ('clacme', 'cleve', 'cleve_a1', 'linkedin', 'Happy to chat')},
	ev( 'contact.replied', 'clacme',
		contactId => 'cleve',
		channel => 'linkedin',
		subject => undef,
		campaignId => 'cla1',
		enrollmentId => 'cleve_a1'));
is(states('cleve_a1'), 'cleve_a1:replied', 'the LinkedIn reply marks its enrollment replied');
refused(
	'a LinkedIn reply with a subject',
	q{INSERT INTO konvox.replies (company_id, contact_id, channel, subject, body)
	  VALUES ('clacme', 'cleve', 'linkedin', 'InMail', 'Hi')},
	qr/violates check constraint/);

refused(
	'a reply attributed to another contact\'s enrollment',
	q{INSERT INTO konvox.replies (company_id, contact_id, enrollment_id, channel, body)
	  VALUES ('clacme', 'clfay', 'clbob_a1', 'email', 'Hi')},
	qr/violates foreign key constraint/);

act(
	'an unattributed reply',
	q{INSERT INTO konvox.replies (company_id, contact_id, channel, subject, body)
	  VALUES ('clacme', 'clfay', 'email', 'A new thread', 'Who are you?')},
	ev( 'contact.replied', 'clacme',
		contactId => 'clfay',
		channel => 'email',
		subject => 'A new thread',
		campaignId => undef,
		enrollmentId => undef));
is(states('clfay_a1'), 'clfay_a1:active',
	'an unattributed reply leaves the enrollments alone');

act(
	'a reply with words that merely contain a keyword',
	q{INSERT INTO konvox.replies (company_id, contact_id, enrollment_id, channel, subject, body)
	  VALUES ('clacme', 'clgus', 'clgus_a1', 'email', 'Re: Stop losing leads',
	          'Our team is unstoppable; I timed it with a stopwatch. Not unsubscribed.')},
	ev( 'contact.replied', 'clacme',
		contactId => 'clgus',
		channel => 'email',
		subject => 'Re: Stop losing leads',
		campaignId => 'cla1',
		enrollmentId => 'clgus_a1'));
is( query(
		"SELECT status || ':' || coalesce(r.opt_out_keyword, '-') FROM konvox.contacts c
		   JOIN konvox.replies r ON r.contact_id = c.id WHERE c.id = 'clgus'"),
	'active:-',
	'keywords count as whole words only, and the subject is not searched');

###########################################################################
# enrollment.unsubscribed: opt-out keyword
###########################################################################

act(
	'an opt-out reply',
	qq{INSERT INTO konvox.replies (company_id, contact_id, enrollment_id, channel, subject, body)
	   VALUES ('clacme', 'clbob', 'clbob_a1', 'email', 'Re: Quick question',
	           E'Thanks, but please REMOVE\\n  me from your list.')},
	ev( 'contact.replied', 'clacme',
		contactId => 'clbob',
		channel => 'email',
		subject => 'Re: Quick question',
		campaignId => 'cla1',
		enrollmentId => 'clbob_a1'),
	ev( 'enrollment.unsubscribed', 'clacme',
		enrollmentId => 'clbob_a1',
		contactId => 'clbob',
		campaignId => 'cla1',
		reason => 'opt_out_keyword'));
is( states('clbob_a1', 'clbob_a2'),
	'clbob_a1:paused:opt_out_keyword clbob_a2:paused:opt_out_keyword',
	'every active enrollment of the contact is paused, the answered one too');
is( query(
		"SELECT c.status || ':' || c.unsubscribe_reason || ':' || r.opt_out_keyword
		   FROM konvox.contacts c JOIN konvox.replies r ON r.contact_id = c.id
		  WHERE c.id = 'clbob'"),
	'unsubscribed:opt_out_keyword:remove me',
	'the contact is unsubscribed, and the reply records the keyword');

act(
	'another opt-out reply of an unsubscribed contact',
	q{INSERT INTO konvox.replies (company_id, contact_id, enrollment_id, channel, subject, body)
	  VALUES ('clacme', 'clbob', 'clbob_a2', 'email', 'Re: Hello', 'STOP!')},
	ev( 'contact.replied', 'clacme',
		contactId => 'clbob',
		channel => 'email',
		subject => 'Re: Hello',
		campaignId => 'cla2',
		enrollmentId => 'clbob_a2'));
is( states('clbob_a2'),
	'clbob_a2:paused:opt_out_keyword',
	'an opt-out reply of an unsubscribed contact changes nothing');

act(
	'an unattributed opt-out reply',
	q{INSERT INTO konvox.replies (company_id, contact_id, channel, body)
	  VALUES ('clacme', 'clhal', 'linkedin', 'Unsubscribe.')},
	ev( 'contact.replied', 'clacme',
		contactId => 'clhal',
		channel => 'linkedin',
		subject => undef,
		campaignId => undef,
		enrollmentId => undef),
	map {
		ev( 'enrollment.unsubscribed', 'clacme',
			enrollmentId => "clhal_a$_",
			contactId => 'clhal',
			campaignId => "cla$_",
			reason => 'opt_out_keyword')
	} 1, 2);
is( states('clhal_a1', 'clhal_a2'),
	'clhal_a1:paused:opt_out_keyword clhal_a2:paused:opt_out_keyword',
	'an unattributed opt-out pauses every active enrollment');

refused(
	'enrolling an unsubscribed contact',
	q{INSERT INTO konvox.enrollments (company_id, contact_id, campaign_id)
	  VALUES ('clacme', 'clbob', 'cla3')},
	qr/contact clbob is unsubscribed/);
refused(
	'resuming an enrollment of an unsubscribed contact',
	q{UPDATE konvox.enrollments SET state = 'active' WHERE id = 'clbob_a2'},
	qr/contact clbob is unsubscribed/);

###########################################################################
# enrollment.completed
###########################################################################

act('a step, not the last',
	q{UPDATE konvox.enrollments SET current_step = 2 WHERE id = 'cldee_a2'});
is(states('cldee_a2'), 'cldee_a2:active', 'still active after step 1 of 2');
act(
	'past the last step',
	q{UPDATE konvox.enrollments SET current_step = current_step + 1 WHERE id = 'cldee_a2'},
	ev( 'enrollment.completed', 'clacme',
		enrollmentId => 'cldee_a2',
		contactId => 'cldee',
		campaignId => 'cla2'));
is(states('cldee_a2'), 'cldee_a2:completed', 'completed');
act(
	'advancing enrollments that are not active',
	q{UPDATE konvox.enrollments SET current_step = current_step + 5
	   WHERE id IN ('cldee_a2', 'cleve_a1', 'clbob_a2')});
is( states('cldee_a2', 'cleve_a1', 'clbob_a2'),
	'cldee_a2:completed cleve_a1:replied clbob_a2:paused:opt_out_keyword',
	'completed, replied and paused enrollments stay as they were');
act(
	'a one-step campaign',
	q{UPDATE konvox.enrollments SET current_step = 2 WHERE id = 'clcy_a3'},
	ev( 'enrollment.completed', 'clacme',
		enrollmentId => 'clcy_a3',
		contactId => 'clcy',
		campaignId => 'cla3'));

###########################################################################
# enrollment.unsubscribed: manual
###########################################################################

act(
	'a contact unsubscribed by hand',
	q{UPDATE konvox.contacts SET status = 'unsubscribed' WHERE id = 'clcy'},
	map {
		ev( 'enrollment.unsubscribed', 'clacme',
			enrollmentId => "clcy_a$_",
			contactId => 'clcy',
			campaignId => "cla$_",
			reason => 'manual')
	} 1, 2);
is( states('clcy_a1', 'clcy_a2', 'clcy_a3'),
	'clcy_a1:paused:manual clcy_a2:paused:manual clcy_a3:completed',
	'its active enrollments are paused, the completed one stays completed');
is( query("SELECT status || ':' || unsubscribe_reason FROM konvox.contacts WHERE id = 'clcy'"),
	'unsubscribed:manual', 'the contact is unsubscribed by hand');
act('the same again',
	q{UPDATE konvox.contacts SET status = 'unsubscribed' WHERE id = 'clcy'});
act('a contact with no active enrollment unsubscribed by hand',
	q{UPDATE konvox.contacts SET status = 'unsubscribed' WHERE id = 'clada'});
is(states($ada_a1), "$ada_a1:replied", 'a replied enrollment stays replied');
act('subscribed again: nothing resumes',
	q{UPDATE konvox.contacts SET status = 'active' WHERE id = 'clcy'});
is( query("SELECT status || ':' || coalesce(unsubscribe_reason, '-') FROM konvox.contacts WHERE id = 'clcy'"),
	'active:-', 'the contact is active again');
is( states('clcy_a1', 'clcy_a2'),
	'clcy_a1:paused:manual clcy_a2:paused:manual',
	'its paused enrollments stay paused');

###########################################################################
# the other company
###########################################################################

act(
	'an opt-out reply at the other company',
	q{INSERT INTO konvox.replies (company_id, contact_id, enrollment_id, channel, subject, body)
	  VALUES ('clglobex', 'clgil', 'clgil_g1', 'email', 'Re: Hi', 'stop')},
	ev( 'contact.replied', 'clglobex',
		contactId => 'clgil',
		channel => 'email',
		subject => 'Re: Hi',
		campaignId => 'clg1',
		enrollmentId => 'clgil_g1'),
	ev( 'enrollment.unsubscribed', 'clglobex',
		enrollmentId => 'clgil_g1',
		contactId => 'clgil',
		campaignId => 'clg1',
		reason => 'opt_out_keyword'));

###########################################################################
# an application role with only the grants the wiring guide lists
###########################################################################

$node->safe_psql(
	'postgres', q{
CREATE ROLE kw_app;
GRANT USAGE ON SCHEMA konvox TO kw_app;
GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA konvox TO kw_app;
GRANT USAGE ON SCHEMA webhooks TO kw_app;
GRANT EXECUTE ON FUNCTION webhooks.emit(text, text, jsonb),
                          webhooks.emit_trigger() TO kw_app;
});
act(
	'as the application role: a contact enrolled, then opting out',
	q{SET ROLE kw_app;
	  INSERT INTO konvox.contacts (id, company_id, first_name) VALUES ('clivy', 'clacme', 'Ivy');
	  INSERT INTO konvox.enrollments (id, company_id, contact_id, campaign_id)
	  VALUES ('clivy_a1', 'clacme', 'clivy', 'cla1');
	  INSERT INTO konvox.replies (company_id, contact_id, enrollment_id, channel, body)
	  VALUES ('clacme', 'clivy', 'clivy_a1', 'linkedin', 'Please stop.')},
	ev( 'enrollment.created', 'clacme',
		enrollmentId => 'clivy_a1',
		contactId => 'clivy',
		campaignId => 'cla1'),
	ev( 'contact.replied', 'clacme',
		contactId => 'clivy',
		channel => 'linkedin',
		subject => undef,
		campaignId => 'cla1',
		enrollmentId => 'clivy_a1'),
	ev( 'enrollment.unsubscribed', 'clacme',
		enrollmentId => 'clivy_a1',
		contactId => 'clivy',
		campaignId => 'cla1',
		reason => 'opt_out_keyword'));
refused(
	'the application role reading the outbox',
	q{SET ROLE kw_app; SELECT count(*) FROM webhooks.events},
	qr/permission denied/);

###########################################################################
# in all
###########################################################################

my %per_path;
$per_path{ $_->{path} }++ for receiver_log($r);
is_deeply(
	\%per_path,
	{
		'/acme/all' => 32,
		'/acme/replies' => 14,
		'/globex/all' => 4,
		'/globex/messages' => 1,
	},
	'requests per endpoint in all');
is( query(
		"SELECT string_agg(event || ':' || n, ' ' ORDER BY event)
		   FROM (SELECT event, count(*) n FROM webhooks.events GROUP BY event) s"),
	'contact.replied:9 enrollment.completed:2 enrollment.created:14 '
	  . 'enrollment.unsubscribed:7 message.approved:2 message.rejected:2',
	'events in all');

done_testing();
