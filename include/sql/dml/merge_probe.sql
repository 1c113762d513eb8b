-- Before a merge: the staged batch's first and last key, and whether the target table stores any
-- row of the batch's symbols between them. If it stores none, no staged key can be stored and
-- the batch is inserted as it is (merge_fresh.sql); else it is compared first (merge_compare.sql).
-- One scan of the staged table and one probe of the target's key index. {staged}, {staged_time}
-- (the staged key as the time column stores it), {table} and {time_column} are filled per batch.
WITH bounds AS MATERIALIZED (
    SELECT min({staged_time}) AS first, max({staged_time}) AS last, count(*) AS bars FROM {staged} AS s
)
SELECT b.first,
       b.last,
       b.bars,
       EXISTS (SELECT 1
                 FROM {table} AS t
                WHERE t.symbol = ANY (%(symbols)s::text[])
                  AND t.{time_column} BETWEEN b.first AND b.last) AS any_stored
  FROM bounds AS b
