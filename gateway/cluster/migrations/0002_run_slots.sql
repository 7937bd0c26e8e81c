-- Run slots: CODEX_GATEWAY_CLUSTER_MAX_CONCURRENT rows, one per run that may run at once across
-- the cluster. A run claims a free row (FOR UPDATE SKIP LOCKED) and frees it when it ends; the
-- reaper frees the rows of a dead replica (those of an epoch older than the replica's current).
CREATE TABLE run_slots (
    slot          integer PRIMARY KEY CHECK (slot > 0),
    run_id        text UNIQUE,
    replica_id    text,
    replica_epoch bigint,
    claimed_at    timestamptz,
    CHECK ((run_id IS NULL) = (replica_id IS NULL AND replica_epoch IS NULL AND claimed_at IS NULL))
);
CREATE INDEX run_slots_by_replica ON run_slots (replica_id) WHERE run_id IS NOT NULL;

-- The number of slots, as the replica that started last with a cluster-wide limit set it. Rows
-- above it are removed as soon as they are free.
CREATE TABLE run_slots_size (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    maximum    integer NOT NULL CHECK (maximum > 0),
    set_by     text NOT NULL,
    set_at     timestamptz NOT NULL DEFAULT now()
);
