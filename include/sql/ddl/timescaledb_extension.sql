-- Install TimescaleDB only when it is available AND preloaded: CREATE EXTENSION without the
-- preload raises FATAL, which ends the session and cannot be caught. Plain PostgreSQL skips it.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')
       AND EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') THEN
        BEGIN
            IF current_setting('shared_preload_libraries') ~ '\mtimescaledb\M' THEN
                CREATE EXTENSION IF NOT EXISTS timescaledb;
            END IF;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE NOTICE 'timescaledb: cannot read shared_preload_libraries, staying on plain tables';
        END;
    END IF;
END
$$;
