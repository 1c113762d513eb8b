-- Mark symbols as updated by this load (their metadata was fresh, so no API call was made).
UPDATE symbols SET last_updated = now() WHERE symbol = ANY(%(symbols)s)
