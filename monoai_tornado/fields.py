"""Request fields declared once: a field's check and its JSON Schema come from one declaration.

A body's parser reads each field through its declaration (:meth:`Field.read`: the value, or the
400 the dialect answers), and the OpenAPI document shows the same declarations
(:meth:`Field.schema`, :func:`object_schema`), so a range such as ``temperature`` 0-2 is
written once and the document cannot drift from what the server takes.

>>> TEMPERATURE = Number("temperature", 0, 2, nullable=True)
>>> TEMPERATURE.read({"temperature": 1}), TEMPERATURE.read({})
(1.0, None)
>>> TEMPERATURE.schema()
{'type': ['number', 'null'], 'minimum': 0, 'maximum': 2}
>>> TEMPERATURE.read({"temperature": 3})
Traceback (most recent call last):
...
monoai_tornado.errors.InvalidJson: temperature must be a number from 0 to 2

Kinds: :class:`Text`, :class:`Integer`, :class:`Number`, :class:`Flag`, :class:`Identity`,
:class:`Stops`, :class:`Const`. A new kind is a subclass with ``check`` (the value, or raise
:meth:`Field.refuse`) and ``base_schema``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, Iterable, Mapping, TypeVar

from .errors import ApiError, InvalidJson
from .openapi_parts import Schema

__all__ = ["Const", "Field", "Flag", "Identity", "Integer", "Number", "Stops", "Text", "object_schema"]

T = TypeVar("T")


@dataclass(frozen=True)
class Field(Generic[T]):
    """One field of a request body.

    ``required``: absent is refused (and the object schema lists it); ``nullable``: ``null`` is
    the same as absent (OpenAI's APIs say so), else ``null`` is refused as a wrong type;
    ``label``: the name in error messages (``stream_options.include_usage``); ``message``
    replaces the kind's error message, ``missing`` the one for a required field left out;
    ``error``/``code``: the :class:`ApiError` raised.
    """

    name: str
    description: str = field(default="", kw_only=True)
    required: bool = field(default=False, kw_only=True)
    nullable: bool = field(default=False, kw_only=True)
    label: str = field(default="", kw_only=True)
    message: str = field(default="", kw_only=True)
    missing: str = field(default="", kw_only=True)
    error: type[ApiError] = field(default=InvalidJson, kw_only=True)
    code: str | None = field(default=None, kw_only=True)

    def read(self, body: Mapping[str, Any]) -> T | None:
        """The field's value in ``body``: None when absent (or ``null`` and nullable)."""
        if self.name not in body:
            if self.required:
                raise self.refuse(self.missing or None)
            return None
        value = body[self.name]
        if value is None and self.nullable:
            return None
        return self.check(value)

    def require(self, body: Mapping[str, Any]) -> T:
        """The value of a field that must be there (absent or ``null``: refused)."""
        value = self.read(body)
        if value is None:
            raise self.refuse()
        return value

    def check(self, value: Any) -> T:
        """``value`` as the parser keeps it, or :meth:`refuse`."""
        raise NotImplementedError

    def base_schema(self) -> Schema:
        """The JSON Schema of a present, non-null value."""
        raise NotImplementedError

    def default_message(self) -> str:
        return f"{self.where} is not valid"

    @property
    def where(self) -> str:
        return self.label or self.name

    def refuse(self, message: str | None = None) -> ApiError:
        """The error that refuses this field (raise it)."""
        text = message or self.message or self.default_message()
        return self.error(text, code=self.code) if self.code else self.error(text)

    def schema(self) -> Schema:
        """The JSON Schema of the field: its kind's, with ``null`` when nullable, and its description."""
        schema = self.base_schema()
        if self.nullable:
            kind = schema.get("type")
            if isinstance(kind, str):
                schema = {**schema, "type": [kind, "null"]}
            elif isinstance(kind, list):
                schema = {**schema, "type": [*kind, "null"]}
            elif list(schema) == ["oneOf"]:
                schema = {"oneOf": [*schema["oneOf"], {"type": "null"}]}
            else:
                schema = {"oneOf": [schema, {"type": "null"}]}
        if self.description:
            schema = {**schema, "description": self.description}
        return schema


def object_schema(fields: Iterable[Field[Any]], *, properties: Mapping[str, Schema] | None = None,
                  required: Iterable[str] = (), **extra: Any) -> Schema:
    """The object schema of a body made of ``fields``, plus the ``properties`` (``required`` ones
    among them) that a parser checks by hand; other properties are allowed (they are ignored)."""
    fields = list(fields)
    return {"type": "object", "required": [f.name for f in fields if f.required] + list(required),
            "properties": {**{f.name: f.schema() for f in fields}, **(properties or {})}, **extra}


@dataclass(frozen=True)
class Text(Field[str]):
    """A string; not blank unless ``blank`` (whitespace alone is blank)."""

    blank: bool = field(default=False, kw_only=True)

    def check(self, value: Any) -> str:
        # isspace(), not strip(): no copy of a big text (a 1 MB prompt), stops at its first letter.
        if not isinstance(value, str) or (not self.blank and (not value or value.isspace())):
            raise self.refuse()
        return value

    def base_schema(self) -> Schema:
        return {"type": "string"} if self.blank else {"type": "string", "minLength": 1, "pattern": "\\S"}

    def default_message(self) -> str:
        return f"Field '{self.where}' must be a {'' if self.blank else 'non-empty '}string"


@dataclass(frozen=True)
class Integer(Field[int]):
    """An integer from ``minimum`` to ``maximum`` (None: no bound); a whole float (``100.0``) is
    one, as JSON Schema says."""

    minimum: int = 1
    maximum: int | None = 2**31 - 1

    def check(self, value: Any) -> int:
        if isinstance(value, float) and value.is_integer() and self._within(value):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not self._within(value):
            raise self.refuse()
        return value

    def _within(self, value: float) -> bool:
        return self.minimum <= value and (self.maximum is None or value <= self.maximum)

    def base_schema(self) -> Schema:
        bounds = {} if self.maximum is None else {"maximum": self.maximum}
        return {"type": "integer", "minimum": self.minimum, **bounds}

    def default_message(self) -> str:
        if self.maximum is None:
            return f"Field '{self.where}' must be an integer of at least {self.minimum}"
        if self.minimum == 1:
            return f"Field '{self.where}' must be a positive integer (at most {self.maximum})"
        return f"Field '{self.where}' must be an integer from {self.minimum} to {self.maximum}"


@dataclass(frozen=True)
class Number(Field[float]):
    """A finite number from ``minimum`` to ``maximum``, kept as a float."""

    minimum: float = 0
    maximum: float = 1

    def check(self, value: Any) -> float:
        # Compared before any float(): an integer of 400 digits is refused, not an OverflowError
        # (NaN compares false, infinities are out of range).
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not self.minimum <= value <= self.maximum:
            raise self.refuse()
        return float(value)

    def base_schema(self) -> Schema:
        return {"type": "number", "minimum": self.minimum, "maximum": self.maximum}

    def default_message(self) -> str:
        return f"{self.where} must be a number from {self.minimum:g} to {self.maximum:g}"


@dataclass(frozen=True)
class Flag(Field[bool]):
    """``true`` or ``false``."""

    def check(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise self.refuse()
        return value

    def base_schema(self) -> Schema:
        return {"type": "boolean"}

    def default_message(self) -> str:
        return f"{self.where} must be true or false"


@dataclass(frozen=True)
class Identity(Field[str]):
    """Who is asking: a string, or a whole number turned into its decimal string, of at most
    ``max_bytes`` bytes of UTF-8 (identities are Redis keys and log fields)."""

    max_bytes: int = 256

    def check(self, value: Any) -> str:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise self.refuse(f"{self.where} must be a string or a number")
        if isinstance(value, float):
            if not value.is_integer():
                raise self.refuse(f"{self.where} must be a string or a whole number")
            value = int(value)
        return self.capped(str(value))

    def capped(self, text: str) -> str:
        """``text`` when it is at most ``max_bytes`` bytes, else 400 ``invalid_json``."""
        if len(text) * 4 > self.max_bytes and len(text.encode("utf-8", "surrogatepass")) > self.max_bytes:
            raise InvalidJson(f"Field '{self.where}' must be at most {self.max_bytes} bytes of UTF-8")
        return text

    def base_schema(self) -> Schema:
        return {"type": ["string", "integer"]}

    def schema(self) -> Schema:
        # Bytes of UTF-8 are no JSON Schema keyword: the cap is said in words (a length in
        # characters would refuse, or let through, identities the server takes otherwise).
        schema = super().schema()
        cap = f"At most {self.max_bytes} bytes of UTF-8."
        return {**schema, "description": f"{schema['description']} {cap}" if "description" in schema else cap}


@dataclass(frozen=True)
class Stops(Field[tuple[str, ...]]):
    """A list of at most ``max_items`` non-empty strings, or (``alone``) one such string."""

    max_items: int = 4
    alone: bool = field(default=True, kw_only=True)

    def check(self, value: Any) -> tuple[str, ...]:
        stops = [value] if isinstance(value, str) and self.alone else value
        if not isinstance(stops, list) or len(stops) > self.max_items or not all(isinstance(s, str) and s for s in stops):
            raise self.refuse()
        return tuple(stops)

    def base_schema(self) -> Schema:
        one: Schema = {"type": "string", "minLength": 1}
        listed: Schema = {"type": "array", "items": one, "maxItems": self.max_items}
        return {"oneOf": [one, listed]} if self.alone else listed

    def default_message(self) -> str:
        if not self.alone:
            return f"{self.where} must be a list of at most {self.max_items} non-empty strings"
        return f"{self.where} must be a non-empty string or a list of at most {self.max_items} of them"


@dataclass(frozen=True)
class Const(Field[Any]):
    """Exactly ``value`` (a number compares as JSON Schema does: ``1.0`` is ``1``)."""

    value: Any = None

    def check(self, value: Any) -> Any:
        if isinstance(value, bool) is not isinstance(self.value, bool) or value != self.value:
            raise self.refuse()
        return value

    def base_schema(self) -> Schema:
        return {"const": self.value}

    def default_message(self) -> str:
        return f"{self.where} must be {self.value!r}"
