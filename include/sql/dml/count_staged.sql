-- Staged bars per symbol for one load key (what the merge is about to upsert).
SELECT symbol, count(*) FROM ohlcv_staging WHERE load_key = %(load_key)s GROUP BY symbol
