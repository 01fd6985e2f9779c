-- The control plane (server/cluster, docs/cluster.md): which server process owns each live
-- session. A lease is renewed by its owner's heartbeat; one whose expires_at has passed is
-- nobody's (its owner died) and may be claimed by any process. Released leases are deleted.
CREATE TABLE session_leases (
    session_id text PRIMARY KEY,
    tenant_id text NOT NULL,
    owner_id text NOT NULL,
    edge text NOT NULL DEFAULT '',
    -- What the owner's edge shows about the stream (GET /ws/status, GET /webrtc/calls),
    -- refreshed by the heartbeat.
    detail jsonb NOT NULL DEFAULT '{}',
    claimed_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX session_leases_tenant ON session_leases (tenant_id, expires_at);
CREATE INDEX session_leases_owner ON session_leases (owner_id);

-- Session starts of the last minute, per tenant: the cluster-wide starts-per-minute limit.
CREATE TABLE session_starts (
    tenant_id text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX session_starts_tenant ON session_starts (tenant_id, started_at);
