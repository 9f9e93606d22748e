"""The OpenAPI document tells the answers a gateway under a spend limit gives (API.md Part 3):
404 model_not_found on /model, 403 model_not_priced on every prompt route. Real server process."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from tests.support.processes import Servers, call

pytestmark = [pytest.mark.process, pytest.mark.slow]


@pytest.fixture
def servers() -> Iterator[Servers]:
    started = Servers("--demo-delay", "0")
    yield started
    started.stop_all()


def test_answers_of_a_gateway_under_a_spend_limit_are_documented(servers: Servers, tmp_path: Path) -> None:
    config = tmp_path / "models.toml"
    config.write_text('[[models]]\nname = "free"\nbackend = "demo"\n')
    base = servers("--config", str(config), "--spend-limit", "5/day")
    paths = call(base + "/openapi.json")[1]["paths"]
    status, body = call(base + "/model", {"prompt": "hi", "model": "nope"})
    assert (status, body["code"]) == (404, "model_not_found")
    assert "404" in paths["/model"]["post"]["responses"]
    status, body = call(base + "/model", {"prompt": "hi", "model": "free"})
    assert (status, body["code"]) == (403, "model_not_priced")
    for path in ("/model", "/model/stream", "/v1/chat/completions", "/v1/responses", "/v1/messages"):
        assert "403" in paths[path]["post"]["responses"], path
