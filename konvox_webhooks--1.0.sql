/* konvox_webhooks--1.0.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION konvox_webhooks" to load this file. \quit

CREATE SCHEMA webhooks;
COMMENT ON SCHEMA webhooks IS 'Konvox webhook delivery: event types, endpoints, the outbox and its delivery history';

-- Nothing here is for PUBLIC; see the README for the grants of an
-- application role (emit only) and an admin role.
REVOKE ALL ON SCHEMA webhooks FROM PUBLIC;

---------------------------------------------------------------------------
-- Helper functions used by column defaults and checks
---------------------------------------------------------------------------

CREATE FUNCTION webhooks.new_event_id()
RETURNS uuid
AS 'MODULE_PATHNAME', 'kw_new_event_id'
LANGUAGE C VOLATILE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION webhooks.new_event_id() IS
'A time-ordered UUID (version 7 layout) for a new event; sent as webhook-id';

CREATE FUNCTION webhooks.generate_secret()
RETURNS text
AS 'MODULE_PATHNAME', 'kw_generate_secret'
LANGUAGE C VOLATILE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION webhooks.generate_secret() IS
'A new endpoint signing secret: whsec_ followed by the base64 of 32 random bytes';

CREATE FUNCTION webhooks.sign(secret text, msg_id text, ts bigint, body text)
RETURNS text
AS 'MODULE_PATHNAME', 'kw_sign_sql'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION webhooks.sign(text, text, bigint, text) IS
'Standard Webhooks v1 signature of one message: v1,base64(HMAC-SHA256(key, msg_id.ts.body))';

CREATE FUNCTION webhooks.wake_worker()
RETURNS void
AS 'MODULE_PATHNAME', 'kw_wake_worker_sql'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION webhooks.wake_worker() IS
'Wake the delivery worker when the current transaction commits';

CREATE FUNCTION webhooks._endpoint_check()
RETURNS trigger
AS 'MODULE_PATHNAME', 'kw_endpoint_check'
LANGUAGE C;
COMMENT ON FUNCTION webhooks._endpoint_check() IS
'Trigger: validates company_id, url, events and secret of every endpoint row';

CREATE FUNCTION webhooks._event_type_check()
RETURNS trigger
AS 'MODULE_PATHNAME', 'kw_event_type_check'
LANGUAGE C;
COMMENT ON FUNCTION webhooks._event_type_check() IS
'Trigger: validates the fields description of an event type and its sample against it';

CREATE FUNCTION webhooks._cache_invalidate()
RETURNS trigger
AS 'MODULE_PATHNAME', 'kw_cache_invalidate'
LANGUAGE C;
COMMENT ON FUNCTION webhooks._cache_invalidate() IS
'Trigger: tells every backend that its cache of event types or endpoints is stale';

---------------------------------------------------------------------------
-- Event types
---------------------------------------------------------------------------

CREATE TABLE webhooks.event_types (
    name        text PRIMARY KEY,
    description text NOT NULL DEFAULT '',
    fields      jsonb NOT NULL DEFAULT '[]',
    sample      jsonb NOT NULL DEFAULT '{}'
);
COMMENT ON TABLE webhooks.event_types IS
'The events that can be emitted and subscribed to, with the fields of their data';
COMMENT ON COLUMN webhooks.event_types.name IS 'Event name, e.g. contact.replied';
COMMENT ON COLUMN webhooks.event_types.description IS 'When the event fires';
COMMENT ON COLUMN webhooks.event_types.fields IS
'Fields of data: [{"name": ..., "type": string|number|boolean|object|array, "required": bool}]; a field that is not required may be null or absent';
COMMENT ON COLUMN webhooks.event_types.sample IS
'Sample data, sent by send_test(); must itself be valid data for the type';

CREATE TRIGGER event_types_check
    BEFORE INSERT OR UPDATE ON webhooks.event_types
    FOR EACH ROW EXECUTE FUNCTION webhooks._event_type_check();
COMMENT ON TRIGGER event_types_check ON webhooks.event_types IS
'Validates fields and sample';

CREATE FUNCTION webhooks._event_type_in_use()
RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    users text;
BEGIN
    IF TG_OP = 'DELETE' OR NEW.name IS DISTINCT FROM OLD.name THEN
        SELECT string_agg(e.id::text, ', ' ORDER BY e.id) INTO users
          FROM webhooks.endpoints e
         WHERE e.events @> ARRAY[OLD.name];
        IF users IS NOT NULL THEN
            RAISE EXCEPTION 'event type "%" is subscribed to by endpoints %', OLD.name, users
                USING ERRCODE = 'dependent_objects_still_exist',
                      HINT = 'Remove it from the events of those endpoints first.';
        END IF;
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END;
$$;
COMMENT ON FUNCTION webhooks._event_type_in_use() IS
'Trigger: an event type that endpoints subscribe to cannot be deleted or renamed';

CREATE TRIGGER event_types_in_use
    BEFORE UPDATE OR DELETE ON webhooks.event_types
    FOR EACH ROW EXECUTE FUNCTION webhooks._event_type_in_use();
COMMENT ON TRIGGER event_types_in_use ON webhooks.event_types IS
'Keeps subscribed event types from being deleted or renamed';

CREATE TRIGGER event_types_cache
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON webhooks.event_types
    FOR EACH STATEMENT EXECUTE FUNCTION webhooks._cache_invalidate();
COMMENT ON TRIGGER event_types_cache ON webhooks.event_types IS
'Invalidates the event types that emit() caches';

INSERT INTO webhooks.event_types (name, description, fields, sample) VALUES
('contact.replied',
 'A contact replied to an outbound email or LinkedIn message; the enrollment state is updated to replied.',
 '[{"name": "contactId",    "type": "string", "required": true},
   {"name": "channel",      "type": "string", "required": true},
   {"name": "subject",      "type": "string", "required": false},
   {"name": "campaignId",   "type": "string", "required": false},
   {"name": "enrollmentId", "type": "string", "required": false}]',
 '{"contactId": "clxyz789", "channel": "email",
   "subject": "Re: Quick question about your team",
   "campaignId": "clcmp456", "enrollmentId": "clenr123"}'),
('enrollment.created',
 'A contact was enrolled in a campaign; the sequence starts on the next scheduled run.',
 '[{"name": "enrollmentId", "type": "string", "required": true},
   {"name": "contactId",    "type": "string", "required": true},
   {"name": "campaignId",   "type": "string", "required": true}]',
 '{"enrollmentId": "clenr123", "contactId": "clxyz789", "campaignId": "clcmp456"}'),
('enrollment.unsubscribed',
 'A contact opted out, by an opt-out keyword in a reply or by a manual status change; all active enrollments of the contact are paused.',
 '[{"name": "enrollmentId", "type": "string", "required": true},
   {"name": "contactId",    "type": "string", "required": true},
   {"name": "campaignId",   "type": "string", "required": true},
   {"name": "reason",       "type": "string", "required": true}]',
 '{"enrollmentId": "clenr123", "contactId": "clxyz789",
   "campaignId": "clcmp456", "reason": "opt_out_keyword"}'),
('enrollment.completed',
 'A contact finished the last step of a campaign without replying or opting out.',
 '[{"name": "enrollmentId", "type": "string", "required": true},
   {"name": "contactId",    "type": "string", "required": true},
   {"name": "campaignId",   "type": "string", "required": true}]',
 '{"enrollmentId": "clenr123", "contactId": "clxyz789", "campaignId": "clcmp456"}'),
('message.approved',
 'An AI-generated message was approved.',
 '[{"name": "messageId",    "type": "string", "required": true},
   {"name": "contactId",    "type": "string", "required": true},
   {"name": "campaignId",   "type": "string", "required": false},
   {"name": "enrollmentId", "type": "string", "required": false}]',
 '{"messageId": "clmsg001", "contactId": "clxyz789",
   "campaignId": "clcmp456", "enrollmentId": "clenr123"}'),
('message.rejected',
 'A message was rejected and removed from the queue.',
 '[{"name": "messageId",    "type": "string", "required": true},
   {"name": "contactId",    "type": "string", "required": true},
   {"name": "campaignId",   "type": "string", "required": false},
   {"name": "enrollmentId", "type": "string", "required": false},
   {"name": "reason",       "type": "string", "required": false}]',
 '{"messageId": "clmsg002", "contactId": "clxyz789",
   "campaignId": "clcmp456", "enrollmentId": "clenr123",
   "reason": "Tone does not match the brand voice"}');

---------------------------------------------------------------------------
-- Endpoints
---------------------------------------------------------------------------

CREATE TABLE webhooks.endpoints (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    company_id  text NOT NULL,
    url         text NOT NULL,
    events      text[] NOT NULL,
    secret      text NOT NULL DEFAULT webhooks.generate_secret(),
    previous_secret text,
    previous_secret_expires_at timestamptz,
    description text,
    active      boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX endpoints_company_idx ON webhooks.endpoints (company_id);
COMMENT ON INDEX webhooks.endpoints_company_idx IS
'A company''s endpoints, for emit()';
COMMENT ON TABLE webhooks.endpoints IS
'Receivers registered by companies, each subscribed to some event types';
COMMENT ON COLUMN webhooks.endpoints.company_id IS 'The company (tenant) that owns the endpoint; it receives only that company''s events';
COMMENT ON COLUMN webhooks.endpoints.url IS 'http or https URL that receives the POSTs';
COMMENT ON COLUMN webhooks.endpoints.events IS 'Subscribed event type names';
COMMENT ON COLUMN webhooks.endpoints.secret IS 'Signing secret (whsec_...); generated when not given';
COMMENT ON COLUMN webhooks.endpoints.previous_secret IS 'The secret before the last rotation, still used to sign until previous_secret_expires_at';
COMMENT ON COLUMN webhooks.endpoints.previous_secret_expires_at IS 'End of the rotation overlap';
COMMENT ON COLUMN webhooks.endpoints.active IS 'Inactive endpoints get no new deliveries; deactivating fails their pending ones';

CREATE TRIGGER endpoints_check
    BEFORE INSERT OR UPDATE ON webhooks.endpoints
    FOR EACH ROW EXECUTE FUNCTION webhooks._endpoint_check();
COMMENT ON TRIGGER endpoints_check ON webhooks.endpoints IS
'Validates every endpoint row the way create_endpoint() does';

CREATE TRIGGER endpoints_cache
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON webhooks.endpoints
    FOR EACH STATEMENT EXECUTE FUNCTION webhooks._cache_invalidate();
COMMENT ON TRIGGER endpoints_cache ON webhooks.endpoints IS
'Invalidates the endpoints that emit() caches';

---------------------------------------------------------------------------
-- The outbox and the delivery history
---------------------------------------------------------------------------

CREATE TABLE webhooks.events (
    id          uuid PRIMARY KEY DEFAULT webhooks.new_event_id(),
    event       text NOT NULL,
    company_id  text NOT NULL,
    data        jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE webhooks.events IS
'The outbox: one row per emitted event';
COMMENT ON COLUMN webhooks.events.id IS 'Event id, sent in the webhook-id header: the receivers'' deduplication key';
COMMENT ON COLUMN webhooks.events.created_at IS 'The envelope timestamp';

CREATE TABLE webhooks.deliveries (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id         uuid NOT NULL,
    endpoint_id      bigint NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz DEFAULT now(),
    last_status_code integer,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz
);
-- Every index here is paid for by each emit() and each recorded attempt, so
-- there are only three besides the key: the worker's queue, per-endpoint
-- history, and the deliveries of an event.
CREATE INDEX deliveries_due_idx ON webhooks.deliveries (next_attempt_at, id)
    WHERE status = 'pending';
CREATE INDEX deliveries_endpoint_idx ON webhooks.deliveries (endpoint_id, id);
CREATE INDEX deliveries_event_idx ON webhooks.deliveries (event_id);
COMMENT ON INDEX webhooks.deliveries_due_idx IS
'The workers'' queue: pending deliveries in the order they fall due';
COMMENT ON INDEX webhooks.deliveries_endpoint_idx IS
'An endpoint''s deliveries, newest last';
COMMENT ON INDEX webhooks.deliveries_event_idx IS
'An event''s deliveries';
COMMENT ON TABLE webhooks.deliveries IS
'One row per event and endpoint: where the delivery stands';
COMMENT ON COLUMN webhooks.deliveries.status IS
'pending (waiting or in flight), delivered (a 2xx came back) or failed (max_attempts used up)';
COMMENT ON COLUMN webhooks.deliveries.attempts IS 'Attempts made so far';
COMMENT ON COLUMN webhooks.deliveries.next_attempt_at IS 'When the next attempt is due; NULL once finished';
COMMENT ON COLUMN webhooks.deliveries.last_status_code IS 'HTTP status of the last attempt, NULL if no response came';
COMMENT ON COLUMN webhooks.deliveries.last_error IS 'Why the last attempt failed, NULL on success';

CREATE FUNCTION webhooks._wake_trigger()
RETURNS trigger
AS 'MODULE_PATHNAME', 'kw_wake_trigger'
LANGUAGE C;
COMMENT ON FUNCTION webhooks._wake_trigger() IS
'Trigger: wake the worker when the transaction commits';

-- emit() writes its rows without firing triggers; this is for rows written
-- by hand, by COPY or by pg_restore
CREATE TRIGGER deliveries_wake
    AFTER INSERT OR UPDATE ON webhooks.deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION webhooks._wake_trigger();
COMMENT ON TRIGGER deliveries_wake ON webhooks.deliveries IS
'Wakes the worker at commit for deliveries written by SQL';

CREATE TABLE webhooks.delivery_attempts (
    delivery_id     bigint NOT NULL,
    attempt         integer NOT NULL,
    started_at      timestamptz NOT NULL,
    duration_ms     double precision NOT NULL,
    status_code     integer,
    error           text,
    response_body   text,
    next_attempt_at timestamptz,
    PRIMARY KEY (delivery_id, attempt)
);
COMMENT ON TABLE webhooks.delivery_attempts IS
'One row per HTTP attempt';
COMMENT ON COLUMN webhooks.delivery_attempts.attempt IS 'Attempt number, from 1';
COMMENT ON COLUMN webhooks.delivery_attempts.status_code IS 'HTTP status, NULL when no response came';
COMMENT ON COLUMN webhooks.delivery_attempts.error IS 'NULL on success; otherwise e.g. "HTTP 500" or libcurl''s "Timeout was reached"';
COMMENT ON COLUMN webhooks.delivery_attempts.response_body IS 'The first 4 kB of the response body';
COMMENT ON COLUMN webhooks.delivery_attempts.next_attempt_at IS 'The retry scheduled after this attempt; NULL when none follows';

CREATE VIEW webhooks.delivery_history AS
SELECT a.delivery_id,
       ev.id AS event_id,
       ev.event,
       ev.company_id,
       d.endpoint_id,
       ep.url,
       a.attempt,
       a.status_code,
       a.error,
       a.duration_ms,
       a.started_at,
       a.next_attempt_at,
       d.status
  FROM webhooks.delivery_attempts a
  JOIN webhooks.deliveries d ON d.id = a.delivery_id
  JOIN webhooks.events ev ON ev.id = d.event_id
  JOIN webhooks.endpoints ep ON ep.id = d.endpoint_id;
COMMENT ON VIEW webhooks.delivery_history IS
'Every attempt with its delivery, event and endpoint, as Settings > Webhooks shows it';

---------------------------------------------------------------------------
-- Keeping deliveries consistent with their endpoint
---------------------------------------------------------------------------

CREATE FUNCTION webhooks._endpoint_changed()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        DELETE FROM webhooks.delivery_attempts a
         USING webhooks.deliveries d
         WHERE a.delivery_id = d.id AND d.endpoint_id = OLD.id;
        DELETE FROM webhooks.deliveries WHERE endpoint_id = OLD.id;
        RETURN OLD;
    END IF;
    -- deactivated: what was waiting will not go out
    UPDATE webhooks.deliveries
       SET status = 'failed', next_attempt_at = NULL,
           last_error = 'endpoint deactivated', finished_at = now()
     WHERE endpoint_id = NEW.id AND status = 'pending';
    RETURN NEW;
END;
$$;
COMMENT ON FUNCTION webhooks._endpoint_changed() IS
'Trigger: deleting an endpoint deletes its deliveries; deactivating one fails its pending deliveries';

CREATE TRIGGER endpoints_deleted
    AFTER DELETE ON webhooks.endpoints
    FOR EACH ROW EXECUTE FUNCTION webhooks._endpoint_changed();
COMMENT ON TRIGGER endpoints_deleted ON webhooks.endpoints IS
'Deletes the deliveries and attempts of a deleted endpoint';

CREATE TRIGGER endpoints_deactivated
    AFTER UPDATE OF active ON webhooks.endpoints
    FOR EACH ROW WHEN (OLD.active AND NOT NEW.active)
    EXECUTE FUNCTION webhooks._endpoint_changed();
COMMENT ON TRIGGER endpoints_deactivated ON webhooks.endpoints IS
'Fails the pending deliveries of a deactivated endpoint';

---------------------------------------------------------------------------
-- The SQL interface
---------------------------------------------------------------------------

CREATE FUNCTION webhooks.create_endpoint(company_id text, url text,
                                         events text[],
                                         description text DEFAULT NULL)
RETURNS webhooks.endpoints
LANGUAGE sql
AS $$
    INSERT INTO webhooks.endpoints (company_id, url, events, description)
    VALUES ($1, $2, $3, $4)
    RETURNING *;
$$;
COMMENT ON FUNCTION webhooks.create_endpoint(text, text, text[], text) IS
'Register an endpoint; the returned row holds its generated signing secret';

CREATE FUNCTION webhooks.emit(event text, company_id text, data jsonb)
RETURNS uuid
AS 'MODULE_PATHNAME', 'kw_emit'
LANGUAGE C VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION webhooks.emit(text, text, jsonb) IS
'Validate an event and write it, with one delivery per subscribed active endpoint of the company, in the current transaction; returns the event id';

CREATE FUNCTION webhooks.emit_trigger()
RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    r       jsonb;
    data    jsonb := '{}';
    pair    text;
    field   text;
    col     text;
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

    IF TG_NARGS = 2 THEN
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
            field := split_part(pair, '=', 1);
            col := substr(pair, length(field) + 2);
            IF position('=' IN pair) = 0 OR field = '' OR col = '' THEN
                RAISE EXCEPTION 'invalid argument "%" to webhooks.emit_trigger()', pair
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = 'Map a data field to a column as field=column, e.g. ''contactId=contact_id''.';
            END IF;
            IF NOT r ? col THEN
                RAISE EXCEPTION 'column "%" does not exist in table %', col, TG_TABLE_NAME
                    USING ERRCODE = 'undefined_column',
                          HINT = format('Argument "%s" maps field %s to a column of the row.', pair, field);
            END IF;
            data := data || jsonb_build_object(field, r -> col);
        END LOOP;
    END IF;

    PERFORM webhooks.emit(TG_ARGV[0], r ->> TG_ARGV[1], data);

    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END;
$$;
COMMENT ON FUNCTION webhooks.emit_trigger() IS
'Row trigger: emit_trigger(event, company_column, field=column, ...) emits event with data built from NEW (OLD on DELETE)';

CREATE FUNCTION webhooks.send_test(endpoint_id bigint, event text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    ep          webhooks.endpoints;
    ev          text;
    payload     jsonb;
    event_id    uuid;
    delivery_id bigint;
BEGIN
    IF send_test.endpoint_id IS NULL THEN
        RAISE EXCEPTION 'endpoint_id must not be null'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'See SELECT id, company_id, url FROM webhooks.endpoints.';
    END IF;
    SELECT * INTO ep FROM webhooks.endpoints e WHERE e.id = send_test.endpoint_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'endpoint % does not exist', send_test.endpoint_id
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'See SELECT id, company_id, url FROM webhooks.endpoints.';
    END IF;
    IF NOT ep.active THEN
        RAISE EXCEPTION 'endpoint % is inactive', ep.id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Activate it first: UPDATE webhooks.endpoints SET active = true WHERE id = ' || ep.id || '.';
    END IF;

    ev := coalesce(send_test.event, ep.events[1]);
    SELECT t.sample INTO payload FROM webhooks.event_types t WHERE t.name = ev;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown event type "%"', ev
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Known event types: ' ||
                         (SELECT string_agg(name, ', ' ORDER BY name) FROM webhooks.event_types) || '.';
    END IF;

    INSERT INTO webhooks.events (event, company_id, data)
    VALUES (ev, ep.company_id, payload)
    RETURNING id INTO event_id;
    INSERT INTO webhooks.deliveries (event_id, endpoint_id)
    VALUES (event_id, ep.id)
    RETURNING id INTO delivery_id;
    RETURN delivery_id;
END;
$$;
COMMENT ON FUNCTION webhooks.send_test(bigint, text) IS
'The Send test button: the sample payload of an event type (default: the endpoint''s first) to this endpoint only; returns the delivery id';

CREATE FUNCTION webhooks.rotate_secret(endpoint_id bigint,
                                       overlap interval DEFAULT '24 hours')
RETURNS text
LANGUAGE plpgsql
AS $$
DECLARE
    new_secret text := webhooks.generate_secret();
BEGIN
    IF overlap IS NULL OR overlap < interval '0' THEN
        RAISE EXCEPTION 'overlap must be a non-negative interval'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Give how long the old secret keeps signing, e.g. ''24 hours'', or ''0'' to drop it at once.';
    END IF;
    UPDATE webhooks.endpoints e
       SET previous_secret = e.secret,
           previous_secret_expires_at = now() + overlap,
           secret = new_secret
     WHERE e.id = rotate_secret.endpoint_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'endpoint % does not exist', coalesce(rotate_secret.endpoint_id::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'See SELECT id, company_id, url FROM webhooks.endpoints.';
    END IF;
    RETURN new_secret;
END;
$$;
COMMENT ON FUNCTION webhooks.rotate_secret(bigint, interval) IS
'Give an endpoint a new signing secret and return it; until the overlap ends, deliveries are signed with both the new and the old secret';

---------------------------------------------------------------------------
-- Privileges: PUBLIC gets nothing
---------------------------------------------------------------------------

REVOKE ALL ON ALL TABLES IN SCHEMA webhooks FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA webhooks FROM PUBLIC;

-- a worker waiting for the extension starts at once, not at its next look
SELECT webhooks.wake_worker();
