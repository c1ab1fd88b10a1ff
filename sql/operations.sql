--
-- operations: the 1.1 functions for running the thing - redeliver() and
-- redeliver_failed(), the endpoint_stats view, worker_status(), purge() and
-- purge_company(), what pg_dump keeps, and who may call them.
--
-- The worker serves another database here, so deliveries stay exactly as
-- they are written: statuses, attempts and times are set by hand, the way
-- the worker would set them.
--
CREATE EXTENSION konvox_webhooks;
SET TimeZone = 'UTC';

-- One event and one delivery of it to endpoint ep, written as emit() would
-- write them (pending, due now), then, for status 'delivered' or 'failed',
-- finished at the given time after one attempt.  Returns the delivery id.
CREATE FUNCTION pg_temp.delivery(ep bigint, st text DEFAULT 'pending',
                                 finished timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE sql
AS $$
    WITH ev AS (
        INSERT INTO webhooks.events (event, company_id, data)
        SELECT 'contact.replied', e.company_id,
               '{"contactId": "c1", "channel": "email"}'
          FROM webhooks.endpoints e WHERE e.id = ep
        RETURNING id
    )
    INSERT INTO webhooks.deliveries (event_id, endpoint_id, status, attempts,
                                     next_attempt_at, last_status_code,
                                     last_error, finished_at)
    SELECT ev.id, ep, st,
           CASE WHEN st = 'pending' THEN 0 ELSE 1 END,
           CASE WHEN st = 'pending' THEN now() END,
           CASE st WHEN 'delivered' THEN 200 WHEN 'failed' THEN 500 END,
           CASE st WHEN 'failed' THEN 'HTTP 500' END,
           CASE WHEN st <> 'pending' THEN coalesce(finished, now()) END
      FROM ev
    RETURNING id;
$$;

-- Mark a delivery finished after one more attempt, as the worker records
-- it.  Returns its id.
CREATE FUNCTION pg_temp.finish(d bigint, st text,
                               finished timestamptz DEFAULT now())
RETURNS bigint
LANGUAGE sql
AS $$
    UPDATE webhooks.deliveries
       SET status = st, attempts = attempts + 1, next_attempt_at = NULL,
           last_status_code = CASE st WHEN 'delivered' THEN 200 ELSE 500 END,
           last_error = CASE st WHEN 'failed' THEN 'HTTP 500' END,
           finished_at = finished
     WHERE id = d
    RETURNING id;
$$;

---------------------------------------------------------------------------
-- redeliver(delivery_id)
---------------------------------------------------------------------------

-- the link from a redelivery to the delivery it sends again
SELECT attname, format_type(atttypid, atttypmod) AS type, attnotnull,
       col_description(attrelid, attnum) AS comment
  FROM pg_attribute
 WHERE attrelid = 'webhooks.deliveries'::regclass AND attname = 'redelivery_of';

SELECT id AS ep_a FROM webhooks.create_endpoint('acme', 'https://a.example/hooks',
                                                ARRAY['contact.replied']) \gset
SELECT id AS ep_b FROM webhooks.create_endpoint('acme', 'https://b.example/hooks',
                                                ARRAY['enrollment.created']) \gset

-- an emitted delivery, then delivered
SELECT webhooks.emit('contact.replied', 'acme',
                     '{"contactId": "c1", "channel": "email"}') AS ev1 \gset
SELECT id AS d1 FROM webhooks.deliveries WHERE event_id = :'ev1' \gset
SELECT pg_temp.finish(:d1, 'delivered') = :d1 AS delivered;
-- and one that failed
SELECT pg_temp.delivery(:ep_a, 'failed') AS d2 \gset
SELECT pg_temp.delivery(:ep_a) AS d3 \gset
SELECT count(*) AS deliveries_before FROM webhooks.deliveries;

-- a delivered delivery: a new pending delivery of the same event to the
-- same endpoint, due now, linked to the original; the original is untouched
SELECT webhooks.redeliver(:d1) AS r1 \gset
SELECT :r1 > :d1 AS new_id,
       r.event_id = o.event_id AS same_event,
       r.endpoint_id = o.endpoint_id AS same_endpoint,
       r.redelivery_of = o.id AS linked,
       r.status, r.attempts, r.next_attempt_at <= now() AS due_now,
       r.last_status_code, r.last_error, r.finished_at,
       o.status AS original_status, o.redelivery_of AS original_link
  FROM webhooks.deliveries r, webhooks.deliveries o
 WHERE r.id = :r1 AND o.id = :d1;
-- a failed delivery, likewise
SELECT webhooks.redeliver(:d2) AS r2 \gset
SELECT r.event_id = o.event_id AS same_event,
       r.endpoint_id = o.endpoint_id AS same_endpoint,
       r.redelivery_of = o.id AS linked, r.status, r.attempts,
       o.status AS original_status, o.attempts AS original_attempts
  FROM webhooks.deliveries r, webhooks.deliveries o
 WHERE r.id = :r2 AND o.id = :d2;
-- no new event: the redelivery carries the same event id (webhook-id)
SELECT count(*) AS deliveries_after,
       (SELECT count(*) FROM webhooks.events) AS events
  FROM webhooks.deliveries;
SELECT count(*) AS deliveries_of_ev1 FROM webhooks.deliveries WHERE event_id = :'ev1';
-- a redelivery, once finished, may itself be redelivered
SELECT pg_temp.finish(:r1, 'failed') = :r1 AS failed;
SELECT webhooks.redeliver(:r1) AS r3 \gset
SELECT redelivery_of = :r1 AS linked_to_redelivery, event_id = :'ev1' AS same_event
  FROM webhooks.deliveries WHERE id = :r3;

-- what cannot be redelivered
SELECT webhooks.redeliver(:d3);
SELECT webhooks.redeliver(:r2);
SELECT webhooks.redeliver(-1);
SELECT webhooks.redeliver(NULL);
-- an inactive endpoint (deactivating fails its pending deliveries)
SELECT id AS ep_c FROM webhooks.create_endpoint('acme', 'https://c.example/hooks',
                                                ARRAY['contact.replied']) \gset
SELECT pg_temp.delivery(:ep_c, 'delivered') AS d4 \gset
UPDATE webhooks.endpoints SET active = false WHERE id = :ep_c;
SELECT webhooks.redeliver(:d4);
SELECT count(*) AS deliveries_of_inactive FROM webhooks.deliveries WHERE endpoint_id = :ep_c;
-- nothing was created by the failed calls
SELECT count(*) AS redeliveries FROM webhooks.deliveries WHERE redelivery_of IS NOT NULL;

---------------------------------------------------------------------------
-- redeliver_failed(endpoint_id, since)
---------------------------------------------------------------------------

SELECT id AS ep_f FROM webhooks.create_endpoint('initech', 'https://f.example/hooks',
                                                ARRAY['contact.replied']) \gset
SELECT id AS ep_g FROM webhooks.create_endpoint('initech', 'https://g.example/hooks',
                                                ARRAY['contact.replied']) \gset
-- of ep_f: failed 3 days ago, failed an hour ago, failed 10 minutes ago,
-- failed 5 minutes ago but already redelivered, delivered, pending
SELECT pg_temp.delivery(:ep_f, 'failed', now() - interval '3 days') AS f_old \gset
SELECT pg_temp.delivery(:ep_f, 'failed', now() - interval '1 hour') AS f_1h \gset
SELECT pg_temp.delivery(:ep_f, 'failed', now() - interval '10 minutes') AS f_10m \gset
SELECT pg_temp.delivery(:ep_f, 'failed', now() - interval '5 minutes') AS f_done \gset
SELECT webhooks.redeliver(:f_done) AS f_done_r \gset
SELECT pg_temp.delivery(:ep_f, 'delivered') AS f_ok \gset
SELECT pg_temp.delivery(:ep_f) AS f_pending \gset
-- of ep_g: a recent failure
SELECT pg_temp.delivery(:ep_g, 'failed', now() - interval '1 minute') AS g_failed \gset

-- the failures of ep_f in the last day, not yet redelivered: two
SELECT webhooks.redeliver_failed(:ep_f, now() - interval '1 day') AS redelivered;
SELECT o.id = :f_1h AS f_1h, o.id = :f_10m AS f_10m,
       r.event_id = o.event_id AS same_event, r.endpoint_id = :ep_f AS same_endpoint,
       r.status, r.attempts, r.next_attempt_at IS NOT NULL AS scheduled
  FROM webhooks.deliveries r JOIN webhooks.deliveries o ON o.id = r.redelivery_of
 WHERE r.id > :f_pending AND r.id <> :f_done_r
 ORDER BY r.id;
-- the other endpoint's failure, the older failure, and the delivered one
-- were left alone
SELECT count(*) FILTER (WHERE redelivery_of = :g_failed) AS g_failed,
       count(*) FILTER (WHERE redelivery_of = :f_old) AS f_old,
       count(*) FILTER (WHERE redelivery_of = :f_ok) AS f_ok,
       count(*) FILTER (WHERE redelivery_of = :f_done) AS f_done
  FROM webhooks.deliveries;
-- not twice for the same failure
SELECT webhooks.redeliver_failed(:ep_f, now() - interval '1 day') AS redelivered_again;
-- a longer window takes the older failure, and only it
SELECT webhooks.redeliver_failed(:ep_f, now() - interval '1 week') AS redelivered_week;
SELECT count(*) AS f_old_redeliveries FROM webhooks.deliveries WHERE redelivery_of = :f_old;
-- since is inclusive: a failure finished exactly then counts
SELECT finished_at AS g_finished FROM webhooks.deliveries WHERE id = :g_failed \gset
SELECT webhooks.redeliver_failed(:ep_g, :'g_finished') AS redelivered_at_bound;
-- a redelivery that failed again is a new failure, and is sent again once
SELECT id AS g_r FROM webhooks.deliveries WHERE redelivery_of = :g_failed \gset
SELECT pg_temp.finish(:g_r, 'failed') = :g_r AS failed;
SELECT webhooks.redeliver_failed(:ep_g, now() - interval '1 day') AS redelivered_redelivery;
SELECT count(*) FILTER (WHERE redelivery_of = :g_failed) AS of_original,
       count(*) FILTER (WHERE redelivery_of = :g_r) AS of_redelivery
  FROM webhooks.deliveries;
-- nothing failed: zero
SELECT webhooks.redeliver_failed(:ep_a, now() - interval '1 minute') AS nothing_failed;

-- errors
SELECT webhooks.redeliver_failed(-1, now());
SELECT webhooks.redeliver_failed(NULL, now());
SELECT webhooks.redeliver_failed(:ep_c, now() - interval '1 day');
SELECT webhooks.redeliver_failed(:ep_f, NULL);

---------------------------------------------------------------------------
-- endpoint_stats
---------------------------------------------------------------------------

SELECT attnum, attname, format_type(atttypid, atttypmod) AS type
  FROM pg_attribute
 WHERE attrelid = 'webhooks.endpoint_stats'::regclass AND attnum > 0
 ORDER BY attnum;

SELECT now() AS t0 \gset
SELECT id AS s1 FROM webhooks.create_endpoint('stats', 'https://s1.example/hooks',
                                              ARRAY['contact.replied']) \gset
SELECT id AS s2 FROM webhooks.create_endpoint('stats', 'https://s2.example/hooks',
                                              ARRAY['contact.replied']) \gset
SELECT id AS s3 FROM webhooks.create_endpoint('stats', 'https://s3.example/hooks',
                                              ARRAY['contact.replied']) \gset

-- s1, in the last 24 hours:
--   sd1 delivered: 10 ms, 50 minutes ago
--   sd2 delivered: HTTP 500 in 100 ms 40 minutes ago, then 20 ms 39 minutes ago
--   sd3 delivered: 30 ms, 30 minutes ago            (the last success)
--   sf1 failed:    HTTP 503 in 40 ms, then a 50 ms timeout 10 minutes ago
--   sp1 pending:   HTTP 502 in 60 ms, 5 minutes ago (the last failure)
--   sd4 delivered, created 23 hours ago, no attempt row
-- and, created 25 hours ago so outside the window, with attempts that would
-- change every figure if they counted:
--   so1 delivered: 5000 ms, a minute ago
--   so2 failed:    'old error', a minute ago
SELECT pg_temp.delivery(:s1) AS so1 \gset
SELECT pg_temp.delivery(:s1) AS so2 \gset
SELECT pg_temp.delivery(:s1) AS sd4 \gset
SELECT pg_temp.delivery(:s1) AS sd1 \gset
SELECT pg_temp.delivery(:s1) AS sd2 \gset
SELECT pg_temp.delivery(:s1) AS sd3 \gset
SELECT pg_temp.delivery(:s1) AS sf1 \gset
SELECT pg_temp.delivery(:s1) AS sp1 \gset
UPDATE webhooks.deliveries SET created_at = now() - interval '25 hours'
 WHERE id IN (:so1, :so2);
UPDATE webhooks.deliveries SET created_at = now() - interval '23 hours' WHERE id = :sd4;
INSERT INTO webhooks.delivery_attempts
    (delivery_id, attempt, started_at, duration_ms, status_code, error, next_attempt_at)
VALUES (:so1, 1, :'t0'::timestamptz - interval '1 minute', 5000, 200, NULL, NULL),
       (:so2, 1, :'t0'::timestamptz - interval '1 minute', 7000, NULL, 'old error', NULL),
       (:sd1, 1, :'t0'::timestamptz - interval '50 minutes', 10, 200, NULL, NULL),
       (:sd2, 1, :'t0'::timestamptz - interval '40 minutes', 100, 500, 'HTTP 500',
        :'t0'::timestamptz - interval '39 minutes'),
       (:sd2, 2, :'t0'::timestamptz - interval '39 minutes', 20, 200, NULL, NULL),
       (:sd3, 1, :'t0'::timestamptz - interval '30 minutes', 30, 200, NULL, NULL),
       (:sf1, 1, :'t0'::timestamptz - interval '20 minutes', 40, 503, 'HTTP 503',
        :'t0'::timestamptz - interval '10 minutes'),
       (:sf1, 2, :'t0'::timestamptz - interval '10 minutes', 50, NULL, 'Timeout was reached', NULL),
       (:sp1, 1, :'t0'::timestamptz - interval '5 minutes', 60, 502, 'HTTP 502',
        :'t0'::timestamptz + interval '1 hour');
SELECT count(pg_temp.finish(id, 'delivered')) AS delivered
  FROM unnest(ARRAY[:so1, :sd4, :sd1, :sd2, :sd3]) id;
SELECT count(pg_temp.finish(id, 'failed')) AS failed FROM unnest(ARRAY[:so2, :sf1]) id;
-- s3: one pending delivery, never attempted
SELECT pg_temp.delivery(:s3) IS NOT NULL AS s3_pending;

-- s1: 6 deliveries (4 delivered, 1 failed, 1 pending); success rate of the
-- finished ones 4/5; durations 10 20 30 40 50 60 100: p50 40, p95 88
-- (60 + 0.7 * 40).  s2: nothing.  s3: pending only, no rate.
SELECT endpoint_id = :s1 AS s1, endpoint_id = :s2 AS s2, endpoint_id = :s3 AS s3,
       company_id, url, active, deliveries, delivered, failed, pending,
       success_rate, p50_ms, p95_ms,
       last_success_at - :'t0'::timestamptz AS last_success_ago,
       last_failure_at - :'t0'::timestamptz AS last_failure_ago,
       last_error
  FROM webhooks.endpoint_stats
 WHERE company_id = 'stats'
 ORDER BY endpoint_id;
SELECT pg_typeof(success_rate) AS success_rate, pg_typeof(p50_ms) AS p50,
       pg_typeof(deliveries) AS deliveries
  FROM webhooks.endpoint_stats WHERE endpoint_id = :s1;
-- every endpoint has a row, inactive ones included
SELECT (SELECT count(*) FROM webhooks.endpoint_stats) =
       (SELECT count(*) FROM webhooks.endpoints) AS one_row_per_endpoint,
       (SELECT active FROM webhooks.endpoint_stats WHERE endpoint_id = :ep_c) AS ep_c_active;
-- the failure is the last one once it is the latest attempt
INSERT INTO webhooks.delivery_attempts
    (delivery_id, attempt, started_at, duration_ms, status_code, error)
VALUES (:sp1, 2, :'t0'::timestamptz - interval '1 minute', 70, 404, 'HTTP 404');
SELECT last_failure_at - :'t0'::timestamptz AS last_failure_ago, last_error, p50_ms
  FROM webhooks.endpoint_stats WHERE endpoint_id = :s1;
-- a delivery leaves the window when it is more than 24 hours old
UPDATE webhooks.deliveries SET created_at = now() - interval '24 hours 1 second'
 WHERE id = :sd4;
SELECT deliveries, delivered, success_rate FROM webhooks.endpoint_stats
 WHERE endpoint_id = :s1;

---------------------------------------------------------------------------
-- worker_status()
---------------------------------------------------------------------------

-- its columns
SELECT unnest(proargnames) AS name,
       unnest(proallargtypes)::regtype AS type,
       unnest(proargmodes) AS mode
  FROM pg_proc WHERE oid = 'webhooks.worker_status()'::regprocedure;
SELECT prorettype::regtype AS returns, proretset AS returns_set
  FROM pg_proc WHERE oid = 'webhooks.worker_status()'::regprocedure;
-- one row; the workers here serve database postgres, so there is nothing
-- in flight, and as many pids as running workers
SELECT count(*) AS rows FROM webhooks.worker_status();
SELECT cardinality(pids) = workers AS pids_per_worker, in_flight
  FROM webhooks.worker_status();
SELECT count(*) = current_setting('konvox_webhooks.workers')::int AS slot_per_worker
  FROM webhooks._worker_slots();

-- due_now and next_retry_at read this database's queue: make it known
UPDATE webhooks.deliveries SET status = 'failed', next_attempt_at = NULL,
                               finished_at = now()
 WHERE status = 'pending';
SELECT due_now, next_retry_at FROM webhooks.worker_status();
SELECT pg_temp.delivery(:ep_f) IS NOT NULL AS due;
SELECT pg_temp.delivery(:ep_f) IS NOT NULL AS due;
SELECT pg_temp.delivery(:ep_f) AS w1 \gset
SELECT pg_temp.delivery(:ep_f) AS w2 \gset
UPDATE webhooks.deliveries SET attempts = 1, next_attempt_at = '2100-06-01 12:00:00+00'
 WHERE id = :w1;
UPDATE webhooks.deliveries SET attempts = 2, next_attempt_at = '2100-01-01 12:00:00+00'
 WHERE id = :w2;
-- two due now; the next retry is the earlier of the two scheduled
SELECT due_now, next_retry_at FROM webhooks.worker_status();
-- a finished delivery is neither
UPDATE webhooks.deliveries SET status = 'delivered', next_attempt_at = NULL,
                               finished_at = now()
 WHERE id = :w2;
SELECT due_now, next_retry_at FROM webhooks.worker_status();

---------------------------------------------------------------------------
-- purge(older_than)
--
-- Start again from an empty outbox: purge() takes the id of the first
-- delivery created after the cutoff as its bound, so old deliveries must
-- have the lowest ids, as they do in real life.
---------------------------------------------------------------------------

DROP EXTENSION konvox_webhooks CASCADE;
CREATE EXTENSION konvox_webhooks;

-- Event ids are time-ordered (version 7): the first 48 bits are unix
-- milliseconds.  purge() uses that to bound its scan of events, so an old
-- event must have an old id.  This builds one, numbered n, for time ts.
CREATE FUNCTION pg_temp.event_id_at(ts timestamptz, n integer)
RETURNS uuid
LANGUAGE sql
AS $$
    SELECT (lpad(to_hex((extract(epoch FROM ts) * 1000)::bigint), 12, '0') ||
            '7000' || '8000' || lpad(to_hex(n), 12, '0'))::uuid;
$$;
-- an event of company co, created at ts, with the id for that time
CREATE FUNCTION pg_temp.event_at(ts timestamptz, n integer, co text DEFAULT 'acme')
RETURNS uuid
LANGUAGE sql
AS $$
    INSERT INTO webhooks.events (id, event, company_id, data, created_at)
    VALUES (pg_temp.event_id_at(ts, n), 'contact.replied', co,
            jsonb_build_object('contactId', 'c' || n, 'channel', 'email'), ts)
    RETURNING id;
$$;
-- a delivery of event ev to endpoint ep created at ts, finished (with one
-- attempt row) or pending
CREATE FUNCTION pg_temp.delivery_at(ev uuid, ep bigint, st text, ts timestamptz)
RETURNS bigint
LANGUAGE sql
AS $$
    WITH d AS (
        INSERT INTO webhooks.deliveries (event_id, endpoint_id, status, attempts,
                                         next_attempt_at, created_at, finished_at)
        VALUES (ev, ep, st, 1,
                CASE WHEN st = 'pending' THEN now() + interval '1 minute' END,
                ts, CASE WHEN st <> 'pending' THEN ts + interval '1 second' END)
        RETURNING id
    ), a AS (
        INSERT INTO webhooks.delivery_attempts
            (delivery_id, attempt, started_at, duration_ms, status_code, error)
        SELECT d.id, 1, ts, 12, CASE st WHEN 'delivered' THEN 200 ELSE 500 END,
               CASE WHEN st <> 'delivered' THEN 'HTTP 500' END
          FROM d
    )
    SELECT id FROM d;
$$;

SELECT pg_temp.event_id_at('2026-01-02 03:04:05.678+00', 1) AS example_old_id;

SELECT id AS pe FROM webhooks.create_endpoint('acme', 'https://a.example/hooks',
                                              ARRAY['contact.replied']) \gset
SELECT id AS pe2 FROM webhooks.create_endpoint('acme', 'https://a2.example/hooks',
                                               ARRAY['contact.replied']) \gset
SELECT now() - interval '40 days' AS old \gset

-- 40 days old:
--   o1 delivered, o2 failed                     -> purged, with their events
--   o3 pending (still retrying)                 -> kept, with its event
--   o4 delivered, redelivered just now          -> purged, event kept for r4
--   e5 an event without deliveries              -> purged
--   o6 delivered to pe, pending to pe2          -> delivery purged, event kept
--   o7 delivered; its event is made old by UPDATE of created_at only, so its
--      id says "now": the delivery goes, the event stays until its id is old
SELECT pg_temp.event_at(:'old', 1) AS e1 \gset
SELECT pg_temp.event_at(:'old', 2) AS e2 \gset
SELECT pg_temp.event_at(:'old', 3) AS e3 \gset
SELECT pg_temp.event_at(:'old', 4) AS e4 \gset
SELECT pg_temp.event_at(:'old', 5) AS e5 \gset
SELECT pg_temp.event_at(:'old', 6) AS e6 \gset
INSERT INTO webhooks.events (event, company_id, data)
VALUES ('contact.replied', 'acme', '{"contactId": "c7", "channel": "email"}')
RETURNING id AS e7 \gset
UPDATE webhooks.events SET created_at = :'old' WHERE id = :'e7';
SELECT pg_temp.delivery_at(:'e1', :pe, 'delivered', :'old') AS o1 \gset
SELECT pg_temp.delivery_at(:'e2', :pe, 'failed', :'old') AS o2 \gset
SELECT pg_temp.delivery_at(:'e3', :pe, 'pending', :'old') AS o3 \gset
SELECT pg_temp.delivery_at(:'e4', :pe, 'delivered', :'old') AS o4 \gset
SELECT pg_temp.delivery_at(:'e6', :pe, 'delivered', :'old') AS o6 \gset
SELECT pg_temp.delivery_at(:'e6', :pe2, 'pending', :'old') AS o6p \gset
SELECT pg_temp.delivery_at(:'e7', :pe, 'delivered', :'old') AS o7 \gset
-- a second attempt row for o1, to see that all of them go
INSERT INTO webhooks.delivery_attempts (delivery_id, attempt, started_at, duration_ms, status_code)
VALUES (:o1, 2, :'old', 5, 200);
-- recent: r4 (the redelivery of o4, delivered), n1 delivered, n2 failed,
-- n3 an event without deliveries
SELECT webhooks.redeliver(:o4) AS r4 \gset
SELECT pg_temp.finish(:r4, 'delivered') = :r4 AS delivered;
SELECT webhooks.emit('contact.replied', 'acme', '{"contactId": "n1", "channel": "email"}') AS n1 \gset
SELECT webhooks.emit('contact.replied', 'acme', '{"contactId": "n2", "channel": "email"}') AS n2 \gset
SELECT count(pg_temp.finish(id, CASE WHEN event_id = :'n1' THEN 'delivered' ELSE 'failed' END)) AS finished
  FROM webhooks.deliveries WHERE event_id IN (:'n1', :'n2');
SELECT webhooks.emit('contact.replied', 'nobody', '{"contactId": "n3", "channel": "email"}') AS n3 \gset

CREATE TEMP VIEW outbox AS
SELECT (SELECT count(*) FROM webhooks.events) AS events,
       (SELECT count(*) FROM webhooks.deliveries) AS deliveries,
       (SELECT count(*) FROM webhooks.delivery_attempts) AS attempts;
SELECT * FROM outbox;

-- nothing is older than 50 days
SELECT webhooks.purge(interval '50 days') AS purged;
SELECT * FROM outbox;

-- the worker's batches: at most 2 deliveries and 2 events at a time
SELECT * FROM webhooks._purge_batch(now() - interval '30 days', 2);
-- the oldest two: o1 and o2, then their events
SELECT count(*) FILTER (WHERE id = :o1) AS o1, count(*) FILTER (WHERE id = :o2) AS o2,
       count(*) FILTER (WHERE id = :o4) AS o4
  FROM webhooks.deliveries;
SELECT count(*) FILTER (WHERE id = :'e1') AS e1, count(*) FILTER (WHERE id = :'e2') AS e2,
       count(*) FILTER (WHERE id = :'e5') AS e5
  FROM webhooks.events;

-- then the rest of them: o4, o6 and o7
SELECT webhooks.purge(interval '30 days') AS purged;
SELECT * FROM outbox;
-- what is left: deliveries
SELECT CASE id WHEN :o3 THEN 'o3' WHEN :o6p THEN 'o6p' WHEN :r4 THEN 'r4'
               ELSE (SELECT CASE e.id WHEN :'n1' THEN 'n1' WHEN :'n2' THEN 'n2' END
                       FROM webhooks.events e WHERE e.id = d.event_id) END AS delivery,
       status
  FROM webhooks.deliveries d ORDER BY id;
-- attempts only of deliveries that are left
SELECT count(*) AS orphan_attempts FROM webhooks.delivery_attempts a
 WHERE NOT EXISTS (SELECT FROM webhooks.deliveries d WHERE d.id = a.delivery_id);
SELECT count(*) AS o_attempts FROM webhooks.delivery_attempts
 WHERE delivery_id IN (:o1, :o2, :o4, :o6, :o7);
-- events
SELECT CASE id WHEN :'e1' THEN 'e1' WHEN :'e2' THEN 'e2' WHEN :'e3' THEN 'e3'
               WHEN :'e4' THEN 'e4' WHEN :'e5' THEN 'e5' WHEN :'e6' THEN 'e6'
               WHEN :'e7' THEN 'e7' WHEN :'n1' THEN 'n1' WHEN :'n2' THEN 'n2'
               WHEN :'n3' THEN 'n3' END AS event
  FROM webhooks.events ORDER BY 1;
-- a second purge finds nothing more
SELECT webhooks.purge(interval '30 days') AS purged_again;

-- e7's id is recent, so it is only gone once its id is older than the
-- cutoff too: with a cutoff of now, it goes
SELECT webhooks.purge(interval '0') AS purged_all_finished;
SELECT * FROM outbox;
SELECT count(*) FILTER (WHERE id = :'e7') AS e7,
       count(*) FILTER (WHERE id = :'n3') AS n3
  FROM webhooks.events;
-- the pending deliveries and their events are never purged
SELECT count(*) AS pending FROM webhooks.deliveries WHERE status = 'pending';
SELECT count(*) AS events_of_pending FROM webhooks.events e
 WHERE EXISTS (SELECT FROM webhooks.deliveries d WHERE d.event_id = e.id);

-- errors
SELECT webhooks.purge(interval '-1 day');
SELECT webhooks.purge(NULL);

---------------------------------------------------------------------------
-- purge_company(company_id)
---------------------------------------------------------------------------

SELECT id AS ga FROM webhooks.create_endpoint('globex', 'https://g.example/a',
                                              ARRAY['contact.replied']) \gset
SELECT id AS gb FROM webhooks.create_endpoint('globex', 'https://g.example/b',
                                              ARRAY['contact.replied']) \gset
SELECT id AS ia FROM webhooks.create_endpoint('initech', 'https://i.example/a',
                                              ARRAY['contact.replied']) \gset
-- an endpoint without deliveries
SELECT (webhooks.create_endpoint('globex', 'https://g.example/c',
                                 ARRAY['enrollment.created'])).id IS NOT NULL AS created;
SELECT count(*) AS emitted FROM (
    SELECT webhooks.emit('contact.replied', co, jsonb_build_object('contactId', co || i, 'channel', 'email'))
      FROM unnest(ARRAY['acme', 'globex', 'initech']) co, generate_series(1, 3) i
) s;
-- an event without deliveries
SELECT webhooks.emit('enrollment.completed', 'globex',
                     '{"enrollmentId": "e", "contactId": "c", "campaignId": "k"}') IS NOT NULL AS emitted;
-- history: every delivery of globex and initech attempted once, half delivered
INSERT INTO webhooks.delivery_attempts (delivery_id, attempt, started_at, duration_ms, status_code)
SELECT id, 1, now(), 5, 200 FROM webhooks.deliveries WHERE attempts = 0;
UPDATE webhooks.deliveries SET attempts = 1, status = 'delivered', next_attempt_at = NULL,
                               finished_at = now()
 WHERE attempts = 0 AND id % 2 = 0;

CREATE TEMP VIEW by_company AS
SELECT c.company_id,
       (SELECT count(*) FROM webhooks.endpoints e WHERE e.company_id = c.company_id) AS endpoints,
       (SELECT count(*) FROM webhooks.events e WHERE e.company_id = c.company_id) AS events,
       (SELECT count(*) FROM webhooks.deliveries d
          JOIN webhooks.events e ON e.id = d.event_id
         WHERE e.company_id = c.company_id) AS deliveries,
       (SELECT count(*) FROM webhooks.delivery_attempts a
          JOIN webhooks.deliveries d ON d.id = a.delivery_id
          JOIN webhooks.events e ON e.id = d.event_id
         WHERE e.company_id = c.company_id) AS attempts
  FROM (VALUES ('acme'), ('globex'), ('initech'), ('nobody')) c(company_id);
SELECT * FROM by_company ORDER BY 1;
-- a fingerprint of everything that is not globex's
CREATE TEMP VIEW others AS
SELECT md5(string_agg(r, ',' ORDER BY r)) FROM (
    SELECT e::text AS r FROM webhooks.endpoints e WHERE company_id <> 'globex'
    UNION ALL SELECT e::text FROM webhooks.events e WHERE company_id <> 'globex'
    UNION ALL SELECT d::text FROM webhooks.deliveries d
     WHERE endpoint_id IN (SELECT id FROM webhooks.endpoints WHERE company_id <> 'globex')
    UNION ALL SELECT a::text FROM webhooks.delivery_attempts a
     WHERE delivery_id IN (SELECT d.id FROM webhooks.deliveries d JOIN webhooks.endpoints e
                              ON e.id = d.endpoint_id WHERE e.company_id <> 'globex')
) s;
SELECT md5 AS others_before FROM others \gset
SELECT count(*) AS event_types_before FROM webhooks.event_types \gset

-- returns the number of events deleted: 3 emitted to two endpoints, and one
-- without deliveries
SELECT webhooks.purge_company('globex') AS events_deleted;
SELECT * FROM by_company ORDER BY 1;
-- no delivery or attempt is left of globex, by endpoint either
SELECT count(*) AS globex_deliveries FROM webhooks.deliveries
 WHERE endpoint_id IN (:ga, :gb);
SELECT count(*) AS orphan_attempts FROM webhooks.delivery_attempts a
 WHERE NOT EXISTS (SELECT FROM webhooks.deliveries d WHERE d.id = a.delivery_id);
-- and nothing else changed
SELECT md5 = :'others_before' AS others_unchanged FROM others;
SELECT count(*) = :event_types_before AS event_types_unchanged FROM webhooks.event_types;
-- again, or for an unknown company: nothing to delete
SELECT webhooks.purge_company('globex') AS again;
SELECT webhooks.purge_company('no such company') AS unknown;
SELECT webhooks.purge_company(NULL);
DROP VIEW outbox, by_company, others;

---------------------------------------------------------------------------
-- pg_dump: what is configuration data
---------------------------------------------------------------------------

SELECT c.relname, c.relkind, x.condition
  FROM pg_extension e,
       unnest(e.extconfig, e.extcondition) AS x(reloid, condition)
  JOIN pg_class c ON c.oid = x.reloid
 WHERE e.extname = 'konvox_webhooks'
 ORDER BY c.relname;
-- the sequences are the identity sequences of endpoints and deliveries
SELECT pg_get_serial_sequence('webhooks.endpoints', 'id') AS endpoints_seq,
       pg_get_serial_sequence('webhooks.deliveries', 'id') AS deliveries_seq;

---------------------------------------------------------------------------
-- Privileges: PUBLIC may execute none of the new functions, nor read the
-- new view
---------------------------------------------------------------------------

CREATE ROLE regress_kw_ops_nobody;
SELECT p.oid::regprocedure AS function,
       has_function_privilege('regress_kw_ops_nobody', p.oid, 'EXECUTE') AS nobody_may_execute,
       p.proacl IS NULL OR EXISTS (SELECT FROM aclexplode(p.proacl) a WHERE a.grantee = 0)
           AS public_may_execute,
       p.prosecdef AS security_definer,
       obj_description(p.oid, 'pg_proc') IS NOT NULL AS commented
  FROM pg_proc p
 WHERE p.oid IN ('webhooks.redeliver(bigint)'::regprocedure,
                 'webhooks.redeliver_failed(bigint, timestamptz)'::regprocedure,
                 'webhooks.worker_status()'::regprocedure,
                 'webhooks._worker_slots()'::regprocedure,
                 'webhooks._purge_batch(timestamptz, integer)'::regprocedure,
                 'webhooks.purge(interval)'::regprocedure,
                 'webhooks.purge_company(text)'::regprocedure,
                 'webhooks._endpoint_states()'::regprocedure)
 ORDER BY p.oid::regprocedure::text;
SELECT has_table_privilege('regress_kw_ops_nobody', 'webhooks.endpoint_stats', 'SELECT')
           AS nobody_may_read_stats,
       obj_description('webhooks.endpoint_stats'::regclass, 'pg_class') IS NOT NULL AS commented;
SELECT has_table_privilege('regress_kw_ops_nobody', 'webhooks.endpoint_health', 'SELECT')
           AS nobody_may_read_health,
       obj_description('webhooks.endpoint_health'::regclass, 'pg_class') IS NOT NULL AS commented;
GRANT USAGE ON SCHEMA webhooks TO regress_kw_ops_nobody;
SET ROLE regress_kw_ops_nobody;
SELECT webhooks.redeliver(1);
SELECT webhooks.purge(interval '1 day');
SELECT webhooks.purge_company('acme');
SELECT * FROM webhooks.worker_status();
SELECT * FROM webhooks.endpoint_stats;
RESET ROLE;
REVOKE USAGE ON SCHEMA webhooks FROM regress_kw_ops_nobody;
DROP ROLE regress_kw_ops_nobody;

-- every table, and every column of the tables, says what it holds
SELECT c.relname, a.attname
  FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
 WHERE c.relnamespace = 'webhooks'::regnamespace AND c.relkind = 'r'
   AND a.attnum > 0 AND NOT a.attisdropped
   AND col_description(c.oid, a.attnum) IS NULL
 ORDER BY 1, 2;
SELECT c.relname
  FROM pg_class c
 WHERE c.relnamespace = 'webhooks'::regnamespace AND c.relkind IN ('r', 'v')
   AND obj_description(c.oid, 'pg_class') IS NULL
 ORDER BY 1;

DROP EXTENSION konvox_webhooks CASCADE;

