"""``/health`` tells a load balancer whether prompts would be served: the limiter's store state."""
from __future__ import annotations

import pytest

from monoai_tornado.ratelimit import Limit, RateLimiter
from tests.support.http import json_of
from tests.support.processes import free_port


def dead_redis_limiter(**options) -> RateLimiter:
    """A limiter whose Redis URL nothing answers (a free port nobody listens on)."""
    from monoai_tornado.ratelimit import RedisStore

    return RateLimiter([Limit("request", 5, "minute")], RedisStore(f"redis://127.0.0.1:{free_port()}/0"), **options)


async def test_health_without_a_limiter_keeps_the_original_shape(app_url, fetch):
    url = app_url("H")
    response = await fetch(url + "/health")
    assert response.code == 200 and json_of(response) == {"status": "ok", "app": "H"}


async def test_health_reports_a_working_limiter(app_url, fetch):
    limiter = RateLimiter([Limit("request", 5, "minute")])
    url = app_url("H", rate_limiter=limiter)
    response = await fetch(url + "/health")
    assert response.code == 200 and json_of(response) == {"status": "ok", "app": "H", "limiter": "ok"}


@pytest.mark.redis
async def test_health_is_503_while_prompts_would_be_refused(app_url, fetch):
    limiter = dead_redis_limiter()
    url = app_url("H", rate_limiter=limiter)
    try:
        response = await fetch(url + "/health")
        assert response.code == 503
        assert json_of(response) == {"status": "unavailable", "app": "H", "limiter": "unavailable"}
        assert (await fetch(url + "/model", "POST", {"prompt": "x"})).code == 503  # as /health said
    finally:
        await limiter.aclose()


@pytest.mark.redis
async def test_health_with_fail_open_says_unavailable_but_serves(app_url, fetch):
    limiter = dead_redis_limiter(fail_open=True)
    url = app_url("H", rate_limiter=limiter)
    try:
        response = await fetch(url + "/health")
        assert response.code == 200 and json_of(response)["limiter"] == "unavailable"
        assert (await fetch(url + "/model", "POST", {"prompt": "x"})).code == 200  # prompts pass, unlimited
    finally:
        await limiter.aclose()
