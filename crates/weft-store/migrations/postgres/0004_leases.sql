-- Fenced leases: a named singleton job (the Matrix sender) runs on one instance at a time.
-- Taking a lease bumps its epoch; every write the holder makes checks the epoch in the same
-- statement, so a holder that lost the lease without noticing cannot move anything.
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    epoch BIGINT NOT NULL,
    holder TEXT NOT NULL,
    taken_at BIGINT NOT NULL
);
