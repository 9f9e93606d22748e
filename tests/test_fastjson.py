"""fastjson.loads reads every text as json.loads does (msgspec only makes it faster)."""
from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from monoai_tornado.fastjson import loads

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)


def outcome(read: Any, text: str | bytes) -> tuple[str, Any]:
    try:
        return "ok", read(text)
    except ValueError:
        return "error", None
    except RecursionError:
        return "too deep", None


def same(a: Any, b: Any) -> bool:
    """Equal, with type (1 and 1.0 differ) and NaN equal to NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(values)
def test_json_values_read_the_same(value: Any) -> None:
    for text in (json.dumps(value), json.dumps(value, ensure_ascii=False).encode()):
        assert same(outcome(loads, text), outcome(json.loads, text))


@settings(max_examples=600, deadline=None)
@given(st.text(alphabet='{}[]",:0123456789.eE-+ tfnaulsrNI\\u\ud800', max_size=40))
def test_any_text_reads_the_same_or_fails_the_same(text: str) -> None:
    kind, value = outcome(loads, text)
    expected_kind, expected = outcome(json.loads, text)
    assert kind == expected_kind and same(value, expected)


def test_the_edges_msgspec_refuses_go_to_the_standard_library() -> None:
    for text in ("123456789012345678901234567890", "[NaN, Infinity]", '"\\ud800"', "1e400", "\ufeff{}", '"\ud800"', '{"a":1,"a":2}',
                 "[" * 5000 + "]" * 5000):
        assert same(outcome(loads, text), outcome(json.loads, text))


def standard(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


finite_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(finite_values)
def test_json_values_write_what_the_standard_library_reads_back_the_same(value: Any) -> None:
    from monoai_tornado.fastjson import dumps, dumps_bytes

    assert same(json.loads(dumps(value)), json.loads(standard(value)))
    assert dumps_bytes(value) == dumps(value).encode("utf-8")


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=20))
def test_without_floats_the_text_is_the_standard_librarys(value: Any) -> None:
    from monoai_tornado.fastjson import dumps

    assert dumps(value) == standard(value)


def test_what_msgspec_cannot_write_goes_to_the_standard_library() -> None:
    from monoai_tornado.fastjson import dumps

    for value in ({1.5: "float key"}, {None: 1, True: 2}, 2 ** 200, {"n": -(2 ** 70)}):
        assert dumps(value) == standard(value)
    for odd in (float("nan"), float("inf")):  # json.dumps would write NaN or Infinity: not JSON
        assert json.loads(dumps({"x": odd})) == {"x": None}
