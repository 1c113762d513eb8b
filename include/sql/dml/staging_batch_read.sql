-- One staged batch's entry, for its merge. FOR SHARE: a concurrent clear (the job-closing task of a
-- cleared re-run) waits until the merge is done instead of dropping the table under it.
SELECT staged_table, bars, offered, keys_ascending
  FROM ohlcv_staging_batches
 WHERE load_key = %(load_key)s
   FOR SHARE
