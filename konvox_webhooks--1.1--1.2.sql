/* konvox_webhooks--1.1--1.2.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION konvox_webhooks UPDATE TO '1.2'" to load this file. \quit

---------------------------------------------------------------------------
-- Every function resolves names in pg_catalog only
---------------------------------------------------------------------------

-- SQL and PL/pgSQL bodies are parsed with the caller's search_path.  An
-- operator or function that a database owner creates in public with an
-- exact argument match (public.%(bigint, integer), public.unnest(text[]))
-- would otherwise win over pg_catalog's and run as whoever calls ours: a
-- superuser running a migration that fires emit_trigger(), or the workers.
ALTER FUNCTION webhooks._event_type_in_use() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION webhooks._endpoint_changed() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION webhooks.send_test(bigint, text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION webhooks.redeliver(bigint) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION webhooks.redeliver_failed(bigint, timestamptz) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION webhooks._purge_batch(timestamptz, integer) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION webhooks.purge(interval) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION webhooks.purge_company(text) SET search_path = pg_catalog, pg_temp;

---------------------------------------------------------------------------
-- rotate_secret() repairs a secret that cannot sign
---------------------------------------------------------------------------

-- A secret written with the endpoint's checks bypassed (a restore with
-- triggers disabled) cannot sign, so its deliveries are not sent.  The
-- rotation that repairs it must not keep it as the previous secret, which
-- the endpoint's checks would refuse.
CREATE OR REPLACE FUNCTION webhooks.rotate_secret(endpoint_id bigint,
                                                  overlap interval DEFAULT '24 hours')
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    new_secret text := webhooks.generate_secret();
    old_secret text;
BEGIN
    IF overlap IS NULL OR overlap < interval '0' THEN
        RAISE EXCEPTION 'overlap must be a non-negative interval'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Give how long the old secret keeps signing, e.g. ''24 hours'', or ''0'' to drop it at once.';
    END IF;
    SELECT e.secret INTO old_secret FROM webhooks.endpoints e
     WHERE e.id = rotate_secret.endpoint_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'endpoint % does not exist', coalesce(rotate_secret.endpoint_id::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'See SELECT id, company_id, url FROM webhooks.endpoints.';
    END IF;
    BEGIN
        PERFORM webhooks.sign(old_secret, 'msg', 0, '');
    EXCEPTION WHEN invalid_parameter_value THEN
        old_secret := NULL;
    END;
    UPDATE webhooks.endpoints e
       SET previous_secret = old_secret,
           previous_secret_expires_at = CASE WHEN old_secret IS NOT NULL
                                             THEN now() + overlap END,
           secret = new_secret
     WHERE e.id = rotate_secret.endpoint_id;
    RETURN new_secret;
END;
$$;
COMMENT ON FUNCTION webhooks.rotate_secret(bigint, interval) IS
'Give an endpoint a new signing secret and return it; until the overlap ends, deliveries are signed with both the new and the old secret (an old secret that cannot sign is dropped)';

---------------------------------------------------------------------------
-- The queue: each endpoint's pending deliveries in the order they fall due
---------------------------------------------------------------------------

-- The workers read the queue endpoint by endpoint, each as far as it may
-- send, so that a backlog to one endpoint is never read past on the way to
-- another's; and they list the endpoints with pending deliveries with one
-- descent of this index each.
DROP INDEX webhooks.deliveries_due_idx;
CREATE INDEX deliveries_due_idx
    ON webhooks.deliveries (endpoint_id, next_attempt_at, id)
    WHERE status = 'pending';
COMMENT ON INDEX webhooks.deliveries_due_idx IS
'The workers'' queue: each endpoint''s pending deliveries in the order they fall due';

---------------------------------------------------------------------------
-- Per-endpoint concurrency and health
---------------------------------------------------------------------------

ALTER TABLE webhooks.endpoints ADD COLUMN max_concurrency integer;
COMMENT ON COLUMN webhooks.endpoints.max_concurrency IS
'Most requests in flight to this endpoint, over all workers; NULL for konvox_webhooks.max_concurrency_per_endpoint';

CREATE FUNCTION webhooks._endpoint_states(OUT endpoint_id bigint,
                                          OUT state text,
                                          OUT consecutive_failures integer,
                                          OUT in_flight integer,
                                          OUT failing_since timestamptz,
                                          OUT next_probe_at timestamptz,
                                          OUT retry_after_until timestamptz,
                                          OUT last_error text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'kw_endpoint_states'
LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION webhooks._endpoint_states() IS
'The endpoints the workers follow now: requests in flight, health and Retry-After hold, from shared memory';

CREATE VIEW webhooks.endpoint_health AS
SELECT ep.id AS endpoint_id,
       ep.company_id,
       ep.url,
       ep.active,
       coalesce(s.state, 'healthy') AS state,
       coalesce(s.consecutive_failures, 0) AS consecutive_failures,
       coalesce(s.in_flight, 0) AS in_flight,
       coalesce(ep.max_concurrency,
                pg_catalog.current_setting('konvox_webhooks.max_concurrency_per_endpoint')::integer)
           AS max_concurrency,
       s.failing_since,
       s.next_probe_at,
       s.retry_after_until,
       s.last_error
  FROM webhooks.endpoints ep
  LEFT JOIN webhooks._endpoint_states() s ON s.endpoint_id = ep.id;
COMMENT ON VIEW webhooks.endpoint_health IS
'Per endpoint, now: healthy, failing (breaker open, a probe every breaker_probe_interval) or probing; failed requests in a row; requests in flight and the cap; next probe; Retry-After hold; last error.  Kept in shared memory: a restart starts every endpoint healthy';

-- worker_status() gains columns: how many workers are configured, and the
-- endpoints with the most requests in flight
DROP FUNCTION webhooks.worker_status();
CREATE FUNCTION webhooks.worker_status(OUT running boolean,
                                       OUT workers integer,
                                       OUT configured integer,
                                       OUT pids integer[],
                                       OUT in_flight integer,
                                       OUT due_now bigint,
                                       OUT next_retry_at timestamptz,
                                       OUT busiest_endpoints jsonb)
LANGUAGE sql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT count(*) FILTER (WHERE s.pid <> 0) = count(*),
           count(*) FILTER (WHERE s.pid <> 0)::integer,
           count(*)::integer,
           coalesce(array_agg(s.pid ORDER BY s.worker) FILTER (WHERE s.pid <> 0), '{}'),
           coalesce(sum(s.in_flight), 0)::integer,
           (SELECT count(*) FROM webhooks.deliveries d
             WHERE d.status = 'pending' AND d.next_attempt_at <= now()),
           (SELECT min(d.next_attempt_at) FROM webhooks.deliveries d
             WHERE d.status = 'pending' AND d.next_attempt_at > now()),
           (SELECT coalesce(jsonb_agg(jsonb_build_object('endpoint_id', e.endpoint_id,
                                                         'in_flight', e.in_flight)
                                      ORDER BY e.in_flight DESC, e.endpoint_id), '[]')
              FROM (SELECT x.endpoint_id, x.in_flight
                      FROM webhooks._endpoint_states() x
                     WHERE x.in_flight > 0
                     ORDER BY x.in_flight DESC, x.endpoint_id LIMIT 10) e)
      FROM webhooks._worker_slots() s;
$$;
COMMENT ON FUNCTION webhooks.worker_status() IS
'Whether every configured delivery worker runs, how many do, how many are configured, their pids, requests in flight, deliveries due now (in flight included), the next scheduled retry, and the (up to 10) endpoints with the most requests in flight';

---------------------------------------------------------------------------
-- Headers of an endpoint's own, such as a receiver's credential
---------------------------------------------------------------------------

-- Checked by the endpoints' BEFORE trigger, like the url and the secret.
ALTER TABLE webhooks.endpoints ADD COLUMN headers jsonb NOT NULL DEFAULT '{}';
COMMENT ON COLUMN webhooks.endpoints.headers IS
'Headers sent with every request to the endpoint, {"Name": "value"}: at most 20, 8 kB in all; values are secrets, like the signing secret';

-- create_endpoint() gains a parameter, so it is a new function: a second
-- one beside the old would make every call with four arguments or fewer
-- ambiguous.  EXECUTE granted on the old one must be granted again.
DROP FUNCTION webhooks.create_endpoint(text, text, text[], text);
CREATE FUNCTION webhooks.create_endpoint(company_id text, url text,
                                         events text[],
                                         description text DEFAULT NULL,
                                         headers jsonb DEFAULT '{}')
RETURNS webhooks.endpoints
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO webhooks.endpoints (company_id, url, events, description, headers)
    VALUES ($1, $2, $3, $4, coalesce($5, '{}'))
    RETURNING *;
$$;
COMMENT ON FUNCTION webhooks.create_endpoint(text, text, text[], text, jsonb) IS
'Register an endpoint, with headers of its own if given; the returned row holds its generated signing secret';

CREATE FUNCTION webhooks.set_headers(endpoint_id bigint, headers jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE webhooks.endpoints e
       SET headers = set_headers.headers
     WHERE e.id = set_headers.endpoint_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'endpoint % does not exist', coalesce(set_headers.endpoint_id::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'See SELECT id, company_id, url FROM webhooks.endpoints.';
    END IF;
END;
$$;
COMMENT ON FUNCTION webhooks.set_headers(bigint, jsonb) IS
'Replace the headers an endpoint sends with every request ({} for none); they apply from the next attempt on, retries included';

---------------------------------------------------------------------------
-- Idempotent emit
---------------------------------------------------------------------------

-- An event keeps its key, so a key is unique for as long as the event is
-- kept (konvox_webhooks.retention).  emit() without a key writes NULL
-- there, which the partial index leaves out.
ALTER TABLE webhooks.events ADD COLUMN idempotency_key text;
COMMENT ON COLUMN webhooks.events.idempotency_key IS
'The idempotency key given to emit(), if any: unique per company and event type';
CREATE UNIQUE INDEX events_idempotency_idx
    ON webhooks.events (company_id, event, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
COMMENT ON INDEX webhooks.events_idempotency_idx IS
'One event per company, event type and idempotency key';

-- A second emit() beside the first rather than one with a default: the
-- three-argument function keeps its grants, the triggers and functions of
-- the application that depend on it, and the deployment scripts that name
-- it; a call with three arguments resolves to it as before, at the same
-- cost.  Without a default on either, no call is ambiguous.
CREATE FUNCTION webhooks.emit(event text, company_id text, data jsonb,
                              idempotency_key text)
RETURNS uuid
AS 'MODULE_PATHNAME', 'kw_emit'
LANGUAGE C VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION webhooks.emit(text, text, jsonb, text) IS
'emit() with an idempotency key: if the company already has an event of this type with this key, return its id and write nothing; a NULL key is emit() without one';

CREATE OR REPLACE FUNCTION webhooks.emit_trigger()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r       jsonb;
    data    jsonb := '{}';
    pair    text;
    field   text;
    col     text;
    key_col text;
    npairs  integer := 0;
BEGIN
    IF TG_LEVEL <> 'ROW' OR TG_NARGS < 2 THEN
        RAISE EXCEPTION 'webhooks.emit_trigger() needs a row trigger with at least two arguments'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'EXECUTE FUNCTION webhooks.emit_trigger(''enrollment.created'', ''company_id'', ''enrollmentId=id'', ...)';
    END IF;

    IF TG_OP = 'DELETE' THEN
        r := to_jsonb(OLD);
    ELSE
        r := to_jsonb(NEW);
    END IF;

    IF NOT r ? TG_ARGV[1] THEN
        RAISE EXCEPTION 'column "%" does not exist in table %', TG_ARGV[1], TG_TABLE_NAME
            USING ERRCODE = 'undefined_column',
                  HINT = 'The second argument of webhooks.emit_trigger() names the column holding the company id.';
    END IF;

    -- 'idempotency_key:column' takes the key from a column; it has no '=',
    -- so no field=column pair can be mistaken for it
    FOR i IN 2 .. TG_NARGS - 1 LOOP
        IF left(TG_ARGV[i], 16) = 'idempotency_key:' THEN
            IF key_col IS NOT NULL THEN
                RAISE EXCEPTION 'webhooks.emit_trigger() has two idempotency_key arguments'
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = 'Name the column holding the key once, as ''idempotency_key:column''.';
            END IF;
            key_col := substr(TG_ARGV[i], 17);
            IF NOT r ? key_col THEN
                RAISE EXCEPTION 'column "%" does not exist in table %', key_col, TG_TABLE_NAME
                    USING ERRCODE = 'undefined_column',
                          HINT = format('Argument "%s" names the column holding the idempotency key.', TG_ARGV[i]);
            END IF;
        ELSE
            npairs := npairs + 1;
        END IF;
    END LOOP;

    IF npairs = 0 THEN
        -- contact_id -> contactId; written out here rather than in a helper
        -- function, so that a role that may only execute emit() can fire it
        SELECT coalesce(jsonb_object_agg(
                   (SELECT string_agg(CASE WHEN p.i = 1 THEN p.part
                                           ELSE upper(left(p.part, 1)) ||
                                                substr(p.part, 2) END,
                                      '' ORDER BY p.i)
                      FROM unnest(string_to_array(j.key, '_'))
                           WITH ORDINALITY AS p(part, i)),
                   j.value), '{}')
          INTO data
          FROM jsonb_each(r - TG_ARGV[1]) AS j;
    ELSE
        FOR i IN 2 .. TG_NARGS - 1 LOOP
            pair := TG_ARGV[i];
            CONTINUE WHEN left(pair, 16) = 'idempotency_key:';
            field := split_part(pair, '=', 1);
            col := substr(pair, length(field) + 2);
            IF position('=' IN pair) = 0 OR field = '' OR col = '' THEN
                RAISE EXCEPTION 'invalid argument "%" to webhooks.emit_trigger()', pair
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = 'Map a data field to a column as field=column, e.g. ''contactId=contact_id'', or name the key''s column as ''idempotency_key:column''.';
            END IF;
            IF NOT r ? col THEN
                RAISE EXCEPTION 'column "%" does not exist in table %', col, TG_TABLE_NAME
                    USING ERRCODE = 'undefined_column',
                          HINT = format('Argument "%s" maps field %s to a column of the row.', pair, field);
            END IF;
            data := data || jsonb_build_object(field, r -> col);
        END LOOP;
    END IF;

    -- the three-argument emit() when there is no key column, so that a
    -- role granted only that one can fire the trigger as before
    IF key_col IS NULL THEN
        PERFORM webhooks.emit(TG_ARGV[0], r ->> TG_ARGV[1], data);
    ELSE
        PERFORM webhooks.emit(TG_ARGV[0], r ->> TG_ARGV[1], data, r ->> key_col);
    END IF;

    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END;
$$;
COMMENT ON FUNCTION webhooks.emit_trigger() IS
'Row trigger: emit_trigger(event, company_column, field=column, ..., [idempotency_key:column]) emits event with data built from NEW (OLD on DELETE), keyed by that column if named';

---------------------------------------------------------------------------
-- Metrics, for Prometheus
---------------------------------------------------------------------------

-- Counters kept in shared memory by the workers, from the server's start:
-- true counters, which retention cannot make go down as it would a count
-- of rows.
CREATE FUNCTION webhooks.delivery_counters(OUT delivered bigint,
                                           OUT failed bigint,
                                           OUT since timestamptz)
RETURNS record
AS 'MODULE_PATHNAME', 'kw_delivery_counters'
LANGUAGE C VOLATILE STRICT
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION webhooks.delivery_counters() IS
'Deliveries the workers have recorded as delivered and as failed since the server started (since)';

CREATE FUNCTION webhooks.attempt_counters(OUT outcome text, OUT attempts bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'kw_attempt_counters'
LANGUAGE C VOLATILE STRICT
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION webhooks.attempt_counters() IS
'Attempts the workers have recorded since the server started, by outcome: success, http_error, timeout, network, tls, proxy, address_refused, not_sent';

-- What monitoring reads, in one row, named as Prometheus names metrics.
-- SECURITY DEFINER, so that a monitoring role needs EXECUTE on it and no
-- privilege on the tables.
CREATE FUNCTION webhooks.metrics(OUT workers integer,
                                 OUT workers_running integer,
                                 OUT requests_in_flight integer,
                                 OUT deliveries_pending bigint,
                                 OUT deliveries_due bigint,
                                 OUT oldest_due_delivery_age_seconds double precision,
                                 OUT deliveries_delivered_total bigint,
                                 OUT deliveries_failed_total bigint,
                                 OUT endpoints_failing integer,
                                 OUT endpoints_held integer)
LANGUAGE sql
VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT w.workers, w.running, w.in_flight,
           q.pending, q.due, q.oldest,
           c.delivered, c.failed,
           h.failing, h.held
      FROM (SELECT count(*) FILTER (WHERE e.state <> 'healthy')::integer AS failing,
                   count(*) FILTER (WHERE e.retry_after_until IS NOT NULL)::integer AS held
              FROM webhooks._endpoint_states() e) h,
           (SELECT count(*)::integer AS workers,
                   count(*) FILTER (WHERE s.pid <> 0)::integer AS running,
                   coalesce(sum(s.in_flight), 0)::integer AS in_flight
              FROM webhooks._worker_slots() s) w,
           (SELECT count(*) AS pending,
                   count(*) FILTER (WHERE d.next_attempt_at <= now()) AS due,
                   coalesce(extract(epoch FROM now() - min(d.next_attempt_at)
                                    FILTER (WHERE d.next_attempt_at <= now())),
                            0)::double precision AS oldest
              FROM webhooks.deliveries d
             WHERE d.status = 'pending') q,
           webhooks.delivery_counters() c;
$$;
COMMENT ON FUNCTION webhooks.metrics() IS
'For monitoring: delivery workers configured and running, requests in flight, pending and due deliveries, how long the oldest due delivery has been due (s), the delivered and failed counters, and the endpoints failing (circuit breaker open) and held by Retry-After now';

---------------------------------------------------------------------------
-- Endpoints deleted here, told apart from endpoints not restored yet
---------------------------------------------------------------------------

-- An emit() that read an endpoint before another session deleted it can
-- commit a delivery to it after the deletion removed the endpoint's
-- deliveries.  The workers fail such a delivery at once ('endpoint
-- deleted') when its endpoint's id is here; a delivery whose endpoint is
-- missing otherwise waits for it, since a restore loads deliveries before
-- endpoints, and fails once a day old ('endpoint missing').  The table is
-- not dumped: a restored database has deleted nothing yet.  Retention
-- (_purge_batch) removes the ids deleted over a day ago.
CREATE TABLE webhooks.deleted_endpoints (
    id          bigint PRIMARY KEY,
    deleted_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE webhooks.deleted_endpoints IS
'Ids of the endpoints deleted (or truncated) in the last day or so, so that the workers fail a delivery committed to one after its deletion at once, instead of waiting for it as for an endpoint not restored yet';

-- SECURITY DEFINER: a role that may delete endpoints needs no privilege on
-- the table, which an update creates after such grants were made.  It
-- refuses to be a trigger of any other table: a role that may execute it
-- could otherwise make one of its own whose transition table casts its ids
-- to bigint with a function of its own, run as our owner.
CREATE FUNCTION webhooks._endpoints_deleted()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_RELID <> 'webhooks.endpoints'::regclass THEN
        RAISE EXCEPTION 'webhooks._endpoints_deleted() can only be a trigger on webhooks.endpoints'
              USING ERRCODE = 'trigger_protocol_violated',
                    DETAIL = format('It was fired by a trigger on "%s".', TG_TABLE_NAME),
                    HINT = 'The extension creates the triggers that call it; a table of yours needs a trigger function of its own.';
    END IF;
    IF TG_OP = 'TRUNCATE' THEN
        INSERT INTO webhooks.deleted_endpoints (id)
        SELECT e.id FROM webhooks.endpoints e
            ON CONFLICT (id) DO UPDATE SET deleted_at = EXCLUDED.deleted_at;
    ELSE
        INSERT INTO webhooks.deleted_endpoints (id)
        SELECT g.id FROM gone g
            ON CONFLICT (id) DO UPDATE SET deleted_at = EXCLUDED.deleted_at;
    END IF;
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION webhooks._endpoints_deleted() IS
'Statement trigger: keeps the ids of the endpoints deleted, or about to be truncated, in webhooks.deleted_endpoints';

CREATE TRIGGER endpoints_deleted_ids
    AFTER DELETE ON webhooks.endpoints
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION webhooks._endpoints_deleted();
COMMENT ON TRIGGER endpoints_deleted_ids ON webhooks.endpoints IS
'Keeps the ids of the deleted endpoints in webhooks.deleted_endpoints';

CREATE TRIGGER endpoints_truncated_ids
    BEFORE TRUNCATE ON webhooks.endpoints
    FOR EACH STATEMENT EXECUTE FUNCTION webhooks._endpoints_deleted();
COMMENT ON TRIGGER endpoints_truncated_ids ON webhooks.endpoints IS
'Keeps the ids of the endpoints about to be truncated in webhooks.deleted_endpoints';

-- Retention also removes the ids of endpoints deleted over a day ago: a
-- delivery still waiting for its endpoint by then is failed anyway.
CREATE OR REPLACE FUNCTION webhooks._purge_batch(cutoff timestamptz, batch integer,
                                                 OUT deliveries bigint, OUT events bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    bound       bigint;
    event_bound uuid;
BEGIN
    -- Delivery ids grow with time: every id below that of the first
    -- delivery created after the cutoff belongs to an older delivery.
    SELECT d.id INTO bound FROM webhooks.deliveries d
     WHERE d.created_at >= cutoff ORDER BY d.id LIMIT 1;
    IF bound IS NULL THEN
        SELECT coalesce(max(d.id), 0) + 1 INTO bound FROM webhooks.deliveries d;
    END IF;

    WITH doomed AS (
        SELECT d.id FROM webhooks.deliveries d
         WHERE d.id < bound AND d.status <> 'pending'
         ORDER BY d.id LIMIT batch
    ), gone_attempts AS (
        DELETE FROM webhooks.delivery_attempts a
         WHERE a.delivery_id IN (SELECT id FROM doomed)
    )
    DELETE FROM webhooks.deliveries d WHERE d.id IN (SELECT id FROM doomed);
    GET DIAGNOSTICS deliveries = ROW_COUNT;

    -- Event ids are time-ordered UUIDs whose first 48 bits are the unix
    -- time in milliseconds: the same trick, on the primary key.
    event_bound := (lpad(to_hex((extract(epoch FROM cutoff) * 1000)::bigint), 12, '0')
                    || '70008000000000000000')::uuid;
    -- an event that redeliver() holds is skipped, not waited for
    DELETE FROM webhooks.events e
     WHERE e.id IN (SELECT x.id FROM webhooks.events x
                     WHERE x.id < event_bound AND x.created_at < cutoff
                       AND NOT EXISTS (SELECT FROM webhooks.deliveries d
                                        WHERE d.event_id = x.id)
                     ORDER BY x.id LIMIT batch
                       FOR UPDATE SKIP LOCKED);
    GET DIAGNOSTICS events = ROW_COUNT;

    DELETE FROM webhooks.deleted_endpoints x
     WHERE x.id IN (SELECT y.id FROM webhooks.deleted_endpoints y
                     WHERE y.deleted_at < now() - interval '1 day'
                     LIMIT batch
                       FOR UPDATE SKIP LOCKED);
END;
$$;
COMMENT ON FUNCTION webhooks._purge_batch(timestamptz, integer) IS
'Delete up to batch finished deliveries created before cutoff, with their attempts, up to batch events older than cutoff that no delivery refers to, and up to batch ids of endpoints deleted over a day ago';

---------------------------------------------------------------------------
-- A comment on every column
---------------------------------------------------------------------------

-- A delivery also fails without any attempt (its endpoint deactivated,
-- deleted, missing or of another company, its event missing or unusable),
-- and attempts are recorded that sent no request.
COMMENT ON TABLE webhooks.delivery_attempts IS
'One row per attempt: an HTTP request, or an attempt recorded as not sent (its endpoint failing, its secret or headers not valid), whose error says why';
COMMENT ON COLUMN webhooks.deliveries.status IS
'pending (waiting or in flight), delivered (a 2xx came back) or failed (max_attempts used up, or at once when it cannot be sent: its endpoint deactivated, deleted, missing or of another company, its event missing or unusable; last_error says why)';
COMMENT ON COLUMN webhooks.deliveries.last_error IS
'Why the last attempt failed, or why the delivery failed without one; NULL on success';

COMMENT ON COLUMN webhooks.endpoints.id IS 'Endpoint id';
COMMENT ON COLUMN webhooks.endpoints.description IS 'Free text for the company''s own use';
COMMENT ON COLUMN webhooks.endpoints.created_at IS 'When the endpoint was registered';
COMMENT ON COLUMN webhooks.events.event IS 'Event type name (webhooks.event_types.name), sent as the envelope''s type';
COMMENT ON COLUMN webhooks.events.company_id IS 'The company whose endpoints receive the event';
COMMENT ON COLUMN webhooks.events.data IS 'The event''s data, checked against its event type, sent as the envelope''s data';
COMMENT ON COLUMN webhooks.deliveries.id IS 'Delivery id';
COMMENT ON COLUMN webhooks.deliveries.event_id IS 'The event delivered (webhooks.events.id)';
COMMENT ON COLUMN webhooks.deliveries.endpoint_id IS 'The endpoint it goes to (webhooks.endpoints.id)';
COMMENT ON COLUMN webhooks.deliveries.created_at IS 'When the delivery was written: with its event, or by redeliver()';
COMMENT ON COLUMN webhooks.deliveries.finished_at IS 'When it was delivered or failed; NULL while pending';
COMMENT ON COLUMN webhooks.delivery_attempts.delivery_id IS 'The delivery attempted (webhooks.deliveries.id)';
COMMENT ON COLUMN webhooks.delivery_attempts.started_at IS 'When the request started, or when the attempt was recorded as not sent';
COMMENT ON COLUMN webhooks.delivery_attempts.duration_ms IS 'From the start of the request to its end, in milliseconds; 0 for an attempt recorded as not sent';
COMMENT ON COLUMN webhooks.deleted_endpoints.id IS 'Id of an endpoint deleted or truncated';
COMMENT ON COLUMN webhooks.deleted_endpoints.deleted_at IS 'When it was deleted; retention removes the row a day later (with retention = 0, purge() does)';

---------------------------------------------------------------------------
-- Privileges: PUBLIC gets nothing
---------------------------------------------------------------------------

REVOKE ALL ON ALL TABLES IN SCHEMA webhooks FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA webhooks FROM PUBLIC;
