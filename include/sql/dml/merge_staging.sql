-- Merge one load_key's staged bars into an OHLCV table, in the caller's transaction, and return
-- per symbol: bars offered (after de-duplication), rows inserted, rows whose values changed.
-- The staged rows are kept (finish_job clears them once the run is over): an upsert task that is
-- retried after its merge committed (its worker died, or Redis failed on the status write) merges
-- the same rows again, changes nothing and reports the same bars, instead of finding nothing.
-- {table}, {time_column} (identifiers) and {staged_key} (bar_start or period) are filled per
-- timeframe; the load key is a bind parameter. Rows whose values did not change are left alone
-- (no dead tuples, updated_at keeps meaning "last changed"). Counting happens here, not in the
-- client: a batch returns one row per symbol instead of one per bar.
WITH staged AS (
    SELECT symbol, bar_start, period, open, high, low, close, volume, vwap, transactions
      FROM ohlcv_staging
     WHERE load_key = %(load_key)s
), deduplicated AS (
    -- The API has sent duplicate bars; bars are validated upstream, this keeps the statement safe.
    SELECT DISTINCT ON (symbol, {staged_key}) *
      FROM staged
     ORDER BY symbol, {staged_key}, bar_start
), merged AS (
    INSERT INTO {table} AS t (symbol, {time_column}, open, high, low, close, volume, vwap, transactions)
    SELECT symbol, {staged_key}, open, high, low, close, volume, vwap, transactions
      FROM deduplicated
    ON CONFLICT (symbol, {time_column}) DO UPDATE
       SET open = EXCLUDED.open,
           high = EXCLUDED.high,
           low = EXCLUDED.low,
           close = EXCLUDED.close,
           volume = EXCLUDED.volume,
           vwap = EXCLUDED.vwap,
           transactions = EXCLUDED.transactions,
           updated_at = now()
     WHERE (t.open, t.high, t.low, t.close, t.volume, t.vwap, t.transactions)
           IS DISTINCT FROM
           (EXCLUDED.open, EXCLUDED.high, EXCLUDED.low, EXCLUDED.close, EXCLUDED.volume, EXCLUDED.vwap,
            EXCLUDED.transactions)
    RETURNING symbol, (xmax = 0) AS inserted
), offered AS (
    SELECT symbol, count(*) AS offered FROM deduplicated GROUP BY symbol
), written AS (
    SELECT symbol,
           count(*) FILTER (WHERE inserted) AS inserted,
           count(*) FILTER (WHERE NOT inserted) AS updated
      FROM merged
     GROUP BY symbol
)
SELECT o.symbol, o.offered, coalesce(w.inserted, 0), coalesce(w.updated, 0)
  FROM offered o
  LEFT JOIN written w USING (symbol)
