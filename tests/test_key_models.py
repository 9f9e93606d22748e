"""A key that names its models (API.md Part 3, "API keys"): ``keys create --models``, ``"models"``
on ``POST /admin/keys``; any other model is 403 ``model_not_allowed`` on every front, and
``/v1/models`` with the key lists only its models. Real server process, real keys file."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from tests.support.processes import Servers, call

pytestmark = [pytest.mark.process, pytest.mark.slow]

ADMIN = "admin-token-for-model-tests"
CONFIG = """
[[models]]
name = "chat"
backend = "demo"

[[models]]
name = "other"
backend = "demo"
"""


@pytest.fixture
def servers() -> Iterator[Servers]:
    started = Servers("--demo-delay", "0", "--admin-token", ADMIN)
    yield started
    started.stop_all()


def test_a_key_naming_its_models_may_use_only_those(servers: Servers, tmp_path: Path) -> None:
    config, keys_file = tmp_path / "models.toml", tmp_path / "keys.json"
    config.write_text(CONFIG)
    made = subprocess.run([sys.executable, "-m", "monoai_tornado", "keys", "create", "--user", "alice",
                           "--models", "chat", "--keys-file", str(keys_file)],
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    key = made.stdout.split()[0]
    base = servers("--config", str(config), "--keys-file", str(keys_file))

    assert call(base + "/model", {"prompt": "hi", "model": "chat"}, key=key)[0] == 200
    status, body = call(base + "/model", {"prompt": "hi", "model": "other"}, key=key)
    assert (status, body["code"]) == (403, "model_not_allowed")
    status, body = call(base + "/v1/chat/completions",
                        {"model": "other", "messages": [{"role": "user", "content": "hi"}]}, key=key)
    assert (status, body["error"]["code"]) == (403, "model_not_allowed")
    status, body = call(base + "/v1/models", key=key)
    assert status == 200 and [entry["id"] for entry in body["data"]] == ["chat"]
    status, body = call(base + "/v1/messages/count_tokens",
                        {"model": "other", "messages": [{"role": "user", "content": "hi"}]}, key=key)
    assert (status, body["error"]["type"]) == (403, "permission_error")
    assert call(base + "/v1/messages/count_tokens",
                {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}, key=key)[0] == 200
    # Without the key (no key required) every model is listed and usable.
    assert "other" in [entry["id"] for entry in call(base + "/v1/models")[1]["data"]]
    assert call(base + "/model", {"prompt": "hi", "model": "other"})[0] == 200

    # The OpenAPI document tells these answers on every front.
    paths = call(base + "/openapi.json")[1]["paths"]
    for path in ("/model", "/v1/chat/completions", "/v1/responses", "/v1/messages"):
        assert {"401", "403"} <= set(paths[path]["post"]["responses"]), path
    assert "401" in paths["/v1/models"]["get"]["responses"] and "401" in paths["/agents"]["get"]["responses"]

    # The admin API takes "models" too, and shows it back.
    status, created = call(base + "/admin/keys", {"user": "bob", "models": ["other"]}, key=ADMIN)
    assert status == 201 and created["models"] == ["other"]
    assert call(base + "/model", {"prompt": "hi", "model": "chat"}, key=created["key"])[1]["code"] == \
        "model_not_allowed"
    assert call(base + "/admin/keys", {"user": "bob", "models": "other"}, key=ADMIN)[0] == 400


def test_without_a_key_an_unknown_model_is_401_not_404(servers: Servers, tmp_path: Path) -> None:
    """Under --require-api-key nothing about the models is told before the key: 401 on every front."""
    config, keys_file = tmp_path / "models.toml", tmp_path / "keys.json"
    config.write_text(CONFIG)
    keys_file.write_text('{"keys": []}')
    base = servers("--config", str(config), "--keys-file", str(keys_file), "--require-api-key")
    chat = {"model": "nope", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    assert call(base + "/model", {"prompt": "hi", "model": "nope"})[0] == 401
    assert call(base + "/v1/chat/completions", chat)[0] == 401
    assert call(base + "/v1/messages", chat)[0] == 401
    assert call(base + "/v1/messages/count_tokens", chat)[0] == 401
