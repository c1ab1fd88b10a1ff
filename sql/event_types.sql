--
-- event_types: the six documented events with their fields and samples,
-- user-defined event types, and the validation of fields and samples
--
CREATE EXTENSION konvox_webhooks;

-- the documented events, each with a description
SELECT name, description <> '' AS described
  FROM webhooks.event_types
 ORDER BY name;

-- their data fields, in order: name, JSON type, required (false = nullable)
SELECT t.name AS event, f.ord,
       f.elem ->> 'name' AS field,
       f.elem ->> 'type' AS type,
       (f.elem -> 'required')::boolean AS required
  FROM webhooks.event_types t,
       jsonb_array_elements(t.fields) WITH ORDINALITY AS f(elem, ord)
 ORDER BY t.name, f.ord;

-- their samples, which send_test() sends
SELECT name, sample
  FROM webhooks.event_types
 ORDER BY name;

-- the samples of the reference, to the byte
SELECT sample = '{"contactId": "clxyz789", "channel": "email",
                  "subject": "Re: Quick question about your team",
                  "campaignId": "clcmp456", "enrollmentId": "clenr123"}'
       AS reference_sample
  FROM webhooks.event_types WHERE name = 'contact.replied';
SELECT sample = '{"enrollmentId": "clenr123", "contactId": "clxyz789",
                  "campaignId": "clcmp456", "reason": "opt_out_keyword"}'
       AS reference_sample
  FROM webhooks.event_types WHERE name = 'enrollment.unsubscribed';

-- every sample is data that emit() accepts for its event
BEGIN;
SELECT name, webhooks.emit(name, 'acme', sample) IS NOT NULL AS emitted
  FROM webhooks.event_types
 ORDER BY name;
ROLLBACK;

--
-- users add their own event types, with every JSON type
--
INSERT INTO webhooks.event_types (name, description, fields, sample) VALUES
('invoice.paid', 'An invoice was paid.',
 '[{"name": "invoiceId", "type": "string",  "required": true},
   {"name": "amount",    "type": "number",  "required": true},
   {"name": "paid",      "type": "boolean", "required": true},
   {"name": "lines",     "type": "array",   "required": false},
   {"name": "customer",  "type": "object",  "required": false}]',
 '{"invoiceId": "inv_1", "amount": 12.5, "paid": true,
   "lines": [{"sku": "A", "qty": 2}], "customer": {"id": "cu_1"}}');
-- no fields described: any object will do
INSERT INTO webhooks.event_types (name) VALUES ('ping');
SELECT name, description, jsonb_array_length(fields) AS fields, sample
  FROM webhooks.event_types
 WHERE name IN ('invoice.paid', 'ping')
 ORDER BY name;

-- a user type can be subscribed to and emitted, its types enforced
SELECT url, events
  FROM webhooks.create_endpoint('acme', 'https://example.com/hooks',
                                ARRAY['invoice.paid', 'ping']);
SELECT webhooks.emit('invoice.paid', 'acme',
                     '{"invoiceId": "inv_2", "amount": 3, "paid": false}')
       IS NOT NULL AS emitted;
SELECT webhooks.emit('invoice.paid', 'acme',
                     '{"invoiceId": "inv_3", "amount": 3, "paid": false,
                       "lines": null, "customer": null}') IS NOT NULL AS emitted;
SELECT webhooks.emit('ping', 'acme', '{}') IS NOT NULL AS emitted;
SELECT webhooks.emit('ping', 'acme', '{"anything": [1, 2]}') IS NOT NULL AS emitted;
SELECT e.event, e.data, count(d.id) AS deliveries
  FROM webhooks.events e LEFT JOIN webhooks.deliveries d ON d.event_id = e.id
 GROUP BY e.id ORDER BY e.event, e.data::text;
SELECT webhooks.emit('invoice.paid', 'acme',
                     '{"invoiceId": "inv_4", "amount": "3", "paid": false}');
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.emit('invoice.paid', 'acme',
                     '{"invoiceId": "inv_4", "amount": 3, "paid": "no"}');
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.emit('invoice.paid', 'acme',
                     '{"invoiceId": "inv_4", "amount": 3, "paid": true,
                       "lines": {"sku": "A"}}');
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.emit('invoice.paid', 'acme',
                     '{"invoiceId": "inv_4", "amount": 3, "paid": true,
                       "customer": ["cu_1"]}');
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.emit('invoice.paid', 'acme',
                     '{"invoiceId": 4, "amount": 3, "paid": true}');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS events FROM webhooks.events;

--
-- a malformed fields description is rejected, and nothing is stored
--
-- not an array
INSERT INTO webhooks.event_types (name, fields) VALUES ('bad.fields', '{}');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO webhooks.event_types (name, fields) VALUES ('bad.fields', '"contactId"');
\echo :LAST_ERROR_SQLSTATE
-- an element that is not an object
INSERT INTO webhooks.event_types (name, fields) VALUES ('bad.fields', '["contactId"]');
\echo :LAST_ERROR_SQLSTATE
-- no name, an empty name, a name that is not a string
INSERT INTO webhooks.event_types (name, fields) VALUES ('bad.fields',
  '[{"type": "string", "required": true}]');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO webhooks.event_types (name, fields) VALUES ('bad.fields',
  '[{"name": "", "type": "string", "required": true}]');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO webhooks.event_types (name, fields) VALUES ('bad.fields',
  '[{"name": 7, "type": "string", "required": true}]');
\echo :LAST_ERROR_SQLSTATE
-- an unknown type, a missing type
INSERT INTO webhooks.event_types (name, fields) VALUES ('bad.fields',
  '[{"name": "a", "type": "string", "required": true},
    {"name": "b", "type": "integer", "required": true}]');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO webhooks.event_types (name, fields) VALUES ('bad.fields',
  '[{"name": "a", "required": true}]');
\echo :LAST_ERROR_SQLSTATE
-- required missing, or not a boolean
INSERT INTO webhooks.event_types (name, fields) VALUES ('bad.fields',
  '[{"name": "a", "type": "string"}]');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO webhooks.event_types (name, fields) VALUES ('bad.fields',
  '[{"name": "a", "type": "string", "required": "yes"}]');
\echo :LAST_ERROR_SQLSTATE
-- the same field twice
INSERT INTO webhooks.event_types (name, fields, sample) VALUES ('bad.fields',
  '[{"name": "a", "type": "string", "required": true},
    {"name": "a", "type": "number", "required": false}]', '{"a": "x"}');
\echo :LAST_ERROR_SQLSTATE
-- null
INSERT INTO webhooks.event_types (name, fields) VALUES ('bad.fields', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS event_types FROM webhooks.event_types;

--
-- a sample that does not fit its fields is rejected, and nothing is stored
--
-- a required field missing
INSERT INTO webhooks.event_types (name, fields, sample) VALUES ('bad.sample',
  '[{"name": "a", "type": "string", "required": true}]', '{}');
\echo :LAST_ERROR_SQLSTATE
-- a required field null
INSERT INTO webhooks.event_types (name, fields, sample) VALUES ('bad.sample',
  '[{"name": "a", "type": "string", "required": true}]', '{"a": null}');
\echo :LAST_ERROR_SQLSTATE
-- a field of the wrong type
INSERT INTO webhooks.event_types (name, fields, sample) VALUES ('bad.sample',
  '[{"name": "a", "type": "string", "required": true},
    {"name": "b", "type": "boolean", "required": false}]', '{"a": "x", "b": 1}');
\echo :LAST_ERROR_SQLSTATE
-- not an object
INSERT INTO webhooks.event_types (name, fields, sample) VALUES ('bad.sample',
  '[]', '[{"a": "x"}]');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO webhooks.event_types (name, fields, sample) VALUES ('bad.sample',
  '[]', '"x"');
\echo :LAST_ERROR_SQLSTATE
-- null
INSERT INTO webhooks.event_types (name, fields, sample) VALUES ('bad.sample',
  '[]', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS event_types FROM webhooks.event_types;

-- an event type name must be non-empty, without spaces, at most 255 bytes
INSERT INTO webhooks.event_types (name) VALUES ('invoice paid');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO webhooks.event_types (name) VALUES ('');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO webhooks.event_types (name) VALUES (repeat('x', 256));
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS event_types FROM webhooks.event_types;

--
-- UPDATE is checked the same way, and leaves the row as it was
--
UPDATE webhooks.event_types SET sample = '{"contactId": "c1"}'
 WHERE name = 'contact.replied';
\echo :LAST_ERROR_SQLSTATE
-- a new required field that the existing sample lacks
UPDATE webhooks.event_types
   SET fields = fields || '[{"name": "score", "type": "number", "required": true}]'
 WHERE name = 'contact.replied';
\echo :LAST_ERROR_SQLSTATE
UPDATE webhooks.event_types SET fields = '[{"name": "a"}]' WHERE name = 'ping';
\echo :LAST_ERROR_SQLSTATE
SELECT jsonb_array_length(fields) AS fields, sample ->> 'channel' AS channel
  FROM webhooks.event_types WHERE name = 'contact.replied';
-- a consistent update is accepted
UPDATE webhooks.event_types
   SET fields = fields || '[{"name": "score", "type": "number", "required": true}]',
       sample = sample || '{"score": 0.9}'
 WHERE name = 'contact.replied';
SELECT jsonb_array_length(fields) AS fields, sample -> 'score' AS score
  FROM webhooks.event_types WHERE name = 'contact.replied';
-- and emit() then asks for the new field
SELECT webhooks.emit('contact.replied', 'acme',
                     '{"contactId": "c1", "channel": "email"}');
\echo :LAST_ERROR_SQLSTATE

DROP EXTENSION konvox_webhooks CASCADE;
