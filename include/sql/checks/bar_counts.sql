-- Exact bar-count check for one timeframe: per symbol, the bars the XNYS calendar says must
-- exist (bounded by the symbol's list and delisting dates, and by an optional per-symbol
-- `since` date: the nightly refresh checks only history a symbol was loaded with) vs the bars stored, plus bars stored
-- where none should be (a date shifted by a time-zone bug lands on a weekend or holiday) and
-- OHLC invariant violations.
-- Identifiers/expressions per timeframe: {table}, {time_column}, {stored_key} (the time column as
-- a key: an adopted `timestamp without time zone` column holds UTC), {period_first_day},
-- {period_last_day} (the ET dates a key's period covers). Values are bind parameters; first and
-- last are in the time column's own type.
WITH keys AS (
    SELECT unnest(%(keys)s::{key_type}[]) AS key
), expected AS (
    SELECT sym.symbol, keys.key
      FROM unnest(%(symbols)s::text[], %(since)s::date[]) AS sym(symbol, since)
     CROSS JOIN keys
      LEFT JOIN symbols s ON s.symbol = sym.symbol
     WHERE (s.list_date IS NULL OR {period_last_day} >= s.list_date)
       AND (sym.since IS NULL OR {period_last_day} >= sym.since)
       AND (s.delisted_at IS NULL
            OR {period_first_day} <= (s.delisted_at AT TIME ZONE 'America/New_York')::date)
), stored AS (
    SELECT t.symbol, {stored_key} AS key,
           (t.high < greatest(t.open, t.close) OR t.low > least(t.open, t.close)
            OR t.volume < 0) AS invalid
      FROM {table} t
     WHERE t.symbol = ANY(%(symbols)s) AND t.{time_column} BETWEEN %(first)s AND %(last)s
), expected_n AS (
    SELECT symbol, count(*) AS n FROM expected GROUP BY symbol
), matched_n AS (
    SELECT st.symbol, count(*) AS n FROM stored st JOIN expected e USING (symbol, key) GROUP BY st.symbol
), stored_n AS (
    SELECT symbol, count(*) AS n, count(*) FILTER (WHERE invalid) AS invalid FROM stored GROUP BY symbol
)
SELECT sym.symbol,
       coalesce(expected_n.n, 0) AS expected,
       coalesce(matched_n.n, 0) AS present,
       coalesce(stored_n.n, 0) - coalesce(matched_n.n, 0) AS unexpected,
       coalesce(stored_n.invalid, 0) AS invalid
  FROM unnest(%(symbols)s::text[]) AS sym(symbol)
  LEFT JOIN expected_n USING (symbol)
  LEFT JOIN matched_n USING (symbol)
  LEFT JOIN stored_n USING (symbol)
 ORDER BY sym.symbol
