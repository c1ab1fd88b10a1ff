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
ALTER FUNCTION webhooks.create_endpoint(text, text, text[], text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION webhooks.emit_trigger() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION webhooks.send_test(bigint, text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION webhooks.redeliver(bigint) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION webhooks.redeliver_failed(bigint, timestamptz) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION webhooks.worker_status() SET search_path = pg_catalog, pg_temp;
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
-- Privileges: PUBLIC gets nothing
---------------------------------------------------------------------------

REVOKE ALL ON ALL TABLES IN SCHEMA webhooks FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA webhooks FROM PUBLIC;
