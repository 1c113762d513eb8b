-- Write a compared batch (merge_compare.sql found new or changed rows): a plain INSERT of the keys
-- not stored and an UPDATE of the stored rows whose values differ, in the caller's transaction;
-- returns per symbol the rows inserted and updated. INSERT ... ON CONFLICT
-- (merge_staging_on_conflict.sql) would pay a speculative insertion per row and lock every
-- existing row even when nothing changes. A concurrent load inserting one of the same keys after
-- this statement's snapshot makes the INSERT fail with unique_violation: merge_staged then runs
-- merge_staging_on_conflict.sql in a new transaction.
-- {staged}, {table}, {time_column}, {staged_time} and {as_stored} (the staged values
-- cast to the table's column types) are filled per batch; the key range is bound.
WITH stored AS (
    SELECT t.symbol, t.{time_column} AS bar_time
      FROM {table} AS t
     WHERE t.symbol = ANY (%(symbols)s::text[])
       AND t.{time_column} BETWEEN %(first)s AND %(last)s
), inserted AS (
    INSERT INTO {table} (symbol, {time_column}, open, high, low, close, volume, vwap, transactions)
    SELECT s.symbol, {staged_time}, s.open, s.high, s.low, s.close, s.volume, s.vwap, s.transactions
      FROM {staged} AS s
     WHERE NOT EXISTS (SELECT 1 FROM stored AS t WHERE t.symbol = s.symbol AND t.bar_time = {staged_time})
    RETURNING symbol
), updated AS (
    UPDATE {table} AS t
       SET open = s.open,
           high = s.high,
           low = s.low,
           close = s.close,
           volume = s.volume,
           vwap = s.vwap,
           transactions = s.transactions,
           updated_at = now()
      FROM {staged} AS s
     WHERE t.symbol = s.symbol AND t.{time_column} = {staged_time}
       AND t.symbol = ANY (%(symbols)s::text[])
       AND t.{time_column} BETWEEN %(first)s AND %(last)s
       AND (t.open, t.high, t.low, t.close, t.volume, t.vwap, t.transactions) IS DISTINCT FROM ({as_stored})
    RETURNING t.symbol
)
SELECT symbol, count(*) FILTER (WHERE is_insert), count(*) FILTER (WHERE NOT is_insert)
  FROM (SELECT symbol, true AS is_insert FROM inserted UNION ALL SELECT symbol, false FROM updated) AS written
 GROUP BY symbol
