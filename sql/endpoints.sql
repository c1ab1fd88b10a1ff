--
-- endpoints: create_endpoint() and the checks that every endpoint row gets,
-- however it is written
--
CREATE EXTENSION konvox_webhooks;

-- create_endpoint() returns the new row with a generated secret: "whsec_"
-- and the base64 of 32 random bytes (never printed: it differs every run)
SELECT company_id, url, events, description, active,
       secret ~ '^whsec_[A-Za-z0-9+/]{43}=$' AS secret_ok,
       length(decode(substr(secret, 7), 'base64')) AS key_bytes,
       previous_secret IS NULL AS no_previous_secret,
       id IS NOT NULL AS has_id,
       created_at = now() AS created_now
  FROM webhooks.create_endpoint('acme', 'https://example.com/hooks/konvox',
                                ARRAY['contact.replied', 'enrollment.created'],
                                'CRM sync');
-- description is optional; http, ports, paths and queries are fine
SELECT company_id, url, events, description, active,
       secret ~ '^whsec_[A-Za-z0-9+/]{43}=$' AS secret_ok
  FROM webhooks.create_endpoint('acme', 'http://hooks.example.com:8080/in?src=konvox',
                                ARRAY['message.approved']);
SELECT company_id, url, events,
       secret ~ '^whsec_[A-Za-z0-9+/]{43}=$' AS secret_ok
  FROM webhooks.create_endpoint('globex', 'https://globex.example/webhooks',
                                ARRAY['enrollment.unsubscribed', 'enrollment.completed',
                                      'message.rejected']);
-- what was stored is what was returned, each with its own secret
SELECT company_id, url, events, description, active,
       secret ~ '^whsec_[A-Za-z0-9+/]{43}=$' AS secret_ok
  FROM webhooks.endpoints ORDER BY id;
SELECT count(DISTINCT secret) AS distinct_secrets, count(DISTINCT id) AS distinct_ids
  FROM webhooks.endpoints;

--
-- invalid urls are rejected, and nothing is stored
--
-- not http or https
SELECT webhooks.create_endpoint('acme', 'ftp://example.com/hooks', ARRAY['contact.replied']);
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.create_endpoint('acme', 'javascript:alert(1)', ARRAY['contact.replied']);
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.create_endpoint('acme', 'file:///etc/passwd', ARRAY['contact.replied']);
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.create_endpoint('acme', 'gopher://example.com/', ARRAY['contact.replied']);
\echo :LAST_ERROR_SQLSTATE
-- unparseable: no scheme, a broken IPv6 literal, a bad port
SELECT webhooks.create_endpoint('acme', 'example.com/hooks', ARRAY['contact.replied']);
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.create_endpoint('acme', 'https://[::1/hooks', ARRAY['contact.replied']);
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.create_endpoint('acme', 'https://example.com:99999/', ARRAY['contact.replied']);
\echo :LAST_ERROR_SQLSTATE
-- no host
SELECT webhooks.create_endpoint('acme', 'https://', ARRAY['contact.replied']);
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.create_endpoint('acme', 'https://:8080/hooks', ARRAY['contact.replied']);
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.create_endpoint('acme', 'https://?x=1', ARRAY['contact.replied']);
\echo :LAST_ERROR_SQLSTATE
-- spaces and control characters, anywhere
SELECT webhooks.create_endpoint('acme', 'https://exa mple.com/', ARRAY['contact.replied']);
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.create_endpoint('acme', ' https://example.com/', ARRAY['contact.replied']);
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.create_endpoint('acme', E'https://example.com/\n', ARRAY['contact.replied']);
\echo :LAST_ERROR_SQLSTATE
-- credentials
SELECT webhooks.create_endpoint('acme', 'http://user:pw@example.com/', ARRAY['contact.replied']);
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.create_endpoint('acme', 'https://user@example.com/', ARRAY['contact.replied']);
\echo :LAST_ERROR_SQLSTATE
-- empty, null
SELECT webhooks.create_endpoint('acme', '', ARRAY['contact.replied']);
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.create_endpoint('acme', NULL, ARRAY['contact.replied']);
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS endpoints FROM webhooks.endpoints;

--
-- company_id must not be empty
--
SELECT webhooks.create_endpoint('', 'https://example.com/hooks', ARRAY['contact.replied']);
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.create_endpoint(E' \t', 'https://example.com/hooks', ARRAY['contact.replied']);
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.create_endpoint(NULL, 'https://example.com/hooks', ARRAY['contact.replied']);
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.create_endpoint(repeat('c', 256), 'https://example.com/hooks', ARRAY['contact.replied']);
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS endpoints FROM webhooks.endpoints;

--
-- events: at least one, no nulls, only known event types
--
SELECT webhooks.create_endpoint('acme', 'https://example.com/hooks', ARRAY[]::text[]);
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.create_endpoint('acme', 'https://example.com/hooks', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.create_endpoint('acme', 'https://example.com/hooks', ARRAY[NULL]::text[]);
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.create_endpoint('acme', 'https://example.com/hooks',
                                ARRAY['contact.replied', NULL]);
\echo :LAST_ERROR_SQLSTATE
-- the hint lists the known event types
SELECT webhooks.create_endpoint('acme', 'https://example.com/hooks',
                                ARRAY['contact.replied', 'contact.created']);
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.create_endpoint('acme', 'https://example.com/hooks',
                                ARRAY['nope', 'Contact.Replied']);
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS endpoints FROM webhooks.endpoints;

--
-- a direct INSERT is checked the same way
--
INSERT INTO webhooks.endpoints (company_id, url, events)
VALUES ('acme', 'ftp://example.com/hooks', ARRAY['contact.replied']);
\echo :LAST_ERROR_SQLSTATE
INSERT INTO webhooks.endpoints (company_id, url, events)
VALUES ('acme', 'https://user:pw@example.com/', ARRAY['contact.replied']);
\echo :LAST_ERROR_SQLSTATE
INSERT INTO webhooks.endpoints (company_id, url, events)
VALUES ('', 'https://example.com/hooks', ARRAY['contact.replied']);
\echo :LAST_ERROR_SQLSTATE
INSERT INTO webhooks.endpoints (company_id, url, events)
VALUES ('acme', 'https://example.com/hooks', '{}');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO webhooks.endpoints (company_id, url, events)
VALUES ('acme', 'https://example.com/hooks', ARRAY['contact.replied', 'nope']);
\echo :LAST_ERROR_SQLSTATE
-- one bad row in a multi-row INSERT stores none of them
INSERT INTO webhooks.endpoints (company_id, url, events)
VALUES ('acme', 'https://one.example/hooks', ARRAY['contact.replied']),
       ('acme', 'mailto:hooks@example.com', ARRAY['contact.replied']);
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS endpoints FROM webhooks.endpoints;

--
-- a user-supplied secret must be whsec_ and the base64 of 24 to 64 bytes
--
-- not whsec_
INSERT INTO webhooks.endpoints (company_id, url, events, secret)
VALUES ('acme', 'https://example.com/hooks', ARRAY['contact.replied'],
        'MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw');
\echo :LAST_ERROR_SQLSTATE
-- not base64
INSERT INTO webhooks.endpoints (company_id, url, events, secret)
VALUES ('acme', 'https://example.com/hooks', ARRAY['contact.replied'],
        'whsec_!!!!MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw');
\echo :LAST_ERROR_SQLSTATE
-- empty, too short (16 bytes), too long (65 bytes)
INSERT INTO webhooks.endpoints (company_id, url, events, secret)
VALUES ('acme', 'https://example.com/hooks', ARRAY['contact.replied'], 'whsec_');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO webhooks.endpoints (company_id, url, events, secret)
VALUES ('acme', 'https://example.com/hooks', ARRAY['contact.replied'],
        'whsec_' || encode(decode(repeat('ab', 16), 'hex'), 'base64'));
\echo :LAST_ERROR_SQLSTATE
INSERT INTO webhooks.endpoints (company_id, url, events, secret)
VALUES ('acme', 'https://example.com/hooks', ARRAY['contact.replied'],
        'whsec_' || replace(encode(decode(repeat('ab', 65), 'hex'), 'base64'), E'\n', ''));
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS endpoints FROM webhooks.endpoints;
-- a good one, 24 bytes (the Standard Webhooks test key) or 64, is kept as given
INSERT INTO webhooks.endpoints (company_id, url, events, secret, description)
VALUES ('initech', 'https://initech.example/hooks', ARRAY['contact.replied'],
        'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'given secret'),
       ('initech', 'https://initech.example/hooks2', ARRAY['contact.replied'],
        'whsec_' || replace(encode(decode(repeat('ab', 64), 'hex'), 'base64'), E'\n', ''),
        'long secret');
SELECT description, secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw' AS test_key,
       length(decode(substr(secret, 7), 'base64')) AS key_bytes
  FROM webhooks.endpoints WHERE company_id = 'initech' ORDER BY id;
SELECT count(*) AS endpoints FROM webhooks.endpoints;

--
-- UPDATE is checked the same way, and leaves the row as it was
--
UPDATE webhooks.endpoints SET url = 'javascript:alert(1)' WHERE company_id = 'globex';
\echo :LAST_ERROR_SQLSTATE
UPDATE webhooks.endpoints SET url = 'https://globex.example/ webhooks' WHERE company_id = 'globex';
\echo :LAST_ERROR_SQLSTATE
UPDATE webhooks.endpoints SET company_id = '' WHERE company_id = 'globex';
\echo :LAST_ERROR_SQLSTATE
UPDATE webhooks.endpoints SET events = '{}' WHERE company_id = 'globex';
\echo :LAST_ERROR_SQLSTATE
UPDATE webhooks.endpoints SET events = events || 'invoice.paid'::text WHERE company_id = 'globex';
\echo :LAST_ERROR_SQLSTATE
UPDATE webhooks.endpoints SET events = events || NULL::text WHERE company_id = 'globex';
\echo :LAST_ERROR_SQLSTATE
UPDATE webhooks.endpoints SET secret = 'whsec_short' WHERE company_id = 'globex';
\echo :LAST_ERROR_SQLSTATE
-- one bad row fails the whole UPDATE
UPDATE webhooks.endpoints
   SET url = CASE WHEN company_id = 'globex' THEN 'ftp://globex.example/' ELSE url || 'x' END;
\echo :LAST_ERROR_SQLSTATE
SELECT company_id, url, events, secret ~ '^whsec_[A-Za-z0-9+/]{43}=$' AS secret_ok
  FROM webhooks.endpoints WHERE company_id IN ('acme', 'globex') ORDER BY id;
-- good updates go through
UPDATE webhooks.endpoints
   SET url = 'https://globex.example/v2/webhooks',
       events = ARRAY['enrollment.completed'],
       description = 'v2'
 WHERE company_id = 'globex';
UPDATE webhooks.endpoints SET secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'
 WHERE company_id = 'globex';
SELECT company_id, url, events, description,
       secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw' AS new_secret
  FROM webhooks.endpoints WHERE company_id = 'globex';
-- a new event type can be subscribed to once it exists
INSERT INTO webhooks.event_types (name) VALUES ('invoice.paid');
UPDATE webhooks.endpoints SET events = events || 'invoice.paid'::text WHERE company_id = 'globex';
SELECT events FROM webhooks.endpoints WHERE company_id = 'globex';
SELECT count(*) AS endpoints FROM webhooks.endpoints;

-- an event type that endpoints subscribe to cannot be deleted or renamed
DELETE FROM webhooks.event_types WHERE name = 'invoice.paid';
\echo :LAST_ERROR_SQLSTATE
UPDATE webhooks.event_types SET name = 'invoice.settled' WHERE name = 'invoice.paid';
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS still_there FROM webhooks.event_types WHERE name = 'invoice.paid';
-- once no endpoint uses it, it can go
UPDATE webhooks.endpoints SET events = array_remove(events, 'invoice.paid') WHERE company_id = 'globex';
DELETE FROM webhooks.event_types WHERE name = 'invoice.paid';
SELECT count(*) AS gone FROM webhooks.event_types WHERE name = 'invoice.paid';

-- a scheme followed by fewer or more than two slashes has no host
SELECT webhooks.create_endpoint('acme', 'http:///path', ARRAY['contact.replied']);
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.create_endpoint('acme', 'http:/x', ARRAY['contact.replied']);
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS endpoints FROM webhooks.endpoints;

-- an endpoint cannot move to another company: its history belongs to the first
UPDATE webhooks.endpoints SET company_id = 'initech' WHERE company_id = 'globex';
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS still_globex FROM webhooks.endpoints WHERE company_id = 'globex';

DROP EXTENSION konvox_webhooks CASCADE;
