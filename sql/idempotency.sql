--
-- idempotency: emit() with an idempotency key writes an event once per
-- company, event type and key, and returns that event's id ever after;
-- emit_trigger() takes the key from a column
--
CREATE EXTENSION konvox_webhooks;
\set VERBOSITY default

SELECT count(*) AS created FROM (
    SELECT webhooks.create_endpoint('acme', 'https://a.example/hooks',
                                    ARRAY['contact.replied', 'enrollment.created'], 'a')
    UNION ALL
    SELECT webhooks.create_endpoint('acme', 'https://b.example/hooks',
                                    ARRAY['contact.replied'], 'b')
    UNION ALL
    SELECT webhooks.create_endpoint('globex', 'https://g.example/hooks',
                                    ARRAY['contact.replied'], 'g')
) s;

-- the outbox, in a form that does not change from run to run
CREATE TEMP VIEW outbox AS
SELECT e.company_id, e.event, e.idempotency_key, e.data ->> 'contactId' AS contact,
       (SELECT string_agg(ep.description, ',' ORDER BY ep.description)
          FROM webhooks.deliveries d JOIN webhooks.endpoints ep ON ep.id = d.endpoint_id
         WHERE d.event_id = e.id) AS endpoints
  FROM webhooks.events e
 ORDER BY e.id;

-- the first emit with a key writes the event and its deliveries
SELECT webhooks.emit('contact.replied', 'acme', '{"contactId": "c1", "channel": "email"}',
                     'req-1') AS first \gset
SELECT * FROM outbox;
-- again: the same id, nothing written, even with other data
SELECT webhooks.emit('contact.replied', 'acme', '{"contactId": "c1", "channel": "email"}',
                     'req-1') = :'first' AS same_id;
SELECT webhooks.emit('contact.replied', 'acme', '{"contactId": "c9", "channel": "linkedin"}',
                     idempotency_key => 'req-1') = :'first' AS same_id;
SELECT count(*) AS events, (SELECT count(*) FROM webhooks.deliveries) AS deliveries
  FROM webhooks.events;
-- the key belongs to a company and an event type: the same key elsewhere
-- is a new event
SELECT webhooks.emit('contact.replied', 'globex', '{"contactId": "c2", "channel": "email"}',
                     'req-1') <> :'first' AS new_id;
SELECT webhooks.emit('enrollment.created', 'acme',
                     '{"enrollmentId": "e1", "contactId": "c3", "campaignId": "k1"}',
                     'req-1') <> :'first' AS new_id;
-- keys differ by case, by a space
SELECT webhooks.emit('contact.replied', 'acme', '{"contactId": "c4", "channel": "email"}',
                     'REQ-1') <> :'first' AS new_id;
SELECT webhooks.emit('contact.replied', 'acme', '{"contactId": "c5", "channel": "email"}',
                     'req-1 ') <> :'first' AS new_id;
SELECT * FROM outbox;

-- no key, or NULL: a new event every time
SELECT count(DISTINCT id) AS distinct_ids FROM (
    SELECT webhooks.emit('contact.replied', 'acme', '{"contactId": "c6", "channel": "email"}')
    UNION ALL
    SELECT webhooks.emit('contact.replied', 'acme', '{"contactId": "c6", "channel": "email"}', NULL)
    UNION ALL
    SELECT webhooks.emit('contact.replied', 'acme', '{"contactId": "c6", "channel": "email"}', NULL)
) s(id);
SELECT count(*) AS events_of_c6, count(idempotency_key) AS with_key
  FROM webhooks.events WHERE data ->> 'contactId' = 'c6';

-- one key twice in one statement: one event
SELECT count(DISTINCT webhooks.emit('contact.replied', 'acme',
                                    jsonb_build_object('contactId', 'c7', 'channel', 'email'),
                                    'req-7')) AS distinct_ids
  FROM generate_series(1, 5);
SELECT count(*) AS events_of_req_7 FROM webhooks.events WHERE idempotency_key = 'req-7';

-- a key whose event was rolled back is free again
BEGIN;
SELECT webhooks.emit('contact.replied', 'acme', '{"contactId": "c8", "channel": "email"}',
                     'req-8') AS rolled_back \gset
ROLLBACK;
SELECT webhooks.emit('contact.replied', 'acme', '{"contactId": "c8", "channel": "email"}',
                     'req-8') <> :'rolled_back' AS new_id;
-- so is one in a rolled-back savepoint, and a later emit in the transaction
-- finds the key again
BEGIN;
SAVEPOINT s;
SELECT webhooks.emit('contact.replied', 'acme', '{"contactId": "c9", "channel": "email"}',
                     'req-9') AS in_savepoint \gset
ROLLBACK TO SAVEPOINT s;
SELECT webhooks.emit('contact.replied', 'acme', '{"contactId": "c9", "channel": "email"}',
                     'req-9') AS after_savepoint \gset
SELECT :'after_savepoint' <> :'in_savepoint' AS new_id,
       webhooks.emit('contact.replied', 'acme', '{"contactId": "c9", "channel": "email"}',
                     'req-9') = :'after_savepoint' AS then_same_id;
COMMIT;
SELECT count(*) AS events_of_req_9 FROM webhooks.events WHERE idempotency_key = 'req-9';

-- the key lives as long as the event: once purged, it is free again
DELETE FROM webhooks.deliveries d USING webhooks.events e
 WHERE d.event_id = e.id AND e.idempotency_key = 'req-1' AND e.company_id = 'acme'
   AND e.event = 'contact.replied';
DELETE FROM webhooks.events WHERE idempotency_key = 'req-1' AND company_id = 'acme'
   AND event = 'contact.replied';
SELECT webhooks.emit('contact.replied', 'acme', '{"contactId": "c1", "channel": "email"}',
                     'req-1') <> :'first' AS new_id;

--
-- bad input: an ERROR, nothing written, whether or not the key is taken
--
SELECT count(*) AS events_before FROM webhooks.events \gset
SELECT webhooks.emit('contact.replied', 'acme', '{"contactId": "c1", "channel": "email"}', '');
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.emit('contact.replied', 'acme', '{"contactId": "c1", "channel": "email"}',
                     repeat('k', 256));
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.emit('contact.replied', 'acme', '{"contactId": "c1"}', 'req-1');
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.emit('contact.replied', 'acme', NULL, 'req-1');
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.emit('no.such.event', 'acme', '{}', 'req-1');
\echo :LAST_ERROR_SQLSTATE
-- 255 bytes is fine
SELECT webhooks.emit('contact.replied', 'acme', '{"contactId": "c1", "channel": "email"}',
                     repeat('k', 255)) IS NOT NULL AS emitted;
SELECT count(*) - :events_before AS events_written FROM webhooks.events;

--
-- emit_trigger(): 'idempotency_key:column'
--
CREATE TABLE replies (id serial, company_id text, contact_id text, request_id text);
CREATE TRIGGER contact_replied AFTER INSERT ON replies
    FOR EACH ROW EXECUTE FUNCTION webhooks.emit_trigger(
        'contact.replied', 'company_id', 'contactId=contact_id', 'channel=company_id',
        'idempotency_key:request_id');
DELETE FROM webhooks.deliveries;
DELETE FROM webhooks.events;
-- the same request id twice, then another, then none (twice)
INSERT INTO replies (company_id, contact_id, request_id)
VALUES ('acme', 'r1', 'rq-1'), ('acme', 'r1-again', 'rq-1'), ('acme', 'r2', 'rq-2'),
       ('acme', 'r3', NULL), ('acme', 'r3', NULL);
SELECT * FROM outbox;
-- the key column alone: the data is the whole row, as without pairs
DROP TRIGGER contact_replied ON replies;
CREATE TABLE replies2 (company_id text, contact_id text, channel text, request_id text);
CREATE TRIGGER contact_replied AFTER INSERT ON replies2
    FOR EACH ROW EXECUTE FUNCTION webhooks.emit_trigger(
        'contact.replied', 'company_id', 'idempotency_key:request_id');
INSERT INTO replies2 VALUES ('acme', 'r4', 'email', 'rq-4'), ('acme', 'r4', 'email', 'rq-4');
SELECT e.idempotency_key, e.data FROM webhooks.events e WHERE e.idempotency_key = 'rq-4';
-- a missing column, two key arguments
CREATE TRIGGER bad_key AFTER INSERT ON replies2
    FOR EACH ROW EXECUTE FUNCTION webhooks.emit_trigger(
        'contact.replied', 'company_id', 'idempotency_key:no_such_column');
INSERT INTO replies2 VALUES ('acme', 'r5', 'email', 'rq-5');
\echo :LAST_ERROR_SQLSTATE
DROP TRIGGER bad_key ON replies2;
CREATE TRIGGER bad_key AFTER INSERT ON replies2
    FOR EACH ROW EXECUTE FUNCTION webhooks.emit_trigger(
        'contact.replied', 'company_id', 'idempotency_key:request_id',
        'idempotency_key:contact_id');
INSERT INTO replies2 VALUES ('acme', 'r5', 'email', 'rq-5');
\echo :LAST_ERROR_SQLSTATE
DROP TRIGGER bad_key ON replies2;

--
-- privileges: the key is in the four-argument emit(), granted on its own
--
CREATE ROLE regress_kw_emit3;
CREATE ROLE regress_kw_emit4;
GRANT USAGE ON SCHEMA webhooks TO regress_kw_emit3, regress_kw_emit4;
GRANT EXECUTE ON FUNCTION webhooks.emit(text, text, jsonb),
                          webhooks.emit_trigger() TO regress_kw_emit3, regress_kw_emit4;
GRANT EXECUTE ON FUNCTION webhooks.emit(text, text, jsonb, text) TO regress_kw_emit4;
GRANT INSERT ON replies, replies2 TO regress_kw_emit3, regress_kw_emit4;
GRANT USAGE ON SEQUENCE replies_id_seq TO regress_kw_emit3, regress_kw_emit4;
CREATE TRIGGER contact_replied AFTER INSERT ON replies
    FOR EACH ROW EXECUTE FUNCTION webhooks.emit_trigger(
        'contact.replied', 'company_id', 'contactId=contact_id', 'channel=company_id');
SET ROLE regress_kw_emit3;
-- three arguments, and a trigger without a key column: as before
SELECT webhooks.emit('contact.replied', 'acme', '{"contactId": "p1", "channel": "email"}')
       IS NOT NULL AS emitted;
INSERT INTO replies (company_id, contact_id, request_id) VALUES ('acme', 'p2', 'rq-p2');
-- a key needs the four-argument one
SELECT webhooks.emit('contact.replied', 'acme', '{"contactId": "p3", "channel": "email"}', 'k');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO replies2 VALUES ('acme', 'p4', 'email', 'rq-p4');
\echo :LAST_ERROR_SQLSTATE
SET ROLE regress_kw_emit4;
SELECT webhooks.emit('contact.replied', 'acme', '{"contactId": "p3", "channel": "email"}', 'k')
       IS NOT NULL AS emitted;
INSERT INTO replies2 VALUES ('acme', 'p4', 'email', 'rq-p4');
RESET ROLE;
SELECT contact, idempotency_key FROM outbox WHERE contact LIKE 'p%';

DROP TABLE replies, replies2;
DROP VIEW outbox;
DROP EXTENSION konvox_webhooks;
DROP ROLE regress_kw_emit3, regress_kw_emit4;
