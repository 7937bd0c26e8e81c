-- Triggers defined through the trigger API, shared by every replica, and the ledger of fires.
-- Every due time is the database's now(), never a replica's clock.

-- One row per trigger defined through the API. `scope` is the trigger file the request named,
-- relative to the trigger folder ("triggers.json" for the default file), so every replica
-- names it alike. `entry` is the trigger's definition as the API shows it, without the
-- gateway's bookkeeping, which lives in its own columns (a fire never changes the definition,
-- so it never re-arms the trigger). `version` rises at every edit: an edit writes only over the
-- version it read. Ids are unique in the cluster: a fire's key is the trigger's id.
CREATE TABLE triggers (
    trigger_id      text PRIMARY KEY,
    scope           text NOT NULL,
    ordinal         bigint GENERATED ALWAYS AS IDENTITY,
    entry           jsonb NOT NULL,
    enabled         boolean NOT NULL,
    next_fire_at    timestamptz,
    version         bigint NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    last_attempt_at timestamptz,
    last_fired      timestamptz,
    last_status     text,
    last_error      text,
    -- The session the trigger's runs continue, and its home replica (the one that ran it).
    session_id      text,
    session_home    text
);
CREATE INDEX triggers_by_scope ON triggers (scope, ordinal);

-- One row per scheduled instant that fired, whoever defined the trigger (the API or a file):
-- every replica claims a due instant with INSERT ... ON CONFLICT DO NOTHING, and the key makes
-- a second fire of an instant impossible. The claimer runs it; `status` follows its run.
CREATE TABLE trigger_fires (
    trigger_id    text NOT NULL,
    scheduled_for timestamptz NOT NULL,
    status        text NOT NULL
                  CHECK (status IN ('running', 'completed', 'error', 'interrupted')),
    replica_id    text NOT NULL,
    replica_epoch bigint NOT NULL,
    run_id        text,
    session_id    text,
    fired_at      timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    error         text,
    PRIMARY KEY (trigger_id, scheduled_for)
);
CREATE INDEX trigger_fires_running ON trigger_fires (replica_id) WHERE status = 'running';
