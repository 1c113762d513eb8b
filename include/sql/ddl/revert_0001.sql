-- Downgrade of revision 0001: remove exactly what its upgrade added, found by the comment
-- (tickstock.schema.ADDED_BY_0001) it left on each: unique constraints, columns, the tables it created
-- (with their rows: on a database the loader created, that is every bar it loaded). Columns
-- and rows the database had before are not touched.
DO $$
DECLARE
    added record;
BEGIN
    FOR added IN SELECT co.conrelid::regclass AS tbl, co.conname
                   FROM pg_constraint co
                   JOIN pg_description d ON d.classoid = 'pg_constraint'::regclass AND d.objoid = co.oid
                  WHERE d.description = {marker} LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', added.tbl, added.conname);
    END LOOP;
    FOR added IN SELECT a.attrelid::regclass AS tbl, a.attname
                   FROM pg_attribute a
                   JOIN pg_description d
                     ON d.classoid = 'pg_class'::regclass AND d.objoid = a.attrelid AND d.objsubid = a.attnum
                  WHERE d.description = {marker} AND a.attnum > 0 LOOP
        EXECUTE format('ALTER TABLE %s DROP COLUMN %I', added.tbl, added.attname);
    END LOOP;
    FOR added IN SELECT d.objoid::regclass AS tbl
                   FROM pg_description d
                  WHERE d.classoid = 'pg_class'::regclass AND d.objsubid = 0 AND d.description = {marker} LOOP
        EXECUTE format('DROP TABLE %s', added.tbl);
    END LOOP;
END
$$;
