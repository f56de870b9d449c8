-- The device the bridge sends as for each of its Matrix users (puppets and the bot): the
-- homeserver keeps transaction ids of requests made with a device across its restarts.
-- NULL until the device is created (puppets registered before devices get one lazily).
ALTER TABLE matrix_puppets ADD COLUMN device_id TEXT;
