-- Replicas, sessions and run records: what every replica must agree on.
-- Every lease and due time is the database's now(), never a replica's clock.

-- A replica's epoch is its fencing token: it rises (from one sequence, so never reused) at every
-- registration and every reap. A replica writes only while its row still holds its epoch.
CREATE SEQUENCE replica_epochs;

CREATE TABLE replicas (
    replica_id   text PRIMARY KEY,
    epoch        bigint NOT NULL,
    grpc_addr    text NOT NULL,
    pid          integer,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    lease_until  timestamptz NOT NULL,
    lease_ms     integer NOT NULL,
    state        text NOT NULL CHECK (state IN ('alive', 'reaped', 'stopped'))
);

-- A session belongs to the replica that created it (its logs, workspace and codex thread live
-- there); `meta` is its meta.json as that replica last wrote it.
CREATE TABLE sessions (
    session_id       text PRIMARY KEY,
    codex_session_id text,
    home_replica     text NOT NULL,
    replica_epoch    bigint NOT NULL,
    secure           boolean NOT NULL,
    status           text NOT NULL,
    active_run_id    text,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    meta             jsonb NOT NULL
);
CREATE INDEX sessions_by_update ON sessions (updated_at DESC, session_id DESC);
CREATE INDEX sessions_by_thread ON sessions (codex_session_id, created_at)
    WHERE codex_session_id IS NOT NULL;
CREATE INDEX sessions_by_home ON sessions (home_replica) WHERE active_run_id IS NOT NULL;

CREATE TABLE runs (
    run_id              text PRIMARY KEY,
    session_id          text NOT NULL REFERENCES sessions ON DELETE CASCADE,
    replica_id          text NOT NULL,
    replica_epoch       bigint NOT NULL,
    status              text NOT NULL,
    source              text,
    agent_pid           integer,
    started_at          timestamptz,
    completed_at        timestamptz,
    cancel_requested_at timestamptz,
    record              jsonb NOT NULL
);
CREATE INDEX runs_by_session ON runs (session_id, started_at);
CREATE INDEX runs_running ON runs (replica_id) WHERE status = 'running';
