-- No query reads the event log by room (readers follow it by sequence number and filter),
-- and every logged change paid for keeping this index.
DROP INDEX IF EXISTS events_room;
