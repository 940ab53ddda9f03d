-- Cases (contract 6.4): the parties that answer for a frontage, the cases
-- they are told of, every step of a case, the notifications written in the
-- same transaction as the step (an outbox, so none is lost), every attempt
-- to deliver one, and the public's complaints.
CREATE TABLE parties (
    party_id         TEXT PRIMARY KEY NOT NULL,
    name             TEXT NOT NULL,
    kind             TEXT NOT NULL,
    -- GeoJSON Polygon, WGS 84; NULL for enforcement.
    area             TEXT,
    webhook_url      TEXT NOT NULL,
    webhook_format   TEXT NOT NULL,
    webhook_secret   TEXT NOT NULL,
    -- A DingTalk robot's signing secret (SEC...), when its group signs.
    robot_secret     TEXT,
    deadline_minutes INTEGER NOT NULL,
    created_at_ms    BIGINT NOT NULL
);

CREATE TABLE complaints (
    complaint_id  TEXT PRIMARY KEY NOT NULL,
    category      TEXT NOT NULL,
    lon           DOUBLE NOT NULL,
    lat           DOUBLE NOT NULL,
    text          TEXT NOT NULL,
    -- Private; erased after --keep-contacts-days.
    contact       TEXT,
    status        TEXT NOT NULL,
    response      TEXT,
    case_id       TEXT,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
CREATE INDEX complaints_contact ON complaints (created_at_ms) WHERE contact IS NOT NULL;

CREATE TABLE cases (
    case_id        TEXT PRIMARY KEY NOT NULL,
    kind           TEXT NOT NULL,
    road_id        TEXT,
    lon            DOUBLE,
    lat            DOUBLE,
    status         TEXT NOT NULL,
    party_id       TEXT REFERENCES parties (party_id),
    opened_at_ms   BIGINT NOT NULL,
    due_at_ms      BIGINT,
    resolved_at_ms BIGINT,
    source         TEXT NOT NULL,
    violation_id   TEXT,
    complaint_id   TEXT,
    note           TEXT,
    updated_at_ms  BIGINT NOT NULL
);
CREATE INDEX cases_status_due ON cases (status, due_at_ms);
CREATE INDEX cases_road ON cases (road_id, opened_at_ms);

CREATE TABLE case_history (
    seq     INTEGER PRIMARY KEY,
    case_id TEXT NOT NULL REFERENCES cases (case_id),
    at_ms   BIGINT NOT NULL,
    actor   TEXT,
    action  TEXT NOT NULL,
    status  TEXT NOT NULL,
    note    TEXT
);
CREATE INDEX case_history_case ON case_history (case_id);

CREATE TABLE notifications (
    notification_id    INTEGER PRIMARY KEY,
    case_id            TEXT NOT NULL REFERENCES cases (case_id),
    party_id           TEXT NOT NULL REFERENCES parties (party_id),
    event              TEXT NOT NULL,
    -- The exact bytes sent, so that every attempt carries the same signature.
    body               TEXT NOT NULL,
    created_at_ms      BIGINT NOT NULL,
    -- NULL once delivered or given up.
    next_attempt_at_ms BIGINT,
    attempts           INTEGER NOT NULL DEFAULT 0,
    delivered_at_ms    BIGINT,
    gave_up_at_ms      BIGINT,
    last_error         TEXT
);
CREATE INDEX notifications_due ON notifications (next_attempt_at_ms) WHERE next_attempt_at_ms IS NOT NULL;
CREATE INDEX notifications_case ON notifications (case_id);

CREATE TABLE notification_attempts (
    seq             INTEGER PRIMARY KEY,
    notification_id BIGINT NOT NULL REFERENCES notifications (notification_id),
    at_ms           BIGINT NOT NULL,
    http_status     INTEGER,
    error           TEXT,
    duration_ms     BIGINT NOT NULL
);
CREATE INDEX notification_attempts_of ON notification_attempts (notification_id);
