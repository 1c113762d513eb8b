-- Turn one OHLCV table into a hypertable when TimescaleDB is installed; a no-op otherwise and
-- when it already is one. Bind parameters: table, time_column, chunk_interval.
DO $$
DECLARE
    ts_schema text;
BEGIN
    SELECT n.nspname INTO ts_schema
      FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
     WHERE e.extname = 'timescaledb';
    IF ts_schema IS NULL THEN
        RETURN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM timescaledb_information.hypertables
                    WHERE hypertable_schema = current_schema() AND hypertable_name = {table_name}) THEN
        EXECUTE format(
            'SELECT %1$I.create_hypertable(%2$L::regclass, %1$I.by_range(%3$L, %4$L::interval), '
            'if_not_exists => true, migrate_data => true)',
            ts_schema, {table_name}, {time_column}, {chunk_interval});
    END IF;
END
$$;
