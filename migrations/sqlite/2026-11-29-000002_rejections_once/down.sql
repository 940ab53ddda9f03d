DROP INDEX rejections_once;
ALTER TABLE rejections DROP COLUMN once_key;
