-- A staged batch some of whose keys may be stored: per symbol, bars staged, keys not stored yet,
-- and stored rows whose values differ. Read-only, one hash join of the batch with its stored
-- rows (found by a range scan of the key index); a rerun or a refresh of unchanged history stops
-- here, and only a batch with new or changed rows is written (merge_staging.sql).
-- Values are compared after a cast to the table's own column types ({as_stored}: typmods
-- included, an adopted NUMERIC(12,4) rounds, BIGINT volume), as the row would be stored, so an
-- unchanged row is never rewritten (no dead tuples, updated_at keeps meaning "last changed").
SELECT s.symbol,
       count(*) AS offered,
       count(*) FILTER (WHERE t.symbol IS NULL) AS new,
       count(*) FILTER (WHERE t.symbol IS NOT NULL
                          AND (t.open, t.high, t.low, t.close, t.volume, t.vwap, t.transactions)
                              IS DISTINCT FROM ({as_stored})) AS changed
  FROM {staged} AS s
  LEFT JOIN {table} AS t
         ON t.symbol = s.symbol
        AND t.{time_column} = {staged_time}
        AND t.symbol = ANY (%(symbols)s::text[])
        AND t.{time_column} BETWEEN %(first)s AND %(last)s
 GROUP BY s.symbol
