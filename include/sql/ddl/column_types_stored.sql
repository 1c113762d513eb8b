-- Column name and full type (with modifiers: "numeric(12,4)", "double precision") of one table in
-- the current schema: the merge compares staged values with stored ones after casting them to these.
SELECT a.attname, format_type(a.atttypid, a.atttypmod)
  FROM pg_attribute a
 WHERE a.attrelid = to_regclass(%(table)s) AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attnum
