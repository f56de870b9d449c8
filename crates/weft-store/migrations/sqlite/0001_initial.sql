-- Weft's schema on SQLite. Integers are BIGINT and booleans 0/1 so that the same queries run
-- on PostgreSQL; ids are 24-hex TEXT.

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    username_lower TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    avatar_url TEXT,
    site_admin BIGINT NOT NULL DEFAULT 0,
    password_hash TEXT,
    created_at BIGINT NOT NULL
);

CREATE TABLE virtual_users (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    external_id TEXT NOT NULL,
    display_name TEXT NOT NULL,
    avatar_url TEXT,
    UNIQUE (kind, external_id)
);

CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    name TEXT NOT NULL,
    secret_hash TEXT NOT NULL UNIQUE,
    bridge BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);
CREATE INDEX tokens_user ON tokens (user_id);

CREATE TABLE communities (
    id TEXT PRIMARY KEY,
    uri TEXT NOT NULL,
    uri_lower TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    avatar_url TEXT,
    created_at BIGINT NOT NULL
);

CREATE TABLE community_admins (
    community_id TEXT NOT NULL REFERENCES communities (id),
    user_id TEXT NOT NULL REFERENCES users (id),
    PRIMARY KEY (community_id, user_id)
);

CREATE TABLE rooms (
    id TEXT PRIMARY KEY,
    community_id TEXT REFERENCES communities (id),
    uri TEXT,
    uri_lower TEXT UNIQUE,
    one_to_one_key TEXT UNIQUE,
    name TEXT NOT NULL,
    topic TEXT NOT NULL DEFAULT '',
    kind TEXT NOT NULL,
    avatar_url TEXT,
    noindex BIGINT NOT NULL DEFAULT 0,
    member_count BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);
CREATE INDEX rooms_community ON rooms (community_id);

CREATE TABLE memberships (
    room_id TEXT NOT NULL REFERENCES rooms (id),
    user_id TEXT NOT NULL REFERENCES users (id),
    role TEXT NOT NULL,
    last_read_seq BIGINT NOT NULL DEFAULT 0,
    favourite BIGINT NOT NULL DEFAULT 0,
    joined_at BIGINT NOT NULL,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX memberships_user ON memberships (user_id);

CREATE TABLE bans (
    room_id TEXT NOT NULL REFERENCES rooms (id),
    user_id TEXT NOT NULL REFERENCES users (id),
    banned_at BIGINT NOT NULL,
    PRIMARY KEY (room_id, user_id)
);

-- How many members have read a room exactly up to each message: readBy of a message is the
-- sum over marks at or after it, which stays cheap in rooms of 20,000 members.
CREATE TABLE read_marks (
    room_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    readers BIGINT NOT NULL,
    PRIMARY KEY (room_id, seq)
);

CREATE TABLE messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    room_id TEXT NOT NULL REFERENCES rooms (id),
    author_kind TEXT NOT NULL,
    author_id TEXT NOT NULL,
    text TEXT NOT NULL,
    html TEXT NOT NULL,
    status BIGINT NOT NULL DEFAULT 0,
    parent_id TEXT,
    thread_count BIGINT NOT NULL DEFAULT 0,
    sent BIGINT NOT NULL,
    edited_at BIGINT,
    deleted BIGINT NOT NULL DEFAULT 0,
    mentions TEXT NOT NULL DEFAULT '[]',
    issues TEXT NOT NULL DEFAULT '[]',
    urls TEXT NOT NULL DEFAULT '[]',
    attachments TEXT NOT NULL DEFAULT '[]',
    version BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX messages_room_main ON messages (room_id, seq) WHERE parent_id IS NULL;
CREATE INDEX messages_room_all ON messages (room_id, seq);
CREATE INDEX messages_thread ON messages (parent_id, seq) WHERE parent_id IS NOT NULL;

CREATE VIRTUAL TABLE messages_fts USING fts5 (text, content = 'messages', content_rowid = 'seq');
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts (rowid, text) VALUES (new.seq, new.text);
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, text) VALUES ('delete', old.seq, old.text);
END;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF text ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, text) VALUES ('delete', old.seq, old.text);
    INSERT INTO messages_fts (rowid, text) VALUES (new.seq, new.text);
END;

CREATE TABLE mentions (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    message_seq BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, message_seq)
);

CREATE TABLE reactions (
    message_id TEXT NOT NULL,
    reactor_kind TEXT NOT NULL,
    reactor_id TEXT NOT NULL,
    emoji TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (message_id, reactor_id, emoji)
);

CREATE TABLE files (
    id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL REFERENCES rooms (id),
    uploader_kind TEXT NOT NULL,
    uploader_id TEXT NOT NULL,
    name TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

-- The one ordered log of every change, written in the same transaction as the change.
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    room_id TEXT,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    origin TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX events_room ON events (room_id, seq);
