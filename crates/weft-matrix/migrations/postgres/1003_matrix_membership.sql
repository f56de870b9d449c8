-- Rooms whose membership crosses otherwise than the configuration's default says
-- (`weft matrix membership`): `full`, `lazy` or `off`.
CREATE TABLE matrix_membership_modes (
    room_id TEXT PRIMARY KEY,
    mode TEXT NOT NULL
);

-- Membership syncs of rooms: weft members' puppets joined to the Matrix room, the Matrix
-- room's members listed in weft. A row not finished is a sync to run: `weft matrix
-- sync-members` asks for one (`requested_at`), a running server takes it up (and after a
-- restart, takes it up again after `after_user_id`: members are walked in id order), saying
-- how far it got at `updated_at`.
CREATE TABLE matrix_member_syncs (
    room_id TEXT PRIMARY KEY,
    after_user_id TEXT,
    walked BIGINT NOT NULL,
    joined BIGINT NOT NULL,
    total BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    requested_at BIGINT,
    updated_at BIGINT
);
