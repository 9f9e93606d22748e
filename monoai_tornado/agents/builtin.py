"""Safe built-in tools and the default ``assistant`` agent served by ``python -m monoai_tornado``.

The calculator parses arithmetic with :mod:`ast` and evaluates the tree itself: no ``eval``,
no names, no calls, no attribute access; operand sizes and expression length are bounded so
that input like ``9**9**9`` is refused at once instead of hanging the server.
"""
from __future__ import annotations

import ast
import datetime
import math
import operator
from typing import Any, Callable

from ..backends.base import Backend
from .agent import Agent
from .tools import ToolError, tool

__all__ = ["CalculatorError", "calculator", "current_utc_time", "word_count", "default_agents"]

#: Longest expression the calculator accepts, in characters.
MAX_EXPRESSION_CHARS = 500
#: Largest exponent accepted in ``a ** b``.
MAX_EXPONENT = 10_000
#: Largest integer (in bits, about 3000 decimal digits) any step may produce.
MAX_INT_BITS = 10_000

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}


class CalculatorError(ToolError, ValueError):
    """The expression is not plain arithmetic, or its result is out of bounds."""


def _checked(value: Any) -> int | float:
    """``value`` if it is a real number within bounds, else CalculatorError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CalculatorError("the result is not a real number")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise CalculatorError("the result is too large")
    if isinstance(value, float) and not math.isfinite(value):
        raise CalculatorError("the result is too large" if math.isinf(value) else "the result is not a number")
    return value


def _power(base: int | float, exponent: int | float) -> int | float:
    if abs(exponent) > MAX_EXPONENT:
        raise CalculatorError(f"the exponent {exponent} is too large (at most {MAX_EXPONENT})")
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
        if (abs(base).bit_length() - 1) * exponent > MAX_INT_BITS:
            raise CalculatorError("the result is too large")
    return base ** exponent


def _evaluate(node: ast.AST) -> int | float:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise CalculatorError(f"only numbers are allowed, not {node.value!r}")
        return _checked(node.value)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _checked(_UNARY[type(node.op)](_evaluate(node.operand)))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow):
            return _checked(_power(left, right))
        return _checked(_BINARY[type(node.op)](left, right))
    raise CalculatorError(_refusal(node))


def _refusal(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return f"names are not allowed (found {node.id!r})"
    if isinstance(node, ast.Call):
        return "function calls are not allowed"
    if isinstance(node, ast.Attribute):
        return "attribute access is not allowed"
    return f"unsupported syntax: {type(node).__name__}"


@tool(thread=False)
def calculator(expression: str) -> int | float:
    """Evaluate an arithmetic expression and return the number.

    Supports + - * / // % ** with parentheses, unary minus and plus, integers and decimals.

    Args:
        expression: The arithmetic expression, for example "12*(3+4)".
    """
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise CalculatorError(f"the expression is too long (at most {MAX_EXPRESSION_CHARS} characters)")
    if not expression.strip():
        raise CalculatorError("the expression is empty")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise CalculatorError(f"invalid expression: {exc.msg}") from None
    except (RecursionError, MemoryError, ValueError):
        raise CalculatorError("the expression is too complex") from None
    try:
        return _evaluate(tree)
    except ZeroDivisionError:
        raise CalculatorError("division by zero") from None
    except OverflowError:
        raise CalculatorError("the result is too large") from None
    except RecursionError:
        raise CalculatorError("the expression is too complex") from None


@tool(thread=False)
def current_utc_time() -> str:
    """Return the current date and time in UTC, in ISO 8601 format (for example 2024-05-01T12:30:00Z)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.isoformat(timespec="seconds").replace("+00:00", "Z")


@tool(thread=False)
def word_count(text: str) -> int:
    """Count the words (runs of non-space characters) in a text.

    Args:
        text: The text whose words to count.
    """
    return len(text.split())


DEFAULT_INSTRUCTIONS = (
    "You are a helpful assistant. Use the calculator for any arithmetic instead of computing it "
    "yourself, current_utc_time when asked about the date or time, and word_count to count words. "
    "Answer briefly."
)


def default_agents(backend: Backend) -> list[Agent]:
    """The agents served by default: one ``assistant`` with the safe built-in tools."""
    return [
        Agent(
            "assistant",
            backend,
            tools=[calculator, current_utc_time, word_count],
            instructions=DEFAULT_INSTRUCTIONS,
            description="A helpful assistant with a calculator, a UTC clock and a word counter.",
        )
    ]
