-- One staged batch: the rows of one mapped fetch (one load key), in a table of its own. UNLOGGED
-- (no WAL for rows that live for seconds) and without an index or defaults, so staging costs what
-- a COPY into an empty heap costs; stage_bars creates it in the transaction that fills it, which
-- lets the COPY write frozen rows (FREEZE). The merge reads the whole table, never a part of it.
-- The columns are the nine a raw COPY into the OHLCV table sends: hourly bars are keyed by
-- bar_start (timestamptz), day/week/month bars by period (date). {staged}, {staged_key} and
-- {key_type} are filled by tickstock.staging.
CREATE UNLOGGED TABLE {staged} (
    symbol        text     NOT NULL,
    {staged_key}  {key_type} NOT NULL,
    open          numeric  NOT NULL,
    high          numeric  NOT NULL,
    low           numeric  NOT NULL,
    close         numeric  NOT NULL,
    volume        numeric  NOT NULL,
    vwap          numeric,
    transactions  bigint
)
