-- Who a bridged message has already notified on Matrix: an edit's top-level `m.mentions`
-- holds only the people it mentions for the first time, so that an edit notifies someone
-- newly mentioned and never notifies anyone twice.
CREATE TABLE matrix_mentioned (
    message_id TEXT NOT NULL,
    mxid TEXT NOT NULL,
    PRIMARY KEY (message_id, mxid)
);
