"""Prices and costs as integers: money never drifts through floats.

A price is kept as **nano-dollars per thousand tokens** (equally: pico-dollars per token), so
every price of up to six decimals per million tokens is exact: ``$0.15`` per million is
``150_000``, ``$0.0375`` per million is ``37_500``. A run's cost is summed exactly in
pico-dollars and rounded once, half up, to whole **nano-dollars** (1e-9 USD): what the stores
count and what ``cost_usd`` shows.

>>> prices = Prices.per_million(0.15, 0.60, 0.075)
>>> prices.cost_nanos(prompt=1000, cached=400, completion=100)      # 600*150 + 400*75 + 100*600 nano/1000
180000
>>> usd(prices.cost_nanos(1000, 400, 100))
0.00018
>>> parse_usd("0.50")
500000000
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import model as config_model

__all__ = ["NANOS_PER_USD", "Prices", "Quote", "affordable", "nanos_of", "parse_usd", "prices_of_config", "usd"]

#: Nano-dollars in a dollar.
NANOS_PER_USD = 1_000_000_000
#: Price units (nano-dollars per 1000 tokens) in one USD per million tokens.
_UNITS_PER_USD_PER_MILLION = 1_000_000

#: What admission needs to price a run: ``(prompt cost in pico-dollars, pico-dollars per
#: completion token)``. The store reserves ``nanos_of(prompt + n * per_token)`` for ``n`` tokens.
Quote = tuple[int, int]


def nanos_of(picos: int) -> int:
    """Pico-dollars rounded half up to nano-dollars (the one rounding money ever gets)."""
    return (picos + 500) // 1000


def affordable(nanos: int, prompt_picos: int, per_token: int, spent_picos: int = 0) -> int:
    """Completion tokens that ``nanos`` pay for after ``spent_picos`` and a prompt costing
    ``prompt_picos`` (the largest ``n`` with ``nanos_of(spent + prompt + n * per_token) <= nanos``);
    -1 when not even the prompt fits."""
    room = 1000 * nanos + 499 - spent_picos - prompt_picos
    if room < 0:
        return -1
    return room // per_token if per_token else 1 << 62


def usd(nanos: int) -> float:
    """Nano-dollars as the USD number clients see (``cost_usd``), rounded to 1e-9.

    A whole number of nano-dollars over 1e9 is the float nearest ``nanos`` × 1e-9 already, for
    anything up to ten million dollars (``tests/test_spend_limits.py`` holds it): no
    ``round()``, a fifth of the cost.
    """
    return nanos / NANOS_PER_USD


def _decimal(value: float | int | str | Decimal, what: str) -> Decimal:
    try:
        number = Decimal(str(value)) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        raise ValueError(f"{what} must be a number, not {value!r}") from None
    if isinstance(value, bool) or not number.is_finite() or number < 0:
        raise ValueError(f"{what} must be a number >= 0, not {value!r}")
    return number


def parse_usd(value: float | int | str | Decimal, what: str = "amount") -> int:
    """A USD amount (``"0.50"``, ``5``) as whole nano-dollars; ValueError past nine decimals."""
    nanos = _decimal(value, what) * NANOS_PER_USD
    if nanos != nanos.to_integral_value():
        raise ValueError(f"{what} {value!r} has more than nine decimals (money is counted in nano-dollars)")
    return int(nanos)


def _price_units(value: float | int | str | Decimal, what: str) -> int:
    units = _decimal(value, what) * _UNITS_PER_USD_PER_MILLION
    if units != units.to_integral_value():
        raise ValueError(f"{what} {value!r}: at most six decimals of USD per million tokens")
    return int(units)


@dataclass(frozen=True)
class Prices:
    """A model deployment's prices, in nano-dollars per 1000 tokens (integers).

    Build them from the configuration's USD per million tokens with :meth:`per_million`;
    ``cached_input`` (prompt tokens the upstream reports as cached) defaults to ``input``.
    Routing's deployments carry one (``deployment.prices``); so does a priced model target.
    """

    input: int
    output: int
    cached_input: int

    @classmethod
    def per_million(cls, input: float | int | str | Decimal, output: float | int | str | Decimal,
                    cached_input: float | int | str | Decimal | None = None) -> Prices:
        """Prices from USD per million tokens (``price_input``, ``price_output``,
        ``price_cached_input`` of a ``[[models]]`` entry); ValueError for a negative or
        over-precise one."""
        units_in = _price_units(input, "price_input")
        cached = units_in if cached_input is None else _price_units(cached_input, "price_cached_input")
        return cls(units_in, _price_units(output, "price_output"), cached)

    def cost_picos(self, prompt: int, cached: int, completion: int) -> int:
        """Exact cost in pico-dollars; ``cached`` of the ``prompt`` tokens at the cached price."""
        cached = min(max(0, cached), prompt)
        return (prompt - cached) * self.input + cached * self.cached_input + completion * self.output

    def cost_nanos(self, prompt: int, cached: int, completion: int) -> int:
        """A run's cost in nano-dollars (rounded once, half up)."""
        return nanos_of(self.cost_picos(prompt, cached, completion))

    def quote(self, prompt_tokens: int) -> Quote:
        """What admission reserves with: the prompt at the full input price, and the price of
        one completion token (pico-dollars)."""
        return prompt_tokens * self.input, self.output

    def to_dict(self) -> dict[str, float]:
        """USD per million tokens, as the configuration writes them."""
        scale = _UNITS_PER_USD_PER_MILLION
        return {"price_input": self.input / scale, "price_output": self.output / scale,
                "price_cached_input": self.cached_input / scale}


def prices_of_config(config: config_model.DeploymentConfig) -> Prices | None:
    """A ``[[models]]`` entry's prices (USD per million tokens) as integers, or None (a
    deployment converts its own once, when the router is built)."""
    given = config.prices
    return None if given is None else Prices.per_million(given.input, given.output, given.cached_input)
