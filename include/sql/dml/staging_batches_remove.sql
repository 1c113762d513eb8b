-- Forget staged batches (their upserts succeeded, or their runs died long ago); the caller drops
-- the tables this returns, in the same transaction.
DELETE FROM ohlcv_staging_batches
 WHERE load_key = ANY(%(load_keys)s)
RETURNING staged_table, bars
