-- Revision 0003: a staged row carries only what its bar needs, as a raw COPY into the OHLCV table would.
-- load_key comes from the staging transaction's setting tickstock.load_key (SET LOCAL by stage_bars)
-- instead of being sent with every row, and a day/week/month bar no longer sends bar_start (its key
-- is period; hourly bars send bar_start and no period). A COPY without the setting fails loudly
-- (NOT NULL) instead of staging rows under no key: nullif, because a session that set it once sees
-- '' after its transaction, not an error. Idempotent.
ALTER TABLE ohlcv_staging
    ALTER COLUMN load_key SET DEFAULT nullif(current_setting('tickstock.load_key', true), ''),
    ALTER COLUMN bar_start DROP NOT NULL;
