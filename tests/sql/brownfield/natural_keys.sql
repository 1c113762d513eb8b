-- The design document's tables written by hand: natural primary keys on ohlcv_hourly/daily, a
-- unique index (not a constraint) on weekly, no unique key at all on monthly (no duplicates, so
-- the upgrade can add it), text symbols, double precision prices, a user vwap NUMERIC(10,2)
-- (rounds what the API sends: reruns must still rewrite nothing), timestamptz hourly keys, an
-- extra nullable user column, rows everywhere (SCHG on re-fetched keys, AAPL elsewhere).
CREATE TABLE symbols (
    symbol            text PRIMARY KEY,
    name              text,
    exchange          text,
    sector            text,
    industry          text,
    issuer            text,
    underlying_index  text,
    last_updated      timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE ohlcv_hourly (
    symbol      text NOT NULL,
    "timestamp" timestamptz NOT NULL,
    open        double precision NOT NULL,
    high        double precision NOT NULL,
    low         double precision NOT NULL,
    close       double precision NOT NULL,
    volume      bigint NOT NULL,
    vwap        numeric(10,2),
    created_at  timestamptz NOT NULL DEFAULT now(),
    notes       text,
    PRIMARY KEY (symbol, "timestamp")
);
CREATE TABLE ohlcv_daily (
    symbol      text NOT NULL,
    date        date NOT NULL,
    open        double precision NOT NULL,
    high        double precision NOT NULL,
    low         double precision NOT NULL,
    close       double precision NOT NULL,
    volume      bigint NOT NULL,
    vwap        numeric(10,2),
    created_at  timestamptz NOT NULL DEFAULT now(),
    notes       text,
    PRIMARY KEY (symbol, date)
);
CREATE TABLE ohlcv_weekly (
    symbol      text NOT NULL,
    week_start  date NOT NULL,
    open        double precision NOT NULL,
    high        double precision NOT NULL,
    low         double precision NOT NULL,
    close       double precision NOT NULL,
    volume      bigint NOT NULL,
    vwap        numeric(10,2),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX ohlcv_weekly_symbol_week ON ohlcv_weekly (week_start, symbol);
CREATE TABLE ohlcv_monthly (
    symbol      text NOT NULL,
    month_start date NOT NULL,
    open        double precision NOT NULL,
    high        double precision NOT NULL,
    low         double precision NOT NULL,
    close       double precision NOT NULL,
    volume      bigint NOT NULL,
    vwap        numeric(10,2),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ohlcv_monthly_symbol ON ohlcv_monthly (symbol);
INSERT INTO symbols (symbol, name, exchange, last_updated) VALUES
    ('AAPL', 'Apple Inc.', 'XNAS', '2024-01-02 09:00:00+00'),
    ('SCHG', NULL, NULL, '2024-01-02 09:00:00+00');
INSERT INTO ohlcv_hourly (symbol, "timestamp", open, high, low, close, volume, vwap, created_at, notes) VALUES
    ('AAPL', '2024-06-03 14:00:00+00', 192.9, 193.5, 192.1, 193.12, 4100000, 193.01, '2024-06-03 21:00:00+00', 'hand-loaded'),
    ('SCHG', '2025-12-02 19:00:00+00', 10, 11, 9, 10.5, 1000, NULL, '2025-12-02 21:00:00+00', NULL);
INSERT INTO ohlcv_daily (symbol, date, open, high, low, close, volume, vwap, created_at) VALUES
    ('AAPL', '2024-06-03', 192.9, 194.99, 192.52, 194.03, 50080500, 193.77, '2024-06-03 21:00:00+00'),
    ('SCHG', '2025-12-02', 10, 11, 9, 10.5, 1000, NULL, '2025-12-02 21:00:00+00');
INSERT INTO ohlcv_weekly (symbol, week_start, open, high, low, close, volume, created_at) VALUES
    ('AAPL', '2024-06-02', 192.9, 196.94, 192.52, 196.89, 262000000, '2024-06-08 12:00:00+00'),
    ('SCHG', '2025-11-30', 10, 11, 9, 10.5, 1000, '2025-12-01 21:00:00+00');
INSERT INTO ohlcv_monthly (symbol, month_start, open, high, low, close, volume, created_at) VALUES
    ('AAPL', '2024-06-01', 192.9, 220.2, 192.15, 210.62, 1720000000, '2024-07-01 12:00:00+00'),
    ('AAPL', '2024-07-01', 212.09, 237.23, 211.92, 222.08, 1150000000, '2024-08-01 12:00:00+00'),
    ('SCHG', '2025-12-01', 10, 11, 9, 10.5, 1000, '2025-12-01 21:00:00+00');
