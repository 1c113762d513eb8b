-- One row: the last split execution date every stored adjusted series is known to reflect.
-- nightly_refresh asks /stocks/v1/splits for (checked_through, as_of] and advances it only when
-- the run succeeded, so a skipped or failed night loses no split.
CREATE TABLE IF NOT EXISTS split_watermark (
    singleton        boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    checked_through  date        NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
