DROP INDEX violations_changed;
DROP INDEX violations_road_time;
DROP INDEX violations_road_status;
CREATE INDEX violations_road_status ON violations (road_id, status);
