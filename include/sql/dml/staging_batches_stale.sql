-- Batches of runs that died between fetch and upsert: nothing will ever merge them.
SELECT load_key FROM ohlcv_staging_batches WHERE staged_at < now() - %(older_than)s::interval ORDER BY load_key
