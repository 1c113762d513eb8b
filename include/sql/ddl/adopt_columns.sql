-- Bring an existing table forward: add the loader's columns it lacks, then refuse (changing
-- nothing: the whole upgrade is one transaction) a table the loader cannot write to.
-- Rendered per table by tickstock.schema.adopt_columns_ddl: the ADD COLUMN IF NOT EXISTS clauses
-- (nullable or defaulted, so existing rows keep their values and no row is rewritten) and the
-- VALUES list of (column, accepted types) come from tickstock.schema.
ALTER TABLE {table}
    {add_columns};
DO $$
DECLARE
    unusable text;
    unfilled text;
BEGIN
    -- Columns the loader writes whose type cannot hold what the API sends (or that are missing).
    SELECT string_agg(format('%I (%s; needs %s)', c.name,
                             coalesce(format_type(a.atttypid, a.atttypmod), 'missing'),
                             array_to_string(c.accepted, ' or ')), ', ' ORDER BY c.name)
      INTO unusable
      FROM (VALUES {columns}) AS c(name, accepted)
      LEFT JOIN pg_attribute a
        ON a.attrelid = {table_name}::regclass AND a.attname = c.name AND a.attnum > 0 AND NOT a.attisdropped
     WHERE a.attname IS NULL OR format_type(a.atttypid, NULL) <> ALL (c.accepted);
    IF unusable IS NOT NULL THEN
        RAISE EXCEPTION USING
            MESSAGE = format('table %s cannot be used by the loader: %s. Nothing was changed.', {table_name}, unusable),
            HINT = 'Change those columns (ALTER TABLE ... ALTER COLUMN ... TYPE ...), then run `python -m tickstock.schema upgrade` again.';
    END IF;
    -- Other NOT NULL columns without a default: every insert of the loader would fail on them.
    SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum)
      INTO unfilled
      FROM pg_attribute a
     WHERE a.attrelid = {table_name}::regclass AND a.attnum > 0 AND NOT a.attisdropped
       AND a.attnotnull AND NOT a.atthasdef AND a.attidentity = '' AND a.attgenerated = ''
       AND a.attname NOT IN (SELECT c.name FROM (VALUES {columns}) AS c(name, accepted));
    IF unfilled IS NOT NULL THEN
        RAISE EXCEPTION USING
            MESSAGE = format('table %s has NOT NULL columns the loader does not fill and that have no default: %s. '
                             'Nothing was changed.', {table_name}, unfilled),
            HINT = 'Give them a default (ALTER TABLE ... ALTER COLUMN ... SET DEFAULT ...) or drop NOT NULL, then run `python -m tickstock.schema upgrade` again.';
    END IF;
END
$$;
