-- Downgrade of revision 0003: every staged row names its key and start again. Staged rows without a
-- bar_start (day/week/month bars of a run in flight) are dropped first: NOT NULL cannot hold them,
-- and staging holds only hand-off copies of bars a rerun fetches again.
DELETE FROM ohlcv_staging WHERE bar_start IS NULL;
ALTER TABLE ohlcv_staging
    ALTER COLUMN load_key DROP DEFAULT,
    ALTER COLUMN bar_start SET NOT NULL;
