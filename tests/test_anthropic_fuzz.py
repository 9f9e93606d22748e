"""Fuzzing ``/v1/messages`` and ``/v1/messages/count_tokens`` on 127.0.0.1: a valid body with one
field (top level, in a message, a content block, a tool) replaced by a generated JSON value, or
a generated body outright. Whatever arrives: an answer, or Anthropic's error shape with a 4xx;
never a 5xx or a traceback."""
from __future__ import annotations

import http.client
import json
from typing import Any, Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monoai_tornado import Application, DemoBackend
from tests.support.threaded_server import ThreadedServer
from tests.test_fuzz import FUZZ, json_values

pytestmark = pytest.mark.slow

VALID: dict[str, Any] = {
    "model": "monoai-demo", "max_tokens": 20, "system": [{"type": "text", "text": "Be brief."}],
    "messages": [
        {"role": "user", "content": "What is the weather?"},
        {"role": "assistant", "content": [{"type": "text", "text": "Checking."},
                                          {"type": "tool_use", "id": "toolu_1", "name": "calculator",
                                           "input": {"expression": "1+1"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "2"},
                                     {"type": "text", "text": "Go on."}]}],
    "tools": [{"name": "calculator", "description": "Maths", "input_schema": {"type": "object"}}],
    "tool_choice": {"type": "auto"}, "stop_sequences": ["STOP"], "temperature": 0.5, "top_p": 0.9, "top_k": 5,
    "metadata": {"user_id": "fuzzer"}, "stream": False,
}
#: Where a generated value goes: a path of keys and indexes into VALID.
PLACES = [(key,) for key in VALID] + [
    ("messages", 0), ("messages", 0, "role"), ("messages", 0, "content"), ("messages", 1, "content", 0),
    ("messages", 1, "content", 1, "id"), ("messages", 1, "content", 1, "input"), ("messages", 1, "content", 1, "type"),
    ("messages", 2, "content", 0, "tool_use_id"), ("messages", 2, "content", 0, "content"),
    ("messages", 2, "content", 1, "text"), ("system", 0), ("system", 0, "text"), ("tools", 0),
    ("tools", 0, "name"), ("tools", 0, "input_schema"), ("tools", 0, "type"), ("tool_choice", "type"),
    ("tool_choice", "name"), ("metadata", "user_id"), ("stop_sequences", 0),
]
ERROR_STATUSES = {400: "invalid_request_error", 404: "not_found_error", 413: "invalid_request_error"}


def replaced(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    body = json.loads(json.dumps(VALID))
    parent = body
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = value
    return body


bodies = st.builds(replaced, st.sampled_from(PLACES), json_values) | st.dictionaries(
    st.sampled_from(list(VALID)), json_values, max_size=6)


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    app = Application("Fuzz", model=DemoBackend(delay=0), max_body_size=256 * 1024)
    with ThreadedServer(app) as server:
        yield server.port


def post(port: int, path: str, body: Any) -> tuple[int, str, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")
        connection.request("POST", path, data, {"Content-Type": "application/json"})
        answer = connection.getresponse()
        return answer.status, answer.getheader("Content-Type", ""), answer.read()
    finally:
        connection.close()


def test_the_valid_body_is_answered(port):
    status, _, raw = post(port, "/v1/messages", VALID)
    assert status == 200 and json.loads(raw)["type"] == "message"


@FUZZ
@given(body=bodies, path=st.sampled_from(["/v1/messages", "/v1/messages/count_tokens"]))
def test_bad_input_is_an_anthropic_4xx_never_a_5xx(port, body, path):
    status, content_type, raw = post(port, path, body)
    assert status < 500, raw
    if status == 200:
        assert content_type.startswith("text/event-stream") or "type" in json.loads(raw) or path.endswith("tokens")
        return
    assert status in ERROR_STATUSES, (status, raw)
    error = json.loads(raw)
    assert set(error) == {"type", "error"} and error["type"] == "error"
    assert error["error"]["type"] == ERROR_STATUSES[status] and isinstance(error["error"]["message"], str)
    assert "Traceback" not in error["error"]["message"]
