-- Per-key quotas across the cluster (gateway/cluster/keyquotas.py): a row per running run of an
-- API key with quotas (its place), and each key's runs_per_minute token bucket. Idempotent.
CREATE TABLE IF NOT EXISTS key_runs (
    place_id      text PRIMARY KEY,
    key_name      text NOT NULL,
    replica_id    text NOT NULL,
    replica_epoch bigint NOT NULL,
    taken_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS key_runs_by_key ON key_runs (key_name);
CREATE INDEX IF NOT EXISTS key_runs_by_replica ON key_runs (replica_id);

-- A key's bucket: `tokens` as they were at `stamp` (the database's clock); it refills at
-- runs_per_minute / 60 a second up to runs_per_minute.
CREATE TABLE IF NOT EXISTS key_buckets (
    key_name text PRIMARY KEY,
    tokens   double precision NOT NULL,
    stamp    timestamptz NOT NULL
);

-- Admission of one run of a key, in one statement (one round trip, its own transaction):
-- serialised per key by a transaction-level advisory lock (class 'cgwq', the key's hash), then
-- the fence (this replica still holds its epoch), the count against p_max, the bucket (FOR
-- UPDATE, the database's clock), and the place. A refusal changes nothing (a key's first
-- bucket is created full). outcome: 'taken' (active counts the new place), 'fenced',
-- 'concurrency' (active: the key's places), 'rate' (retry_after_s: until the next token).
CREATE OR REPLACE FUNCTION take_key_place(
    p_place text, p_key text, p_max integer, p_per_minute integer,
    p_replica text, p_epoch bigint,
    OUT outcome text, OUT active integer, OUT retry_after_s integer)
LANGUAGE plpgsql AS $$
DECLARE
    at    timestamptz;
    rate  double precision;
    level double precision;
BEGIN
    PERFORM pg_advisory_xact_lock(1667725169, hashtext(p_key));
    IF NOT EXISTS (SELECT 1 FROM replicas WHERE replica_id = p_replica AND epoch = p_epoch
                   AND state = 'alive') THEN
        outcome := 'fenced';
        RETURN;
    END IF;
    SELECT count(*) INTO active FROM key_runs WHERE key_name = p_key;
    IF p_max IS NOT NULL AND active >= p_max THEN
        outcome := 'concurrency';
        RETURN;
    END IF;
    IF p_per_minute IS NOT NULL THEN
        at := clock_timestamp();
        rate := p_per_minute / 60.0;
        INSERT INTO key_buckets (key_name, tokens, stamp) VALUES (p_key, p_per_minute, at)
            ON CONFLICT (key_name) DO NOTHING;
        SELECT least(p_per_minute::double precision,
                     tokens + greatest(0, extract(epoch FROM at - stamp)::double precision) * rate)
            INTO level FROM key_buckets WHERE key_name = p_key FOR UPDATE;
        IF level < 1 THEN
            outcome := 'rate';
            retry_after_s := greatest(1, ceil((1 - level) / rate));
            RETURN;
        END IF;
        UPDATE key_buckets SET tokens = level - 1, stamp = greatest(stamp, at)
            WHERE key_name = p_key;
    END IF;
    INSERT INTO key_runs (place_id, key_name, replica_id, replica_epoch)
        VALUES (p_place, p_key, p_replica, p_epoch);
    outcome := 'taken';
    active := active + 1;
END
$$;
