-- Idempotent posting: a bridge's event id or a bot's retry key, unique per message.
-- (Before the bridge kept its own schema this migration also created its tables; they are now
-- the bridge's migration 0000, which creates them if they are missing.)

ALTER TABLE messages ADD COLUMN external_ref TEXT;
CREATE UNIQUE INDEX messages_external_ref ON messages (external_ref);
