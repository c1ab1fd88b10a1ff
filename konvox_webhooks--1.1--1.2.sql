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
ALTER FUNCTION webhooks.rotate_secret(bigint, interval) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION webhooks.redeliver(bigint) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION webhooks.redeliver_failed(bigint, timestamptz) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION webhooks.worker_status() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION webhooks._purge_batch(timestamptz, integer) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION webhooks.purge(interval) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION webhooks.purge_company(text) SET search_path = pg_catalog, pg_temp;
