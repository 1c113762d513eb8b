-- The loader upserts with ON CONFLICT (key columns), which needs a unique index on exactly those
-- columns. A primary key, a UNIQUE constraint or a unique index the user made all qualify; if
-- there is none it is added, unless duplicate keys exist: then the upgrade stops naming the table
-- and the number of duplicate keys (the whole upgrade is one transaction, so nothing changed).
-- Rendered by tickstock.schema.upsert_key_ddl (table, key columns, constraint name, example fix).
DO $$
DECLARE
    duplicate_keys bigint;
    duplicate_rows bigint;
BEGIN
    IF EXISTS (
        SELECT 1 FROM pg_index i
         WHERE i.indrelid = {table_name}::regclass AND i.indisunique AND i.indisvalid
           AND i.indpred IS NULL AND i.indexprs IS NULL
           AND (SELECT array_agg(a.attname::text ORDER BY a.attname::text)
                  FROM pg_attribute a
                 WHERE a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey::int2[]))
               = (SELECT array_agg(k ORDER BY k) FROM unnest({key_names}::text[]) AS k)
    ) THEN
        RETURN;
    END IF;
    SELECT count(*), coalesce(sum(n), 0) INTO duplicate_keys, duplicate_rows
      FROM (SELECT count(*) AS n FROM {table} GROUP BY {key} HAVING count(*) > 1) AS d;
    IF duplicate_keys > 0 THEN
        RAISE EXCEPTION USING
            ERRCODE = 'unique_violation',
            MESSAGE = format('table %s has %s duplicate (%s) keys (%s rows) and no unique index on them; the loader '
                             'upserts on that key. Nothing was changed. Keep one row per key, e.g. %s, then run '
                             '`python -m tickstock.schema upgrade` again.',
                             {table_name}, duplicate_keys, array_to_string({key_names}::text[], ', '), duplicate_rows,
                             {dedup_example});
    END IF;
    ALTER TABLE {table} ADD CONSTRAINT {constraint} UNIQUE ({key});
END
$$;
