--
-- send_test: the "Send test" button - an event type's sample, to one
-- endpoint only, recorded like any other delivery
--
CREATE EXTENSION konvox_webhooks;

-- acme-1 and acme-2 share a company and an event, so a fan-out would show
SELECT count(*) AS created FROM (
    SELECT webhooks.create_endpoint('acme', 'https://a1.example/hooks',
                                    ARRAY['enrollment.completed', 'contact.replied'], 'acme-1')
    UNION ALL
    SELECT webhooks.create_endpoint('acme', 'https://a2.example/hooks',
                                    ARRAY['enrollment.completed', 'contact.replied'], 'acme-2')
    UNION ALL
    SELECT webhooks.create_endpoint('globex', 'https://g1.example/hooks',
                                    ARRAY['enrollment.completed'], 'globex-1')
) s;
SELECT id AS acme1 FROM webhooks.endpoints WHERE description = 'acme-1' \gset
SELECT id AS acme2 FROM webhooks.endpoints WHERE description = 'acme-2' \gset

-- every test delivery with its event: the sample as data, the endpoint's
-- company, that endpoint only
CREATE TEMP VIEW test_deliveries AS
SELECT d.id AS delivery_id, ep.description AS endpoint, e.event, e.company_id,
       e.data = t.sample AS sample_data, e.data, d.status, d.attempts,
       d.next_attempt_at IS NOT NULL AS due
  FROM webhooks.deliveries d
  JOIN webhooks.endpoints ep ON ep.id = d.endpoint_id
  JOIN webhooks.events e ON e.id = d.event_id
  JOIN webhooks.event_types t ON t.name = e.event;

-- no event given: the endpoint's first subscribed one
SELECT webhooks.send_test(:acme1) AS d1 \gset
SELECT :d1 = max(id) AS returns_delivery_id FROM webhooks.deliveries;
SELECT endpoint, event, company_id, sample_data, data, status, attempts, due
  FROM test_deliveries WHERE delivery_id = :d1;
SELECT count(*) AS events, (SELECT count(*) FROM webhooks.deliveries) AS deliveries
  FROM webhooks.events;

-- an event given: its sample, even if the endpoint is not subscribed to it
SELECT webhooks.send_test(:acme2, 'contact.replied') AS d2 \gset
SELECT endpoint, event, company_id, sample_data, data, status, attempts, due
  FROM test_deliveries WHERE delivery_id = :d2;
SELECT webhooks.send_test(:acme2, event => 'message.rejected') AS d3 \gset
SELECT endpoint, event, company_id, sample_data, data, status, attempts, due
  FROM test_deliveries WHERE delivery_id = :d3;
SELECT webhooks.send_test(id) IS NOT NULL AS sent
  FROM webhooks.endpoints WHERE description = 'globex-1';
SELECT endpoint, event, company_id, sample_data, status
  FROM test_deliveries ORDER BY delivery_id;
-- one event per test, each with exactly one delivery
SELECT count(*) AS events, (SELECT count(*) FROM webhooks.deliveries) AS deliveries
  FROM webhooks.events;

-- the sample of a user-defined type
INSERT INTO webhooks.event_types (name, fields, sample)
VALUES ('invoice.paid', '[{"name": "invoiceId", "type": "string", "required": true}]',
        '{"invoiceId": "inv_sample"}');
SELECT webhooks.send_test(:acme1, 'invoice.paid') AS d4 \gset
SELECT endpoint, event, company_id, sample_data, data, status
  FROM test_deliveries WHERE delivery_id = :d4;

-- send_test() is part of the caller's transaction
BEGIN;
SELECT webhooks.send_test(:acme1) IS NOT NULL AS sent;
ROLLBACK;
SELECT count(*) AS events, (SELECT count(*) FROM webhooks.deliveries) AS deliveries
  FROM webhooks.events;

--
-- errors, and nothing stored
--
SELECT webhooks.send_test(999999);
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.send_test(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.send_test(:acme1, 'contact.created');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS events, (SELECT count(*) FROM webhooks.deliveries) AS deliveries
  FROM webhooks.events;

-- an inactive endpoint gets no test either
UPDATE webhooks.endpoints SET active = false WHERE id = :acme1;
SELECT webhooks.send_test(:acme1);
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS deliveries FROM webhooks.deliveries WHERE endpoint_id = :acme1 AND status = 'pending';

DROP EXTENSION konvox_webhooks CASCADE;
