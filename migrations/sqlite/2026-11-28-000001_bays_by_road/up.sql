-- Publishing a road's layout reads that road's bays (to retire the removed
-- ones); without this index every publish scans every bay of the city.
CREATE INDEX bays_road ON bays (road_id);
