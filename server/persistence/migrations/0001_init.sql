-- Customers, sessions, turns and per-turn metrics.
CREATE TABLE customers (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    external_id text NOT NULL UNIQUE,
    name text,
    email text,
    phone text,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE conversation_sessions (
    id uuid PRIMARY KEY,
    customer_id uuid REFERENCES customers (id),
    state text NOT NULL DEFAULT 'started'
        CHECK (state IN ('started', 'listening', 'thinking', 'speaking', 'ended', 'disconnected')),
    instructions text NOT NULL DEFAULT '',
    voice text,
    config jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    ended_at timestamptz,
    end_reason text
);
-- ListSessions: newest first, optionally for one customer, keyset-paged on (created_at, id).
CREATE INDEX conversation_sessions_created ON conversation_sessions (created_at DESC, id DESC);
CREATE INDEX conversation_sessions_customer
    ON conversation_sessions (customer_id, created_at DESC, id DESC);

CREATE TABLE turns (
    session_id uuid NOT NULL REFERENCES conversation_sessions (id) ON DELETE CASCADE,
    turn_index integer NOT NULL,
    role text NOT NULL CHECK (role IN ('user', 'agent')),
    text text NOT NULL,
    spoken_text text,
    interrupted boolean NOT NULL DEFAULT false,
    start_offset_ms integer,
    end_offset_ms integer,
    audio_ms integer,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, turn_index, role)  -- also the idempotency key of the writer
);

CREATE TABLE turn_metrics (
    session_id uuid NOT NULL REFERENCES conversation_sessions (id) ON DELETE CASCADE,
    turn_index integer NOT NULL,
    vad_stop_to_transcript_ms integer,
    llm_first_token_ms integer,
    tts_first_byte_ms integer,
    end_of_speech_to_first_audio_ms integer,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, turn_index)
);
