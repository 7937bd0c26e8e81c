-- The tenant that owns a session (issue 17: docs/design/tenants.md): a listing by a tenant's key
-- is filtered in SQL. Sessions written before tenants are the default tenant's (or their meta's,
-- should it name one). Idempotent, should it have to be renumbered after a merge.
ALTER TABLE sessions ADD COLUMN IF NOT EXISTS tenant text NOT NULL DEFAULT 'default';
UPDATE sessions SET tenant = meta->>'tenant' WHERE jsonb_typeof(meta->'tenant') = 'string';
CREATE INDEX IF NOT EXISTS sessions_by_tenant ON sessions (tenant, updated_at DESC, session_id DESC);
