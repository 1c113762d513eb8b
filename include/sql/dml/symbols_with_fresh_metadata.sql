-- Symbols whose ticker details were fetched recently enough to skip another request.
SELECT symbol FROM symbols
 WHERE symbol = ANY(%(symbols)s) AND name IS NOT NULL AND last_updated > now() - %(max_age)s::interval
