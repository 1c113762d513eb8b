-- Remove the staged rows of load keys whose upserts have succeeded (finish_job, at the end of a run).
DELETE FROM ohlcv_staging WHERE load_key = ANY(%(load_keys)s)
