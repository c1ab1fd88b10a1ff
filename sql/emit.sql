--
-- emit: validation, fan-out to the subscribed active endpoints of the
-- event's company only, and what deactivating or deleting an endpoint does
-- to its deliveries.  In the regress instance the worker serves another
-- database, so deliveries stay exactly as emit() left them.
--
CREATE EXTENSION konvox_webhooks;

CREATE TEMP VIEW counts AS
SELECT (SELECT count(*) FROM webhooks.events) AS events,
       (SELECT count(*) FROM webhooks.deliveries) AS deliveries;

-- the deliveries of an event, by endpoint (endpoints are labelled by their
-- description, as their ids are not printed)
CREATE TEMP VIEW deliveries_by_endpoint AS
SELECT d.event_id, ep.description AS endpoint, ep.company_id, d.status,
       d.attempts, d.next_attempt_at IS NOT NULL AS due,
       d.last_status_code, d.last_error, d.finished_at IS NOT NULL AS finished
  FROM webhooks.deliveries d JOIN webhooks.endpoints ep ON ep.id = d.endpoint_id;

--
-- endpoints of three companies; initech has none
--
SELECT count(*) AS created FROM (
    SELECT webhooks.create_endpoint('acme', 'https://a1.example/hooks',
                                    ARRAY['contact.replied', 'enrollment.created'], 'acme-1')
    UNION ALL
    SELECT webhooks.create_endpoint('acme', 'https://a2.example/hooks',
                                    ARRAY['contact.replied'], 'acme-2')
    UNION ALL
    SELECT webhooks.create_endpoint('acme', 'https://a3.example/hooks',
                                    ARRAY['enrollment.completed'], 'acme-3')
    UNION ALL
    SELECT webhooks.create_endpoint('acme', 'https://a4.example/hooks',
                                    ARRAY['contact.replied', 'enrollment.created'], 'acme-inactive')
    UNION ALL
    SELECT webhooks.create_endpoint('acme', 'https://a5.example/hooks',
                                    ARRAY['enrollment.created', 'enrollment.created'], 'acme-twice')
    UNION ALL
    SELECT webhooks.create_endpoint('globex', 'https://g1.example/hooks',
                                    ARRAY['contact.replied', 'enrollment.created'], 'globex-1')
    UNION ALL
    SELECT webhooks.create_endpoint('globex', 'https://g2.example/hooks',
                                    ARRAY['message.approved'], 'globex-2')
) s;
UPDATE webhooks.endpoints SET active = false WHERE description = 'acme-inactive';

--
-- fan-out
--
-- contact.replied for acme: acme-1 and acme-2, not the inactive one, not
-- acme-3 (not subscribed), not globex-1 (another company)
SELECT webhooks.emit('contact.replied', 'acme',
                     '{"contactId": "clxyz789", "channel": "email",
                       "subject": "Re: Quick question about your team",
                       "campaignId": "clcmp456", "enrollmentId": "clenr123"}') AS ev1 \gset
-- the id is a uuid (version 7, time-ordered), and its text has no '.'
SELECT :'ev1' ~ '^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$' AS uuid_v7,
       strpos(:'ev1', '.') = 0 AS no_dot;
SELECT event, company_id, data, created_at <= now() AS created
  FROM webhooks.events WHERE id = :'ev1';
-- new deliveries are pending, due now, with no attempt made
SELECT endpoint, company_id, status, attempts, due, last_status_code, last_error, finished
  FROM deliveries_by_endpoint WHERE event_id = :'ev1' ORDER BY endpoint;
SELECT * FROM counts;

-- enrollment.created for acme: acme-1, and acme-twice once although it
-- lists the event twice
SELECT webhooks.emit('enrollment.created', 'acme',
                     '{"enrollmentId": "e1", "contactId": "c1", "campaignId": "p1"}') AS ev2 \gset
SELECT endpoint, company_id, status, attempts
  FROM deliveries_by_endpoint WHERE event_id = :'ev2' ORDER BY endpoint;

-- the same event for globex reaches globex-1 only
SELECT webhooks.emit('enrollment.created', 'globex',
                     '{"enrollmentId": "e2", "contactId": "c2", "campaignId": "p2"}') AS ev3 \gset
SELECT endpoint, company_id, status, attempts
  FROM deliveries_by_endpoint WHERE event_id = :'ev3' ORDER BY endpoint;

-- an event nobody subscribed to, and an event of a company without
-- endpoints, are stored with no deliveries
SELECT webhooks.emit('enrollment.unsubscribed', 'acme',
                     '{"enrollmentId": "e1", "contactId": "c1", "campaignId": "p1",
                       "reason": "opt_out_keyword"}') AS ev4 \gset
SELECT webhooks.emit('contact.replied', 'initech',
                     '{"contactId": "c9", "channel": "linkedin"}') AS ev5 \gset
SELECT e.event, e.company_id, count(d.id) AS deliveries
  FROM webhooks.events e LEFT JOIN webhooks.deliveries d ON d.event_id = e.id
 WHERE e.id IN (:'ev4', :'ev5')
 GROUP BY e.id ORDER BY e.company_id;
SELECT * FROM counts;

-- each event has its own id
SELECT count(DISTINCT id) AS distinct_ids, count(*) AS events FROM webhooks.events;

--
-- data: nullable fields may be absent or null, extra fields pass through
--
SELECT webhooks.emit('contact.replied', 'initech',
                     '{"contactId": "c1", "channel": "email"}') AS ev \gset
SELECT data FROM webhooks.events WHERE id = :'ev';
SELECT webhooks.emit('contact.replied', 'initech',
                     '{"contactId": "c1", "channel": "linkedin", "subject": null,
                       "campaignId": null, "enrollmentId": null}') AS ev \gset
SELECT data FROM webhooks.events WHERE id = :'ev';
SELECT webhooks.emit('message.rejected', 'initech',
                     '{"messageId": "m1", "contactId": "c1", "score": 0.25,
                       "tags": ["tone", "length"], "meta": {"model": "x", "n": null},
                       "reviewed": true}') AS ev \gset
SELECT data FROM webhooks.events WHERE id = :'ev';

-- non-ASCII text is stored byte for byte
SELECT webhooks.emit('contact.replied', 'initech',
                     jsonb_build_object('contactId', 'c1', 'channel', 'email',
                                        'subject', 'Re: Grüße — 日本語 🎉')) AS ev6 \gset
SELECT data ->> 'subject' AS subject,
       convert_to(data ->> 'subject', 'UTF8') =
         '\x52653a204772c3bcc39f6520e2809420e697a5e69cace8aa9e20f09f8e89'::bytea AS same_bytes,
       octet_length(data ->> 'subject') AS bytes
  FROM webhooks.events WHERE id = :'ev6';
-- JSON escapes arrive as the characters they stand for
SELECT webhooks.emit('contact.replied', 'initech',
                     '{"contactId": "c1", "channel": "email",
                       "subject": "Gr\u00fc\u00dfe \ud83c\udf89"}') AS ev \gset
SELECT data ->> 'subject' = 'Grüße 🎉' AS unescaped FROM webhooks.events WHERE id = :'ev';

--
-- emit() writes in the caller's transaction: a rollback leaves nothing
--
SELECT * FROM counts;
BEGIN;
SELECT webhooks.emit('contact.replied', 'acme',
                     '{"contactId": "c1", "channel": "email"}') IS NOT NULL AS emitted;
SELECT webhooks.emit('enrollment.created', 'globex',
                     '{"enrollmentId": "e3", "contactId": "c3", "campaignId": "p3"}') IS NOT NULL AS emitted;
SELECT * FROM counts;
ROLLBACK;
SELECT * FROM counts;
-- and a rolled-back savepoint only what followed it
BEGIN;
SELECT webhooks.emit('contact.replied', 'acme',
                     '{"contactId": "kept", "channel": "email"}') IS NOT NULL AS emitted;
SAVEPOINT s;
SELECT webhooks.emit('contact.replied', 'acme',
                     '{"contactId": "undone", "channel": "email"}') IS NOT NULL AS emitted;
ROLLBACK TO SAVEPOINT s;
COMMIT;
SELECT data ->> 'contactId' AS contact, count(d.id) AS deliveries
  FROM webhooks.events e JOIN webhooks.deliveries d ON d.event_id = e.id
 WHERE e.data ->> 'contactId' IN ('kept', 'undone')
 GROUP BY 1;
SELECT * FROM counts;
-- emit() first inside a savepoint that is rolled back, then after it
BEGIN;
SAVEPOINT s;
SELECT webhooks.emit('contact.replied', 'acme',
                     '{"contactId": "undone", "channel": "email"}') IS NOT NULL AS emitted;
ROLLBACK TO SAVEPOINT s;
SELECT webhooks.emit('contact.replied', 'acme',
                     '{"contactId": "after", "channel": "email"}') IS NOT NULL AS emitted;
SAVEPOINT t;
SELECT webhooks.emit('contact.replied', 'acme',
                     '{"contactId": "released", "channel": "email"}') IS NOT NULL AS emitted;
RELEASE SAVEPOINT t;
COMMIT;
SELECT data ->> 'contactId' AS contact, count(d.id) AS deliveries
  FROM webhooks.events e JOIN webhooks.deliveries d ON d.event_id = e.id
 WHERE e.data ->> 'contactId' IN ('undone', 'after', 'released')
 GROUP BY 1 ORDER BY 1;
SELECT * FROM counts;

--
-- bad input: a clear error, and nothing stored
--
-- unknown event; the hint lists the known ones
SELECT webhooks.emit('contact.created', 'acme', '{"contactId": "c1"}');
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.emit('Contact.Replied', 'acme', '{"contactId": "c1", "channel": "email"}');
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.emit('', 'acme', '{}');
\echo :LAST_ERROR_SQLSTATE
-- data that is not an object
SELECT webhooks.emit('contact.replied', 'acme', '[{"contactId": "c1", "channel": "email"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.emit('contact.replied', 'acme', '"c1"');
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.emit('contact.replied', 'acme', '42');
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.emit('contact.replied', 'acme', 'null');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM counts;
-- a required field missing, null, or of the wrong type
SELECT webhooks.emit('contact.replied', 'acme', '{"channel": "email"}');
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.emit('contact.replied', 'acme', '{"contactId": null, "channel": "email"}');
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.emit('contact.replied', 'acme', '{"contactId": 42, "channel": "email"}');
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.emit('contact.replied', 'acme', '{"contactId": "c1", "channel": true}');
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.emit('contact.replied', 'acme', '{"contactId": {"id": "c1"}, "channel": "email"}');
\echo :LAST_ERROR_SQLSTATE
-- a nullable field of the wrong type
SELECT webhooks.emit('contact.replied', 'acme', '{"contactId": "c1", "channel": "email", "subject": ["Re"]}');
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.emit('enrollment.unsubscribed', 'acme',
                     '{"enrollmentId": "e1", "contactId": "c1", "campaignId": "p1"}');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM counts;
-- empty company_id
SELECT webhooks.emit('contact.replied', '', '{"contactId": "c1", "channel": "email"}');
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.emit('contact.replied', E' \t\n', '{"contactId": "c1", "channel": "email"}');
\echo :LAST_ERROR_SQLSTATE
-- a company_id longer than 255 bytes
SELECT webhooks.emit('contact.replied', repeat('c', 256), '{"contactId": "c1", "channel": "email"}');
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.emit('contact.replied', repeat('é', 128), '{"contactId": "c1", "channel": "email"}');
\echo :LAST_ERROR_SQLSTATE
-- null arguments
SELECT webhooks.emit(NULL, 'acme', '{"contactId": "c1", "channel": "email"}');
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.emit('contact.replied', NULL, '{"contactId": "c1", "channel": "email"}');
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.emit('contact.replied', 'acme', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM counts;
-- 255 bytes are fine
SELECT webhooks.emit('contact.replied', repeat('c', 255),
                     '{"contactId": "c1", "channel": "email"}') AS ev \gset
SELECT length(company_id) FROM webhooks.events WHERE id = :'ev';
SELECT * FROM counts;
-- an error after a good emit() in the same transaction takes both back
BEGIN;
SELECT webhooks.emit('contact.replied', 'acme', '{"contactId": "c1", "channel": "email"}') IS NOT NULL AS emitted;
SELECT webhooks.emit('contact.replied', 'acme', '{"contactId": "c1"}');
ROLLBACK;
SELECT * FROM counts;

--
-- payload size: konvox_webhooks.max_payload_size (superuser only)
--
SHOW konvox_webhooks.max_payload_size;
SET konvox_webhooks.max_payload_size = '1kB';
SELECT webhooks.emit('contact.replied', 'initech',
                     jsonb_build_object('contactId', 'c1', 'channel', 'email',
                                        'subject', repeat('x', 900))) IS NOT NULL AS emitted;
SELECT webhooks.emit('contact.replied', 'acme',
                     jsonb_build_object('contactId', 'c1', 'channel', 'email',
                                        'subject', repeat('x', 2000)));
\echo :LAST_ERROR_SQLSTATE
RESET konvox_webhooks.max_payload_size;
SELECT webhooks.emit('contact.replied', 'initech',
                     jsonb_build_object('contactId', 'c1', 'channel', 'email',
                                        'subject', repeat('x', 2000))) IS NOT NULL AS emitted;
SELECT * FROM counts;

--
-- deactivating an endpoint fails its pending deliveries, and no new ones
-- are made for it
--
-- one of acme-2's deliveries went out already
UPDATE webhooks.deliveries SET status = 'delivered', attempts = 1, last_status_code = 200,
                               next_attempt_at = NULL, finished_at = now()
 WHERE event_id = :'ev1'
   AND endpoint_id = (SELECT id FROM webhooks.endpoints WHERE description = 'acme-2');
SELECT endpoint, status, count(*)
  FROM deliveries_by_endpoint WHERE endpoint IN ('acme-1', 'acme-2')
 GROUP BY 1, 2 ORDER BY 1, 2;
UPDATE webhooks.endpoints SET active = false WHERE description = 'acme-2';
SELECT endpoint, status, attempts, due, last_status_code, last_error, finished, count(*)
  FROM deliveries_by_endpoint WHERE endpoint IN ('acme-1', 'acme-2')
 GROUP BY 1, 2, 3, 4, 5, 6, 7 ORDER BY 1, 2;
SELECT webhooks.emit('contact.replied', 'acme',
                     '{"contactId": "c7", "channel": "email"}') AS ev7 \gset
SELECT endpoint, status FROM deliveries_by_endpoint WHERE event_id = :'ev7' ORDER BY endpoint;
-- updating an inactive endpoint again touches nothing
UPDATE webhooks.endpoints SET description = 'acme-2' WHERE description = 'acme-2';
SELECT endpoint, status, count(*)
  FROM deliveries_by_endpoint WHERE endpoint = 'acme-2' GROUP BY 1, 2 ORDER BY 1, 2;
-- reactivated, it gets new events; the failed ones stay failed
UPDATE webhooks.endpoints SET active = true WHERE description = 'acme-2';
SELECT webhooks.emit('contact.replied', 'acme',
                     '{"contactId": "c8", "channel": "email"}') AS ev8 \gset
SELECT endpoint, status FROM deliveries_by_endpoint WHERE event_id = :'ev8' ORDER BY endpoint;
SELECT endpoint, status, count(*)
  FROM deliveries_by_endpoint WHERE endpoint = 'acme-2' GROUP BY 1, 2 ORDER BY 1, 2;

--
-- changes to endpoints and event types count at once, within the
-- transaction that makes them, and not after it is rolled back
--
-- a new endpoint, in the same transaction, then rolled back
BEGIN;
SELECT url FROM webhooks.create_endpoint('initech', 'https://i1.example/hooks',
                                         ARRAY['contact.replied'], 'initech-1');
SELECT webhooks.emit('contact.replied', 'initech',
                     '{"contactId": "c1", "channel": "email"}') AS ev \gset
SELECT endpoint, status FROM deliveries_by_endpoint WHERE event_id = :'ev';
ROLLBACK;
SELECT webhooks.emit('contact.replied', 'initech',
                     '{"contactId": "c1", "channel": "email"}') AS ev \gset
SELECT count(*) AS deliveries FROM webhooks.deliveries WHERE event_id = :'ev';
-- a deactivation that is rolled back
BEGIN;
UPDATE webhooks.endpoints SET active = false WHERE description = 'globex-1';
SELECT webhooks.emit('contact.replied', 'globex',
                     '{"contactId": "c1", "channel": "email"}') AS ev \gset
SELECT count(*) AS deliveries FROM webhooks.deliveries WHERE event_id = :'ev';
ROLLBACK;
SELECT webhooks.emit('contact.replied', 'globex',
                     '{"contactId": "c1", "channel": "email"}') AS ev \gset
SELECT endpoint, status FROM deliveries_by_endpoint WHERE event_id = :'ev';
-- a change of subscription; a change of company is refused, so events of
-- globex still reach globex-2, and initech's none
UPDATE webhooks.endpoints SET events = ARRAY['message.approved'] WHERE description = 'globex-1';
SELECT webhooks.emit('contact.replied', 'globex',
                     '{"contactId": "c1", "channel": "email"}') AS ev \gset
SELECT count(*) AS deliveries FROM webhooks.deliveries WHERE event_id = :'ev';
SELECT webhooks.emit('message.approved', 'globex',
                     '{"messageId": "m1", "contactId": "c1"}') AS ev \gset
SELECT endpoint, status FROM deliveries_by_endpoint WHERE event_id = :'ev' ORDER BY endpoint;
UPDATE webhooks.endpoints SET company_id = 'initech' WHERE description = 'globex-2';
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.emit('message.approved', 'globex',
                     '{"messageId": "m2", "contactId": "c1"}') AS ev \gset
SELECT endpoint, status FROM deliveries_by_endpoint WHERE event_id = :'ev' ORDER BY endpoint;
SELECT webhooks.emit('message.approved', 'initech',
                     '{"messageId": "m3", "contactId": "c1"}') AS ev \gset
SELECT endpoint, company_id, status FROM deliveries_by_endpoint WHERE event_id = :'ev';
UPDATE webhooks.endpoints SET company_id = 'globex', events = ARRAY['contact.replied', 'enrollment.created']
 WHERE description = 'globex-1';
UPDATE webhooks.endpoints SET company_id = 'globex' WHERE description = 'globex-2';
-- a deactivation in the transaction that emitted fails what it emitted
BEGIN;
SELECT webhooks.emit('contact.replied', 'globex',
                     '{"contactId": "c1", "channel": "email"}') AS ev \gset
UPDATE webhooks.endpoints SET active = false WHERE description = 'globex-1';
COMMIT;
SELECT endpoint, status, last_error FROM deliveries_by_endpoint WHERE event_id = :'ev';
UPDATE webhooks.endpoints SET active = true WHERE description = 'globex-1';
-- a new event type, emitted in the transaction that adds it; then removed
BEGIN;
INSERT INTO webhooks.event_types (name, fields, sample)
VALUES ('invoice.paid', '[{"name": "invoiceId", "type": "string", "required": true}]',
        '{"invoiceId": "inv_1"}');
UPDATE webhooks.endpoints SET events = events || 'invoice.paid'::text WHERE description = 'globex-1';
SELECT webhooks.emit('invoice.paid', 'globex', '{"invoiceId": "inv_2"}') AS ev \gset
SELECT endpoint, status FROM deliveries_by_endpoint WHERE event_id = :'ev';
SELECT webhooks.emit('invoice.paid', 'globex', '{"invoiceId": 2}');
ROLLBACK;
SELECT webhooks.emit('invoice.paid', 'globex', '{"invoiceId": "inv_2"}');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO webhooks.event_types (name, fields, sample)
VALUES ('invoice.paid', '[{"name": "invoiceId", "type": "string", "required": true}]',
        '{"invoiceId": "inv_1"}');
SELECT webhooks.emit('invoice.paid', 'globex', '{"invoiceId": "inv_3"}') IS NOT NULL AS emitted;
-- its fields changed
UPDATE webhooks.event_types
   SET fields = '[{"name": "invoiceId", "type": "number", "required": true}]',
       sample = '{"invoiceId": 1}'
 WHERE name = 'invoice.paid';
SELECT webhooks.emit('invoice.paid', 'globex', '{"invoiceId": "inv_4"}');
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.emit('invoice.paid', 'globex', '{"invoiceId": 4}') IS NOT NULL AS emitted;
DELETE FROM webhooks.event_types WHERE name = 'invoice.paid';
SELECT webhooks.emit('invoice.paid', 'globex', '{"invoiceId": 5}');
\echo :LAST_ERROR_SQLSTATE

--
-- deleting an endpoint deletes its deliveries and their attempts; the
-- events and the other endpoints' deliveries stay
--
INSERT INTO webhooks.delivery_attempts (delivery_id, attempt, started_at, duration_ms, status_code, error)
SELECT d.id, 1, now(), 12.5, 500, 'HTTP 500'
  FROM webhooks.deliveries d JOIN webhooks.endpoints ep ON ep.id = d.endpoint_id
 WHERE ep.description IN ('acme-1', 'globex-1');
SELECT ep.description, count(*) AS attempts
  FROM webhooks.delivery_attempts a
  JOIN webhooks.deliveries d ON d.id = a.delivery_id
  JOIN webhooks.endpoints ep ON ep.id = d.endpoint_id
 GROUP BY 1 ORDER BY 1;
SELECT * FROM counts;
DELETE FROM webhooks.endpoints WHERE description = 'acme-1';
SELECT count(*) AS orphan_deliveries FROM webhooks.deliveries d
 WHERE NOT EXISTS (SELECT FROM webhooks.endpoints ep WHERE ep.id = d.endpoint_id);
SELECT count(*) AS orphan_attempts FROM webhooks.delivery_attempts a
 WHERE NOT EXISTS (SELECT FROM webhooks.deliveries d WHERE d.id = a.delivery_id);
SELECT count(*) AS attempts FROM webhooks.delivery_attempts;
SELECT * FROM counts;

-- emit() writes, so a read-only transaction refuses it
BEGIN READ ONLY;
SELECT webhooks.emit('contact.replied', 'acme', '{"contactId": "c1", "channel": "email"}');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;

-- the same session after DROP and CREATE EXTENSION: emit() writes to the
-- new tables, and numbers deliveries with the new sequence
DROP EXTENSION konvox_webhooks CASCADE;
CREATE EXTENSION konvox_webhooks;
SELECT id FROM webhooks.create_endpoint('acme', 'https://a1.example/hooks',
                                        ARRAY['contact.replied']);
SELECT webhooks.emit('contact.replied', 'acme', '{"contactId": "c1", "channel": "email"}') IS NOT NULL AS emitted;
SELECT d.id, d.endpoint_id, d.status, ev.event
  FROM webhooks.deliveries d JOIN webhooks.events ev ON ev.id = d.event_id;

-- emit() writes the outbox rows directly: a column it does not know is
-- refused rather than left NULL whatever its default, and constraints that
-- you add hold for its rows as for an INSERT; nothing is stored
BEGIN;
ALTER TABLE webhooks.deliveries ADD COLUMN priority integer NOT NULL DEFAULT 5;
SELECT webhooks.emit('contact.replied', 'acme', '{"contactId": "c2", "channel": "email"}');
ROLLBACK;
BEGIN;
ALTER TABLE webhooks.events ADD CONSTRAINT no_test_company CHECK (company_id <> 'acme') NOT VALID;
\set VERBOSITY terse
SELECT webhooks.emit('contact.replied', 'acme', '{"contactId": "c2", "channel": "email"}');
\set VERBOSITY default
ROLLBACK;
SELECT count(*) AS events, (SELECT count(*) FROM webhooks.deliveries) AS deliveries
  FROM webhooks.events;
-- and once the table is as emit() knows it again, it writes
SELECT webhooks.emit('contact.replied', 'acme', '{"contactId": "c2", "channel": "email"}') IS NOT NULL AS emitted;

DROP EXTENSION konvox_webhooks CASCADE;
