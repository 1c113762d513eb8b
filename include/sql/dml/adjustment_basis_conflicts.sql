-- Stored series (symbol, table) whose adjustment basis differs from the requested one.
SELECT symbol, table_name, adjusted
  FROM adjustment_basis
 WHERE symbol = ANY(%(symbols)s)
   AND table_name = ANY(%(tables)s)
   AND adjusted IS DISTINCT FROM %(adjusted)s
 ORDER BY symbol, table_name
