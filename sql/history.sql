--
-- history: webhooks.delivery_history joins each attempt with its delivery,
-- event and endpoint.  The worker serves another database here, so the
-- attempts are written by hand, the way the worker writes them.
--
CREATE EXTENSION konvox_webhooks;
SET TimeZone = 'UTC';

-- the columns of the view, in order
SELECT attnum, attname, format_type(atttypid, atttypmod) AS type
  FROM pg_attribute
 WHERE attrelid = 'webhooks.delivery_history'::regclass AND attnum > 0
 ORDER BY attnum;

SELECT count(*) AS created FROM (
    SELECT webhooks.create_endpoint('acme', 'https://a.example/hooks',
                                    ARRAY['contact.replied', 'enrollment.created'], 'acme')
    UNION ALL
    SELECT webhooks.create_endpoint('globex', 'https://g.example/hooks',
                                    ARRAY['contact.replied'], 'globex')
) s;
SELECT id AS acme_ep FROM webhooks.endpoints WHERE description = 'acme' \gset
SELECT id AS globex_ep FROM webhooks.endpoints WHERE description = 'globex' \gset

SELECT webhooks.emit('contact.replied', 'acme',
                     '{"contactId": "c1", "channel": "email"}') AS ev1 \gset
SELECT webhooks.emit('enrollment.created', 'acme',
                     '{"enrollmentId": "e1", "contactId": "c1", "campaignId": "p1"}') AS ev2 \gset
SELECT webhooks.emit('contact.replied', 'globex',
                     '{"contactId": "c2", "channel": "linkedin"}') AS ev3 \gset
SELECT id AS d1 FROM webhooks.deliveries WHERE event_id = :'ev1' \gset
SELECT id AS d2 FROM webhooks.deliveries WHERE event_id = :'ev2' \gset
SELECT id AS d3 FROM webhooks.deliveries WHERE event_id = :'ev3' \gset

-- no attempt yet, no history
SELECT count(*) AS history FROM webhooks.delivery_history;

-- d1: a 500, a timeout, then a 200
INSERT INTO webhooks.delivery_attempts
    (delivery_id, attempt, started_at, duration_ms, status_code, error, response_body, next_attempt_at)
VALUES (:d1, 1, '2026-05-20 14:32:00.123+00', 41.5, 500, 'HTTP 500', 'oops',
        '2026-05-20 14:32:30.123+00'),
       (:d1, 2, '2026-05-20 14:32:30.200+00', 10000, NULL, 'Timeout was reached', NULL,
        '2026-05-20 14:33:30.200+00'),
       (:d1, 3, '2026-05-20 14:33:30.300+00', 12.25, 200, NULL, 'ok', NULL);
UPDATE webhooks.deliveries
   SET status = 'delivered', attempts = 3, last_status_code = 200, last_error = NULL,
       next_attempt_at = NULL, finished_at = '2026-05-20 14:33:30.312+00'
 WHERE id = :d1;
-- d3: three failures
INSERT INTO webhooks.delivery_attempts
    (delivery_id, attempt, started_at, duration_ms, status_code, error, next_attempt_at)
VALUES (:d3, 1, '2026-05-20 15:00:00+00', 3.5, NULL, 'Couldn''t connect to server',
        '2026-05-20 15:00:30+00'),
       (:d3, 2, '2026-05-20 15:00:30+00', 2.5, 302, 'HTTP 302', '2026-05-20 15:01:30+00'),
       (:d3, 3, '2026-05-20 15:01:30+00', 4, 404, 'HTTP 404', NULL);
UPDATE webhooks.deliveries
   SET status = 'failed', attempts = 3, last_status_code = 404, last_error = 'HTTP 404',
       next_attempt_at = NULL, finished_at = '2026-05-20 15:01:30.004+00'
 WHERE id = :d3;
-- d2: one failure, a retry is due
INSERT INTO webhooks.delivery_attempts
    (delivery_id, attempt, started_at, duration_ms, status_code, error, next_attempt_at)
VALUES (:d2, 1, '2026-05-20 16:00:00+00', 99.75, 503, 'HTTP 503', '2026-05-20 16:00:30+00');
UPDATE webhooks.deliveries
   SET attempts = 1, last_status_code = 503, last_error = 'HTTP 503',
       next_attempt_at = '2026-05-20 16:00:30+00'
 WHERE id = :d2;
-- an attempt of no delivery is not shown
INSERT INTO webhooks.delivery_attempts (delivery_id, attempt, started_at, duration_ms)
VALUES (-1, 1, '2026-05-20 17:00:00+00', 1);

-- every attempt, with its delivery, event and endpoint
SELECT delivery_id = :d1 AS d1, delivery_id = :d2 AS d2, delivery_id = :d3 AS d3,
       event_id = CASE delivery_id WHEN :d1 THEN :'ev1'::uuid
                                   WHEN :d2 THEN :'ev2'::uuid
                                   ELSE :'ev3'::uuid END AS event_id_ok,
       endpoint_id = CASE company_id WHEN 'acme' THEN :acme_ep ELSE :globex_ep END AS endpoint_id_ok,
       event, company_id, url, attempt, status_code, error, duration_ms,
       started_at, next_attempt_at, status
  FROM webhooks.delivery_history
 ORDER BY started_at;

-- as Settings > Webhooks asks: one company's history, the newest first
SELECT event, url, attempt, status_code, error, status
  FROM webhooks.delivery_history
 WHERE company_id = 'globex'
 ORDER BY started_at DESC;
-- and the failures of the last attempt of each delivery
SELECT event, company_id, attempt, error, status
  FROM webhooks.delivery_history h
 WHERE attempt = (SELECT max(attempt) FROM webhooks.delivery_attempts a
                   WHERE a.delivery_id = h.delivery_id)
   AND error IS NOT NULL
 ORDER BY company_id, event;

-- the view follows changes to the delivery and the endpoint
UPDATE webhooks.deliveries SET status = 'delivered', next_attempt_at = NULL WHERE id = :d2;
UPDATE webhooks.endpoints SET url = 'https://a.example/v2/hooks' WHERE description = 'acme';
SELECT DISTINCT event, url, status FROM webhooks.delivery_history
 WHERE company_id = 'acme' ORDER BY event;

-- a send_test() delivery shows like any other once attempted
SELECT webhooks.send_test(:globex_ep) AS d4 \gset
INSERT INTO webhooks.delivery_attempts
    (delivery_id, attempt, started_at, duration_ms, status_code)
VALUES (:d4, 1, '2026-05-20 18:00:00+00', 7, 204);
SELECT event, company_id, url, attempt, status_code, error, status
  FROM webhooks.delivery_history WHERE delivery_id = :d4;

-- deleting an endpoint takes its history with it
INSERT INTO webhooks.deleted_endpoints (id, deleted_at)
VALUES (1000001, now() - interval '25 hours'),
       (1000002, now() - interval '23 hours');
DELETE FROM webhooks.endpoints WHERE description = 'acme';
SELECT company_id, count(*) AS attempts
  FROM webhooks.delivery_history GROUP BY 1 ORDER BY 1;
SELECT count(*) AS attempts FROM webhooks.delivery_attempts;
-- and leaves its id, for the workers to tell it from an endpoint not
-- restored yet
SELECT id = :acme_ep AS deleted_now, deleted_at > now() - interval '1 minute' AS just_now
  FROM webhooks.deleted_endpoints ORDER BY id;
-- for a day: retention removes the older ids, and no history of a century
SELECT * FROM webhooks._purge_batch(now() - interval '100 years', 1000);
SELECT id = :acme_ep AS deleted_now, id FROM webhooks.deleted_endpoints ORDER BY id;
-- TRUNCATE leaves the ids too
TRUNCATE webhooks.endpoints;
SELECT count(*) AS deleted_ids, bool_or(id = :globex_ep) AS globex_kept
  FROM webhooks.deleted_endpoints;

DROP EXTENSION konvox_webhooks CASCADE;
