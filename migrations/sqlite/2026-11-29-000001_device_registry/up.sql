-- Registered devices (contract 6.1). `devices` keeps what was seen (any id,
-- first and last seen); this table keeps who may send. The password is kept
-- only as Mosquitto's PBKDF2-SHA512 digest (`$7$ITER$SALT$HASH`).
CREATE TABLE device_registry (
    device_id       TEXT PRIMARY KEY NOT NULL,
    kind            TEXT NOT NULL,
    name            TEXT NOT NULL,
    password_digest TEXT NOT NULL,
    created_at_ms   BIGINT NOT NULL,
    revoked_at_ms   BIGINT
);

-- A password that an external broker has yet to learn: written when a
-- device is added, deleted as soon as kerbside has handed it to the broker
-- it administers (Mosquitto's dynamic-security plugin takes only plain
-- passwords). The embedded broker needs none and clears them at start.
CREATE TABLE broker_password_outbox (
    device_id     TEXT PRIMARY KEY NOT NULL,
    password      TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
