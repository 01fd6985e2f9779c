-- Tenants, their API keys and limits; every customer, session, turn and metric row carries
-- its tenant. Rows that existed before move to the tenant "default".
CREATE TABLE tenants (
    id text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    -- Limits; NULL = the server's default (TENANT_MAX_SESSIONS, ...).
    max_sessions integer CHECK (max_sessions > 0),
    starts_per_minute integer CHECK (starts_per_minute > 0),
    max_session_s integer CHECK (max_session_s > 0),
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO tenants (id) VALUES ('default');

-- A key is "<prefix>_<id>_<secret>"; only the SHA-256 of the secret (256 random bits) is kept.
CREATE TABLE api_keys (
    id text PRIMARY KEY,
    tenant_id text NOT NULL REFERENCES tenants (id),
    secret_sha256 bytea NOT NULL,
    name text NOT NULL DEFAULT '',
    admin boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, created_at);

-- The key that signs client tokens, shared by every process on this database.
CREATE TABLE auth_secrets (
    name text PRIMARY KEY,
    secret bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE customers ADD COLUMN tenant_id text NOT NULL DEFAULT 'default' REFERENCES tenants (id);
ALTER TABLE customers DROP CONSTRAINT customers_external_id_key;
ALTER TABLE customers ADD CONSTRAINT customers_tenant_external UNIQUE (tenant_id, external_id);
ALTER TABLE customers ALTER COLUMN tenant_id DROP DEFAULT;

ALTER TABLE conversation_sessions
    ADD COLUMN tenant_id text NOT NULL DEFAULT 'default' REFERENCES tenants (id);
ALTER TABLE conversation_sessions ALTER COLUMN tenant_id DROP DEFAULT;
DROP INDEX conversation_sessions_created;
CREATE INDEX conversation_sessions_tenant_created
    ON conversation_sessions (tenant_id, created_at DESC, id DESC);

ALTER TABLE turns ADD COLUMN tenant_id text NOT NULL DEFAULT 'default';
ALTER TABLE turns ALTER COLUMN tenant_id DROP DEFAULT;
ALTER TABLE turn_metrics ADD COLUMN tenant_id text NOT NULL DEFAULT 'default';
ALTER TABLE turn_metrics ALTER COLUMN tenant_id DROP DEFAULT;
