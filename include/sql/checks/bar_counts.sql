-- Exact bar-count check for one timeframe: per symbol, the bars the XNYS calendar says must
-- exist (bounded by the symbol's list and delisting dates, and by an optional per-symbol
-- `since` date: the nightly refresh checks only history a symbol was loaded with) vs the bars stored, plus bars stored
-- where none should be (a date shifted by a time-zone bug lands on a weekend or holiday) and
-- OHLC invariant violations.
-- Identifiers/expressions per timeframe: {table}, {time_column}, {stored_key} (the time column as
-- a key: an adopted `timestamp without time zone` column holds UTC), {period_first_day},
-- {period_last_day} (the ET dates a key's period covers). Values are bind parameters; first and
-- last are in the time column's own type.
--
-- Nothing here is symbols x keys: joining every symbol to every key made a 5,000-symbol day
-- check hash 1.25M expected pairs (spilling to disk at the default work_mem; 6.5 s on the
-- critical path of the run). Stored rows are tested against the key array (a hashed `= ANY`) in
-- one scan; a symbol's expected count is the whole key list unless its bounds cut into the
-- window, and only those symbols' keys and stored rows (index range scans) are looked at again.
WITH keys AS (
    SELECT keys.key, {period_first_day} AS first_day, {period_last_day} AS last_day
      FROM unnest(%(keys)s::{key_type}[]) AS keys(key)
), span AS (
    SELECT count(*) AS n, min(last_day) AS min_last_day, max(first_day) AS max_first_day FROM keys
), bounds AS (
    -- greatest() skips NULLs: the later of the list date and `since`, NULL when neither is known
    SELECT sym.symbol,
           greatest(s.list_date, sym.since) AS from_day,
           (s.delisted_at AT TIME ZONE 'America/New_York')::date AS through_day
      FROM unnest(%(symbols)s::text[], %(since)s::date[]) AS sym(symbol, since)
      LEFT JOIN symbols s ON s.symbol = sym.symbol
), bounded AS (
    -- the symbols whose bounds cut into the window (usually few): only they need their keys
    -- counted one by one
    SELECT b.symbol, b.from_day, b.through_day
      FROM bounds b CROSS JOIN span
     WHERE b.from_day > span.min_last_day OR b.through_day < span.max_first_day
), expected_n AS (
    SELECT b.symbol,
           CASE WHEN bd.symbol IS NULL THEN span.n
                ELSE (SELECT count(*) FROM keys k
                       WHERE (bd.from_day IS NULL OR k.last_day >= bd.from_day)
                         AND (bd.through_day IS NULL OR k.first_day <= bd.through_day))
           END AS n
      FROM bounds b
     CROSS JOIN span
      LEFT JOIN bounded bd USING (symbol)
), stored_n AS (
    SELECT t.symbol,
           count(*) AS n,
           count(*) FILTER (WHERE {stored_key} = ANY(%(keys)s::{key_type}[])) AS on_calendar,
           count(*) FILTER (WHERE t.high < greatest(t.open, t.close) OR t.low > least(t.open, t.close)
                              OR t.volume < 0) AS invalid
      FROM {table} t
     WHERE t.symbol = ANY(%(symbols)s) AND t.{time_column} BETWEEN %(first)s AND %(last)s
     GROUP BY t.symbol
), out_of_bounds AS (
    -- stored bars on calendar keys a bounded symbol is not expected at (before its listing or
    -- its `since` date, after its delisting): stored, but not present
    SELECT t.symbol, count(*) AS n
      FROM bounded bd
      JOIN {table} t ON t.symbol = bd.symbol AND t.{time_column} BETWEEN %(first)s AND %(last)s
      JOIN keys k ON k.key = {stored_key}
     WHERE NOT ((bd.from_day IS NULL OR k.last_day >= bd.from_day)
                AND (bd.through_day IS NULL OR k.first_day <= bd.through_day))
     GROUP BY t.symbol
)
SELECT b.symbol,
       e.n AS expected,
       coalesce(st.on_calendar, 0) - coalesce(o.n, 0) AS present,
       coalesce(st.n, 0) - coalesce(st.on_calendar, 0) + coalesce(o.n, 0) AS unexpected,
       coalesce(st.invalid, 0) AS invalid
  FROM bounds b
  JOIN expected_n e USING (symbol)
  LEFT JOIN stored_n st USING (symbol)
  LEFT JOIN out_of_bounds o USING (symbol)
 ORDER BY b.symbol
