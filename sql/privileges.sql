--
-- privileges: PUBLIC gets nothing in schema webhooks; an application role
-- granted USAGE and EXECUTE on emit() can emit, and do nothing else
--
CREATE EXTENSION konvox_webhooks;

CREATE ROLE regress_kw_nobody;
CREATE ROLE regress_kw_usage;
CREATE ROLE regress_kw_app;
GRANT USAGE ON SCHEMA webhooks TO regress_kw_usage, regress_kw_app;
GRANT EXECUTE ON FUNCTION webhooks.emit(text, text, jsonb) TO regress_kw_app;

--
-- PUBLIC, as a role without grants sees it
--
SELECT has_schema_privilege('regress_kw_nobody', 'webhooks', 'USAGE') AS schema_usage,
       has_schema_privilege('regress_kw_nobody', 'webhooks', 'CREATE') AS schema_create;
-- there are functions, and PUBLIC may execute none of them
SELECT count(*) > 0 AS has_functions
  FROM pg_proc WHERE pronamespace = 'webhooks'::regnamespace;
SELECT p.oid::regprocedure AS executable_by_nobody
  FROM pg_proc p
 WHERE p.pronamespace = 'webhooks'::regnamespace
   AND has_function_privilege('regress_kw_nobody', p.oid, 'EXECUTE')
 ORDER BY 1::text;
-- a NULL proacl would mean the default, EXECUTE for PUBLIC
SELECT p.oid::regprocedure AS public_may_execute
  FROM pg_proc p
 WHERE p.pronamespace = 'webhooks'::regnamespace
   AND (p.proacl IS NULL
        OR EXISTS (SELECT FROM aclexplode(p.proacl) a WHERE a.grantee = 0))
 ORDER BY 1::text;
-- no privilege on any table, view or sequence, nor on any column
SELECT c.relname, c.relkind
  FROM pg_class c
 WHERE c.relnamespace = 'webhooks'::regnamespace
   AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
   AND (has_table_privilege('regress_kw_nobody', c.oid,
                            'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')
        OR has_any_column_privilege('regress_kw_nobody', c.oid,
                                    'SELECT, INSERT, UPDATE, REFERENCES')
        OR EXISTS (SELECT FROM aclexplode(c.relacl) a WHERE a.grantee = 0))
 ORDER BY 1;
SELECT c.relname
  FROM pg_class c
 WHERE c.relnamespace = 'webhooks'::regnamespace AND c.relkind = 'S'
   AND (has_sequence_privilege('regress_kw_nobody', c.oid, 'USAGE, SELECT, UPDATE')
        OR EXISTS (SELECT FROM aclexplode(c.relacl) a WHERE a.grantee = 0))
 ORDER BY 1;
SELECT count(*) > 0 AS has_relations FROM pg_class
 WHERE relnamespace = 'webhooks'::regnamespace AND relkind IN ('r', 'v', 'S');

SELECT url FROM webhooks.create_endpoint('acme', 'https://a.example/hooks',
                                         ARRAY['contact.replied', 'enrollment.created']);
SELECT id AS ep FROM webhooks.endpoints \gset

-- a role without grants cannot emit, nor see anything
SET ROLE regress_kw_nobody;
SELECT webhooks.emit('contact.replied', 'acme', '{"contactId": "c1", "channel": "email"}');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM webhooks.endpoints;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- USAGE on the schema alone is not enough
SET ROLE regress_kw_usage;
SELECT webhooks.emit('contact.replied', 'acme', '{"contactId": "c1", "channel": "email"}');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM webhooks.events;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

--
-- the application role: emit() works, with its fan-out and its checks
--
SET ROLE regress_kw_app;
SELECT current_user;
SELECT webhooks.emit('contact.replied', 'acme',
                     '{"contactId": "c1", "channel": "email"}') IS NOT NULL AS emitted;
SELECT webhooks.emit('enrollment.created', 'acme',
                     '{"enrollmentId": "e1", "contactId": "c1", "campaignId": "p1"}') IS NOT NULL AS emitted;
SELECT webhooks.emit('contact.replied', 'acme', '{"channel": "email"}');
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.emit('contact.created', 'acme', '{}');
\echo :LAST_ERROR_SQLSTATE
-- a hostile search_path changes nothing for emit()
CREATE TEMP TABLE event_types (name text, fields jsonb);
SET search_path = pg_temp, public;
SELECT webhooks.emit('message.approved', 'acme',
                     '{"messageId": "m1", "contactId": "c1"}') IS NOT NULL AS emitted;
RESET search_path;
DROP TABLE pg_temp.event_types;
-- but nothing else: no tables, no other function, no settings
SELECT count(*) FROM webhooks.endpoints;
\echo :LAST_ERROR_SQLSTATE
SELECT secret FROM webhooks.endpoints;
\echo :LAST_ERROR_SQLSTATE
SELECT headers FROM webhooks.endpoints;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM webhooks.events;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM webhooks.delivery_history;
\echo :LAST_ERROR_SQLSTATE
INSERT INTO webhooks.events (event, company_id, data) VALUES ('contact.replied', 'acme', '{}');
\echo :LAST_ERROR_SQLSTATE
UPDATE webhooks.deliveries SET status = 'delivered';
\echo :LAST_ERROR_SQLSTATE
INSERT INTO webhooks.endpoints (company_id, url, events)
VALUES ('acme', 'https://evil.example/', ARRAY['contact.replied']);
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.create_endpoint('acme', 'https://evil.example/', ARRAY['contact.replied']);
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.send_test(:ep);
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.sign('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_1', 0, '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.generate_secret();
\echo :LAST_ERROR_SQLSTATE
SET konvox_webhooks.max_payload_size = '64MB';
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- what the application role emitted is there, with its deliveries
SELECT e.event, e.company_id, count(d.id) AS deliveries
  FROM webhooks.events e LEFT JOIN webhooks.deliveries d ON d.event_id = e.id
 GROUP BY e.id ORDER BY e.event;

--
-- emit_trigger() on an application table, fired by the application role
--
CREATE TABLE app_enrollments (id text, company_id text, contact_id text, campaign_id text);
CREATE TABLE app_replies (contact_id text, company_id text, channel text);
GRANT INSERT ON app_enrollments, app_replies TO regress_kw_app;
-- with field=column pairs
CREATE TRIGGER enrollment_created AFTER INSERT ON app_enrollments
    FOR EACH ROW EXECUTE FUNCTION webhooks.emit_trigger(
        'enrollment.created', 'company_id',
        'enrollmentId=id', 'contactId=contact_id', 'campaignId=campaign_id');
-- and without
CREATE TRIGGER contact_replied AFTER INSERT ON app_replies
    FOR EACH ROW EXECUTE FUNCTION webhooks.emit_trigger('contact.replied', 'company_id');
SET ROLE regress_kw_app;
INSERT INTO app_enrollments VALUES ('e2', 'acme', 'c2', 'p2');
INSERT INTO app_replies VALUES ('c3', 'acme', 'linkedin');
RESET ROLE;
-- without EXECUTE on emit(), the trigger fails
GRANT INSERT ON app_replies TO regress_kw_usage;
SET ROLE regress_kw_usage;
INSERT INTO app_replies VALUES ('c4', 'acme', 'email');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT e.event, e.data, count(d.id) AS deliveries
  FROM webhooks.events e LEFT JOIN webhooks.deliveries d ON d.event_id = e.id
 WHERE e.data ->> 'contactId' IN ('c2', 'c3', 'c4')
 GROUP BY e.id ORDER BY e.event;

DROP TABLE app_enrollments, app_replies;

--
-- a role that may execute every function of the schema, as the admin of
-- the README may, cannot make the extension's trigger functions fire on
-- tables of its own
--
CREATE ROLE regress_kw_admin;
GRANT USAGE ON SCHEMA webhooks TO regress_kw_admin;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA webhooks TO regress_kw_admin;
SET ROLE regress_kw_admin;
-- _endpoints_deleted() is SECURITY DEFINER and reads the ids of its
-- transition table: a cast of the role's own would run as the owner
CREATE TYPE pg_temp.kw_id AS ENUM ('x');
CREATE FUNCTION pg_temp.kw_id_cast(pg_temp.kw_id) RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
    RAISE NOTICE 'the cast runs as a superuser: %',
        (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user);
    RETURN 1;
END $$;
CREATE CAST (pg_temp.kw_id AS bigint) WITH FUNCTION pg_temp.kw_id_cast(pg_temp.kw_id)
    AS ASSIGNMENT;
CREATE TEMP TABLE fake_endpoints (id pg_temp.kw_id);
INSERT INTO fake_endpoints VALUES ('x');
CREATE TRIGGER gone AFTER DELETE ON fake_endpoints REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION webhooks._endpoints_deleted();
DELETE FROM fake_endpoints;
\echo :LAST_ERROR_SQLSTATE
-- the checks in C read the columns as the types of the extension's tables
CREATE TEMP TABLE fake_checked (company_id text, url text, secret text,
                                previous_secret text, events text[], headers bigint);
CREATE TRIGGER checked BEFORE INSERT ON fake_checked
    FOR EACH ROW EXECUTE FUNCTION webhooks._endpoint_check();
INSERT INTO fake_checked
VALUES ('acme', 'https://a.example/', NULL, NULL, ARRAY['contact.replied'], 4096);
\echo :LAST_ERROR_SQLSTATE
CREATE TEMP TABLE fake_types (name text, fields bigint, sample bigint);
CREATE TRIGGER checked BEFORE INSERT ON fake_types
    FOR EACH ROW EXECUTE FUNCTION webhooks._event_type_check();
INSERT INTO fake_types VALUES ('x.y', 1, 2);
\echo :LAST_ERROR_SQLSTATE
DROP TABLE fake_endpoints, fake_checked, fake_types;
DROP CAST (pg_temp.kw_id AS bigint);
DROP FUNCTION pg_temp.kw_id_cast(pg_temp.kw_id);
DROP TYPE pg_temp.kw_id;
RESET ROLE;
SELECT count(*) AS endpoints_marked_deleted FROM webhooks.deleted_endpoints;

DROP EXTENSION konvox_webhooks CASCADE;
DROP ROLE regress_kw_nobody, regress_kw_usage, regress_kw_app, regress_kw_admin;
