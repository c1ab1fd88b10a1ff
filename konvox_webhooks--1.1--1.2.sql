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
-- Privileges: PUBLIC gets nothing
---------------------------------------------------------------------------

REVOKE ALL ON ALL TABLES IN SCHEMA webhooks FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA webhooks FROM PUBLIC;
