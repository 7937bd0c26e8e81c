-- The tenant that owns a session (issue 17: docs/design/tenants.md): a listing by a tenant's key
-- is filtered in SQL. Sessions written before tenants are the default tenant's.
ALTER TABLE sessions ADD COLUMN tenant text NOT NULL DEFAULT 'default';
UPDATE sessions SET tenant = meta->>'tenant' WHERE jsonb_typeof(meta->'tenant') = 'string';
CREATE INDEX sessions_by_tenant ON sessions (tenant, updated_at DESC, session_id DESC);
