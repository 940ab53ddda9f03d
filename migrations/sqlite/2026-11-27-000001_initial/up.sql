-- kerbside store, SQLite flavour.
-- Instants are BIGINT milliseconds since the Unix epoch, UTC: the same type on
-- SQLite and PostgreSQL, cheap to index and to compare.

CREATE TABLE roads (
    road_id          TEXT PRIMARY KEY NOT NULL,
    current_revision BIGINT NOT NULL,
    created_at_ms    BIGINT NOT NULL
);

-- One row per published layout of a road. Revisions are immutable.
CREATE TABLE layout_revisions (
    road_id       TEXT NOT NULL REFERENCES roads (road_id),
    revision      BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    created_by    TEXT NOT NULL,
    based_on      BIGINT,
    bays          BIGINT NOT NULL,
    barriers      BIGINT NOT NULL,
    PRIMARY KEY (road_id, revision)
);

-- Bay identity: stable across revisions, so history (events, sessions,
-- violations) keeps pointing at the same bay when its outline is redrawn.
CREATE TABLE bays (
    bay_id           TEXT PRIMARY KEY NOT NULL,
    road_id          TEXT NOT NULL REFERENCES roads (road_id),
    first_revision   BIGINT NOT NULL,
    retired_revision BIGINT
);

-- Every feature (road, bay, barrier) of every revision, as GeoJSON text,
-- with the columns that queries need pulled out.
CREATE TABLE layout_features (
    road_id          TEXT NOT NULL,
    revision         BIGINT NOT NULL,
    ordinal          BIGINT NOT NULL,
    feature_id       TEXT NOT NULL,
    feature_type     TEXT NOT NULL,
    kind             TEXT,
    max_stay_minutes BIGINT,
    enforced_hours   TEXT,
    feature          TEXT NOT NULL,
    min_lon          DOUBLE PRECISION NOT NULL,
    min_lat          DOUBLE PRECISION NOT NULL,
    max_lon          DOUBLE PRECISION NOT NULL,
    max_lat          DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (road_id, revision, feature_id),
    FOREIGN KEY (road_id, revision) REFERENCES layout_revisions (road_id, revision)
);

CREATE TABLE devices (
    device_id      TEXT PRIMARY KEY NOT NULL,
    first_seen_ms  BIGINT NOT NULL,
    last_seen_ms   BIGINT NOT NULL
);

-- Append-only. (device_id, event_id) is the idempotency key.
CREATE TABLE events (
    seq            INTEGER PRIMARY KEY,
    device_id      TEXT NOT NULL,
    event_id       TEXT NOT NULL,
    event_type     TEXT NOT NULL,
    observed_at_ms BIGINT NOT NULL,
    received_at_ms BIGINT NOT NULL,
    bay_id         TEXT,
    road_id        TEXT,
    lon            DOUBLE PRECISION,
    lat            DOUBLE PRECISION,
    plate          TEXT,
    category       TEXT,
    note           TEXT,
    UNIQUE (device_id, event_id)
);
CREATE INDEX events_bay_time ON events (bay_id, observed_at_ms);

CREATE TABLE rejections (
    seq            INTEGER PRIMARY KEY,
    device_id      TEXT NOT NULL,
    event_id       TEXT,
    reason         TEXT NOT NULL,
    detail         TEXT NOT NULL,
    payload        TEXT,
    received_at_ms BIGINT NOT NULL
);

-- The newest status-bearing event decides status; last_event_at_ms is the
-- newest event of any type (heartbeats included), for staleness.
CREATE TABLE bay_states (
    bay_id           TEXT PRIMARY KEY NOT NULL REFERENCES bays (bay_id),
    status           TEXT NOT NULL,
    since_ms         BIGINT NOT NULL,
    status_event_ms  BIGINT,
    last_event_at_ms BIGINT NOT NULL,
    updated_at_ms    BIGINT NOT NULL
);

CREATE TABLE parking_sessions (
    session_id     INTEGER PRIMARY KEY,
    bay_id         TEXT NOT NULL REFERENCES bays (bay_id),
    road_id        TEXT NOT NULL,
    started_at_ms  BIGINT NOT NULL,
    ended_at_ms    BIGINT,
    source         TEXT NOT NULL,
    plate          TEXT
);
CREATE INDEX parking_sessions_road_time ON parking_sessions (road_id, started_at_ms);
CREATE INDEX parking_sessions_bay_time ON parking_sessions (bay_id, started_at_ms);

-- Overstays, vehicles outside any bay, and wardens' reports.
CREATE TABLE violations (
    violation_id     TEXT PRIMARY KEY NOT NULL,
    kind             TEXT NOT NULL,
    road_id          TEXT NOT NULL,
    bay_id           TEXT,
    lon              DOUBLE PRECISION,
    lat              DOUBLE PRECISION,
    plate            TEXT,
    started_at_ms    BIGINT NOT NULL,
    detected_at_ms   BIGINT NOT NULL,
    -- Overstays: when the vehicle left (null while there), the evidence's
    -- source (sensor or observed), and when it was last known there.
    ended_at_ms      BIGINT,
    source           TEXT,
    last_seen_ms     BIGINT,
    note             TEXT,
    status           TEXT NOT NULL,
    evidence         TEXT NOT NULL,
    updated_at_ms    BIGINT NOT NULL
);
CREATE INDEX violations_road_status ON violations (road_id, status);

CREATE TABLE violation_history (
    seq          INTEGER PRIMARY KEY,
    violation_id TEXT NOT NULL REFERENCES violations (violation_id),
    status       TEXT NOT NULL,
    at_ms        BIGINT NOT NULL,
    actor        TEXT,
    note         TEXT
);

-- Only the SHA-256 digest of a token is kept.
CREATE TABLE api_tokens (
    token_id      INTEGER PRIMARY KEY,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL,
    token_hash    TEXT NOT NULL UNIQUE,
    created_at_ms BIGINT NOT NULL,
    revoked_at_ms BIGINT
);
