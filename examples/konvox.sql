-- examples/konvox.sql: a small Konvox schema whose triggers emit the six
-- documented webhook events through konvox_webhooks.
--
-- Load it into the database the delivery worker serves
-- (konvox_webhooks.database_name), after the extension:
--
--     CREATE EXTENSION konvox_webhooks;
--     \i examples/konvox.sql          -- or: psql -v ON_ERROR_STOP=1 -f examples/konvox.sql
--
-- Then register an endpoint and act on the tables:
--
--     SELECT webhooks.create_endpoint('clcmpny0001', 'https://example.com/hooks',
--                                     ARRAY['contact.replied', 'enrollment.created']);
--
-- It is a single transaction: either everything is created or nothing.  All
-- objects live in the schema "konvox"; DROP SCHEMA konvox CASCADE removes
-- them again.  Nothing here touches the webhooks schema except through
-- webhooks.emit() and webhooks.emit_trigger().
--
-- Which trigger emits what (see the comment at each trigger for the details):
--
--     contact.replied          INSERT INTO konvox.replies
--     enrollment.created       INSERT INTO konvox.enrollments
--     enrollment.unsubscribed  a reply containing an opt-out keyword, or
--                              UPDATE konvox.contacts SET status = 'unsubscribed'
--     enrollment.completed     an active enrollment advanced past the last
--                              step of its campaign (current_step)
--     message.approved         an AI message pending approval set to 'approved'
--     message.rejected         an AI message pending approval set to 'rejected'
--                              (which also takes it out of the send queue)
--
-- Conventions: ids are text, cuid-like ('c' + time + randomness, 25
-- characters; konvox.cuid() makes them, and an application may supply its
-- own).  Every table has company_id, the tenant, which is the companyId of
-- every event; the foreign keys include company_id, so that a row can never
-- point at another company's contact, campaign or enrollment.
--
-- Privileges: the role that writes these tables fires the triggers, so it
-- needs, besides its rights on the konvox tables,
--     GRANT USAGE ON SCHEMA webhooks TO app;
--     GRANT EXECUTE ON FUNCTION webhooks.emit(text, text, jsonb),
--                               webhooks.emit_trigger() TO app;

BEGIN;

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'konvox_webhooks') THEN
        RAISE EXCEPTION 'the extension konvox_webhooks is not installed in this database'
            USING HINT = 'Run CREATE EXTENSION konvox_webhooks; first, in the database named by konvox_webhooks.database_name.';
    END IF;
END;
$$;

CREATE SCHEMA konvox;
COMMENT ON SCHEMA konvox IS 'Example Konvox schema wired to konvox_webhooks';

---------------------------------------------------------------------------
-- Ids
---------------------------------------------------------------------------

-- n in base 36, lower case
CREATE FUNCTION konvox.base36(n bigint)
RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT
AS $$
DECLARE
    s text := '';
BEGIN
    LOOP
        s := substr('0123456789abcdefghijklmnopqrstuvwxyz', (n % 36)::int + 1, 1) || s;
        n := n / 36;
        EXIT WHEN n = 0;
    END LOOP;
    RETURN s;
END;
$$;
COMMENT ON FUNCTION konvox.base36(bigint) IS 'A non-negative number in base 36';

-- 'c', the time in milliseconds in base 36 (8 characters until the year
-- 2059), then 16 random hex characters: sortable by creation, like a cuid.
CREATE FUNCTION konvox.cuid()
RETURNS text
LANGUAGE sql VOLATILE
AS $$
    SELECT 'c'
        || lpad(konvox.base36((extract(epoch FROM clock_timestamp()) * 1000)::bigint), 8, '0')
        || left(md5(gen_random_uuid()::text), 16)
$$;
COMMENT ON FUNCTION konvox.cuid() IS 'A new cuid-like id: c, base-36 milliseconds, 16 random characters';

---------------------------------------------------------------------------
-- Tables
---------------------------------------------------------------------------

CREATE TABLE konvox.companies (
    id          text PRIMARY KEY DEFAULT konvox.cuid(),
    -- the company itself: every table has company_id, so that a row-level
    -- security policy or a query filter can be the same on all of them
    company_id  text GENERATED ALWAYS AS (id) STORED,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE konvox.companies IS 'Tenants; companies.id is the companyId of every webhook';

CREATE TABLE konvox.contacts (
    id              text PRIMARY KEY DEFAULT konvox.cuid(),
    company_id      text NOT NULL REFERENCES konvox.companies,
    email           text,
    linkedin_url    text,
    first_name      text,
    last_name       text,
    -- 'active', or 'unsubscribed' once the contact opted out (by keyword or
    -- set by hand).  Setting it back to 'active' does not resume anything.
    status          text NOT NULL DEFAULT 'active'
                    CHECK (status IN ('active', 'unsubscribed')),
    -- why the contact is unsubscribed: 'opt_out_keyword' or 'manual'; filled
    -- in by konvox.contact_before() ('manual' unless the opt-out code set it)
    unsubscribe_reason text CHECK (unsubscribe_reason IN ('opt_out_keyword', 'manual')),
    unsubscribed_at timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (company_id, id)
);
COMMENT ON TABLE konvox.contacts IS 'People a company reaches out to';

CREATE TABLE konvox.campaigns (
    id          text PRIMARY KEY DEFAULT konvox.cuid(),
    company_id  text NOT NULL REFERENCES konvox.companies,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (company_id, id)
);
COMMENT ON TABLE konvox.campaigns IS 'Outreach sequences';

CREATE TABLE konvox.campaign_steps (
    id          text PRIMARY KEY DEFAULT konvox.cuid(),
    company_id  text NOT NULL,
    campaign_id text NOT NULL,
    position    integer NOT NULL CHECK (position >= 1),   -- 1, 2, 3 ...: the order of the steps
    channel     text NOT NULL CHECK (channel IN ('email', 'linkedin')),
    delay_days  integer NOT NULL DEFAULT 0,               -- wait after the previous step
    subject     text,                                     -- email only
    body        text NOT NULL DEFAULT '',
    UNIQUE (campaign_id, position),
    FOREIGN KEY (company_id, campaign_id) REFERENCES konvox.campaigns (company_id, id)
);
COMMENT ON TABLE konvox.campaign_steps IS 'The ordered steps of a campaign';

CREATE TABLE konvox.enrollments (
    id              text PRIMARY KEY DEFAULT konvox.cuid(),
    company_id      text NOT NULL,
    contact_id      text NOT NULL,
    campaign_id     text NOT NULL,
    -- active:    the sequence runs
    -- paused:    stopped; paused_reason says why ('opt_out_keyword' or
    --            'manual' when the contact unsubscribed, NULL when a user
    --            paused it for another reason)
    -- replied:   the contact answered this enrollment (contact.replied)
    -- completed: every step was sent without a reply or an opt-out
    --            (enrollment.completed)
    -- An opt-out is a state of the contact (contacts.status), so it shows
    -- here as 'paused' with a paused_reason, as the reference says: "All
    -- active enrollments for that contact are paused".
    state           text NOT NULL DEFAULT 'active'
                    CHECK (state IN ('active', 'paused', 'replied', 'completed')),
    paused_reason   text CHECK (paused_reason IN ('opt_out_keyword', 'manual')),
    -- the position of the next step to send; the sender advances it after
    -- sending a step, and advancing it past the last step completes the
    -- enrollment
    current_step    integer NOT NULL DEFAULT 1 CHECK (current_step >= 1),
    state_changed_at timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (campaign_id, contact_id),          -- a contact is in a campaign once
    UNIQUE (company_id, contact_id, id),       -- target of the foreign keys below
    CHECK (state = 'paused' OR paused_reason IS NULL),
    FOREIGN KEY (company_id, contact_id) REFERENCES konvox.contacts (company_id, id),
    FOREIGN KEY (company_id, campaign_id) REFERENCES konvox.campaigns (company_id, id)
);
CREATE INDEX enrollments_contact_idx ON konvox.enrollments (contact_id) WHERE state = 'active';
COMMENT ON TABLE konvox.enrollments IS 'A contact going through a campaign';

CREATE TABLE konvox.messages (
    id              text PRIMARY KEY DEFAULT konvox.cuid(),
    company_id      text NOT NULL,
    contact_id      text NOT NULL,
    -- NULL for a one-off message outside any campaign; campaign_id is then
    -- NULL too, and always the enrollment's campaign otherwise (filled in)
    enrollment_id   text,
    campaign_id     text,
    step_position   integer,
    channel         text NOT NULL CHECK (channel IN ('email', 'linkedin')),
    subject         text,
    body            text NOT NULL,
    -- AI-generated messages wait in the queue for a person's decision:
    -- approval_state 'pending', then 'approved' (message.approved) or
    -- 'rejected' (message.rejected, and the message leaves the queue).
    -- Messages written by a person need no approval: approval_state NULL.
    ai_generated    boolean NOT NULL DEFAULT false,
    approval_state  text CHECK (approval_state IN ('pending', 'approved', 'rejected')),
    rejection_reason text,                      -- optional, sent as reason
    decided_at      timestamptz,
    -- the send queue: 'queued' (sent when approved or when no approval is
    -- needed), 'sent', or 'removed' (rejected)
    queue_state     text NOT NULL DEFAULT 'queued'
                    CHECK (queue_state IN ('queued', 'sent', 'removed')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (ai_generated = (approval_state IS NOT NULL)),
    FOREIGN KEY (company_id, contact_id) REFERENCES konvox.contacts (company_id, id),
    FOREIGN KEY (company_id, contact_id, enrollment_id)
        REFERENCES konvox.enrollments (company_id, contact_id, id)
);
COMMENT ON TABLE konvox.messages IS 'Outbound messages and their approval';

CREATE TABLE konvox.replies (
    id              text PRIMARY KEY DEFAULT konvox.cuid(),
    company_id      text NOT NULL,
    contact_id      text NOT NULL,
    -- the enrollment this reply answers, or NULL when it cannot be
    -- attributed (e.g. a new email thread); campaign_id is filled in from
    -- the enrollment
    enrollment_id   text,
    campaign_id     text,
    channel         text NOT NULL CHECK (channel IN ('email', 'linkedin')),
    -- email only: the reference sends subject for the email channel only,
    -- so a LinkedIn reply has none (and its event says "subject": null)
    subject         text CHECK (channel = 'email' OR subject IS NULL),
    -- the new text of the reply, without the quoted thread: strip that
    -- before inserting, or the footer of your own email ("... unsubscribe")
    -- would read as an opt-out
    body            text NOT NULL,
    -- the opt-out keyword found in body, NULL if none (filled in)
    opt_out_keyword text,
    received_at     timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (company_id, contact_id) REFERENCES konvox.contacts (company_id, id),
    FOREIGN KEY (company_id, contact_id, enrollment_id)
        REFERENCES konvox.enrollments (company_id, contact_id, id)
);
COMMENT ON TABLE konvox.replies IS 'Inbound replies of contacts, email or LinkedIn';

CREATE TABLE konvox.opt_out_keywords (
    id          text PRIMARY KEY DEFAULT konvox.cuid(),
    -- NULL: applies to every company; otherwise that company's own keyword
    company_id  text REFERENCES konvox.companies,
    -- lower case; a phrase may have several words ("remove me")
    keyword     text NOT NULL CHECK (keyword = lower(btrim(keyword)) AND keyword <> ''),
    UNIQUE NULLS NOT DISTINCT (company_id, keyword)
);
COMMENT ON TABLE konvox.opt_out_keywords IS
'Words and phrases that make a reply an opt-out, matched case-insensitively as whole words';

INSERT INTO konvox.opt_out_keywords (company_id, keyword) VALUES
    (NULL, 'unsubscribe'),
    (NULL, 'stop'),
    (NULL, 'remove me');

---------------------------------------------------------------------------
-- Opt-out keywords
---------------------------------------------------------------------------

-- The opt-out keyword that body contains, or NULL.  Case does not matter; a
-- keyword counts only as a whole word or phrase: "STOP." and "please
-- remove\n me" match, "stopwatch", "unstoppable" and "unsubscribed" do not.
-- The words between them may be separated by any white space.  This is
-- deliberately simple, and errs on the side of the opt-out ("don't stop"
-- matches too): a missed opt-out costs more than a lost lead.
CREATE FUNCTION konvox.find_opt_out_keyword(company_id text, body text)
RETURNS text
LANGUAGE sql STABLE
AS $$
    SELECT k.keyword
      FROM konvox.opt_out_keywords k
     WHERE (k.company_id IS NULL OR k.company_id = find_opt_out_keyword.company_id)
       AND find_opt_out_keyword.body ~*
           ('(^|[^[:alnum:]_])'
            -- the keyword with regular expression characters escaped and
            -- each run of spaces standing for any white space
            || regexp_replace(regexp_replace(k.keyword, '([.^$*+?()\[\]{}|\\])', '\\\1', 'g'),
                              '\s+', '\\s+', 'g')
            || '($|[^[:alnum:]_])')
     ORDER BY length(k.keyword) DESC, k.keyword
     LIMIT 1
$$;
COMMENT ON FUNCTION konvox.find_opt_out_keyword(text, text) IS
'The opt-out keyword found in a reply body, or NULL';

---------------------------------------------------------------------------
-- contacts: manual unsubscribe -> enrollment.unsubscribed (reason manual)
---------------------------------------------------------------------------

-- Keep unsubscribe_reason and unsubscribed_at in step with status: a
-- change to 'unsubscribed' that does not say why is 'manual'.
CREATE FUNCTION konvox.contact_before()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF NEW.status = 'unsubscribed' THEN
        IF TG_OP = 'INSERT' OR OLD.status <> 'unsubscribed' THEN
            NEW.unsubscribe_reason := coalesce(NEW.unsubscribe_reason, 'manual');
            NEW.unsubscribed_at := coalesce(NEW.unsubscribed_at, now());
        END IF;
    ELSE
        NEW.unsubscribe_reason := NULL;
        NEW.unsubscribed_at := NULL;
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER contact_before
    BEFORE INSERT OR UPDATE ON konvox.contacts
    FOR EACH ROW EXECUTE FUNCTION konvox.contact_before();

-- A contact who becomes 'unsubscribed' has every active enrollment paused.
-- Set by hand, no single enrollment triggered it, so each paused enrollment
-- gets its own enrollment.unsubscribed, with reason 'manual'.  A contact
-- with no active enrollment emits nothing: there is no enrollmentId to send.
--
-- The opt-out by keyword (konvox.reply_after below) pauses the enrollments
-- and emits its one event first, then sets the status with reason
-- 'opt_out_keyword'; by then nothing is left active here.  For an
-- unattributed opt-out reply it leaves the pausing to this trigger, which
-- then emits one event per enrollment with reason 'opt_out_keyword'.
CREATE FUNCTION konvox.contact_unsubscribed()
RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    e record;
BEGIN
    FOR e IN
        UPDATE konvox.enrollments
           SET state = 'paused', paused_reason = NEW.unsubscribe_reason
         WHERE company_id = NEW.company_id
           AND contact_id = NEW.id
           AND state = 'active'
        RETURNING id, campaign_id
    LOOP
        PERFORM webhooks.emit('enrollment.unsubscribed', NEW.company_id,
                              jsonb_build_object('enrollmentId', e.id,
                                                 'contactId', NEW.id,
                                                 'campaignId', e.campaign_id,
                                                 'reason', NEW.unsubscribe_reason));
    END LOOP;
    RETURN NULL;
END;
$$;

CREATE TRIGGER contact_unsubscribed
    AFTER UPDATE OF status ON konvox.contacts
    FOR EACH ROW
    WHEN (NEW.status = 'unsubscribed' AND OLD.status <> 'unsubscribed')
    EXECUTE FUNCTION konvox.contact_unsubscribed();

---------------------------------------------------------------------------
-- enrollments: enrollment.created, enrollment.completed
---------------------------------------------------------------------------

-- An unsubscribed contact cannot be enrolled, nor have an enrollment made
-- active again, until the contact's status is set back to 'active'.
-- Advancing current_step past the last step of the campaign completes an
-- active enrollment.  (A campaign without steps has nothing to finish, so
-- its enrollments never complete by themselves.)
CREATE FUNCTION konvox.enrollment_before()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF NEW.state = 'active' AND (TG_OP = 'INSERT' OR OLD.state <> 'active') THEN
        IF EXISTS (SELECT FROM konvox.contacts c
                    WHERE c.id = NEW.contact_id AND c.status = 'unsubscribed') THEN
            RAISE EXCEPTION 'contact % is unsubscribed', NEW.contact_id
                USING ERRCODE = 'check_violation',
                      HINT = 'Set the contact''s status back to active first, if the contact agreed.';
        END IF;
    END IF;

    IF TG_OP = 'UPDATE' AND NEW.state = 'active'
       AND NEW.current_step > (SELECT max(s.position) FROM konvox.campaign_steps s
                                WHERE s.campaign_id = NEW.campaign_id) THEN
        NEW.state := 'completed';
    END IF;

    IF NEW.state <> 'paused' THEN
        NEW.paused_reason := NULL;
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.state <> OLD.state THEN
        NEW.state_changed_at := now();
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER enrollment_before
    BEFORE INSERT OR UPDATE ON konvox.enrollments
    FOR EACH ROW EXECUTE FUNCTION konvox.enrollment_before();

-- enrollment.created: every new enrollment.
CREATE TRIGGER enrollment_created
    AFTER INSERT ON konvox.enrollments
    FOR EACH ROW EXECUTE FUNCTION webhooks.emit_trigger(
        'enrollment.created', 'company_id',
        'enrollmentId=id', 'contactId=contact_id', 'campaignId=campaign_id');

-- enrollment.completed: an active enrollment became completed, either by
-- advancing current_step (above) or by setting state directly.  A replied,
-- paused or already completed enrollment never emits it.  (No "UPDATE OF
-- state" here: a column trigger ignores what a BEFORE trigger changed.)
CREATE TRIGGER enrollment_completed
    AFTER UPDATE ON konvox.enrollments
    FOR EACH ROW
    WHEN (OLD.state = 'active' AND NEW.state = 'completed')
    EXECUTE FUNCTION webhooks.emit_trigger(
        'enrollment.completed', 'company_id',
        'enrollmentId=id', 'contactId=contact_id', 'campaignId=campaign_id');

---------------------------------------------------------------------------
-- messages: message.approved, message.rejected
---------------------------------------------------------------------------

-- AI-generated messages start 'pending'; campaign_id follows the
-- enrollment; a decision is final (to change your mind, generate a new
-- message), and a rejected message leaves the queue.
CREATE FUNCTION konvox.message_before()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    NEW.campaign_id := (SELECT e.campaign_id FROM konvox.enrollments e
                         WHERE e.id = NEW.enrollment_id);

    IF TG_OP = 'INSERT' THEN
        IF NEW.ai_generated THEN
            NEW.approval_state := coalesce(NEW.approval_state, 'pending');
            IF NEW.approval_state <> 'pending' THEN
                RAISE EXCEPTION 'an AI-generated message starts pending approval'
                    USING ERRCODE = 'check_violation',
                          HINT = 'Insert it with approval_state ''pending'', then approve or reject it.';
            END IF;
        END IF;
    ELSIF NEW.approval_state IS DISTINCT FROM OLD.approval_state THEN
        IF OLD.approval_state IS DISTINCT FROM 'pending' THEN
            RAISE EXCEPTION 'message % is not pending approval', OLD.id
                USING ERRCODE = 'check_violation',
                      DETAIL = format('Its approval state is %s.', coalesce(OLD.approval_state, 'NULL (no approval needed)')),
                      HINT = 'A decision is final; generate a new message instead.';
        END IF;
        NEW.decided_at := now();
        IF NEW.approval_state = 'rejected' THEN
            NEW.queue_state := 'removed';
        END IF;
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER message_before
    BEFORE INSERT OR UPDATE ON konvox.messages
    FOR EACH ROW EXECUTE FUNCTION konvox.message_before();

-- message.approved: campaignId and enrollmentId are null for a message
-- outside any campaign.
CREATE TRIGGER message_approved
    AFTER UPDATE ON konvox.messages
    FOR EACH ROW
    WHEN (OLD.approval_state = 'pending' AND NEW.approval_state = 'approved')
    EXECUTE FUNCTION webhooks.emit_trigger(
        'message.approved', 'company_id',
        'messageId=id', 'contactId=contact_id',
        'campaignId=campaign_id', 'enrollmentId=enrollment_id');

-- message.rejected: reason is rejection_reason, null when none was given.
CREATE TRIGGER message_rejected
    AFTER UPDATE ON konvox.messages
    FOR EACH ROW
    WHEN (OLD.approval_state = 'pending' AND NEW.approval_state = 'rejected')
    EXECUTE FUNCTION webhooks.emit_trigger(
        'message.rejected', 'company_id',
        'messageId=id', 'contactId=contact_id',
        'campaignId=campaign_id', 'enrollmentId=enrollment_id',
        'reason=rejection_reason');

---------------------------------------------------------------------------
-- replies: contact.replied, and enrollment.unsubscribed by keyword
---------------------------------------------------------------------------

-- campaign_id follows the enrollment; opt_out_keyword is looked up.
CREATE FUNCTION konvox.reply_before()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    NEW.campaign_id := (SELECT e.campaign_id FROM konvox.enrollments e
                         WHERE e.id = NEW.enrollment_id);
    NEW.opt_out_keyword := konvox.find_opt_out_keyword(NEW.company_id, NEW.body);
    RETURN NEW;
END;
$$;

CREATE TRIGGER reply_before
    BEFORE INSERT ON konvox.replies
    FOR EACH ROW EXECUTE FUNCTION konvox.reply_before();

-- contact.replied: every reply, on either channel, including one that opts
-- out: it is still a reply ("a contact replies on any channel"), and a
-- receiver that logs conversations in a CRM wants it.  A receiver that
-- must tell the two apart sees the enrollment.unsubscribed of the same
-- reply, with the same enrollmentId, emitted in the same transaction.
-- subject is null on LinkedIn; campaignId and enrollmentId are null when
-- the reply is unattributed.
--
-- AFTER triggers of one event fire in the order of their names, so this one
-- ("emit_...") emits before reply_after ("reply_...") handles the opt-out.
CREATE TRIGGER emit_contact_replied
    AFTER INSERT ON konvox.replies
    FOR EACH ROW EXECUTE FUNCTION webhooks.emit_trigger(
        'contact.replied', 'company_id',
        'contactId=contact_id', 'channel=channel', 'subject=subject',
        'campaignId=campaign_id', 'enrollmentId=enrollment_id');

-- What a reply does to the enrollments:
--
-- * No opt-out keyword: the answered enrollment becomes 'replied' (from any
--   state: a late reply to a completed enrollment is still a reply).  The
--   contact's other enrollments carry on.
--
-- * An opt-out keyword, from a contact not yet unsubscribed: every active
--   enrollment of the contact is paused (paused_reason 'opt_out_keyword'),
--   the answered one included, which therefore ends 'paused', not
--   'replied': the opt-out wins.  ONE enrollment.unsubscribed is emitted,
--   for the enrollment the reply answers ("Enrollment that triggered the
--   opt-out"), whatever its state.  The contact becomes 'unsubscribed'.
--
--   An unattributed opt-out reply has no enrollment that triggered it, so
--   it goes like a manual unsubscribe: konvox.contact_unsubscribed() emits
--   one enrollment.unsubscribed per enrollment it pauses, each with reason
--   'opt_out_keyword' (none if the contact had no active enrollment).
--
-- * An opt-out keyword from a contact who is already unsubscribed: nothing
--   changes, so no enrollment.unsubscribed (contact.replied only).
CREATE FUNCTION konvox.reply_after()
RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    contact_status text;
BEGIN
    IF NEW.opt_out_keyword IS NULL THEN
        UPDATE konvox.enrollments
           SET state = 'replied'
         WHERE id = NEW.enrollment_id AND state <> 'replied';
        RETURN NULL;
    END IF;

    -- the lock makes two opt-out replies of one contact take turns
    SELECT c.status INTO contact_status
      FROM konvox.contacts c WHERE c.id = NEW.contact_id FOR UPDATE;
    IF contact_status = 'unsubscribed' THEN
        RETURN NULL;
    END IF;

    IF NEW.enrollment_id IS NOT NULL THEN
        UPDATE konvox.enrollments
           SET state = 'paused', paused_reason = 'opt_out_keyword'
         WHERE company_id = NEW.company_id
           AND contact_id = NEW.contact_id
           AND state = 'active';
        PERFORM webhooks.emit('enrollment.unsubscribed', NEW.company_id,
                              jsonb_build_object('enrollmentId', NEW.enrollment_id,
                                                 'contactId', NEW.contact_id,
                                                 'campaignId', NEW.campaign_id,
                                                 'reason', 'opt_out_keyword'));
    END IF;

    -- contact_unsubscribed() pauses what is still active, with one event
    -- each: nothing after an attributed reply, everything after an
    -- unattributed one
    UPDATE konvox.contacts
       SET status = 'unsubscribed', unsubscribe_reason = 'opt_out_keyword'
     WHERE id = NEW.contact_id;
    RETURN NULL;
END;
$$;

CREATE TRIGGER reply_after
    AFTER INSERT ON konvox.replies
    FOR EACH ROW EXECUTE FUNCTION konvox.reply_after();

COMMIT;
