"""Money: prices and costs in integers (:mod:`.prices`), spend limits (the limiter's stores
count nano-dollars beside requests and tokens) and the usage ledger (:mod:`.ledger`)."""
from __future__ import annotations

from .prices import NANOS_PER_USD, Prices, Quote, affordable, nanos_of, parse_usd, usd

__all__ = ["NANOS_PER_USD", "Prices", "Quote", "affordable", "nanos_of", "parse_usd", "usd"]
