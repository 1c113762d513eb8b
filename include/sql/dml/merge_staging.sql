-- Merge one load_key's staged bars into an OHLCV table, in the caller's transaction, and return
-- per symbol: bars offered, rows inserted, rows whose values changed, and staged keys held more
-- than once (duplicates: merge_staged rolls the transaction back and refuses the batch). The
-- staged rows are kept (finish_job clears them once the run is over): an upsert task retried
-- after its merge committed merges the same rows again, changes nothing and reports the same bars.
--
-- The fast path (docs/benchmarks.md, measurement 6): one index probe over the batch's symbols and
-- period (`any_stored`) finds whether any of its keys can be stored. If none can (a first load),
-- the staged rows are inserted as they are (`fresh`). Otherwise the batch's stored rows are read
-- once by an index range scan (`stored`), compared with the staged ones in one join, and only
-- then written: a plain INSERT of the keys not stored and an UPDATE of the rows whose values
-- differ. The branch not taken stops at its one-time filter. INSERT ... ON CONFLICT (merge_staging_on_conflict.sql) pays a
-- speculative insertion per row and locks (dirties) every existing row even when nothing changes;
-- here a fresh batch is inserted as COPY would be and a rerun only reads. A concurrent load
-- inserting one of the same keys after this statement's snapshot makes the INSERT fail with
-- unique_violation: merge_staged then runs merge_staging_on_conflict.sql in a new transaction.
--
-- {table}, {time_column} (identifiers), {staged_time} (the staged key as the time column stores
-- it: bar_start AT TIME ZONE 'UTC' for an adopted `timestamp without time zone` column, which
-- holds UTC) and {as_stored} (the staged values cast to the table's own column types, typmods
-- included: an adopted NUMERIC(12,4) rounds, BIGINT volume) are filled per table; the load key
-- is a bind parameter. Values are compared after that cast, as ON CONFLICT compares EXCLUDED:
-- unchanged rows are left alone on every rerun (no dead tuples, updated_at keeps meaning "last
-- changed"). The INSERT and the UPDATE assign the staged values themselves (assignment casts).
WITH per_symbol AS MATERIALIZED (
    SELECT symbol, count(*) AS offered, min({staged_time}) AS first, max({staged_time}) AS last
      FROM ohlcv_staging
     WHERE load_key = %(load_key)s
     GROUP BY symbol
), bounds AS (
    SELECT array_agg(symbol) AS symbols, min(first) AS first, max(last) AS last FROM per_symbol
), any_stored AS MATERIALIZED (
    -- One index probe: is any row of the batch's symbols stored within its period? If not, no
    -- key can be stored and the batch is inserted as it is (fresh); else it is compared first.
    SELECT EXISTS (SELECT 1
                     FROM {table} AS t
                    WHERE t.symbol = ANY ((SELECT symbols FROM bounds)::text[])
                      AND t.{time_column} BETWEEN (SELECT first FROM bounds) AND (SELECT last FROM bounds)) AS yes
), fresh AS (
    INSERT INTO {table} (symbol, {time_column}, open, high, low, close, volume, vwap, transactions)
    SELECT symbol, {staged_time}, open, high, low, close, volume, vwap, transactions
      FROM ohlcv_staging
     WHERE load_key = %(load_key)s AND NOT (SELECT yes FROM any_stored)
), stored AS (
    SELECT t.symbol, t.{time_column} AS bar_time, t.open, t.high, t.low, t.close, t.volume, t.vwap, t.transactions
      FROM {table} AS t
     WHERE t.symbol = ANY ((SELECT symbols FROM bounds)::text[])
       AND t.{time_column} BETWEEN (SELECT first FROM bounds) AND (SELECT last FROM bounds)
       AND (SELECT yes FROM any_stored)
), compared AS MATERIALIZED (
    SELECT s.symbol, {staged_time} AS bar_time, s.open, s.high, s.low, s.close, s.volume, s.vwap, s.transactions,
           t.symbol IS NULL AS is_new,
           t.symbol IS NOT NULL
           AND (t.open, t.high, t.low, t.close, t.volume, t.vwap, t.transactions) IS DISTINCT FROM ({as_stored})
           AS changed
      FROM ohlcv_staging AS s
      LEFT JOIN stored AS t ON t.symbol = s.symbol AND t.bar_time = {staged_time}
     WHERE s.load_key = %(load_key)s AND (SELECT yes FROM any_stored)
), inserted AS (
    INSERT INTO {table} (symbol, {time_column}, open, high, low, close, volume, vwap, transactions)
    SELECT symbol, bar_time, open, high, low, close, volume, vwap, transactions
      FROM compared
     WHERE is_new
), updated AS (
    UPDATE {table} AS t
       SET open = c.open,
           high = c.high,
           low = c.low,
           close = c.close,
           volume = c.volume,
           vwap = c.vwap,
           transactions = c.transactions,
           updated_at = now()
      FROM compared AS c
     WHERE c.changed
       AND t.symbol = c.symbol AND t.{time_column} = c.bar_time
       AND t.symbol = ANY ((SELECT symbols FROM bounds)::text[])
       AND t.{time_column} BETWEEN (SELECT first FROM bounds) AND (SELECT last FROM bounds)
       AND (t.open, t.high, t.low, t.close, t.volume, t.vwap, t.transactions) IS DISTINCT FROM ({as_stored_c})
    RETURNING t.symbol
), duplicates AS (
    -- A key staged twice that is not stored yet fails the INSERT (unique_violation, then ON CONFLICT
    -- refuses it); one that is stored would join twice, so stored matches are counted here.
    SELECT 1 FROM compared WHERE NOT is_new GROUP BY symbol, bar_time HAVING count(*) > 1
)
SELECT p.symbol,
       p.offered,
       CASE WHEN (SELECT yes FROM any_stored) THEN coalesce(c.inserted, 0) ELSE p.offered END,
       coalesce(u.updated, 0),
       (SELECT count(*) FROM duplicates)
  FROM per_symbol AS p
  LEFT JOIN (SELECT symbol, count(*) FILTER (WHERE is_new) AS inserted FROM compared GROUP BY symbol) AS c USING (symbol)
  LEFT JOIN (SELECT symbol, count(*) AS updated FROM updated GROUP BY symbol) AS u USING (symbol)
