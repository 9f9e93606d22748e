"""Request fields declared once (monoai_tornado/fields.py): for every declared field of Part 1's
prompt body, of /v1/chat/completions, /v1/responses and /v1/messages, the parser takes exactly the values that the OpenAPI
document (the same declaration's schema, as served) calls valid."""
from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from monoai_tornado.chat_request import CHAT_FIELDS
from monoai_tornado.dialects.anthropic import MESSAGES_FIELDS
from monoai_tornado.dialects.responses import RESPONSES_FIELDS
from monoai_tornado.errors import ApiError
from monoai_tornado.fields import Field, Identity
from monoai_tornado.openapi import build_openapi
from monoai_tornado.prompt_request import PROMPT_BODY
from monoai_tornado.routes import operations, routes_for

DOC = build_openapi("A", "1", True, ["a"], False, False, operations=operations(routes_for(True, True)))
SCHEMAS = DOC["components"]["schemas"]
DECLARED = [("PromptRequest", field) for field in PROMPT_BODY] + [("ChatCompletionRequest", f) for f in CHAT_FIELDS] \
    + [("ResponseCreateRequest", field) for field in RESPONSES_FIELDS] + [("MessagesRequest", f) for f in MESSAGES_FIELDS]

#: JSON values, edges included: whole floats, integers past 2**31 and of 400 digits, blank
#: strings, nested lists. Strings stay short: a user field's cap in bytes is said in words only.
EDGES = st.sampled_from([0, 1, 2, 1.0, 2.5, -1, 2**31 - 1, 2**31, 10**400, 1e308, "", " ", "x", True, False, None,
                         [], ["a"], ["a", "b", "c", "d", "e"], [""], {}])
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12) | EDGES,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8)


#: Each field's validator, over its schema as a client reads it from /openapi.json (JSON text).
VALIDATORS = {(schema, field.name): Draft202012Validator(json.loads(json.dumps(SCHEMAS[schema]["properties"][field.name])))
              for schema, field in DECLARED}


def over_the_byte_cap(field: Field[Any], value: Any) -> bool:
    """An identity past its cap in bytes, which the schema's description states (no keyword can)."""
    if not isinstance(field, Identity) or isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return False
    text = value if isinstance(value, str) else str(value) if isinstance(value, int) else \
        str(int(value)) if value.is_integer() else ""
    return len(text.encode("utf-8", "surrogatepass")) > field.max_bytes and str(field.max_bytes) in field.schema()["description"]


def accepted(field: Field[Any], body: dict[str, Any]) -> bool:
    try:
        field.read(body)
    except ApiError as error:
        assert error.status == 400  # a refusal, never a crash
        return False
    return True


@pytest.mark.slow  # about a second a field
@pytest.mark.parametrize("schema, field", DECLARED, ids=[f"{s}.{f.name}" for s, f in DECLARED])
@settings(max_examples=100, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=VALUES)
def test_the_parser_takes_what_the_document_calls_valid(schema: str, field: Field[Any], value: Any) -> None:
    assert SCHEMAS[schema]["properties"][field.name] == field.schema()  # the document shows the declaration
    valid = VALIDATORS[schema, field.name].is_valid(value) and not over_the_byte_cap(field, value)
    assert valid == accepted(field, {field.name: value}), value


@pytest.mark.parametrize("schema, field", DECLARED, ids=[f"{s}.{f.name}" for s, f in DECLARED])
def test_absent_fields_are_required_where_the_document_says(schema: str, field: Field[Any]) -> None:
    assert (field.name in SCHEMAS[schema]["required"]) is field.required
    assert accepted(field, {}) is not field.required


async def test_a_huge_integer_is_a_400_not_a_crash(fetch: Any, url: str) -> None:
    # 400 digits: out of temperature's range, and too big for a float (an OverflowError once).
    huge = "1" + "0" * 400
    for path, body in (("/v1/chat/completions", '{"model": "demo", "messages": [{"role": "user", "content": "hi"}], '
                                                '"temperature": ' + huge + "}"),
                       ("/v1/responses", '{"model": "demo", "input": "hi", "temperature": ' + huge + "}"),
                       ("/v1/messages", '{"model": "demo", "max_tokens": 5, "messages": [{"role": "user", '
                                        '"content": "hi"}], "temperature": ' + huge + "}")):
        answer = await fetch(url + path, "POST", body)
        assert answer.code == 400, path
        assert json.loads(answer.body)["error"]["message"].startswith("temperature must be a number from 0 to ")


async def test_the_prompt_body_documents_the_model_it_takes(fetch: Any, url: str) -> None:
    served = json.loads((await fetch(url + "/openapi.json")).body)
    model = served["components"]["schemas"]["PromptRequest"]["properties"]["model"]
    assert model["type"] == ["string", "null"]
    answer = await fetch(url + "/model", "POST", {"prompt": "hi", "model": " "})
    assert answer.code == 400 and json.loads(answer.body)["code"] == "invalid_json"
    assert not Draft202012Validator(model).is_valid(" ")
