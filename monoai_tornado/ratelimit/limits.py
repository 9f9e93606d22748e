"""What a user is allowed: :class:`Limit`, and :func:`parse_limit` for the CLI syntax.

A limit is "at most ``value`` units (requests or tokens) per fixed window of ``reset_value``
``reset_unit``", windows aligned to the epoch::

    Limit("request", 10, "minute")            # 10 requests a minute: "10-per-60"
    Limit("token", 100_000, "day")            # "100000-tokens-per-86400"
    parse_limit("100/2hour")                  # Limit("request", 100, "hour", 2)
    parse_spend_limit("5/month")              # Limit("usd", 5_000_000_000, "month"): nano-dollars

A ``month`` window is the calendar month in UTC (it resets at 00:00 UTC on the 1st); a ``day``
window, aligned to the epoch, is the calendar day in UTC.
"""
from __future__ import annotations

import datetime
import re
from typing import Any

from ..money.prices import NANOS_PER_USD, parse_usd

__all__ = ["Limit", "parse_limit", "parse_spend_limit", "UNITS", "RESET_UNITS"]

#: Units a limit counts, with the plural spellings accepted for them (``usd``: nano-dollars).
UNITS: dict[str, str] = {"request": "request", "requests": "request", "token": "token", "tokens": "token",
                         "usd": "usd"}
#: Seconds in each reset unit (singular and plural spellings); a month is a calendar month
#: (its nominal 31 days only size the window for headers).
RESET_UNITS: dict[str, int] = {}
for _name, _seconds in (("second", 1), ("minute", 60), ("hour", 3600), ("day", 86400), ("month", 31 * 86400)):
    RESET_UNITS[_name] = RESET_UNITS[_name + "s"] = _seconds


def _month_start(second: int, months: int = 0) -> int:
    """Epoch second of 00:00 UTC on the 1st of the month of ``second``, ``months`` later."""
    day = datetime.datetime.fromtimestamp(second, datetime.timezone.utc)
    index = day.year * 12 + day.month - 1 + months
    first = datetime.datetime(index // 12, index % 12 + 1, 1, tzinfo=datetime.timezone.utc)
    return int(first.timestamp())


def _usd_text(nanos: int) -> str:
    whole, rest = divmod(nanos, NANOS_PER_USD)
    return f"{whole}.{rest:09d}".rstrip("0").rstrip(".") if rest else str(whole)


def _positive_int(field: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{field} must be a positive integer, not {value!r}")
    if value <= 0:
        raise ValueError(f"{field} must be a positive integer, not {value}")
    return value


class Limit:
    """At most ``value`` units per fixed window of ``reset_value`` x ``reset_unit``.

    ``unit`` is ``"request"``, ``"token"`` or ``"usd"`` (a spend limit; ``value`` in
    nano-dollars); ``reset_unit`` one of second, minute, hour, day, month (plurals accepted; a
    month is one calendar month in UTC). ``name`` identifies the limit in stats, headers and
    storage keys; it defaults to ``"{value}-per-{window_seconds}"``
    (``"{value}-tokens-per-{window_seconds}"`` for token limits, ``"{USD}-usd-per-{window_seconds
    or month}"`` for spend limits). Limits are immutable and compare by their fields.
    """

    __slots__ = ("unit", "value", "reset_unit", "reset_value", "name", "window_seconds", "is_token",
                 "is_money", "calendar")

    unit: str
    value: int
    reset_unit: str
    reset_value: int
    name: str
    window_seconds: int
    is_token: bool
    #: A spend limit: counts nano-dollars (reserved and settled as tokens are).
    is_money: bool
    #: Windows are calendar months in UTC (else fixed windows aligned to the epoch).
    calendar: bool

    def __init__(
        self,
        unit: str,
        value: int,
        reset_unit: str,
        reset_value: int = 1,
        name: str | None = None,
    ) -> None:
        canonical_unit = UNITS.get(unit.lower()) if isinstance(unit, str) else None
        if canonical_unit is None:
            raise ValueError(f"unit must be 'request', 'token' or 'usd', not {unit!r}")
        reset_key = reset_unit.lower() if isinstance(reset_unit, str) else None
        if reset_key not in RESET_UNITS:
            raise ValueError(
                f"reset_unit must be one of 'second', 'minute', 'hour', 'day', 'month', not {reset_unit!r}"
            )
        _positive_int("value", value)
        _positive_int("reset_value", reset_value)
        calendar = reset_key.removesuffix("s") == "month"
        if calendar and reset_value != 1:
            raise ValueError("a month window is one calendar month (use 'N/month')")
        window = RESET_UNITS[reset_key] * reset_value
        if name is None:
            if canonical_unit == "usd":
                name = f"{_usd_text(value)}-usd-per-{'month' if calendar else window}"
            else:
                middle = "-tokens-per-" if canonical_unit == "token" else "-per-"
                name = f"{value}{middle}{'month' if calendar else window}"
        elif not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, not {name!r}")
        setter = object.__setattr__
        setter(self, "unit", canonical_unit)
        setter(self, "value", value)
        setter(self, "reset_unit", reset_key.removesuffix("s"))
        setter(self, "reset_value", reset_value)
        setter(self, "name", name)
        setter(self, "window_seconds", window)
        setter(self, "is_token", canonical_unit == "token")
        setter(self, "is_money", canonical_unit == "usd")
        setter(self, "calendar", calendar)

    def window_start(self, second: int) -> int:
        """Start (epoch second) of the window holding ``second``."""
        if self.calendar:
            return _month_start(second)
        return second - second % self.window_seconds

    def window_end(self, start: int) -> int:
        """End (epoch second) of the window starting at ``start``."""
        if self.calendar:
            return _month_start(start, 1)
        return start + self.window_seconds

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("Limit is immutable")

    def _key(self) -> tuple[Any, ...]:
        return (self.unit, self.value, self.window_seconds, self.name)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Limit):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (
            f"Limit(unit={self.unit!r}, value={self.value}, reset_unit={self.reset_unit!r}, "
            f"reset_value={self.reset_value}, name={self.name!r})"
        )

    def to_dict(self) -> dict[str, Any]:
        """The limit as JSON for ``/rate-limit/stats`` (a spend limit's value in USD)."""
        return {
            "name": self.name,
            "unit": self.unit,
            "value": self.value / NANOS_PER_USD if self.is_money else self.value,
            "reset_unit": self.reset_unit,
            "reset_value": self.reset_value,
            "window_seconds": self.window_seconds,
        }


_SYNTAX = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([a-zA-Z]+)\s*$")
_SPEND_SYNTAX = re.compile(r"^\s*\$?(\d+(?:\.\d*)?|\.\d+)\s*/\s*(\d*)\s*([a-zA-Z]+)\s*$")


def parse_limit(text: str, unit: str = "request", name: str | None = None) -> Limit:
    """Parse the CLI syntax ``N/[K]UNIT``: ``5/minute``, ``100/2hour``, ``10/30second``.

    Raises :class:`ValueError` with the accepted syntax in its message for anything else.
    """
    if not isinstance(text, str):
        raise ValueError(f"limit must be a string like '5/minute', not {text!r}")
    match = _SYNTAX.match(text)
    problem = None
    if match is None:
        problem = "expected N/UNIT or N/KUNIT"
    elif match.group(3).lower() not in RESET_UNITS:
        problem = f"unknown unit {match.group(3)!r}"
    elif int(match.group(1)) <= 0 or (match.group(2) and int(match.group(2)) <= 0):
        problem = "numbers must be positive"
    if problem is not None or match is None:
        raise ValueError(
            f"invalid limit {text!r}: {problem} (examples: '5/minute', '100/2hour', "
            "'1000/day', '10/30second'; units: second, minute, hour, day)"
        )
    count, per, reset_unit = match.groups()
    return Limit(unit, int(count), reset_unit.lower(), int(per) if per else 1, name)


def parse_spend_limit(text: str, name: str | None = None) -> Limit:
    """Parse ``--spend-limit AMOUNT/[K]WINDOW`` (USD): ``0.50/hour``, ``5/day``, ``100/month``.

    ``day`` and ``month`` are calendar periods in UTC; other windows are fixed windows as for
    ``--limit``. Raises :class:`ValueError` with the accepted syntax for anything else.
    """
    match = _SPEND_SYNTAX.match(text) if isinstance(text, str) else None
    problem = None
    nanos = 0
    if match is None:
        problem = "expected AMOUNT/WINDOW"
    elif match.group(3).lower() not in RESET_UNITS:
        problem = f"unknown window {match.group(3)!r}"
    elif match.group(2) and int(match.group(2)) <= 0:
        problem = "numbers must be positive"
    else:
        try:
            nanos = parse_usd(match.group(1))
        except ValueError as exc:
            problem = str(exc)
        else:
            if nanos <= 0:
                problem = "the amount must be positive"
            elif match.group(3).lower().startswith("month") and match.group(2) not in ("", "1"):
                problem = "a month window is one calendar month"
    if problem is not None or match is None:
        raise ValueError(f"invalid spend limit {text!r}: {problem} (USD per window, examples: '0.50/hour', "
                         "'5/day', '100/month'; windows: second, minute, hour, day, month)")
    _, per, reset_unit = match.groups()
    return Limit("usd", nanos, reset_unit.lower(), int(per) if per else 1, name)
