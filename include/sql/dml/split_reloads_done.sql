-- Which of the given splits (parallel arrays) the refresh has already reloaded.
SELECT r.symbol, r.execution_date, r.split_from, r.split_to
  FROM split_reloads r
  JOIN unnest(%(symbols)s::text[], %(dates)s::date[], %(froms)s::numeric[], %(tos)s::numeric[])
       AS s (symbol, execution_date, split_from, split_to)
 USING (symbol, execution_date, split_from, split_to)
