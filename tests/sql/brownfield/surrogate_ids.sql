-- A TickStock database as an ORM-era app creates it: surrogate ids, UNIQUE (symbol, <time>)
-- instead of a primary key, VARCHAR symbols, NUMERIC(12,4) prices, BIGINT volume, naive
-- timestamps (the hourly key and created_at), a user column with a default, rows everywhere.
-- SCHG rows sit on keys the acceptance load re-fetches; AAPL rows on keys no load touches.
CREATE TABLE symbols (
    id                serial PRIMARY KEY,
    symbol            varchar(10) NOT NULL UNIQUE,
    name              varchar(255),
    exchange          varchar(50),
    sector            varchar(100),
    industry          varchar(100),
    issuer            varchar(100),
    underlying_index  varchar(100),
    last_updated      timestamp DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE ohlcv_hourly (
    id          bigserial PRIMARY KEY,
    symbol      varchar(10) NOT NULL,
    "timestamp" timestamp NOT NULL,
    open        numeric(12,4) NOT NULL,
    high        numeric(12,4) NOT NULL,
    low         numeric(12,4) NOT NULL,
    close       numeric(12,4) NOT NULL,
    volume      bigint NOT NULL,
    created_at  timestamp DEFAULT CURRENT_TIMESTAMP,
    source      varchar(20) NOT NULL DEFAULT 'legacy',
    UNIQUE (symbol, "timestamp")
);
CREATE TABLE ohlcv_daily (
    id          bigserial PRIMARY KEY,
    symbol      varchar(10) NOT NULL,
    date        date NOT NULL,
    open        numeric(12,4) NOT NULL,
    high        numeric(12,4) NOT NULL,
    low         numeric(12,4) NOT NULL,
    close       numeric(12,4) NOT NULL,
    volume      bigint NOT NULL,
    created_at  timestamp DEFAULT CURRENT_TIMESTAMP,
    source      varchar(20) NOT NULL DEFAULT 'legacy',
    UNIQUE (symbol, date)
);
CREATE TABLE ohlcv_weekly (
    id          bigserial PRIMARY KEY,
    symbol      varchar(10) NOT NULL,
    week_start  date NOT NULL,
    open        numeric(12,4) NOT NULL,
    high        numeric(12,4) NOT NULL,
    low         numeric(12,4) NOT NULL,
    close       numeric(12,4) NOT NULL,
    volume      bigint NOT NULL,
    created_at  timestamp DEFAULT CURRENT_TIMESTAMP,
    UNIQUE (symbol, week_start)
);
CREATE TABLE ohlcv_monthly (
    id          bigserial PRIMARY KEY,
    symbol      varchar(10) NOT NULL,
    month_start date NOT NULL,
    open        numeric(12,4) NOT NULL,
    high        numeric(12,4) NOT NULL,
    low         numeric(12,4) NOT NULL,
    close       numeric(12,4) NOT NULL,
    volume      bigint NOT NULL,
    created_at  timestamp DEFAULT CURRENT_TIMESTAMP,
    UNIQUE (symbol, month_start)
);
INSERT INTO symbols (symbol, name, exchange, sector, industry, issuer, underlying_index, last_updated) VALUES
    ('AAPL', 'Apple Inc.', 'XNAS', 'Technology', 'Consumer Electronics', NULL, NULL, '2024-01-02 09:00:00'),
    ('SCHG', 'Schwab Growth (old name)', 'ARCX', NULL, NULL, 'Schwab', 'DJ US Large-Cap Growth', '2024-01-02 09:00:00');
INSERT INTO ohlcv_hourly (symbol, "timestamp", open, high, low, close, volume, created_at) VALUES
    ('AAPL', '2024-06-03 14:00:00', 192.9000, 193.5000, 192.1000, 193.1200, 4100000, '2024-06-03 21:00:00'),
    ('AAPL', '2024-06-03 15:00:00', 193.1200, 194.0000, 193.0000, 193.8000, 3900000, '2024-06-03 21:00:00'),
    ('SCHG', '2025-12-01 15:00:00', 10.0000, 11.0000, 9.0000, 10.5000, 1000, '2025-12-01 21:00:00');
INSERT INTO ohlcv_daily (symbol, date, open, high, low, close, volume, created_at) VALUES
    ('AAPL', '2024-06-03', 192.9000, 194.9900, 192.5200, 194.0300, 50080500, '2024-06-03 21:00:00'),
    ('AAPL', '2024-06-04', 194.6400, 195.3200, 193.0300, 194.3500, 47471400, '2024-06-04 21:00:00'),
    ('SCHG', '2025-12-01', 10.0000, 11.0000, 9.0000, 10.5000, 1000, '2025-12-01 21:00:00');
INSERT INTO ohlcv_weekly (symbol, week_start, open, high, low, close, volume, created_at) VALUES
    ('AAPL', '2024-06-02', 192.9000, 196.9400, 192.5200, 196.8900, 262000000, '2024-06-08 12:00:00'),
    ('SCHG', '2025-11-30', 10.0000, 11.0000, 9.0000, 10.5000, 1000, '2025-12-01 21:00:00');
INSERT INTO ohlcv_monthly (symbol, month_start, open, high, low, close, volume, created_at) VALUES
    ('AAPL', '2024-06-01', 192.9000, 220.2000, 192.1500, 210.6200, 1720000000, '2024-07-01 12:00:00'),
    ('SCHG', '2025-12-01', 10.0000, 11.0000, 9.0000, 10.5000, 1000, '2025-12-01 21:00:00');
