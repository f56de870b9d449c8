-- The Matrix bridge's own tables: which Matrix room is which weft room, which puppets exist
-- and where they joined, which Matrix event is which weft message or reaction, which
-- transactions were applied, how far the sender has read the log, and what failed.
-- `IF NOT EXISTS`: databases from before the bridge kept its own schema have them already.

CREATE TABLE IF NOT EXISTS matrix_rooms (
    room_id TEXT PRIMARY KEY,
    matrix_room_id TEXT NOT NULL UNIQUE,
    alias TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS matrix_members (
    matrix_room_id TEXT NOT NULL,
    mxid TEXT NOT NULL,
    PRIMARY KEY (matrix_room_id, mxid)
);

CREATE TABLE IF NOT EXISTS matrix_puppets (
    mxid TEXT PRIMARY KEY,
    display_name TEXT,
    registered_at BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS matrix_events (
    matrix_event_id TEXT PRIMARY KEY,
    matrix_room_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    weft_ref TEXT NOT NULL,
    direction TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS matrix_events_weft ON matrix_events (weft_ref, kind);

CREATE TABLE IF NOT EXISTS matrix_transactions (
    txn_id TEXT PRIMARY KEY,
    received_at BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS matrix_cursor (
    id BIGINT PRIMARY KEY,
    last_seq BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS matrix_failures (
    event_seq BIGINT NOT NULL,
    room_id TEXT,
    error TEXT NOT NULL,
    at BIGINT NOT NULL
);
