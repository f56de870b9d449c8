-- People of other networks who are in a room (Matrix users in a bridged room whose
-- membership is synced): listed among its members and counted in its member count.

CREATE TABLE virtual_memberships (
    room_id TEXT NOT NULL REFERENCES rooms (id),
    virtual_user_id TEXT NOT NULL REFERENCES virtual_users (id),
    joined_at BIGINT NOT NULL,
    PRIMARY KEY (room_id, virtual_user_id)
);
