-- Read marks of people of other networks (a Matrix user's read receipt), beside members'
-- own: counted in the same read-marks histogram, so a message's readBy counts them too.

CREATE TABLE virtual_read_marks (
    room_id TEXT NOT NULL REFERENCES rooms (id),
    virtual_user_id TEXT NOT NULL REFERENCES virtual_users (id),
    last_read_seq BIGINT NOT NULL,
    PRIMARY KEY (room_id, virtual_user_id)
);
