-- The webhook outbox: one row per finished run's delivery, leased by whichever replica delivers
-- it. `delivery_id` is the Idempotency-Key, the same on every attempt by every replica.
-- Every time is the database's now(). While a replica holds a delivery (`leased_by`,
-- `lease_until`), `next_attempt_at` is its lease's end: a lease that expires (the replica died
-- during the attempt) makes the row due again with no other change.
CREATE TABLE webhook_outbox (
    delivery_id     text PRIMARY KEY,
    payload         jsonb NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    leased_by       text,
    lease_until     timestamptz,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'delivered', 'failed')),
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz
);
-- What a replica leases next, and what /status counts: the pending rows only.
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_at, created_at)
    WHERE status = 'pending';
