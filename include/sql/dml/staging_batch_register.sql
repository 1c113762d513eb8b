-- Record one staged batch (in the transaction that created and filled its table); a retried
-- fetch replaces its entry as it replaced the table.
INSERT INTO ohlcv_staging_batches (load_key, staged_table, bars, offered, keys_ascending)
VALUES (%(load_key)s, %(staged_table)s, %(bars)s, %(offered)s, %(keys_ascending)s)
ON CONFLICT (load_key) DO UPDATE
   SET staged_table = EXCLUDED.staged_table,
       bars = EXCLUDED.bars,
       offered = EXCLUDED.offered,
       keys_ascending = EXCLUDED.keys_ascending,
       staged_at = now()
