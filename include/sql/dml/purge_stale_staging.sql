-- Staged rows of runs that died between fetch and upsert; nothing will ever merge them.
DELETE FROM ohlcv_staging WHERE staged_at < now() - %(older_than)s::interval
