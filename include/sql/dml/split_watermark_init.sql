-- A load's bars reflect every split executed so far: start the watermark there if it is unset.
INSERT INTO split_watermark (checked_through) VALUES (%(through)s)
ON CONFLICT (singleton) DO NOTHING
