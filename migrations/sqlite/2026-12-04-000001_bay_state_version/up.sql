-- Each write of a bay's state counts up its version, so that a read model
-- fed by more than one writer keeps the newest state whatever order the
-- changes reach it in.
ALTER TABLE bay_states ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
