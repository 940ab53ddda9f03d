DROP INDEX cases_changed;
