DROP TABLE history_marks;
DROP TABLE history_rollup;
DROP TABLE occupancy_hours;
