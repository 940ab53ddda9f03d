-- A violation that a warden has acted on (ticketed, dismissed) is never
-- rewritten by re-judging: late evidence that contradicts it is recorded in
-- its history, and the violation is listed here (shown as `disputed`).
CREATE TABLE violation_disputes (
    violation_id TEXT PRIMARY KEY NOT NULL REFERENCES violations (violation_id),
    since_ms     BIGINT NOT NULL
);
