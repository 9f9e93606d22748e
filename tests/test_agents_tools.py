"""The @tool decorator: schemas from signatures and docstrings, argument validation, invocation."""
from __future__ import annotations

import asyncio
import threading
from typing import Any, Literal, Optional

import pytest

from monoai_tornado.agents import Tool, ToolArgumentsError, as_tool, tool
from monoai_tornado.agents.tools import parse_docstring


@tool
def book_flight(
    origin: str,
    seats: int,
    price_limit: float = 500.0,
    direct: bool = False,
    cabin: Literal["economy", "business"] = "economy",
    tags: list[str] | None = None,
    extras: Optional[dict[str, int]] = None,
    note: Any = None,
) -> str:
    """Book a flight for some passengers.

    The booking is not real.

    Args:
        origin: IATA code of the departure airport.
        seats (int): How many seats to book,
            at least one.
        price_limit: Highest price per seat.
        direct: Only direct flights.
        cabin: The cabin class.
        tags: Labels for the booking.
        extras: Extra items and their counts.
        note: Anything.

    Returns:
        A confirmation code.
    """
    return f"{origin}-{seats}"


def test_schema_from_signature_and_docstring() -> None:
    assert isinstance(book_flight, Tool)
    assert book_flight.schema() == {
        "type": "function",
        "function": {
            "name": "book_flight",
            "description": "Book a flight for some passengers.",
            "parameters": {
                "type": "object",
                "properties": {
                    "origin": {"type": "string", "description": "IATA code of the departure airport."},
                    "seats": {"type": "integer", "description": "How many seats to book, at least one."},
                    "price_limit": {"type": "number", "description": "Highest price per seat.", "default": 500.0},
                    "direct": {"type": "boolean", "description": "Only direct flights.", "default": False},
                    "cabin": {
                        "type": "string",
                        "enum": ["economy", "business"],
                        "description": "The cabin class.",
                        "default": "economy",
                    },
                    "tags": {
                        "anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}],
                        "description": "Labels for the booking.",
                        "default": None,
                    },
                    "extras": {
                        "anyOf": [{"type": "object", "additionalProperties": {"type": "integer"}}, {"type": "null"}],
                        "description": "Extra items and their counts.",
                        "default": None,
                    },
                    "note": {"description": "Anything.", "default": None},
                },
                "required": ["origin", "seats"],
                "additionalProperties": False,
            },
        },
    }


def test_name_and_description_overrides_and_no_docstring() -> None:
    @tool(name="lookup", description="Find a thing.")
    def find(key: str) -> str:
        return key

    def bare(x, y: int = 2):  # type: ignore[no-untyped-def]
        return x

    assert find.schema()["function"]["name"] == "lookup"
    assert find.description == "Find a thing."
    plain = as_tool(bare)
    assert plain.name == "bare" and plain.description == ""
    assert plain.parameters["properties"] == {"x": {}, "y": {"type": "integer", "default": 2}}
    assert plain.parameters["required"] == ["x"]
    assert as_tool(plain) is plain


def test_parse_docstring_sections() -> None:
    summary, params = parse_docstring(
        """Do a thing
        over two lines.

        More text.

        Arguments:
            a: first
            b (str): second,
                continued.
        Raises:
            c: not a parameter
        """
    )
    assert summary == "Do a thing over two lines."
    assert params == {"a": "first", "b": "second, continued."}


@pytest.mark.parametrize(
    "func",
    [
        lambda *args: None,
        lambda **kwargs: None,
    ],
)
def test_variadic_parameters_are_refused(func: Any) -> None:
    func.__name__ = "variadic"
    with pytest.raises(TypeError, match="plain or keyword argument"):
        tool(func)


def test_unsupported_annotation_and_bad_name_are_refused() -> None:
    def takes_set(items: set[int]) -> None: ...

    def fine(a: int) -> None: ...

    with pytest.raises(TypeError, match="unsupported annotation"):
        tool(takes_set)
    with pytest.raises(ValueError, match="tool name"):
        tool(fine, name="has space")
    with pytest.raises(TypeError, match="not a tool"):
        as_tool(42)  # type: ignore[arg-type]


def test_validate_coerces_and_accepts_valid_arguments() -> None:
    assert book_flight.validate({"origin": "FCO", "seats": 2.0, "price_limit": 3}) == {
        "origin": "FCO",
        "seats": 2,
        "price_limit": 3.0,
    }
    full = {
        "origin": "FCO",
        "seats": 1,
        "direct": True,
        "cabin": "business",
        "tags": ["a", "b"],
        "extras": {"bags": 2},
        "note": [1, {"x": None}],
    }
    assert book_flight.validate(full) == full
    assert book_flight.validate({"origin": "FCO", "seats": 1, "tags": None, "extras": None}) == {
        "origin": "FCO",
        "seats": 1,
        "tags": None,
        "extras": None,
    }


@pytest.mark.parametrize(
    "arguments, message",
    [
        ([1, 2], "arguments must be a JSON object, got an array"),
        ({"seats": 1}, "missing required argument 'origin'"),
        ({"origin": "FCO", "seats": 1, "colour": "red"}, "unknown argument 'colour'"),
        ({"origin": 7, "seats": 1}, "argument 'origin' must be a string, got an integer"),
        ({"origin": "FCO", "seats": True}, "argument 'seats' must be an integer, got a boolean"),
        ({"origin": "FCO", "seats": 1.5}, "argument 'seats' must be an integer, got a number"),
        ({"origin": "FCO", "seats": 1, "price_limit": "9"}, "argument 'price_limit' must be a number, got a string"),
        ({"origin": "FCO", "seats": 1, "direct": 1}, "argument 'direct' must be a boolean, got an integer"),
        ({"origin": "FCO", "seats": 1, "cabin": "first"}, "argument 'cabin' must be one of 'economy', 'business'"),
        ({"origin": "FCO", "seats": 1, "tags": ["a", 3]}, "argument 'tags[1]' must be a string, got an integer"),
        ({"origin": "FCO", "seats": 1, "extras": {"bags": "two"}}, "argument 'extras.bags' must be an integer, got a string"),
        ({"origin": "FCO", "seats": None}, "argument 'seats' must be an integer, got null"),
    ],
)
def test_validate_rejects_arguments_that_do_not_fit(arguments: Any, message: str) -> None:
    with pytest.raises(ToolArgumentsError) as raised:
        book_flight.validate(arguments)
    assert str(raised.value).startswith(message)


def test_union_without_none_reports_the_member_error() -> None:
    @tool
    def pick(value: int | str, strict: list[int] = []) -> str:  # noqa: B006 - not mutated
        return str(value)

    assert pick.parameters["properties"]["value"] == {"anyOf": [{"type": "integer"}, {"type": "string"}]}
    assert pick.validate({"value": "x"}) == {"value": "x"}
    assert "default" not in pick.parameters["properties"]["strict"]
    with pytest.raises(ToolArgumentsError, match=r"^argument 'value' has the wrong type \(an array\)$"):
        pick.validate({"value": [1]})
    with pytest.raises(ToolArgumentsError, match=r"'strict\[0\]' must be an integer"):
        pick.validate({"value": 1, "strict": ["x"]})


async def test_invoke_sync_runs_in_a_worker_thread_unless_told_otherwise() -> None:
    @tool
    def where() -> str:
        return threading.current_thread().name

    @tool(thread=False)
    def here() -> str:
        return threading.current_thread().name

    loop_thread = threading.current_thread().name
    assert await where.invoke({}) != loop_thread
    assert await here.invoke({}) == loop_thread


async def test_invoke_async_validates_first_and_tool_stays_callable() -> None:
    @tool
    async def double(n: int) -> int:
        """Double a number."""
        await asyncio.sleep(0)
        return n * 2

    assert await double.invoke({"n": 21}) == 42
    assert await double.invoke({"n": 2.0}) == 4
    assert await double(5) == 10
    with pytest.raises(ToolArgumentsError, match="missing required argument 'n'"):
        await double.invoke({})


def test_return_annotation_and_wrapped_functions_do_not_matter() -> None:
    import functools

    class Local:
        pass

    def make(count: int) -> Local:  # "Local" cannot be resolved from the module: only parameters are
        return Local()

    @functools.wraps(make)
    def wrapped(*args: Any, **kwargs: Any) -> Local:
        return make(*args, **kwargs)

    assert tool(make).parameters["properties"] == {"count": {"type": "integer"}}
    assert tool(wrapped).parameters["properties"] == {"count": {"type": "integer"}}
    assert tool(functools.partial(make), name="made").parameters["required"] == ["count"]

    def unresolvable(thing: Local) -> None: ...

    with pytest.raises(TypeError, match="cannot resolve the annotations of tool 'unresolvable'"):
        tool(unresolvable)
