DROP INDEX parking_sessions_plate_readable;
DROP INDEX events_plate_readable;
DROP TABLE plate_key;
