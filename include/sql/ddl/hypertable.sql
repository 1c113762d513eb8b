-- Turn one OHLCV table into a hypertable when TimescaleDB is installed; a no-op otherwise and
-- when it already is one. Run after the migrations by every upgrade (TimescaleDB may be added
-- later). An empty table is converted; a table with rows only when asked
-- (upgrade --hypertables), because migrate_data locks and rewrites it; otherwise a WARNING says
-- so. A unique index without the time column (a surrogate id primary key) rules a hypertable out.
-- Rendered by tickstock.schema.hypertable_ddl (table, time column, chunk interval, the choice).
DO $$
DECLARE
    ts_schema text;
    blocking text;
    populated boolean;
BEGIN
    SELECT n.nspname INTO ts_schema
      FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
     WHERE e.extname = 'timescaledb';
    IF ts_schema IS NULL THEN
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM timescaledb_information.hypertables
                WHERE hypertable_schema = current_schema() AND hypertable_name = {table_name}) THEN
        RETURN;
    END IF;
    SELECT string_agg(format('%I (%s)', ic.relname, pg_get_indexdef(i.indexrelid)), '; ')
      INTO blocking
      FROM pg_index i
      JOIN pg_class ic ON ic.oid = i.indexrelid
      JOIN pg_attribute t ON t.attrelid = i.indrelid AND t.attname = {time_column}
     WHERE i.indrelid = {table_name}::regclass AND i.indisunique AND NOT (t.attnum = ANY (i.indkey::int2[]));
    IF blocking IS NOT NULL THEN
        IF {convert_populated} THEN
            RAISE EXCEPTION USING
                MESSAGE = format('%s cannot become a hypertable: its unique index %s does not include %I '
                                 '(TimescaleDB needs the time column in every unique index). Nothing was changed.',
                                 {table_name}, blocking, {time_column}),
                HINT = 'Drop that key or widen it to include the time column (e.g. ALTER TABLE ... DROP CONSTRAINT ..._pkey, ADD PRIMARY KEY (id, <time column>)), then upgrade --hypertables again.';
        END IF;
        RAISE WARNING '% stays a plain table: its unique index % does not include % (a hypertable needs the time column in every unique index)',
            {table_name}, blocking, {time_column};
        RETURN;
    END IF;
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I)', {table_name}) INTO populated;
    IF populated AND NOT {convert_populated} THEN
        RAISE WARNING '% has rows and stays a plain table: converting it (migrate_data) locks and rewrites it. Review, then run `python -m tickstock.schema upgrade --hypertables`',
            {table_name};
        RETURN;
    END IF;
    EXECUTE format(
        'SELECT %1$I.create_hypertable(%2$L::regclass, %1$I.by_range(%3$L, %4$L::interval), '
        'if_not_exists => true, migrate_data => true)',
        ts_schema, {table_name}, {time_column}, {chunk_interval});
END
$$;
