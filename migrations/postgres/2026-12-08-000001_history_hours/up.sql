-- History roll-ups (contract 6.3): per road, bay kind and UTC hour, the
-- bay-time, known and occupied bay-time (ms), and the sessions that
-- started in the hour with their dwell. Derived from events and sessions,
-- rebuilt for any hour a late event touches; kept when retention forgets
-- the events they summarise.
CREATE TABLE occupancy_hours (
    road_id TEXT NOT NULL,
    hour_ms BIGINT NOT NULL,
    kind TEXT NOT NULL,
    bays BIGINT NOT NULL,
    bay_ms BIGINT NOT NULL,
    known_ms BIGINT NOT NULL,
    occupied_ms BIGINT NOT NULL,
    sessions BIGINT NOT NULL,
    ended_sessions BIGINT NOT NULL,
    dwell_ms BIGINT NOT NULL,
    PRIMARY KEY (road_id, hour_ms, kind)
);

-- Up to when each road's roll-up is built (the watermark).
CREATE TABLE history_rollup (
    road_id TEXT PRIMARY KEY NOT NULL,
    until_ms BIGINT NOT NULL
);

-- Hours that ingest has stored events for since the roll-up last looked:
-- a late event's hour is rebuilt from it on. `renewals` counts the marks, so
-- that the roll-up clears only a mark nothing renewed while it worked.
CREATE TABLE history_marks (
    road_id TEXT NOT NULL,
    hour_ms BIGINT NOT NULL,
    renewals BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (road_id, hour_ms)
);
