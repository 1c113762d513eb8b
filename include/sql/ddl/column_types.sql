-- Column name and type (without modifiers: "numeric", "timestamp without time zone") of one table
-- in the current schema, so code can adapt to an adopted table's own types.
SELECT a.attname, format_type(a.atttypid, NULL)
  FROM pg_attribute a
 WHERE a.attrelid = to_regclass(%(table)s) AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attnum
