-- The few sessions a window query cannot find by a bounded range of starts
-- (`store::sessions`): those still open, and those longer than a day
-- (24 h = 86400000 ms, `LONG_SESSION_MS`; the queries write these
-- predicates exactly so, for SQLite to use the partial indexes).
CREATE INDEX parking_sessions_open ON parking_sessions (road_id, started_at_ms)
    WHERE ended_at_ms IS NULL;
CREATE INDEX parking_sessions_long ON parking_sessions (road_id, ended_at_ms)
    WHERE ended_at_ms - started_at_ms > 86400000;
