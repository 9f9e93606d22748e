"""How the demo model calls a user's own tools: the ones the prompt mentions, with arguments
taken from the prompt, so that anyone can watch their tool run offline.

A tool is mentioned when the prompt names it (``price_of`` or ``price of``) or uses two of the
content words of its description's first sentence (``unit price ... shop``). Its parameters are
filled in order from the prompt: an ``enum`` value the prompt contains; numbers for ``number``
and ``integer``; for strings, a quoted text, else the words after the tool's name (``the price
of bread`` -> ``bread``), else the first word the tool's own wording does not use.
"""
from __future__ import annotations

import re
from typing import Any, Iterator, Sequence

_WORD_RE = re.compile(r"[A-Za-z][A-Za-z'-]*")
_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?")
_QUOTED_RE = re.compile(r"\"([^\"]+)\"|'([^']+)'|“([^”]+)”")
_CLAUSE_END_RE = re.compile(r"[?.!,;:]|\s(?:in|at|on|with|from|to|for|by|and|then|please)\s", re.IGNORECASE)
_ARTICLES = ("the ", "a ", "an ", "my ", "some ")
_STOPWORDS = frozenset(
    "the and for you are how why who its can get use all any one not but was her his our out "
    "what which when where does with from that this have tell give look much many some your their "
    "there about into than then them they will would could should please return returns".split()
)


def _words(text: str) -> list[str]:
    return [word.lower() for word in _WORD_RE.findall(text)]


def _content_words(text: str) -> set[str]:
    return {word for word in _words(text) if len(word) >= 4 and word not in _STOPWORDS}


def _name_phrases(name: str) -> list[str]:
    """``price_of`` -> ``["price_of", "price of"]``; ``getWeather`` -> ``[..., "get weather"]``."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name).replace("_", " ").replace("-", " ")
    return list(dict.fromkeys([name.lower(), " ".join(spaced.lower().split())]))


def _first_sentence(text: str) -> str:
    return re.split(r"(?<=[.!?])\s|\n", text.strip(), maxsplit=1)[0]


def _mention(prompt: str, name: str, description: str) -> tuple[bool, str]:
    """Whether ``prompt`` mentions the tool, and the text after its name (``""`` if not named)."""
    lowered = prompt.lower()
    for phrase in _name_phrases(name):
        match = re.search(rf"(?<![\w]){re.escape(phrase)}(?![\w])", lowered)
        if match:
            return True, prompt[match.end():]
    return len(_content_words(_first_sentence(description)) & set(_words(prompt))) >= 2, ""


def _after_name(text: str) -> str | None:
    """The rest of the clause after the tool's name, without a leading article or ``for``/``of``."""
    clause = re.split(r"[?.!,;:]", text, maxsplit=1)[0].strip()
    for lead in ("of ", "for ", "on ", "about ", *_ARTICLES):
        if clause.lower().startswith(lead):
            clause = clause[len(lead):].strip()
    return _CLAUSE_END_RE.split(clause, maxsplit=1)[0].strip() or None


def _string_values(prompt: str, after: str, vocabulary: set[str]) -> Iterator[str]:
    for match in _QUOTED_RE.finditer(prompt):
        yield next(group for group in match.groups() if group is not None)
    rest = _after_name(after)
    if rest:
        yield rest
    for word in _WORD_RE.findall(prompt):
        if len(word) >= 3 and word.lower() not in _STOPWORDS and word.lower() not in vocabulary:
            yield word


def arguments_from(prompt: str, after: str, function: dict[str, Any]) -> dict[str, Any]:
    """Values for the tool's parameters, in order, found in ``prompt`` (missing ones left out:
    the tool's own validation tells the model what is wrong)."""
    properties: dict[str, Any] = (function.get("parameters") or {}).get("properties") or {}
    vocabulary = _content_words(f"{function.get('name', '')} {function.get('description', '')}")
    vocabulary |= set(_words(" ".join(_name_phrases(str(function.get("name", ""))))))
    numbers = iter(_NUMBER_RE.findall(prompt))
    strings = _string_values(prompt, after, vocabulary)
    words = set(_words(prompt))
    arguments: dict[str, Any] = {}
    for parameter, schema in properties.items():
        kind = schema.get("type") if isinstance(schema, dict) else None
        choices = schema.get("enum") if isinstance(schema, dict) else None
        value: Any = None
        if isinstance(choices, list):
            value = next((choice for choice in choices if str(choice).lower() in words), None)
        elif kind in ("number", "integer"):
            text = next(numbers, None)
            if text is not None:
                value = float(text) if kind == "number" and "." in text else int(float(text))
        elif kind == "string" or kind is None:
            value = next(strings, None)
        if value is not None:
            arguments[parameter] = value
    return arguments


def mentioned_tools(prompt: str, tools: Sequence[dict[str, Any]], skip: frozenset[str]) -> list[tuple[str, dict[str, Any]]]:
    """``(name, arguments)`` of every offered tool (but those in ``skip``) the prompt mentions."""
    calls = []
    for schema in tools:
        function = schema.get("function") or {}
        name = function.get("name")
        if not isinstance(name, str) or name in skip:
            continue
        mentioned, after = _mention(prompt, name, str(function.get("description") or ""))
        if mentioned:
            calls.append((name, arguments_from(prompt, after, function)))
    return calls
