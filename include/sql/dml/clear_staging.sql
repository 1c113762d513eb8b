-- Remove one load key's staged rows (a retried fetch replaces what its failed try left).
DELETE FROM ohlcv_staging WHERE load_key = %(load_key)s
