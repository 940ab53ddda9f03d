-- Messages that failed to store, alone, several times (a poison message):
-- kept whole, with the error, so that ingest can go on and an admin can
-- see what was set aside (`GET /v1/quarantine`).
CREATE TABLE quarantine (
    seq               INTEGER PRIMARY KEY,
    device_id         TEXT NOT NULL,
    topic             TEXT NOT NULL,
    payload           BLOB NOT NULL,
    error             TEXT NOT NULL,
    received_at_ms    BIGINT NOT NULL,
    quarantined_at_ms BIGINT NOT NULL
);
