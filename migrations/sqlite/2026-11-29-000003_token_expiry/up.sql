-- An API token may be made to expire (`kerbside token create
-- --expires-in-days N`); null means it lasts until revoked.
ALTER TABLE api_tokens ADD COLUMN expires_at_ms BIGINT;
