-- Per symbol: how much of one OHLCV table it already has. {table}/{time_column} per timeframe.
-- The refresh compares `stored` with the calendar's count between first and last to spot gaps
-- cheaply, and only then asks for the missing keys (missing_keys.sql).
SELECT s.symbol, s.list_date, min(t.{time_column}) AS first_key, max(t.{time_column}) AS last_key,
       count(t.{time_column}) AS stored
  FROM symbols s
  LEFT JOIN {table} t ON t.symbol = s.symbol
 WHERE s.symbol = ANY(%(symbols)s)
 GROUP BY s.symbol, s.list_date
 ORDER BY s.symbol
