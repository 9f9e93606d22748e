"""Tools: typed Python functions an agent's model may call, with their OpenAI JSON schema.

:func:`tool` reads a function's signature and docstring once, at decoration, and builds both
the JSON schema sent to the model and the validator that checks the arguments the model sends
back, from the same type annotations, so the two cannot disagree::

    @tool
    def add(a: int, b: int = 0) -> int:
        \"\"\"Add two integers.

        Args:
            a: The first addend.
            b: The second addend.
        \"\"\"
        return a + b

    add.schema()["function"]["parameters"]["required"]   # ["a"]
    await add.invoke({"a": 2, "b": 3})                   # 5

Supported annotations: ``int``, ``float``, ``str``, ``bool``, ``list``/``list[X]``,
``dict``/``dict[str, X]``, ``Optional[X]``/``X | None``, other unions, ``Literal[...]`` and
``Any`` (or no annotation). Anything else is refused at decoration time.
"""
from __future__ import annotations

import asyncio
import inspect
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Union

__all__ = ["Tool", "ToolError", "ToolArgumentsError", "tool", "as_tool"]

_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SECTION_RE = re.compile(r"^(Args|Arguments|Parameters|Params|Returns?|Raises|Yields?|Examples?|Notes?)\s*:\s*$")
_ARG_LINE_RE = re.compile(r"^\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")

Check = Callable[[Any, str], Any]
"""Validates one value (the second argument is its path, for messages); returns it coerced."""


class ToolError(Exception):
    """Raise from a tool to report a failure to the model with just this message."""


class ToolArgumentsError(ToolError):
    """The arguments the model sent do not fit the tool's schema."""


# --- annotations -> (JSON schema, checker) -------------------------------------------------

def _fail(path: str, expected: str, value: Any) -> typing.NoReturn:
    raise ToolArgumentsError(f"argument '{path}' must be {expected}, got {_json_type(value)}")


#: How messages name a JSON value's type, most specific first (a bool is also an int).
_JSON_TYPES: tuple[tuple[type, str], ...] = (
    (bool, "a boolean"), (int, "an integer"), (float, "a number"), (str, "a string"), (list, "an array"),
    (dict, "an object"),
)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return next((name for kind, name in _JSON_TYPES if isinstance(value, kind)), type(value).__name__)


def _check_int(value: Any, path: str) -> int:
    if isinstance(value, bool):
        _fail(path, "an integer", value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)  # models often write 3.0 for 3
    _fail(path, "an integer", value)


def _check_float(value: Any, path: str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    _fail(path, "a number", value)


def _check_str(value: Any, path: str) -> str:
    if isinstance(value, str):
        return value
    _fail(path, "a string", value)


def _check_bool(value: Any, path: str) -> bool:
    if isinstance(value, bool):
        return value
    _fail(path, "a boolean", value)


def _check_any(value: Any, path: str) -> Any:
    return value


_SCALARS: dict[Any, tuple[dict[str, Any], Check]] = {
    int: ({"type": "integer"}, _check_int),
    float: ({"type": "number"}, _check_float),
    str: ({"type": "string"}, _check_str),
    bool: ({"type": "boolean"}, _check_bool),
}


def _compile(annotation: Any) -> tuple[dict[str, Any], Check]:
    """The JSON schema of ``annotation`` and a checker that enforces it."""
    if annotation is Any or annotation is inspect.Parameter.empty:
        return {}, _check_any
    if annotation in _SCALARS:
        schema, check = _SCALARS[annotation]
        return dict(schema), check
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is list or origin is list:
        return _compile_list(args[0] if args else Any)
    if annotation is dict or origin is dict:
        if args and args[0] is not str:
            raise TypeError(f"dict keys must be str in a tool signature, not {args[0]!r}")
        return _compile_dict(args[1] if args else Any)
    if origin is Union or origin is types.UnionType:
        return _compile_union(args)
    if origin is Literal:
        return _compile_literal(args)
    raise TypeError(f"unsupported annotation in a tool signature: {annotation!r}")


def _compile_list(item: Any) -> tuple[dict[str, Any], Check]:
    item_schema, item_check = _compile(item)
    schema: dict[str, Any] = {"type": "array"}
    if item_schema:
        schema["items"] = item_schema

    def check(value: Any, path: str) -> list[Any]:
        if not isinstance(value, list):
            _fail(path, "an array", value)
        return [item_check(v, f"{path}[{i}]") for i, v in enumerate(value)]

    return schema, check


def _compile_dict(value_type: Any) -> tuple[dict[str, Any], Check]:
    value_schema, value_check = _compile(value_type)
    schema: dict[str, Any] = {"type": "object"}
    if value_schema:
        schema["additionalProperties"] = value_schema

    def check(value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            _fail(path, "an object", value)
        return {k: value_check(v, f"{path}.{k}") for k, v in value.items()}

    return schema, check


def _compile_union(members: tuple[Any, ...]) -> tuple[dict[str, Any], Check]:
    nullable = type(None) in members
    options = [_compile(m) for m in members if m is not type(None)]
    schemas = [s for s, _ in options] + ([{"type": "null"}] if nullable else [])
    schema = schemas[0] if len(schemas) == 1 else {"anyOf": schemas}

    def check(value: Any, path: str) -> Any:
        if value is None and nullable:
            return None
        if len(options) == 1:  # Optional[X]: X's own, precise message
            return options[0][1](value, path)
        for _, member_check in options:
            try:
                return member_check(value, path)
            except ToolArgumentsError:
                pass
        raise ToolArgumentsError(f"argument '{path}' has the wrong type ({_json_type(value)})")

    return schema, check


def _compile_literal(choices: tuple[Any, ...]) -> tuple[dict[str, Any], Check]:
    schema: dict[str, Any] = {"enum": list(choices)}
    kinds = {type(c) for c in choices}
    if len(kinds) == 1 and next(iter(kinds)) in _SCALARS:
        schema = {**_SCALARS[next(iter(kinds))][0], "enum": list(choices)}

    def check(value: Any, path: str) -> Any:
        for choice in choices:
            if type(value) is type(choice) and value == choice:
                return value
        allowed = ", ".join(repr(c) for c in choices)
        raise ToolArgumentsError(f"argument '{path}' must be one of {allowed}, got {value!r}")

    return schema, check


# --- docstrings ------------------------------------------------------------------------------

def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """The first paragraph (joined into one line) and the ``Args:`` descriptions of ``doc``."""
    lines = inspect.cleandoc(doc or "").splitlines()
    summary: list[str] = []
    for line in lines:
        if not line.strip() or _SECTION_RE.match(line.strip()):
            break
        summary.append(line.strip())
    params: dict[str, str] = {}
    current: str | None = None
    in_args = False
    args_indent: int | None = None
    for line in lines:
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        section = _SECTION_RE.match(stripped)
        if section and indent == 0:
            in_args = section.group(1) in {"Args", "Arguments", "Parameters", "Params"}
            current, args_indent = None, None
            continue
        if not in_args or not stripped:
            continue
        if args_indent is None:
            args_indent = indent
        match = _ARG_LINE_RE.match(stripped)
        if indent <= args_indent and match:
            current = match.group(1)
            params[current] = match.group(2).strip()
        elif current is not None and indent > args_indent:
            params[current] = f"{params[current]} {stripped}".strip()
    return " ".join(summary), params


# --- the Tool --------------------------------------------------------------------------------

@dataclass
class Tool:
    """A callable tool: its name, description, JSON schema of parameters, and the function.

    Build one with :func:`tool`. Calling the tool object calls the function directly.
    """

    name: str
    description: str
    parameters: dict[str, Any]
    func: Callable[..., Any]
    thread: bool = True
    _checks: dict[str, Check] = field(default_factory=dict, repr=False)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.func(*args, **kwargs)

    def schema(self) -> dict[str, Any]:
        """The OpenAI ``tools`` entry: ``{"type": "function", "function": {...}}``."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }

    def validate(self, arguments: Any) -> dict[str, Any]:
        """Check ``arguments`` against the schema; returns them coerced, raises ToolArgumentsError."""
        if not isinstance(arguments, dict):
            raise ToolArgumentsError(f"arguments must be a JSON object, got {_json_type(arguments)}")
        unknown = [k for k in arguments if k not in self._checks]
        if unknown:
            raise ToolArgumentsError(f"unknown argument {', '.join(repr(k) for k in unknown)}")
        missing = [k for k in self.parameters.get("required", ()) if k not in arguments]
        if missing:
            raise ToolArgumentsError(f"missing required argument {', '.join(repr(k) for k in missing)}")
        return {k: self._checks[k](v, k) for k, v in arguments.items()}

    async def invoke(self, arguments: Any) -> Any:
        """Validate ``arguments`` and run the function (a sync one in a worker thread if ``thread``)."""
        kwargs = self.validate(arguments)
        if self.thread and not inspect.iscoroutinefunction(self.func):
            result = await asyncio.to_thread(self.func, **kwargs)
        else:
            result = self.func(**kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result


def _build(func: Callable[..., Any], name: str | None, description: str | None, thread: bool) -> Tool:
    tool_name: str = name or str(getattr(func, "__name__", ""))
    if not _NAME_RE.match(tool_name):
        raise ValueError(f"tool name {tool_name!r} must match {_NAME_RE.pattern}")
    summary, arg_docs = parse_docstring(inspect.getdoc(func))
    signature = inspect.signature(func)
    hints = _parameter_hints(func, signature, tool_name)
    properties: dict[str, Any] = {}
    required: list[str] = []
    checks: dict[str, Check] = {}
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
            raise TypeError(f"tool {tool_name!r}: parameter {param.name!r} must be a plain or keyword argument")
        schema, checks[param.name] = _compile(hints.get(param.name, Any))
        if param.name in arg_docs:
            schema["description"] = arg_docs[param.name]
        if param.default is param.empty:
            required.append(param.name)
        elif param.default is None or isinstance(param.default, (bool, int, float, str)):
            schema["default"] = param.default
        properties[param.name] = schema
    parameters: dict[str, Any] = {"type": "object", "properties": properties, "required": required}
    parameters["additionalProperties"] = False
    return Tool(tool_name, description or summary, parameters, func, thread, checks)


def _parameter_hints(func: Callable[..., Any], signature: inspect.Signature, tool_name: str) -> dict[str, Any]:
    """The resolved parameter annotations (the return annotation is ignored: it may name anything)."""
    annotations = {n: p.annotation for n, p in signature.parameters.items() if p.annotation is not p.empty}
    target = inspect.unwrap(getattr(func, "func", func))  # functools.partial, decorators
    holder = types.SimpleNamespace(__annotations__=annotations)
    try:
        return typing.get_type_hints(holder, globalns=getattr(target, "__globals__", None))
    except Exception as exc:
        raise TypeError(f"cannot resolve the annotations of tool {tool_name!r}: {exc}") from exc


@typing.overload
def tool(func: Callable[..., Any], /) -> Tool: ...
@typing.overload
def tool(
    func: None = None, /, *, name: str | None = None, description: str | None = None, thread: bool = True
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    func: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    thread: bool = True,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Turn a typed function (sync or async) into a :class:`Tool`; usable bare or with options.

    ``name`` and ``description`` default to the function's name and docstring's first paragraph.
    A sync function runs in a worker thread unless ``thread=False`` (for quick, CPU-light
    functions); note that a worker thread cannot be stopped when its call times out.
    """
    if func is not None:
        return _build(func, name, description, thread)
    return lambda f: _build(f, name, description, thread)


def as_tool(obj: Tool | Callable[..., Any]) -> Tool:
    """``obj`` itself if it is a Tool, else ``tool(obj)``."""
    if isinstance(obj, Tool):
        return obj
    if callable(obj):
        return tool(obj)
    raise TypeError(f"not a tool or a function: {obj!r}")
