-- Revision 0004: each staged batch in an UNLOGGED table of its own (ddl/staged_batch.sql), listed
-- here, instead of all batches in one shared table indexed by load key. Staging into the shared
-- table maintained a text index on every row and the merge found its batch through it; a batch's
-- own table is written as a bare heap and read whole (docs/benchmarks.md, measurement 6).
-- This registry is a logged table: after a database crash the unlogged batch tables are empty
-- while their entries still say how many bars they held, so a merge sees the loss instead of
-- merging nothing.
--   staged_table    the batch's table: ohlcv_staged_ || md5(load_key)
--   bars, offered   bars staged in all and per symbol ({"SCHG": 2, ...}), as stage_bars wrote them
--   keys_ascending  each symbol's keys were written strictly ascending, so no key is staged twice;
--                   when false the merge checks the table for duplicates first
CREATE TABLE IF NOT EXISTS ohlcv_staging_batches (
    load_key        text         PRIMARY KEY,
    staged_table    text         NOT NULL UNIQUE,
    bars            bigint       NOT NULL,
    offered         jsonb        NOT NULL,
    keys_ascending  boolean      NOT NULL,
    staged_at       timestamptz  NOT NULL DEFAULT now()
);
-- Rows still in the shared table (batches of a run that failed before its upsert, kept so that a
-- cleared re-run can merge them) move to tables of their own, with the 0004 batch-table shape
-- written out here; then the shared table goes. Idempotent: without ohlcv_staging, nothing to do.
DO $$
DECLARE
    batch record;
    staged text;
    key_column text;
BEGIN
    IF to_regclass('ohlcv_staging') IS NULL THEN
        RETURN;
    END IF;
    FOR batch IN
        SELECT load_key, bool_or(period IS NULL) AS intraday, count(*) AS bars, min(staged_at) AS staged_at
          FROM ohlcv_staging
         GROUP BY load_key
    LOOP
        staged := 'ohlcv_staged_' || md5(batch.load_key);
        key_column := CASE WHEN batch.intraday THEN 'bar_start' ELSE 'period' END;
        EXECUTE format(
            'CREATE UNLOGGED TABLE %I (symbol text NOT NULL, %I %s NOT NULL, open numeric NOT NULL, '
            'high numeric NOT NULL, low numeric NOT NULL, close numeric NOT NULL, volume numeric NOT NULL, '
            'vwap numeric, transactions bigint)',
            staged, key_column, CASE WHEN batch.intraday THEN 'timestamptz' ELSE 'date' END);
        EXECUTE format(
            'INSERT INTO %I SELECT symbol, %I, open, high, low, close, volume, vwap, transactions '
            'FROM ohlcv_staging WHERE load_key = %L',
            staged, key_column, batch.load_key);
        INSERT INTO ohlcv_staging_batches (load_key, staged_table, bars, offered, keys_ascending, staged_at)
        SELECT batch.load_key, staged, batch.bars, jsonb_object_agg(symbol, n), false, batch.staged_at
          FROM (SELECT symbol, count(*) AS n FROM ohlcv_staging WHERE load_key = batch.load_key GROUP BY symbol) AS per_symbol;
    END LOOP;
    DROP TABLE ohlcv_staging;
END
$$;
