-- Merge one staged batch into an OHLCV table, in the caller's transaction, and return per symbol:
-- bars offered, rows inserted, rows whose values changed. The path merge_staged takes after the
-- plain merge met a concurrent insert of one of its keys: ON CONFLICT waits for and resolves such
-- conflicts row by row. The staged rows are kept (the task that closes the job clears them):
-- an upsert task retried after its merge committed merges the same rows again, changes nothing
-- and reports the same bars, instead of finding nothing. A batch holds each bar key once
-- (tickstock.bars de-duplicates what the API sends), so there is no DISTINCT ON sort here: a
-- duplicate makes ON CONFLICT fail the whole statement ("cannot affect row a second time"), which
-- merge_staged reports, and nothing is merged or lost.
-- {staged}, {table}, {time_column} (identifiers), {staged_key} (bar_start or period) and
-- {staged_time} (the staged key as the time column stores it: bar_start AT TIME ZONE 'UTC' for an
-- adopted `timestamp without time zone` column, which holds UTC) are filled per batch. EXCLUDED is
-- the row as it would be stored, already cast to the table's own column types (an adopted
-- NUMERIC(12,4) rounds, BIGINT volume), so the comparison happens after the cast: unchanged rows
-- are left alone on every rerun (no dead tuples, updated_at keeps meaning "last changed").
-- Counting happens here, not in the client: a batch returns one row per symbol instead of one per bar.
WITH staged AS (
    SELECT symbol, {staged_key}, open, high, low, close, volume, vwap, transactions
      FROM {staged}
), merged AS (
    INSERT INTO {table} AS t (symbol, {time_column}, open, high, low, close, volume, vwap, transactions)
    SELECT symbol, {staged_time}, open, high, low, close, volume, vwap, transactions
      FROM staged AS s
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
    SELECT symbol, count(*) AS offered FROM staged GROUP BY symbol
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
