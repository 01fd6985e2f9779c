-- Every tool call with its one outcome, kept with its turn (listed by ListTurns) and put back
-- into history when the session is resumed.
CREATE TABLE tool_calls (
    session_id uuid NOT NULL REFERENCES conversation_sessions (id) ON DELETE CASCADE,
    call_id text NOT NULL,
    tenant_id text NOT NULL REFERENCES tenants (id),
    turn_index integer NOT NULL,
    name text NOT NULL,
    arguments text NOT NULL,
    outcome text NOT NULL CHECK (outcome IN ('completed', 'failed', 'timed_out', 'cancelled')),
    output text NOT NULL DEFAULT '',
    error text NOT NULL DEFAULT '',
    reason text NOT NULL DEFAULT '',
    duration_ms integer NOT NULL,  -- -1: it never ran
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, call_id)  -- also the idempotency key of the writer
);
CREATE INDEX tool_calls_turn ON tool_calls (session_id, turn_index, created_at);
