-- Hand-off between the mapped fetch task and the upsert task. Both may run on different Celery
-- workers on different machines, so the bars travel through the TickStock database, not local
-- files or the metadata DB's XCom table. UNLOGGED: no WAL for rows that live for seconds.
-- load_key identifies one mapped fetch (run, timeframe, batch); a retry replaces its rows. A row
-- carries only what a raw COPY into the OHLCV table would (revision 0003): the key comes from the
-- staging transaction's setting tickstock.load_key (NOT NULL refuses a row staged without it), and
-- hourly bars send bar_start, day/week/month bars period.
CREATE UNLOGGED TABLE IF NOT EXISTS ohlcv_staging (
    load_key      text          NOT NULL DEFAULT nullif(current_setting('tickstock.load_key', true), ''),
    symbol        text          NOT NULL,
    bar_start     timestamptz,
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
