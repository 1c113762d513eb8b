-- Register or refresh one symbol. A symbol without ticker details (unknown to the API) keeps
-- whatever was known before; last_updated always moves, as the design document requires.
INSERT INTO symbols AS s (symbol, name, exchange, sector, industry, issuer, underlying_index, type, active,
                          market, currency_name, cik, composite_figi, list_date, delisted_at, last_updated)
VALUES (%(symbol)s, %(name)s, %(exchange)s, %(sector)s, %(industry)s, %(issuer)s, %(underlying_index)s,
        %(type)s, %(active)s, %(market)s, %(currency_name)s, %(cik)s, %(composite_figi)s, %(list_date)s,
        %(delisted_at)s, now())
ON CONFLICT (symbol) DO UPDATE SET
    name = coalesce(EXCLUDED.name, s.name),
    exchange = coalesce(EXCLUDED.exchange, s.exchange),
    sector = coalesce(EXCLUDED.sector, s.sector),
    industry = coalesce(EXCLUDED.industry, s.industry),
    issuer = coalesce(EXCLUDED.issuer, s.issuer),
    underlying_index = coalesce(EXCLUDED.underlying_index, s.underlying_index),
    type = coalesce(EXCLUDED.type, s.type),
    active = CASE WHEN %(has_details)s THEN EXCLUDED.active ELSE s.active END,
    market = coalesce(EXCLUDED.market, s.market),
    currency_name = coalesce(EXCLUDED.currency_name, s.currency_name),
    cik = coalesce(EXCLUDED.cik, s.cik),
    composite_figi = coalesce(EXCLUDED.composite_figi, s.composite_figi),
    list_date = coalesce(EXCLUDED.list_date, s.list_date),
    delisted_at = CASE WHEN %(has_details)s THEN EXCLUDED.delisted_at ELSE s.delisted_at END,
    last_updated = now()
