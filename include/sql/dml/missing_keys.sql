-- The calendar keys between each symbol's bounds that its table lacks (only for symbols whose
-- counts showed a gap). {table}/{time_column}/{key_type} per timeframe.
SELECT b.symbol, min(k.key) AS first_missing, count(*) AS missing
  FROM unnest(%(symbols)s::text[], %(firsts)s::{key_type}[], %(lasts)s::{key_type}[]) AS b(symbol, first_key, last_key)
  JOIN unnest(%(keys)s::{key_type}[]) AS k(key) ON k.key BETWEEN b.first_key AND b.last_key
 WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE t.symbol = b.symbol AND t.{time_column} = k.key)
 GROUP BY b.symbol
