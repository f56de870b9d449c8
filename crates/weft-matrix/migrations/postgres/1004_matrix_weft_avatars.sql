-- Weft's avatars (users' and rooms') uploaded to the homeserver, each source URL once.
CREATE TABLE matrix_uploaded_avatars (
    source TEXT PRIMARY KEY,
    mxc TEXT NOT NULL,
    uploaded_at BIGINT NOT NULL
);

-- The weft avatar URL each puppet's avatar was last set from ('' or NULL: none).
ALTER TABLE matrix_puppets ADD COLUMN avatar_source TEXT;

-- The weft avatar URL each bridged room's Matrix avatar was last set from ('': none; NULL:
-- never set by weft, so a weft room without an avatar leaves the Matrix room's alone).
ALTER TABLE matrix_rooms ADD COLUMN avatar_source TEXT;
