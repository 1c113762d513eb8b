-- Revision 0002: split-aware history (tickstock.splits).
-- One row: the last split execution date every stored adjusted series is known to reflect.
-- nightly_refresh asks /stocks/v1/splits for (checked_through, as_of] and advances it only when
-- the run succeeded, so a skipped or failed night loses no split.
CREATE TABLE IF NOT EXISTS split_watermark (
    singleton        boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    checked_through  date        NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
-- Whether the bars stored for a symbol in one OHLCV table are split-adjusted (adjusted=true) or
-- raw. Per symbol and table: loads choose their timeframes, and mixing bases within one series
-- is what no query could untangle. Written in the merge's transaction (see tickstock.splits).
CREATE TABLE IF NOT EXISTS adjustment_basis (
    symbol       text        NOT NULL,
    table_name   text        NOT NULL,
    adjusted     boolean     NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, table_name)
);
-- Splits the refresh has acted on (the symbol's history reloaded by a run that completed). The
-- refresh asks for a few days before the watermark too (Massive updates the list daily, a split
-- may be listed a day late) and skips the splits found here, so a late listing is still caught
-- and an early one is not reloaded twice.
CREATE TABLE IF NOT EXISTS split_reloads (
    symbol           text        NOT NULL,
    execution_date   date        NOT NULL,
    split_from       numeric     NOT NULL,
    split_to         numeric     NOT NULL,
    adjustment_type  text        NOT NULL,
    rows_rewritten   bigint      NOT NULL,
    run_id           text        NOT NULL,
    reloaded_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, execution_date, split_from, split_to)
);
