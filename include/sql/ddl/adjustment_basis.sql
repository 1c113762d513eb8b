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
