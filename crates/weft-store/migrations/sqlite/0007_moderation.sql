-- Moderation that reaches people of other networks too: bans of virtual users, who banned
-- and why, and messages a bridge could not carry.

CREATE TABLE virtual_bans (
    room_id TEXT NOT NULL REFERENCES rooms (id),
    virtual_user_id TEXT NOT NULL REFERENCES virtual_users (id),
    banned_at BIGINT NOT NULL,
    banned_by TEXT,
    reason TEXT,
    PRIMARY KEY (room_id, virtual_user_id)
);

ALTER TABLE bans ADD COLUMN banned_by TEXT;
ALTER TABLE bans ADD COLUMN reason TEXT;

-- JSON {network, reason} when a bridge gave up on the message.
ALTER TABLE messages ADD COLUMN undelivered TEXT;
