-- Helpers of make bench, in a schema of their own so that they outlive the
-- DROP EXTENSION konvox_webhooks that starts every case.

CREATE SCHEMA bench;

-- The plain INSERT that emit() is compared with.
CREATE TABLE bench.bare (data jsonb);

-- What the latency receiver logged: webhook-id and arrival (unix seconds).
CREATE TABLE bench.arrivals (webhook_id uuid, t double precision);

-- Seconds that one statement takes.  Run inside a transaction that is then
-- rolled back, so that no commit is timed and nothing is ever delivered.
CREATE FUNCTION bench.seconds(sql text)
RETURNS double precision
LANGUAGE plpgsql
AS $$
DECLARE
    t0 timestamptz := clock_timestamp();
BEGIN
    EXECUTE sql;
    RETURN extract(epoch FROM clock_timestamp() - t0);
END;
$$;

-- Wait until no delivery is pending in tbl (webhooks.deliveries, or the
-- hand-written outbox's bench.outbox), looking every 100 ms, each look in a
-- transaction of its own so that no snapshot is held in between.  done_at
-- is the time of the look that found none left; pending is what was left
-- when timeout_s ran out, 0 otherwise.  A drain's end is not done_at but
-- the commit of the last write to its rows (drained in bench/run), so the
-- looks can be few: each costs the drain it watches CPU, and a look at
-- bench.outbox cost it more than one at webhooks.deliveries.
CREATE PROCEDURE bench.wait_drained(timeout_s double precision,
                                    tbl text DEFAULT 'webhooks.deliveries',
                                    INOUT done_at timestamptz DEFAULT NULL,
                                    INOUT pending bigint DEFAULT NULL)
LANGUAGE plpgsql
AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + make_interval(secs => timeout_s);
    look text := format('SELECT 1 FROM %s WHERE status = ''pending'' LIMIT 1', tbl);
    found_one integer;
BEGIN
    LOOP
        found_one := NULL;
        EXECUTE look INTO found_one;
        IF found_one IS NULL THEN
            done_at := clock_timestamp();
            pending := 0;
            RETURN;
        END IF;
        IF clock_timestamp() > deadline THEN
            done_at := clock_timestamp();
            EXECUTE format('SELECT count(*) FROM %s WHERE status = ''pending''',
                           tbl) INTO pending;
            RETURN;
        END IF;
        COMMIT;
        PERFORM pg_sleep(0.1);
        COMMIT;
    END LOOP;
END;
$$;

-- History, as a production outbox holds it: n events of the company over
-- the 7 days before now, oldest first, each delivered to every endpoint of
-- the company, with its attempts.  About one event in 50 needed a second
-- attempt (a 503, then a 200 30 s later).  The steady-state drains run on
-- top of it (issue 15.2).
CREATE PROCEDURE bench.history(company text, n bigint, data jsonb)
LANGUAGE plpgsql
AS $$
DECLARE
    eps bigint[] := ARRAY(SELECT id FROM webhooks.endpoints
                           WHERE company_id = company ORDER BY id);
    since timestamptz := now() - interval '7 days';
    step interval := interval '7 days' / n;
    last_before bigint;
BEGIN
    SELECT coalesce(max(id), 0) INTO last_before FROM webhooks.deliveries;
    WITH e AS (
        INSERT INTO webhooks.events (event, company_id, data, created_at)
        SELECT 'contact.replied', company, data, since + i * step
          FROM generate_series(1, n) AS i
        RETURNING id, created_at
    )
    INSERT INTO webhooks.deliveries (event_id, endpoint_id, status, attempts,
                                     next_attempt_at, last_status_code,
                                     created_at, finished_at)
    SELECT e.id, ep, 'delivered', r.attempts, NULL, 200, e.created_at,
           e.created_at + (r.attempts - 1) * interval '30 s'
           + interval '40 ms'
      FROM e CROSS JOIN unnest(eps) AS ep
           CROSS JOIN LATERAL (SELECT CASE WHEN get_byte(uuid_send(e.id), 15) < 5
                                           THEN 2 ELSE 1 END AS attempts) AS r
     ORDER BY e.created_at, ep;
    INSERT INTO webhooks.delivery_attempts (delivery_id, attempt, started_at,
                                            duration_ms, status_code, error,
                                            next_attempt_at)
    SELECT d.id, a, d.created_at + (a - 1) * interval '30 s', 40,
           CASE WHEN a < d.attempts THEN 503 ELSE 200 END,
           CASE WHEN a < d.attempts THEN 'HTTP 503' END,
           CASE WHEN a < d.attempts THEN d.created_at + a * interval '30 s' END
      FROM webhooks.deliveries AS d, generate_series(1, d.attempts) AS a
     WHERE d.id > last_before
     ORDER BY d.id, a;
END;
$$;

-- The hand-written outbox (issue 15.3): what an application team would
-- write instead of konvox_webhooks.  Its endpoints, and one row per
-- delivery that the application inserts in its own transaction, drained
-- by bench/outbox/worker.js.
CREATE TABLE bench.outbox_endpoints (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    company_id  text NOT NULL,
    url         text NOT NULL,
    secret      text NOT NULL DEFAULT
                'whsec_' || encode(sha256(random()::text::bytea), 'base64')
);

CREATE TABLE bench.outbox (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint_id      bigint NOT NULL REFERENCES bench.outbox_endpoints,
    event            text NOT NULL,
    company_id       text NOT NULL,
    payload          jsonb NOT NULL,
    status           text NOT NULL DEFAULT 'pending',
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz DEFAULT now(),
    last_status_code integer,
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz
);
CREATE INDEX outbox_due_idx ON bench.outbox (next_attempt_at, id)
    WHERE status = 'pending';

-- The same history as bench.history, in the hand-written outbox.
CREATE PROCEDURE bench.outbox_history(company text, n bigint, data jsonb)
LANGUAGE sql
AS $$
    INSERT INTO bench.outbox (endpoint_id, event, company_id, payload, status,
                              attempts, next_attempt_at, last_status_code,
                              created_at, delivered_at)
    SELECT ep.id, 'contact.replied', company, data, 'delivered', r.attempts,
           NULL, 200, t.at,
           t.at + (r.attempts - 1) * interval '30 s' + interval '40 ms'
      FROM generate_series(1, n) AS i
           CROSS JOIN LATERAL (SELECT now() - interval '7 days'
                                      + i * (interval '7 days' / n) AS at) AS t
           CROSS JOIN bench.outbox_endpoints AS ep
           CROSS JOIN LATERAL (SELECT CASE WHEN i % 50 = 0 THEN 2
                                           ELSE 1 END AS attempts) AS r
     WHERE ep.company_id = company
     ORDER BY i, ep.id;
$$;

-- What the application writes into the hand-written outbox for n events:
-- one row per event and endpoint of the company, in one statement.
CREATE PROCEDURE bench.outbox_emit(company text, n bigint, data jsonb)
LANGUAGE sql
AS $$
    INSERT INTO bench.outbox (endpoint_id, event, company_id, payload)
    SELECT ep.id, 'contact.replied', company, data
      FROM generate_series(1, n) AS i
           CROSS JOIN bench.outbox_endpoints AS ep
     WHERE ep.company_id = company
     ORDER BY i, ep.id;
$$;
