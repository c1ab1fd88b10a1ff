/* konvox_webhooks--1.0--1.1.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION konvox_webhooks UPDATE TO '1.1'" to load this file. \quit

---------------------------------------------------------------------------
-- Redelivery
---------------------------------------------------------------------------

ALTER TABLE webhooks.deliveries ADD COLUMN redelivery_of bigint;
COMMENT ON COLUMN webhooks.deliveries.redelivery_of IS
'For a redelivery, the delivery it sends again';
CREATE INDEX deliveries_redelivery_idx ON webhooks.deliveries (redelivery_of)
    WHERE redelivery_of IS NOT NULL;
COMMENT ON INDEX webhooks.deliveries_redelivery_idx IS
'The redeliveries of a delivery';

CREATE FUNCTION webhooks.redeliver(delivery_id bigint)
RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    d       webhooks.deliveries;
    active  boolean;
    new_id  bigint;
BEGIN
    SELECT * INTO d FROM webhooks.deliveries x WHERE x.id = redeliver.delivery_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'delivery % does not exist', coalesce(redeliver.delivery_id::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'See SELECT id, status FROM webhooks.deliveries.';
    END IF;
    IF d.status = 'pending' THEN
        RAISE EXCEPTION 'delivery % is still pending', d.id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'The worker will attempt it again by itself; only delivered and failed deliveries can be redelivered.';
    END IF;
    SELECT e.active INTO active FROM webhooks.endpoints e WHERE e.id = d.endpoint_id;
    IF NOT active THEN
        RAISE EXCEPTION 'endpoint % is inactive', d.endpoint_id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Activate it first: UPDATE webhooks.endpoints SET active = true WHERE id = ' || d.endpoint_id || '.';
    END IF;

    -- keep retention from deleting the event under the new delivery
    PERFORM FROM webhooks.events ev WHERE ev.id = d.event_id FOR KEY SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the event of delivery % no longer exists', d.id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Retention or purge() deleted it.';
    END IF;

    INSERT INTO webhooks.deliveries (event_id, endpoint_id, redelivery_of)
    VALUES (d.event_id, d.endpoint_id, d.id)
    RETURNING id INTO new_id;
    RETURN new_id;
END;
$$;
COMMENT ON FUNCTION webhooks.redeliver(bigint) IS
'Send a delivered or failed delivery again, as a new delivery of the same event (same webhook-id) linked to it; returns the new delivery id';

CREATE FUNCTION webhooks.redeliver_failed(endpoint_id bigint, since timestamptz)
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    active  boolean;
    n       integer;
BEGIN
    SELECT e.active INTO active FROM webhooks.endpoints e
     WHERE e.id = redeliver_failed.endpoint_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'endpoint % does not exist', coalesce(redeliver_failed.endpoint_id::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'See SELECT id, company_id, url FROM webhooks.endpoints.';
    END IF;
    IF NOT active THEN
        RAISE EXCEPTION 'endpoint % is inactive', redeliver_failed.endpoint_id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Activate it first: UPDATE webhooks.endpoints SET active = true WHERE id = ' || redeliver_failed.endpoint_id || '.';
    END IF;
    IF since IS NULL THEN
        RAISE EXCEPTION 'since must not be null'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'Give the time from which failed deliveries are sent again, e.g. now() - interval ''1 day''.';
    END IF;

    -- a failure that was already redelivered is represented by its redelivery
    -- (the events are locked so that retention cannot delete them meanwhile)
    INSERT INTO webhooks.deliveries (event_id, endpoint_id, redelivery_of)
    SELECT d.event_id, d.endpoint_id, d.id
      FROM webhooks.deliveries d
      JOIN webhooks.events ev ON ev.id = d.event_id
     WHERE d.endpoint_id = redeliver_failed.endpoint_id
       AND d.status = 'failed'
       AND d.finished_at >= since
       AND NOT EXISTS (SELECT FROM webhooks.deliveries r WHERE r.redelivery_of = d.id)
     ORDER BY d.id
       FOR KEY SHARE OF ev;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END;
$$;
COMMENT ON FUNCTION webhooks.redeliver_failed(bigint, timestamptz) IS
'Redeliver every failed delivery of an endpoint that failed since the given time and was not redelivered yet; returns how many';

---------------------------------------------------------------------------
-- Monitoring
---------------------------------------------------------------------------

-- ranges of created_at, for the last day's statistics, at almost no cost to
-- inserts: deliveries are written in time order
CREATE INDEX deliveries_created_idx ON webhooks.deliveries USING brin (created_at);
COMMENT ON INDEX webhooks.deliveries_created_idx IS
'Ranges of created_at, for endpoint_stats';

CREATE VIEW webhooks.endpoint_stats AS
SELECT ep.id AS endpoint_id,
       ep.company_id,
       ep.url,
       ep.active,
       coalesce(s.deliveries, 0) AS deliveries,
       coalesce(s.delivered, 0) AS delivered,
       coalesce(s.failed, 0) AS failed,
       coalesce(s.pending, 0) AS pending,
       round(100.0 * s.delivered / nullif(s.delivered + s.failed, 0), 1)
           AS success_rate,
       round(a.p50_ms::numeric, 1) AS p50_ms,
       round(a.p95_ms::numeric, 1) AS p95_ms,
       a.last_success_at,
       f.last_failure_at,
       f.last_error
  FROM webhooks.endpoints ep
  LEFT JOIN LATERAL (
        SELECT count(*) AS deliveries,
               count(*) FILTER (WHERE d.status = 'delivered') AS delivered,
               count(*) FILTER (WHERE d.status = 'failed') AS failed,
               count(*) FILTER (WHERE d.status = 'pending') AS pending
          FROM webhooks.deliveries d
         WHERE d.endpoint_id = ep.id
           AND d.created_at > now() - interval '24 hours') s ON true
  LEFT JOIN LATERAL (
        SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY at.duration_ms) AS p50_ms,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY at.duration_ms) AS p95_ms,
               max(at.started_at) FILTER (WHERE at.error IS NULL) AS last_success_at
          FROM webhooks.deliveries d
          JOIN webhooks.delivery_attempts at ON at.delivery_id = d.id
         WHERE d.endpoint_id = ep.id
           AND d.created_at > now() - interval '24 hours') a ON true
  LEFT JOIN LATERAL (
        SELECT at.started_at AS last_failure_at, at.error AS last_error
          FROM webhooks.deliveries d
          JOIN webhooks.delivery_attempts at ON at.delivery_id = d.id
         WHERE d.endpoint_id = ep.id
           AND d.created_at > now() - interval '24 hours'
           AND at.error IS NOT NULL
         ORDER BY at.started_at DESC
         LIMIT 1) f ON true;
COMMENT ON VIEW webhooks.endpoint_stats IS
'Per endpoint, the deliveries created in the last 24 hours: counts by status, success rate of the finished ones (percent), p50 and p95 attempt duration (ms), last success, last failure and its error';

CREATE FUNCTION webhooks._worker_slots(OUT worker integer, OUT pid integer,
                                       OUT in_flight integer)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'kw_worker_slots'
LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION webhooks._worker_slots() IS
'One row per configured delivery worker: its pid (0 when not running) and requests in flight';

CREATE FUNCTION webhooks.worker_status(OUT running boolean,
                                       OUT workers integer,
                                       OUT pids integer[],
                                       OUT in_flight integer,
                                       OUT due_now bigint,
                                       OUT next_retry_at timestamptz)
LANGUAGE sql
VOLATILE
AS $$
    SELECT count(*) FILTER (WHERE s.pid <> 0) = count(*),
           count(*) FILTER (WHERE s.pid <> 0)::integer,
           coalesce(array_agg(s.pid ORDER BY s.worker) FILTER (WHERE s.pid <> 0), '{}'),
           coalesce(sum(s.in_flight), 0)::integer,
           (SELECT count(*) FROM webhooks.deliveries d
             WHERE d.status = 'pending' AND d.next_attempt_at <= now()),
           (SELECT min(d.next_attempt_at) FROM webhooks.deliveries d
             WHERE d.status = 'pending' AND d.next_attempt_at > now())
      FROM webhooks._worker_slots() s;
$$;
COMMENT ON FUNCTION webhooks.worker_status() IS
'Whether every delivery worker runs, how many do and their pids, requests in flight, deliveries due now (in flight included) and the next scheduled retry';

---------------------------------------------------------------------------
-- Retention
---------------------------------------------------------------------------

CREATE FUNCTION webhooks._purge_batch(cutoff timestamptz, batch integer,
                                      OUT deliveries bigint, OUT events bigint)
LANGUAGE plpgsql
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
END;
$$;
COMMENT ON FUNCTION webhooks._purge_batch(timestamptz, integer) IS
'Delete up to batch finished deliveries created before cutoff, with their attempts, and up to batch events older than cutoff that no delivery refers to';

CREATE FUNCTION webhooks.purge(older_than interval)
RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    cutoff  timestamptz;
    total   bigint := 0;
    r       record;
BEGIN
    IF older_than IS NULL OR older_than < interval '0' THEN
        RAISE EXCEPTION 'older_than must be a non-negative interval'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'For example webhooks.purge(interval ''30 days'').';
    END IF;
    cutoff := now() - older_than;
    LOOP
        r := webhooks._purge_batch(cutoff, 10000);
        total := total + r.deliveries;
        EXIT WHEN r.deliveries = 0 AND r.events = 0;
    END LOOP;
    RETURN total;
END;
$$;
COMMENT ON FUNCTION webhooks.purge(interval) IS
'Delete finished deliveries created longer ago than older_than, their attempts, and the events no delivery refers to any more; returns the number of deliveries deleted';

CREATE FUNCTION webhooks.purge_company(company_id text)
RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    n bigint;
BEGIN
    IF company_id IS NULL THEN
        RAISE EXCEPTION 'company_id must not be null'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'Give the id of the company whose webhook data is to be deleted.';
    END IF;
    -- the endpoints' delete trigger takes their deliveries and attempts
    DELETE FROM webhooks.endpoints e WHERE e.company_id = purge_company.company_id;
    DELETE FROM webhooks.delivery_attempts a
     USING webhooks.deliveries d, webhooks.events ev
     WHERE a.delivery_id = d.id AND d.event_id = ev.id
       AND ev.company_id = purge_company.company_id;
    DELETE FROM webhooks.deliveries d
     USING webhooks.events ev
     WHERE d.event_id = ev.id AND ev.company_id = purge_company.company_id;
    DELETE FROM webhooks.events ev WHERE ev.company_id = purge_company.company_id;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END;
$$;
COMMENT ON FUNCTION webhooks.purge_company(text) IS
'Delete every endpoint, event, delivery and attempt of one company; returns the number of events deleted';

---------------------------------------------------------------------------
-- pg_dump: endpoints, user-added event types, events and history are data
---------------------------------------------------------------------------

SELECT pg_catalog.pg_extension_config_dump('webhooks.event_types',
    $$WHERE name NOT IN ('contact.replied', 'enrollment.created',
                         'enrollment.unsubscribed', 'enrollment.completed',
                         'message.approved', 'message.rejected')$$);
SELECT pg_catalog.pg_extension_config_dump('webhooks.endpoints', '');
SELECT pg_catalog.pg_extension_config_dump('webhooks.endpoints_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('webhooks.events', '');
SELECT pg_catalog.pg_extension_config_dump('webhooks.deliveries', '');
SELECT pg_catalog.pg_extension_config_dump('webhooks.deliveries_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('webhooks.delivery_attempts', '');

-- A restore loads deliveries before endpoints and events, each table in a
-- transaction of its own, so the worker that the deliveries wake finds
-- their events missing and would look again only a minute later.  Loading
-- events or endpoints wakes it too: whichever table comes last sets the
-- pending deliveries going.  emit() writes events without firing triggers.
CREATE TRIGGER events_wake
    AFTER INSERT ON webhooks.events
    FOR EACH STATEMENT EXECUTE FUNCTION webhooks._wake_trigger();
COMMENT ON TRIGGER events_wake ON webhooks.events IS
'Wakes the worker at commit for events written by SQL, as a restore writes them after their deliveries';
CREATE TRIGGER endpoints_wake
    AFTER INSERT ON webhooks.endpoints
    FOR EACH STATEMENT EXECUTE FUNCTION webhooks._wake_trigger();
COMMENT ON TRIGGER endpoints_wake ON webhooks.endpoints IS
'Wakes the worker at commit for endpoints written by SQL, as a restore writes them after their deliveries';

---------------------------------------------------------------------------
-- Privileges: PUBLIC gets nothing
---------------------------------------------------------------------------

REVOKE ALL ON ALL TABLES IN SCHEMA webhooks FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA webhooks FROM PUBLIC;
