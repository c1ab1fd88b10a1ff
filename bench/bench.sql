-- Helpers of make bench, in a schema of their own so that they outlive the
-- DROP EXTENSION konvox_webhooks that starts every case.

CREATE SCHEMA bench;

-- The plain INSERT that emit() is compared with.
CREATE TABLE bench.bare (data jsonb);

-- What the latency receiver logged: webhook-id and arrival (unix seconds).
CREATE TABLE bench.arrivals (webhook_id uuid, t double precision);

-- Seconds that one statement takes.  Run inside a transaction that is then
-- rolled back, so that no commit is timed and nothing is ever delivered.
CREATE FUNCTION bench.seconds(sql text)
RETURNS double precision
LANGUAGE plpgsql
AS $$
DECLARE
    t0 timestamptz := clock_timestamp();
BEGIN
    EXECUTE sql;
    RETURN extract(epoch FROM clock_timestamp() - t0);
END;
$$;

-- Wait until no delivery is pending, looking every 10 ms, each look in a
-- transaction of its own so that no snapshot is held in between.  done_at
-- is the time of the look that found none left (nothing is subtracted);
-- pending is what was left when timeout_s ran out, 0 otherwise.
CREATE PROCEDURE bench.wait_drained(timeout_s double precision,
                                    INOUT done_at timestamptz DEFAULT NULL,
                                    INOUT pending bigint DEFAULT NULL)
LANGUAGE plpgsql
AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + make_interval(secs => timeout_s);
BEGIN
    LOOP
        PERFORM FROM webhooks.deliveries WHERE status = 'pending' LIMIT 1;
        IF NOT FOUND THEN
            done_at := clock_timestamp();
            pending := 0;
            RETURN;
        END IF;
        IF clock_timestamp() > deadline THEN
            done_at := clock_timestamp();
            SELECT count(*) INTO pending
              FROM webhooks.deliveries WHERE status = 'pending';
            RETURN;
        END IF;
        COMMIT;
        PERFORM pg_sleep(0.01);
        COMMIT;
    END LOOP;
END;
$$;
