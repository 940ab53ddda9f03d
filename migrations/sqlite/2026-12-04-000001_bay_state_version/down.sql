ALTER TABLE bay_states DROP COLUMN version;
