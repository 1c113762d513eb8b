-- Claim a basis for series that have none; an existing different basis is left for the caller's
-- check to report (and roll back).
INSERT INTO adjustment_basis (symbol, table_name, adjusted)
SELECT symbol, %(table_name)s, %(adjusted)s FROM unnest(%(symbols)s::text[]) AS symbol
ON CONFLICT (symbol, table_name) DO NOTHING
