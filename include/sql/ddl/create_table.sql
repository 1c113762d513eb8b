-- Create one of the loader's tables unless it exists (the CREATE TABLE file inside), marking it
-- with the comment tickstock.schema.ADDED_BY_0001 so the downgrade drops only tables this
-- upgrade created; an existing table is adopted by the statements that follow instead.
DO $$
BEGIN
    IF to_regclass({table_name}) IS NULL THEN
{create}
        COMMENT ON TABLE {table} IS {marker};
        RAISE NOTICE 'tickstock: created table %', {table_name};
    END IF;
END
$$;
