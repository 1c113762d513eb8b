-- Hand-off between the mapped fetch task and the upsert task. Both may run on different Celery
-- workers on different machines, so the bars travel through the TickStock database, not local
-- files or the metadata DB's XCom table. UNLOGGED: no WAL for rows that live for seconds.
-- load_key identifies one mapped fetch (run, timeframe, batch); a retry replaces its rows.
CREATE UNLOGGED TABLE IF NOT EXISTS ohlcv_staging (
    load_key      text          NOT NULL,
    symbol        text          NOT NULL,
    bar_start     timestamptz   NOT NULL,
    period        date,
    open          numeric       NOT NULL,
    high          numeric       NOT NULL,
    low           numeric       NOT NULL,
    close         numeric       NOT NULL,
    volume        numeric       NOT NULL,
    vwap          numeric,
    transactions  bigint,
    staged_at     timestamptz   NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS ohlcv_staging_load_key ON ohlcv_staging (load_key);
