-- Symbol registry (design document's columns, plus what ticker details give for free).
CREATE TABLE IF NOT EXISTS symbols (
    symbol            text PRIMARY KEY,
    name              text,
    exchange          text,
    sector            text,
    industry          text,
    issuer            text,
    underlying_index  text,
    type              text,
    active            boolean     NOT NULL DEFAULT true,
    market            text,
    currency_name     text,
    cik               text,
    composite_figi    text,
    list_date         date,
    delisted_at       timestamptz,
    last_updated      timestamptz NOT NULL DEFAULT now()
);
