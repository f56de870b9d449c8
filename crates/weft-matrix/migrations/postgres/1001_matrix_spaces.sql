-- Each community with bridged rooms is a Matrix Space, and the Space lists its open bridged
-- rooms: a row in matrix_space_children says the Space lists that room now (written after
-- the homeserver took the m.space.child and m.space.parent events), so the bridge can put
-- right what a crash left half done.
CREATE TABLE matrix_spaces (
    community_id TEXT PRIMARY KEY,
    matrix_room_id TEXT NOT NULL UNIQUE,
    alias TEXT NOT NULL
);

CREATE TABLE matrix_space_children (
    matrix_room_id TEXT PRIMARY KEY,
    space_room_id TEXT NOT NULL
);
