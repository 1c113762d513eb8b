-- A staged batch none of whose keys can be stored (merge_probe.sql found no row in its range):
-- inserted as it is, as COPY would insert it. A concurrent load that inserts one of the keys
-- after the probe makes this fail with unique_violation, and merge_staged merges the batch again
-- with merge_staging_on_conflict.sql; a key staged twice fails the same way and is refused there.
INSERT INTO {table} (symbol, {time_column}, open, high, low, close, volume, vwap, transactions)
SELECT symbol, {staged_time}, open, high, low, close, volume, vwap, transactions
  FROM {staged} AS s
