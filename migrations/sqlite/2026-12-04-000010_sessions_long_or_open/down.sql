DROP INDEX parking_sessions_long;
DROP INDEX parking_sessions_open;
