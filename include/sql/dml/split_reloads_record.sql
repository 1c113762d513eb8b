-- Record one reloaded split (a rerun that reloads it again keeps the first record).
INSERT INTO split_reloads (symbol, execution_date, split_from, split_to, adjustment_type, rows_rewritten, run_id)
VALUES (%(symbol)s, %(execution_date)s, %(split_from)s, %(split_to)s, %(adjustment_type)s, %(rows_rewritten)s,
        %(run_id)s)
ON CONFLICT (symbol, execution_date, split_from, split_to) DO NOTHING
