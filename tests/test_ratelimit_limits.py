"""Limit: construction, validation, names; parse_limit: the CLI syntax."""
from __future__ import annotations

import pytest

from monoai_tornado.ratelimit import Limit, parse_limit


def test_defaults_and_window() -> None:
    limit = Limit(unit="request", value=10, reset_unit="minute")
    assert (limit.unit, limit.value, limit.reset_unit, limit.reset_value) == ("request", 10, "minute", 1)
    assert limit.window_seconds == 60
    assert limit.name == "10-per-60"
    assert Limit("token", 1000, "hour", 2).window_seconds == 7200


@pytest.mark.parametrize(
    "reset_unit, reset_value, seconds",
    [("second", 1, 1), ("seconds", 30, 30), ("minute", 1, 60), ("minutes", 5, 300),
     ("hour", 1, 3600), ("hours", 2, 7200), ("day", 1, 86400), ("days", 7, 604800)],
)
def test_reset_units_singular_and_plural(reset_unit: str, reset_value: int, seconds: int) -> None:
    limit = Limit("request", 3, reset_unit, reset_value)
    assert limit.window_seconds == seconds
    assert limit.reset_unit == reset_unit.removesuffix("s")


def test_default_names_tell_requests_from_tokens() -> None:
    assert Limit("request", 5, "second").name == "5-per-1"
    assert Limit("token", 100000, "day").name == "100000-tokens-per-86400"
    assert Limit("tokens", 7, "hour", name="hourly").name == "hourly"
    assert Limit("requests", 7, "hour").unit == "request"


def test_to_dict() -> None:
    assert Limit("token", 500, "minute", 2).to_dict() == {
        "name": "500-tokens-per-120", "unit": "token", "value": 500,
        "reset_unit": "minute", "reset_value": 2, "window_seconds": 120,
    }


def test_limits_are_immutable_values() -> None:
    limit = Limit("request", 5, "minute")
    assert limit == Limit("request", 5, "minutes") and hash(limit) == hash(Limit("request", 5, "minute"))
    assert limit != Limit("request", 6, "minute")
    with pytest.raises(AttributeError):
        limit.value = 6  # type: ignore[misc]
    assert "value=5" in repr(limit)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"unit": "bytes", "value": 1}, "unit"),
        ({"unit": 3, "value": 1}, "unit"),
        ({"value": 0}, "value"),
        ({"value": -5}, "value"),
        ({"value": 2.5}, "value"),
        ({"value": "10"}, "value"),
        ({"value": True}, "value"),
        ({"value": 1, "reset_unit": "week"}, "reset_unit"),
        ({"value": 1, "reset_unit": ""}, "reset_unit"),
        ({"value": 1, "reset_unit": None}, "reset_unit"),
        ({"value": 1, "reset_value": 0}, "reset_value"),
        ({"value": 1, "reset_value": 1.5}, "reset_value"),
        ({"value": 1, "reset_value": False}, "reset_value"),
        ({"value": 1, "name": ""}, "name"),
    ],
)
def test_bad_fields_raise_value_error_naming_the_field(kwargs: dict, field: str) -> None:
    kwargs = {"unit": "request", "reset_unit": "minute", **kwargs}
    with pytest.raises(ValueError, match=rf"^{field} "):
        Limit(**kwargs)


@pytest.mark.parametrize(
    "text, value, reset_unit, reset_value, seconds",
    [
        ("5/minute", 5, "minute", 1, 60),
        ("100/2hour", 100, "hour", 2, 7200),
        ("1000/day", 1000, "day", 1, 86400),
        ("10/30second", 10, "second", 30, 30),
        ("10/30seconds", 10, "second", 30, 30),
        (" 7 / Minute ", 7, "minute", 1, 60),
    ],
)
def test_parse_limit(text: str, value: int, reset_unit: str, reset_value: int, seconds: int) -> None:
    limit = parse_limit(text)
    assert (limit.unit, limit.value, limit.reset_unit, limit.reset_value) == ("request", value, reset_unit, reset_value)
    assert limit.window_seconds == seconds


def test_parse_token_limit_and_name() -> None:
    limit = parse_limit("1000/hour", unit="token")
    assert limit.unit == "token" and limit.name == "1000-tokens-per-3600"
    assert parse_limit("3/second", name="burst").name == "burst"


@pytest.mark.parametrize(
    "text", ["", "5", "5/", "/minute", "five/minute", "5/fortnight", "0/minute", "5/0minute",
             "-1/minute", "5/minute/extra", "5 per minute", "2.5/minute"],
)
def test_parse_limit_refuses_anything_else(text: str) -> None:
    with pytest.raises(ValueError, match="invalid limit .*examples: '5/minute'"):
        parse_limit(text)


def test_parse_limit_refuses_non_strings() -> None:
    with pytest.raises(ValueError, match="5/minute"):
        parse_limit(5)  # type: ignore[arg-type]
