--
-- headers: an endpoint's own headers, set by create_endpoint() and
-- set_headers(), checked on every write of the row; no message shows a
-- value, as values are credentials
--
CREATE EXTENSION konvox_webhooks;
\set VERBOSITY default

-- none by default
SELECT company_id, headers
  FROM webhooks.create_endpoint('acme', 'https://a.example/hooks', ARRAY['contact.replied']);
-- given to create_endpoint(), by name, with or without a description
SELECT company_id, description, headers
  FROM webhooks.create_endpoint('acme', 'https://b.example/hooks', ARRAY['contact.replied'],
                                headers => '{"Authorization": "Bearer tok-1", "X-Api-Key": "k1"}');
SELECT company_id, description, headers
  FROM webhooks.create_endpoint('acme', 'https://c.example/hooks', ARRAY['contact.replied'],
                                'CRM', '{"X-Tenant": "acme"}');
-- an explicit NULL is none
SELECT headers FROM webhooks.create_endpoint('acme', 'https://d.example/hooks',
                                             ARRAY['contact.replied'], headers => NULL);
SELECT id AS ep FROM webhooks.endpoints WHERE url = 'https://b.example/hooks' \gset

-- set_headers() replaces them; '{}' removes them
SELECT webhooks.set_headers(:ep, '{"Authorization": "Bearer tok-2"}');
SELECT headers FROM webhooks.endpoints WHERE id = :ep;
SELECT webhooks.set_headers(:ep, '{}');
SELECT headers FROM webhooks.endpoints WHERE id = :ep;
SELECT webhooks.set_headers(:ep, '{"Authorization": "Bearer tok-3"}');
SELECT webhooks.set_headers(-1, '{}');
\echo :LAST_ERROR_SQLSTATE

-- the limits: 20 headers of 8 kB in all are fine
SELECT webhooks.set_headers(:ep, (SELECT jsonb_object_agg('X-H' || i, repeat('v', 400))
                                    FROM generate_series(1, 20) i));
SELECT count(*) AS headers FROM webhooks.endpoints, jsonb_object_keys(headers) WHERE id = :ep;
SELECT webhooks.set_headers(:ep, '{"Authorization": "Bearer tok-3"}');

--
-- refused, with a clear error that never shows the value; nothing changes
--
-- the names the engine sets, whatever their case
SELECT webhooks.set_headers(:ep, '{"Content-Type": "text/plain"}');
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.set_headers(:ep, '{"content-length": "1"}');
SELECT webhooks.set_headers(:ep, '{"HOST": "evil.example"}');
SELECT webhooks.set_headers(:ep, '{"Webhook-Id": "x"}');
SELECT webhooks.set_headers(:ep, '{"webhook-timestamp": "0"}');
SELECT webhooks.set_headers(:ep, '{"WEBHOOK-SIGNATURE": "v1,x"}');
SELECT webhooks.set_headers(:ep, '{"Transfer-Encoding": "chunked"}');
SELECT webhooks.set_headers(:ep, '{"connection": "close"}');
-- line breaks and other control characters in a value: the header is named,
-- its value is not shown
SELECT webhooks.set_headers(:ep, E'{"X-Api-Key": "secret-1\\r\\nX-Injected: yes"}');
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.set_headers(:ep, E'{"X-Api-Key": "secret-2\\n"}');
SELECT webhooks.set_headers(:ep, E'{"X-Api-Key": "secret-3\\r"}');
SELECT webhooks.set_headers(:ep, E'{"X-Api-Key": "secret-4\\u0001"}');
-- jsonb itself refuses a NUL (PostgreSQL's own error, which quotes the input)
\set VERBOSITY terse
SELECT webhooks.set_headers(:ep, E'{"X-Api-Key": "secret-5\\u0000"}');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
-- names that are not HTTP tokens: not shown either, as a name may be a
-- whole "Authorization: Bearer ..." line
SELECT webhooks.set_headers(:ep, '{"Authorization: Bearer secret-6": "x"}');
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.set_headers(:ep, '{"X Api Key": "x"}');
SELECT webhooks.set_headers(:ep, E'{"X-Key\\n": "x"}');
SELECT webhooks.set_headers(:ep, '{"X-Ключ": "x"}');
SELECT webhooks.set_headers(:ep, '{"": "x"}');
-- values that are not strings, or empty
SELECT webhooks.set_headers(:ep, '{"X-Retries": 3}');
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.set_headers(:ep, '{"X-Api-Key": null}');
SELECT webhooks.set_headers(:ep, '{"X-Api-Key": {"a": "b"}}');
SELECT webhooks.set_headers(:ep, '{"X-Api-Key": ""}');
-- one header twice, in two cases
SELECT webhooks.set_headers(:ep, '{"X-Api-Key": "secret-7", "x-api-key": "secret-8"}');
\echo :LAST_ERROR_SQLSTATE
-- not an object, null
SELECT webhooks.set_headers(:ep, '[["X-Api-Key", "secret-9"]]');
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.set_headers(:ep, '"X-Api-Key: secret-10"');
SELECT webhooks.set_headers(:ep, NULL);
\echo :LAST_ERROR_SQLSTATE
-- too many, too large
SELECT webhooks.set_headers(:ep, (SELECT jsonb_object_agg('X-H' || i, 'v')
                                    FROM generate_series(1, 21) i));
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.set_headers(:ep, (SELECT jsonb_object_agg('X-H' || i, repeat('v', 410))
                                    FROM generate_series(1, 20) i));
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.set_headers(:ep, jsonb_build_object('Authorization', repeat('s', 8200)));
-- the same checks for create_endpoint(), and for rows written by hand
SELECT webhooks.create_endpoint('acme', 'https://e.example/hooks', ARRAY['contact.replied'],
                                headers => E'{"X-Api-Key": "secret-11\\r\\n"}');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO webhooks.endpoints (company_id, url, events, headers)
VALUES ('acme', 'https://e.example/hooks', ARRAY['contact.replied'], '{"Host": "x"}');
\echo :LAST_ERROR_SQLSTATE
UPDATE webhooks.endpoints SET headers = '{"X-Api-Key": "secret-12\r"}'::jsonb || headers;
\echo :LAST_ERROR_SQLSTATE
UPDATE webhooks.endpoints SET headers = NULL WHERE id = :ep;
\echo :LAST_ERROR_SQLSTATE

-- nothing was stored by any of them
SELECT url, headers FROM webhooks.endpoints ORDER BY id;

-- a header's value is in no view
SELECT c.relname AS view_showing_headers
  FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
 WHERE c.relnamespace = 'webhooks'::regnamespace AND c.relkind = 'v'
   AND a.attname = 'headers';

DROP EXTENSION konvox_webhooks;
