-- A road's violations page, newest first, with or without a status: an
-- index range in the page's order, however many years a road has.
DROP INDEX violations_road_status;
CREATE INDEX violations_road_status ON violations
    (road_id, status, detected_at_ms DESC, violation_id);
CREATE INDEX violations_road_time ON violations
    (road_id, detected_at_ms DESC, violation_id);
-- What changed lately, for the live stream.
CREATE INDEX violations_changed ON violations (updated_at_ms);
