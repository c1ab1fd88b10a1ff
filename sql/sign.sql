--
-- sign: webhooks.sign() computes the Standard Webhooks v1 signature that
-- the worker sends in the webhook-signature header
--
CREATE EXTENSION konvox_webhooks;

-- the test vector of the Standard Webhooks specification
SELECT webhooks.sign('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
                     'msg_p5jXN8AQM9LWM0D4loKWxJek', 1614265330,
                     '{"test": 2432232314}') AS signature;
SELECT webhooks.sign('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
                     'msg_p5jXN8AQM9LWM0D4loKWxJek', 1614265330,
                     '{"test": 2432232314}')
       = 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=' AS matches_spec;

-- secrets taken in turn, each signature checked against one computed
-- elsewhere (Python's hmac): a signer that keeps keyed contexts must
-- never sign with the secret of another row
SELECT i, webhooks.sign(secret, 'msg_p5jXN8AQM9LWM0D4loKWxJek', 1614265330,
                        '{"test": 2432232314}') = expected AS matches
  FROM (VALUES (1, 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE='),
               (2, 'whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=', 'v1,O4Gjv1HqPqsMrjmczoggs/sWA8gZD0VyHG+fLh4+ktI='),
               (3, 'whsec_ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+f4CBgoOEhYaHiImKi4yNjo+QkZKTlJWWl5iZmpucnZ6foKGiow==', 'v1,dOfvwHGutCqTvIRpez5fVdoC6sJYW37FZx0BL2hhQok='),
               (4, 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE='),
               (5, 'whsec_ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+f4CBgoOEhYaHiImKi4yNjo+QkZKTlJWWl5iZmpucnZ6foKGiow==', 'v1,dOfvwHGutCqTvIRpez5fVdoC6sJYW37FZx0BL2hhQok='),
               (6, 'whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=', 'v1,O4Gjv1HqPqsMrjmczoggs/sWA8gZD0VyHG+fLh4+ktI='),
               (7, 'whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=', 'v1,O4Gjv1HqPqsMrjmczoggs/sWA8gZD0VyHG+fLh4+ktI='),
               (8, 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE='))
       AS v(i, secret, expected);

-- any change to the id, the timestamp or the body changes it
SELECT webhooks.sign('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
                     'msg_p5jXN8AQM9LWM0D4loKWxJeK', 1614265330,
                     '{"test": 2432232314}') AS other_id,
       webhooks.sign('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
                     'msg_p5jXN8AQM9LWM0D4loKWxJek', 1614265331,
                     '{"test": 2432232314}') AS other_ts,
       webhooks.sign('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
                     'msg_p5jXN8AQM9LWM0D4loKWxJek', 1614265330,
                     '{"test":2432232314}') AS other_body;

-- the body is signed as its UTF-8 bytes, with a uuid as the message id
SELECT webhooks.sign('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
                     '01890a5d-ac96-774b-bcce-b302099a8057', 1747751520,
                     '{"subject": "Grüße 🎉"}') AS utf8_body;

-- a generated secret signs too, and gives a signature of the same shape
SELECT webhooks.sign(webhooks.generate_secret(), 'msg_1', 0, '')
       ~ '^v1,[A-Za-z0-9+/]{43}=$' AS generated_secret_signs;

-- null in, null out
SELECT webhooks.sign(NULL, 'msg_1', 0, '{}') IS NULL AS null_secret,
       webhooks.sign('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_1', 0, NULL) IS NULL AS null_body;

-- a bad secret is an error
SELECT webhooks.sign('MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_1', 0, '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.sign('whsec_', 'msg_1', 0, '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.sign('whsec_c2hvcnQ=', 'msg_1', 0, '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT webhooks.sign('whsec_not base64 at all!', 'msg_1', 0, '{}');
\echo :LAST_ERROR_SQLSTATE

DROP EXTENSION konvox_webhooks CASCADE;
