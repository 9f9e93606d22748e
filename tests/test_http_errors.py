"""Every error code of API.md over HTTP: JSON bodies, right statuses, never a traceback."""
from __future__ import annotations

import pytest

from tests.support.backends_for_tests import ScriptedBackend
from tests.support.http import json_of


def assert_error(response, status, code):
    assert response.code == status, response.body
    assert response.headers["Content-Type"].startswith("application/json")
    body = json_of(response)
    assert body["code"] == code
    assert isinstance(body["error"], str) and body["error"]
    assert b"Traceback" not in response.body


@pytest.mark.parametrize("raw", [b"not json", b"{", b"\xff\xfe", b"", b"[1, 2]", b'"prompt"', b"42", b"null"])
async def test_invalid_json(url, fetch, raw):
    assert_error(await fetch(url + "/model", "POST", raw), 400, "invalid_json")


@pytest.mark.parametrize("body", [{}, {"prompt": ""}, {"prompt": "   \n\t"}, {"prompt": 5},
                                  {"prompt": None}, {"prompt": ["a"]}, {"user_id": "u"}])
async def test_missing_prompt(url, fetch, body):
    assert_error(await fetch(url + "/model", "POST", body), 400, "missing_prompt")


async def test_deeply_nested_json_is_a_clean_400(url, fetch):
    raw = "[" * 100_000 + "]" * 100_000
    assert_error(await fetch(url + "/model", "POST", raw), 400, "invalid_json")


async def test_unknown_path_is_404(url, fetch):
    assert_error(await fetch(url + "/nothing/here"), 404, "not_found")
    assert_error(await fetch(url + "/nothing", "POST", {"prompt": "x"}), 404, "not_found")


async def test_wrong_method_is_405(url, fetch):
    response = await fetch(url + "/model")
    assert_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]
    assert_error(await fetch(url + "/health", "POST", {}), 405, "method_not_allowed")


async def test_body_over_limit_is_413(app_url, fetch):
    url = app_url(max_body_size=1000)
    big = {"prompt": "x" * 2000}
    assert_error(await fetch(url + "/model", "POST", big), 413, "payload_too_large")
    ok = await fetch(url + "/model", "POST", {"prompt": "x" * 900})
    assert ok.code == 200


async def test_chunked_body_over_limit_is_413(app_url, fetch):
    url = app_url(max_body_size=1000)

    async def producer(write):
        for _ in range(5):
            await write(b'{"prompt": "' + b"y" * 400)

    response = await fetch(url + "/model", "POST", body_producer=producer)
    assert_error(response, 413, "payload_too_large")


async def test_default_limit_is_one_mebibyte(url, fetch):
    assert_error(await fetch(url + "/model", "POST", {"prompt": "x" * (1024 * 1024)}), 413, "payload_too_large")


@pytest.mark.parametrize("failure,status,code", [("error", 502, "backend_error"),
                                                  ("timeout", 504, "backend_timeout"),
                                                  ("crash", 502, "backend_error")])
@pytest.mark.parametrize("path", ["/model", "/model/stream"])
async def test_backend_failures(app_url, fetch, failure, status, code, path):
    url = app_url(model=ScriptedBackend(failure=failure, fail_after=2))
    assert_error(await fetch(url + path, "POST", {"prompt": "x"}), status, code)
    # The server keeps serving.
    assert (await fetch(url + "/health")).code == 200


async def test_invalid_user_id_type(url, fetch):
    assert_error(await fetch(url + "/model", "POST", {"prompt": "x", "user_id": ["a"]}), 400, "invalid_user_id")


async def test_bad_requests_do_not_disturb_the_next_one(url, fetch):
    for raw in [b"{", b"[]", b'{"prompt": 1}', b"\x00" * 100]:
        await fetch(url + "/model", "POST", raw)
    response = await fetch(url + "/model", "POST", {"prompt": "still there?"})
    assert response.code == 200
    assert "still there?" in json_of(response)["response"]
