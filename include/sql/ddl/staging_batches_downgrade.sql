-- Revision 0004's downgrade, after ohlcv_staging is created again (ddl/staging.sql): every staged
-- batch's rows move back into the shared table under their load key, then the batch tables and
-- the registry go. Idempotent: without the registry, nothing to do.
DO $$
DECLARE
    batch record;
    key_column text;
BEGIN
    IF to_regclass('ohlcv_staging_batches') IS NULL THEN
        RETURN;
    END IF;
    FOR batch IN SELECT load_key, staged_table, staged_at FROM ohlcv_staging_batches LOOP
        IF to_regclass(quote_ident(batch.staged_table)) IS NOT NULL THEN
            SELECT attname INTO key_column
              FROM pg_attribute
             WHERE attrelid = to_regclass(quote_ident(batch.staged_table)) AND attname IN ('bar_start', 'period');
            EXECUTE format(
                'INSERT INTO ohlcv_staging (load_key, symbol, %I, open, high, low, close, volume, vwap, transactions, staged_at) '
                'SELECT %L, symbol, %I, open, high, low, close, volume, vwap, transactions, %L FROM %I',
                key_column, batch.load_key, key_column, batch.staged_at, batch.staged_table);
            EXECUTE format('DROP TABLE %I', batch.staged_table);
        END IF;
    END LOOP;
    DROP TABLE ohlcv_staging_batches;
END
$$;
