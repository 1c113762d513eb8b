-- Every symbol the nightly refresh keeps current.
SELECT symbol FROM symbols WHERE active ORDER BY symbol
