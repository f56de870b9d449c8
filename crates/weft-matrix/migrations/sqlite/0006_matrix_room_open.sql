-- Whether the Matrix side of a bridged room is open: closed when the weft room stops being
-- public or is deleted, so that nothing more is sent to it; opened again when it is public
-- again. Written only by the outbound sender, in log order.
ALTER TABLE matrix_rooms ADD COLUMN is_open BIGINT NOT NULL DEFAULT 1;

-- What a failure is about (a Matrix event id inbound, `log:<seq>` outbound), so that a
-- replayed transaction or a resend after a crash records it once.
ALTER TABLE matrix_failures ADD COLUMN failure_key TEXT;
CREATE UNIQUE INDEX matrix_failures_key ON matrix_failures (failure_key);
