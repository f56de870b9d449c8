-- Idempotent posting (a bridge's event id, a bot's retry key) and the Matrix bridge's own
-- mapping tables. The bridge reads and writes only the matrix_* tables directly.

ALTER TABLE messages ADD COLUMN external_ref TEXT;
CREATE UNIQUE INDEX messages_external_ref ON messages (external_ref);

CREATE TABLE matrix_rooms (
    room_id TEXT PRIMARY KEY,
    matrix_room_id TEXT NOT NULL UNIQUE,
    alias TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE matrix_members (
    matrix_room_id TEXT NOT NULL,
    mxid TEXT NOT NULL,
    PRIMARY KEY (matrix_room_id, mxid)
);

CREATE TABLE matrix_puppets (
    mxid TEXT PRIMARY KEY,
    display_name TEXT,
    registered_at BIGINT NOT NULL
);

CREATE TABLE matrix_events (
    matrix_event_id TEXT PRIMARY KEY,
    matrix_room_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    weft_ref TEXT NOT NULL,
    direction TEXT NOT NULL
);
CREATE INDEX matrix_events_weft ON matrix_events (weft_ref, kind);

CREATE TABLE matrix_transactions (
    txn_id TEXT PRIMARY KEY,
    received_at BIGINT NOT NULL
);

CREATE TABLE matrix_cursor (
    id BIGINT PRIMARY KEY,
    last_seq BIGINT NOT NULL
);

CREATE TABLE matrix_failures (
    event_seq BIGINT NOT NULL,
    room_id TEXT,
    error TEXT NOT NULL,
    at BIGINT NOT NULL
);
