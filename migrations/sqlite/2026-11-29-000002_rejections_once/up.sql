-- A broker redelivers a message whose acknowledgement was lost (a crash
-- after the commit, before the PUBACK); its rejections must not be stored
-- twice. `once_key` names a rejection within its device:
--   'event:' || reason || ':' || event_id      when the event id was read,
--   'payload:' || sha256(payload) || ':' || n  otherwise (n: the outcome's
--                                               place in its message).
-- Rows stored before this migration keep a null key, except the first of
-- each (device, event id, reason), so that old duplicates stay (history)
-- and cannot break the unique index: SQLite treats nulls as distinct.
ALTER TABLE rejections ADD COLUMN once_key TEXT;

UPDATE rejections
SET once_key = 'event:' || reason || ':' || event_id
WHERE seq IN (
    SELECT MIN(seq) FROM rejections
    WHERE event_id IS NOT NULL
    GROUP BY device_id, event_id, reason
);

CREATE UNIQUE INDEX rejections_once ON rejections (device_id, once_key);
