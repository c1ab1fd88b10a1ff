--
-- emit_trigger: a row trigger that emits an event built from the row, with
-- field=column pairs or, without pairs, from the whole row in camelCase
--
CREATE EXTENSION konvox_webhooks;

SELECT count(*) AS created FROM (
    SELECT webhooks.create_endpoint('acme', 'https://a.example/hooks',
                                    ARRAY['enrollment.created', 'enrollment.completed',
                                          'enrollment.unsubscribed', 'contact.replied'], 'acme')
    UNION ALL
    SELECT webhooks.create_endpoint('globex', 'https://g.example/hooks',
                                    ARRAY['enrollment.created'], 'globex')
) s;

-- what was emitted, with the endpoints it goes to; then forget it
CREATE TEMP VIEW emitted AS
SELECT e.event, e.company_id, e.data,
       (SELECT string_agg(ep.description, ',' ORDER BY ep.description)
          FROM webhooks.deliveries d JOIN webhooks.endpoints ep ON ep.id = d.endpoint_id
         WHERE d.event_id = e.id) AS endpoints
  FROM webhooks.events e;
CREATE FUNCTION pg_temp.forget() RETURNS void LANGUAGE sql AS $$
    DELETE FROM webhooks.deliveries;
    DELETE FROM webhooks.events;
$$;

--
-- field=column pairs: NEW on INSERT and UPDATE, OLD on DELETE
--
CREATE TABLE enrollments (
    id          text PRIMARY KEY,
    company_id  text,
    contact_id  text,
    campaign_id text,
    status      text NOT NULL DEFAULT 'active',
    note        text
);
CREATE TRIGGER enrollment_created
    AFTER INSERT ON enrollments
    FOR EACH ROW EXECUTE FUNCTION webhooks.emit_trigger(
        'enrollment.created', 'company_id',
        'enrollmentId=id', 'contactId=contact_id', 'campaignId=campaign_id');
CREATE TRIGGER enrollment_completed
    AFTER UPDATE OF status ON enrollments
    FOR EACH ROW WHEN (NEW.status = 'completed' AND OLD.status <> 'completed')
    EXECUTE FUNCTION webhooks.emit_trigger(
        'enrollment.completed', 'company_id',
        'enrollmentId=id', 'contactId=contact_id', 'campaignId=campaign_id');
CREATE TRIGGER enrollment_unsubscribed
    AFTER DELETE ON enrollments
    FOR EACH ROW EXECUTE FUNCTION webhooks.emit_trigger(
        'enrollment.unsubscribed', 'company_id',
        'enrollmentId=id', 'contactId=contact_id', 'campaignId=campaign_id',
        'reason=status');

-- INSERT: one event per row, for the row's company
INSERT INTO enrollments (id, company_id, contact_id, campaign_id, note)
VALUES ('enr_1', 'acme', 'con_1', 'cmp_1', 'not sent'),
       ('enr_2', 'acme', 'con_2', 'cmp_1', NULL),
       ('enr_3', 'globex', 'con_3', 'cmp_9', NULL),
       ('enr_4', 'initech', 'con_4', 'cmp_7', NULL);
SELECT event, company_id, data, endpoints FROM emitted ORDER BY data ->> 'enrollmentId';
SELECT pg_temp.forget();

-- UPDATE: the new values
UPDATE enrollments SET status = 'completed', contact_id = 'con_1b' WHERE id = 'enr_1';
UPDATE enrollments SET note = 'no event' WHERE id = 'enr_2';
UPDATE enrollments SET status = 'paused' WHERE id = 'enr_2';
SELECT event, company_id, data, endpoints FROM emitted ORDER BY data ->> 'enrollmentId';
SELECT pg_temp.forget();

-- DELETE: the old values
UPDATE enrollments SET status = 'manual' WHERE id = 'enr_2';
DELETE FROM enrollments WHERE id = 'enr_2';
SELECT event, company_id, data, endpoints FROM emitted ORDER BY data ->> 'enrollmentId';
SELECT pg_temp.forget();

-- a row that the event type does not accept fails the statement, and the
-- row is not written either
INSERT INTO enrollments (id, company_id, contact_id, campaign_id)
VALUES ('enr_5', 'acme', NULL, 'cmp_1');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO enrollments (id, company_id, contact_id, campaign_id)
VALUES ('enr_5', NULL, 'con_5', 'cmp_1');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO enrollments (id, company_id, contact_id, campaign_id)
VALUES ('enr_5', '', 'con_5', 'cmp_1');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS enrollments FROM enrollments WHERE id = 'enr_5';
SELECT count(*) AS events FROM webhooks.events;

-- a rolled-back INSERT emits nothing
BEGIN;
INSERT INTO enrollments (id, company_id, contact_id, campaign_id)
VALUES ('enr_6', 'acme', 'con_6', 'cmp_1');
SELECT count(*) AS events FROM webhooks.events;
ROLLBACK;
SELECT count(*) AS events FROM webhooks.events;

-- a column of another type is sent as its JSON value
CREATE TABLE replies (
    contact_id  text,
    company     text,
    channel     text,
    subject     text,
    score       numeric
);
CREATE TRIGGER contact_replied
    AFTER INSERT ON replies
    FOR EACH ROW EXECUTE FUNCTION webhooks.emit_trigger(
        'contact.replied', 'company', 'contactId=contact_id', 'channel=channel',
        'subject=subject', 'score=score');
INSERT INTO replies VALUES ('con_1', 'acme', 'email', NULL, 0.75);
SELECT event, company_id, data, endpoints FROM emitted;
SELECT pg_temp.forget();
DROP TABLE replies;

--
-- no pairs: the row as JSON, snake_case keys in camelCase, without the
-- company column
--
CREATE TABLE contact_replies (
    contact_id      text,
    company_id      text,
    channel         text,
    subject         text,
    campaign_id     text,
    enrollment_id   text,
    reply_count     integer,
    is_out_of_office boolean
);
CREATE TRIGGER contact_replied
    AFTER INSERT OR UPDATE OR DELETE ON contact_replies
    FOR EACH ROW EXECUTE FUNCTION webhooks.emit_trigger('contact.replied', 'company_id');
INSERT INTO contact_replies
VALUES ('con_1', 'acme', 'email', 'Re: Grüße', 'cmp_1', 'enr_1', 2, false),
       ('con_2', 'globex', 'linkedin', NULL, NULL, NULL, 1, NULL);
SELECT event, company_id, data, endpoints FROM emitted ORDER BY data ->> 'contactId';
SELECT pg_temp.forget();
UPDATE contact_replies SET subject = 'changed' WHERE contact_id = 'con_1';
DELETE FROM contact_replies WHERE contact_id = 'con_2';
SELECT event, company_id, data FROM emitted ORDER BY data ->> 'contactId';
SELECT pg_temp.forget();
-- the company column may have any name
CREATE TABLE approvals (message_id text, contact_id text, tenant text);
CREATE TRIGGER message_approved
    AFTER INSERT ON approvals
    FOR EACH ROW EXECUTE FUNCTION webhooks.emit_trigger('message.approved', 'tenant');
INSERT INTO approvals VALUES ('msg_1', 'con_1', 'acme');
SELECT event, company_id, data FROM emitted;
SELECT pg_temp.forget();

--
-- bad trigger arguments: the statement fails and nothing is written
--
-- no such company column
CREATE TABLE broken (id text, company_id text, contact_id text, campaign_id text);
CREATE TRIGGER broken_emit AFTER INSERT ON broken FOR EACH ROW
    EXECUTE FUNCTION webhooks.emit_trigger('enrollment.created', 'company');
INSERT INTO broken VALUES ('enr_1', 'acme', 'con_1', 'cmp_1');
\echo :LAST_ERROR_SQLSTATE
DROP TRIGGER broken_emit ON broken;
-- a pair without '=', without a field, without a column
CREATE TRIGGER broken_emit AFTER INSERT ON broken FOR EACH ROW
    EXECUTE FUNCTION webhooks.emit_trigger('enrollment.created', 'company_id',
                                           'enrollmentId=id', 'contactId');
INSERT INTO broken VALUES ('enr_1', 'acme', 'con_1', 'cmp_1');
\echo :LAST_ERROR_SQLSTATE
DROP TRIGGER broken_emit ON broken;
CREATE TRIGGER broken_emit AFTER INSERT ON broken FOR EACH ROW
    EXECUTE FUNCTION webhooks.emit_trigger('enrollment.created', 'company_id', '=id');
INSERT INTO broken VALUES ('enr_1', 'acme', 'con_1', 'cmp_1');
\echo :LAST_ERROR_SQLSTATE
DROP TRIGGER broken_emit ON broken;
CREATE TRIGGER broken_emit AFTER INSERT ON broken FOR EACH ROW
    EXECUTE FUNCTION webhooks.emit_trigger('enrollment.created', 'company_id', 'enrollmentId=');
INSERT INTO broken VALUES ('enr_1', 'acme', 'con_1', 'cmp_1');
\echo :LAST_ERROR_SQLSTATE
DROP TRIGGER broken_emit ON broken;
-- a pair naming a missing column
CREATE TRIGGER broken_emit AFTER INSERT ON broken FOR EACH ROW
    EXECUTE FUNCTION webhooks.emit_trigger('enrollment.created', 'company_id',
                                           'enrollmentId=id', 'contactId=contact',
                                           'campaignId=campaign_id');
INSERT INTO broken VALUES ('enr_1', 'acme', 'con_1', 'cmp_1');
\echo :LAST_ERROR_SQLSTATE
DROP TRIGGER broken_emit ON broken;
-- an unknown event
CREATE TRIGGER broken_emit AFTER INSERT ON broken FOR EACH ROW
    EXECUTE FUNCTION webhooks.emit_trigger('enrollment.started', 'company_id',
                                           'enrollmentId=id');
INSERT INTO broken VALUES ('enr_1', 'acme', 'con_1', 'cmp_1');
\echo :LAST_ERROR_SQLSTATE
DROP TRIGGER broken_emit ON broken;
-- too few arguments, or a statement trigger
CREATE TRIGGER broken_emit AFTER INSERT ON broken FOR EACH ROW
    EXECUTE FUNCTION webhooks.emit_trigger('enrollment.created');
INSERT INTO broken VALUES ('enr_1', 'acme', 'con_1', 'cmp_1');
\echo :LAST_ERROR_SQLSTATE
DROP TRIGGER broken_emit ON broken;
CREATE TRIGGER broken_emit AFTER INSERT ON broken FOR EACH STATEMENT
    EXECUTE FUNCTION webhooks.emit_trigger('enrollment.created', 'company_id');
INSERT INTO broken VALUES ('enr_1', 'acme', 'con_1', 'cmp_1');
\echo :LAST_ERROR_SQLSTATE
DROP TRIGGER broken_emit ON broken;
SELECT count(*) AS rows FROM broken;
SELECT count(*) AS events FROM webhooks.events;

DROP TABLE enrollments, contact_replies, approvals, broken;
DROP EXTENSION konvox_webhooks CASCADE;
