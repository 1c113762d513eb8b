-- Advance (never move back) the split watermark after a successful refresh.
INSERT INTO split_watermark (checked_through) VALUES (%(through)s)
ON CONFLICT (singleton) DO UPDATE
   SET checked_through = greatest(split_watermark.checked_through, EXCLUDED.checked_through),
       updated_at = now()
