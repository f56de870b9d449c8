-- Matrix users' avatars, fetched once through authenticated media and served by weft, so
-- that no reader's browser talks to the homeserver.
CREATE TABLE matrix_avatars (
    mxc TEXT PRIMARY KEY,
    content_type TEXT NOT NULL,
    bytes BYTEA NOT NULL,
    fetched_at BIGINT NOT NULL
);
