"""The simulated ticker universe: a few realistic names plus a deterministic synthetic set.

The curated names carry the special cases the loader must cope with (an illiquid symbol with
empty hours, a 2025 listing, a delisted name). The synthetic names exist for scale: they are
derived from the seed alone, so building 5,000 of them costs a few milliseconds and no prices are
generated until a request needs them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import random
import string
from dataclasses import dataclass, field
from typing import Any

#: Realistic-looking reference data; values are illustrative, not authoritative.
_CURATED: list[dict[str, Any]] = [
    {
        "ticker": "SPY",
        "name": "SPDR S&P 500 ETF Trust",
        "type": "ETF",
        "primary_exchange": "ARCX",
        "cik": "0000884394",
        "composite_figi": "BBG000BDTBL9",
        "share_class_figi": "BBG001S72SM3",
        "list_date": "1993-01-22",
        "price": 600.0,
        "daily_volume": 70_000_000,
    },
    {
        "ticker": "SCHG",
        "name": "Schwab U.S. Large-Cap Growth ETF",
        "type": "ETF",
        "primary_exchange": "ARCX",
        "cik": "0001454889",
        "composite_figi": "BBG000QJ0KF8",
        "share_class_figi": "BBG001SQ8PM1",
        "list_date": "2009-12-11",
        "price": 30.0,
        "daily_volume": 9_000_000,
    },
    {
        "ticker": "VUG",
        "name": "Vanguard Growth ETF",
        "type": "ETF",
        "primary_exchange": "ARCX",
        "cik": "0000036405",
        "composite_figi": "BBG000BHVKQ5",
        "share_class_figi": "BBG001S5TWK1",
        "list_date": "2004-01-26",
        "price": 480.0,
        "daily_volume": 1_100_000,
    },
    {
        "ticker": "QQQ",
        "name": "Invesco QQQ Trust, Series 1",
        "type": "ETF",
        "primary_exchange": "XNAS",
        "cik": "0001067839",
        "composite_figi": "BBG000BSWKH7",
        "share_class_figi": "BBG001S72SN2",
        "list_date": "1999-03-10",
        "price": 610.0,
        "daily_volume": 45_000_000,
    },
    {
        "ticker": "AAPL",
        "name": "Apple Inc.",
        "type": "CS",
        "primary_exchange": "XNAS",
        "cik": "0000320193",
        "composite_figi": "BBG000B9XRY4",
        "share_class_figi": "BBG001S5N8V8",
        "list_date": "1980-12-12",
        "sic_code": "3571",
        "sic_description": "ELECTRONIC COMPUTERS",
        "price": 275.0,
        "daily_volume": 50_000_000,
    },
    {
        "ticker": "MSFT",
        "name": "Microsoft Corp",
        "type": "CS",
        "primary_exchange": "XNAS",
        "cik": "0000789019",
        "composite_figi": "BBG000BPH459",
        "share_class_figi": "BBG001S5TD05",
        "list_date": "1986-03-13",
        "sic_code": "7372",
        "sic_description": "SERVICES-PREPACKAGED SOFTWARE",
        "price": 480.0,
        "daily_volume": 20_000_000,
    },
    {
        "ticker": "NVDA",
        "name": "Nvidia Corp",
        "type": "CS",
        "primary_exchange": "XNAS",
        "cik": "0001045810",
        "composite_figi": "BBG000BBJQV0",
        "share_class_figi": "BBG001S5TZJ6",
        "list_date": "1999-01-22",
        "sic_code": "3674",
        "sic_description": "SEMICONDUCTORS & RELATED DEVICES",
        "price": 180.0,
        "daily_volume": 180_000_000,
    },
    # The rest of the repository's core_etfs universe (reference data illustrative).
    {
        "ticker": "VOO",
        "name": "Vanguard S&P 500 ETF",
        "type": "ETF",
        "primary_exchange": "ARCX",
        "list_date": "2010-09-07",
        "price": 550.0,
        "daily_volume": 6_000_000,
    },
    {
        "ticker": "IVV",
        "name": "iShares Core S&P 500 ETF",
        "type": "ETF",
        "primary_exchange": "ARCX",
        "list_date": "2000-05-15",
        "price": 600.0,
        "daily_volume": 5_000_000,
    },
    {
        "ticker": "VTI",
        "name": "Vanguard Total Stock Market ETF",
        "type": "ETF",
        "primary_exchange": "ARCX",
        "list_date": "2001-05-24",
        "price": 300.0,
        "daily_volume": 3_500_000,
    },
    {
        "ticker": "IWM",
        "name": "iShares Russell 2000 ETF",
        "type": "ETF",
        "primary_exchange": "ARCX",
        "list_date": "2000-05-22",
        "price": 240.0,
        "daily_volume": 30_000_000,
    },
    {
        "ticker": "DIA",
        "name": "SPDR Dow Jones Industrial Average ETF Trust",
        "type": "ETF",
        "primary_exchange": "ARCX",
        "list_date": "1998-01-14",
        "price": 470.0,
        "daily_volume": 3_000_000,
    },
    {
        "ticker": "VEA",
        "name": "Vanguard FTSE Developed Markets ETF",
        "type": "ETF",
        "primary_exchange": "ARCX",
        "list_date": "2007-07-20",
        "price": 55.0,
        "daily_volume": 12_000_000,
    },
    # Special cases. These three are fictional on purpose.
    {
        "ticker": "QUIET",
        "name": "Quietwater Holdings Inc.",
        "type": "CS",
        "primary_exchange": "XNAS",
        "cik": "0009900001",
        "composite_figi": "BBG0SIM00001",
        "share_class_figi": "BBG0SIM10001",
        "list_date": "2011-05-02",
        "sic_code": "6798",
        "sic_description": "REAL ESTATE INVESTMENT TRUSTS",
        "price": 12.0,
        "daily_volume": 40_000,
        "illiquid": True,
    },
    {
        "ticker": "NEWCO",
        "name": "Newco Robotics Corp.",
        "type": "CS",
        "primary_exchange": "XNYS",
        "cik": "0009900002",
        "composite_figi": "BBG0SIM00002",
        "share_class_figi": "BBG0SIM10002",
        "list_date": "2025-06-18",
        "sic_code": "3569",
        "sic_description": "GENERAL INDUSTRIAL MACHINERY & EQUIPMENT, NEC",
        "price": 24.0,
        "daily_volume": 3_000_000,
    },
    {
        "ticker": "GONE",
        "name": "Gone Fishing Brands Inc.",
        "type": "CS",
        "primary_exchange": "XNYS",
        "cik": "0009900003",
        "composite_figi": "BBG0SIM00003",
        "share_class_figi": "BBG0SIM10003",
        "list_date": "2008-09-15",
        "delisted": "2025-03-14",
        "sic_code": "5090",
        "sic_description": "WHOLESALE-MISC DURABLE GOODS",
        "price": 8.0,
        "daily_volume": 600_000,
    },
]

ILLIQUID_TICKER = "QUIET"
NEW_LISTING_TICKER = "NEWCO"
DELISTED_TICKER = "GONE"
CURATED_TICKERS = tuple(d["ticker"] for d in _CURATED)


def stable_hash(*parts: object) -> int:
    """A 63-bit hash that, unlike ``hash()``, is identical across processes and runs."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


@dataclass(frozen=True)
class Ticker:
    """One simulated symbol: its reference data and the parameters of its price series."""

    ticker: str
    name: str
    type: str
    primary_exchange: str
    list_date: dt.date
    delisted: dt.date | None
    price: float
    daily_volume: float
    illiquid: bool = False
    details: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def active(self) -> bool:
        return self.delisted is None


def _ticker_from(spec: dict[str, Any]) -> Ticker:
    delisted = spec.get("delisted")
    return Ticker(
        ticker=spec["ticker"],
        name=spec["name"],
        type=spec["type"],
        primary_exchange=spec["primary_exchange"],
        list_date=dt.date.fromisoformat(spec["list_date"]),
        delisted=dt.date.fromisoformat(delisted) if delisted else None,
        price=float(spec["price"]),
        daily_volume=float(spec["daily_volume"]),
        illiquid=bool(spec.get("illiquid", False)),
        details={
            k: spec[k]
            for k in ("cik", "composite_figi", "share_class_figi", "sic_code", "sic_description")
            if k in spec
        },
    )


_SYLLABLES = ["Ara", "Bel", "Cor", "Dyn", "Eon", "Fal", "Gra", "Hel", "Ion", "Jun", "Kel", "Lum"]
_SUFFIXES = ["Technologies Inc.", "Holdings Corp.", "Industries Inc.", "Bancorp", "Therapeutics Inc."]


def _synthetic(seed: int, size: int, taken: set[str]) -> list[Ticker]:
    """``size`` deterministic four-letter symbols starting with X (few real tickers do)."""
    rng = random.Random(f"massive_sim-universe-{seed}")
    combos = ["X" + "".join(c) for c in itertools.product(string.ascii_uppercase, repeat=3)]
    rng.shuffle(combos)
    out: list[Ticker] = []
    for symbol in combos:
        if len(out) >= size:
            break
        if symbol in taken:
            continue
        is_etf = rng.random() < 0.2
        list_year = rng.choice([1995, 2001, 2006, 2010, 2014, 2018, 2021, 2023])
        list_date = dt.date(list_year, rng.randint(1, 12), rng.randint(1, 28))
        name = f"{rng.choice(_SYLLABLES)}{rng.choice(_SYLLABLES).lower()} "
        name += "Sector ETF" if is_etf else rng.choice(_SUFFIXES)
        out.append(
            Ticker(
                ticker=symbol,
                name=name,
                type="ETF" if is_etf else "CS",
                primary_exchange="ARCX" if is_etf else rng.choice(["XNYS", "XNAS"]),
                list_date=list_date,
                delisted=None,
                price=round(10 ** rng.uniform(0.8, 2.7), 2),
                daily_volume=float(int(10 ** rng.uniform(5, 7.3))),
                details={
                    "cik": f"{1_100_000 + stable_hash(seed, symbol) % 800_000:010d}",
                    "composite_figi": f"BBG0X{stable_hash('figi', symbol) % 10**7:07d}",
                },
            )
        )
    return out


class Universe:
    """Lookup of every simulated ticker, curated first, then the synthetic set in a fixed order."""

    def __init__(self, seed: int = 0, synthetic_size: int = 5000) -> None:
        curated = [_ticker_from(spec) for spec in _CURATED]
        synthetic = _synthetic(seed, synthetic_size, {t.ticker for t in curated})
        self.tickers: list[Ticker] = curated + synthetic
        self.by_symbol: dict[str, Ticker] = {t.ticker: t for t in self.tickers}

    def __len__(self) -> int:
        return len(self.tickers)

    def get(self, symbol: str) -> Ticker | None:
        return self.by_symbol.get(symbol)

    def details(self, t: Ticker) -> dict[str, Any]:
        """The ``results`` object of ``/v3/reference/tickers/{ticker}``."""
        out: dict[str, Any] = {
            "ticker": t.ticker,
            "name": t.name,
            "market": "stocks",
            "locale": "us",
            "primary_exchange": t.primary_exchange,
            "type": t.type,
            "active": t.active,
            "currency_name": "usd",
            **t.details,
            "list_date": t.list_date.isoformat(),
            "round_lot": 100,
            "ticker_root": t.ticker,
        }
        if t.type == "CS":
            out["description"] = f"{t.name} is a simulated company used for offline tests."
            out["market_cap"] = round(t.price * t.daily_volume * 120, 2)
            out["share_class_shares_outstanding"] = int(t.daily_volume * 120)
            out["weighted_shares_outstanding"] = int(t.daily_volume * 120)
            out["total_employees"] = 1000 + stable_hash("emp", t.ticker) % 150_000
        if t.delisted is not None:
            out["delisted_utc"] = f"{t.delisted.isoformat()}T00:00:00Z"
        return out
