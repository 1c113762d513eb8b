-- One OHLCV table; rendered once per timeframe from tickstock.timeframes.OHLCV_TABLES.
-- The table, time column (identifiers) and time type (whitelisted) are filled by psycopg.sql.
-- Prices and volume are NUMERIC: the API's JSON numbers (volume may arrive as 1.029145e+06) are
-- parsed as decimals and stored exactly. vwap/transactions are nullable (missing on old bars).
CREATE TABLE IF NOT EXISTS {table} (
    symbol         text          NOT NULL,
    {time_column}  {time_type}   NOT NULL,
    open           numeric       NOT NULL,
    high           numeric       NOT NULL,
    low            numeric       NOT NULL,
    close          numeric       NOT NULL,
    volume         numeric       NOT NULL,
    vwap           numeric,
    transactions   bigint,
    created_at     timestamptz   NOT NULL DEFAULT now(),
    updated_at     timestamptz   NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, {time_column})
);
