-- The deployment's secret for plate pseudonyms (HMAC-SHA256 key, hex):
-- one row, written by kerbside on first start. Losing it only means that
-- plates erased before and after no longer match.
CREATE TABLE plate_key (
    id            INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    secret        TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

-- Plates still readable, by the instant they become erasable: the
-- erasure pass reads only these, not the whole history.
CREATE INDEX events_plate_readable ON events (observed_at_ms)
    WHERE plate IS NOT NULL AND plate NOT LIKE 'pseud:%';
CREATE INDEX parking_sessions_plate_readable ON parking_sessions (ended_at_ms)
    WHERE plate IS NOT NULL AND plate NOT LIKE 'pseud:%';
