DROP INDEX bays_road;
