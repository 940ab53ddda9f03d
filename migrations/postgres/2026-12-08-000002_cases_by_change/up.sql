-- What changed lately, for the live stream's case events.
CREATE INDEX cases_changed ON cases (updated_at_ms);
