"""User identity: validator outcomes, /validate-user, and forwarding headers only from trusted proxies."""
from __future__ import annotations

import asyncio
import logging

import pytest

from monoai_tornado.errors import Forbidden
from monoai_tornado.identity import IdentityResolver
from tests.support.http import json_of


def spec_validator(user_id: str):
    """The validator of the spec's example."""
    if user_id.startswith("user_"):
        return True
    if user_id.startswith("admin_"):
        return f"user_{user_id[6:]}"
    if user_id == "boom":
        raise RuntimeError("validator bug")
    return False


async def async_validator(user_id: str):
    await asyncio.sleep(0)
    return spec_validator(user_id)


@pytest.mark.parametrize("validator", [spec_validator, async_validator])
async def test_validator_outcomes(validator):
    resolver = IdentityResolver(validator)
    assert (await resolver.resolve("user_1", "10.0.0.1", {})).key == "user_1"
    assert (await resolver.resolve("admin_7", "10.0.0.1", {})).key == "user_7"
    assert (await resolver.resolve("mallory", "10.0.0.1", {})).key == "ip:10.0.0.1"
    assert (await resolver.resolve(None, "10.0.0.1", {})).key == "ip:10.0.0.1"


async def test_validator_exception_counts_as_invalid_and_is_logged(caplog):
    resolver = IdentityResolver(spec_validator)
    with caplog.at_level(logging.ERROR, logger="monoai_tornado.identity"):
        identity = await resolver.resolve("boom", "10.0.0.2", {})
    assert identity.key == "ip:10.0.0.2"
    assert "validator" in caplog.text


async def test_reject_invalid_users_raises_forbidden():
    resolver = IdentityResolver(spec_validator, reject_invalid=True)
    with pytest.raises(Forbidden):
        await resolver.resolve("mallory", "10.0.0.1", {})


def test_forwarded_headers_ignored_from_untrusted_peers():
    resolver = IdentityResolver(trusted_proxies=["10.0.0.0/8"])
    forged = {"X-Forwarded-For": "1.2.3.4", "X-Real-IP": "5.6.7.8"}
    assert resolver.client_ip("203.0.113.9", forged) == "203.0.113.9"
    assert IdentityResolver().client_ip("10.0.0.5", forged) == "10.0.0.5"


def test_forwarded_headers_believed_from_trusted_proxies():
    resolver = IdentityResolver(trusted_proxies=["10.0.0.0/8", "::1/128"])
    assert resolver.client_ip("10.0.0.5", {"X-Forwarded-For": "198.51.100.7"}) == "198.51.100.7"
    # The client may prepend garbage: the first untrusted hop from the right counts.
    assert resolver.client_ip("10.0.0.5", {"X-Forwarded-For": "1.1.1.1, 198.51.100.7, 10.0.0.9"}) == "198.51.100.7"
    assert resolver.client_ip("10.0.0.5", {"X-Real-IP": "198.51.100.8"}) == "198.51.100.8"
    assert resolver.client_ip("10.0.0.5", {"X-Forwarded-For": "not-an-ip"}) == "10.0.0.5"


@pytest.fixture
def url(app_url):
    return app_url(user_validator=spec_validator)


async def test_validate_user_endpoint(url, fetch):
    assert json_of(await fetch(url + "/validate-user", "POST", {"user_id": "user_123"})) == \
        {"valid": True, "user_id": "user_123", "normalized": None}
    assert json_of(await fetch(url + "/validate-user", "POST", {"user_id": "admin_9"})) == \
        {"valid": True, "user_id": "admin_9", "normalized": "user_9"}
    assert json_of(await fetch(url + "/validate-user", "POST", {"user_id": "mallory"})) == \
        {"valid": False, "user_id": "mallory", "error": "Invalid user_id"}
    assert json_of(await fetch(url + "/validate-user", "POST", {"user_id": "boom"}))["valid"] is False
    assert json_of(await fetch(url + "/validate-user", "POST", {"user_id": 7}))["user_id"] == "7"


@pytest.mark.parametrize("body", [{}, {"user_id": None}, {"user_id": ""}, {"user_id": "   "}])
async def test_validate_user_needs_a_user_id(url, fetch, body):
    # API.md, "Compatibility with the original": missing, null or empty is a 400, as the original.
    response = await fetch(url + "/validate-user", "POST", body)
    assert response.code == 400 and json_of(response)["code"] == "missing_user_id"


async def test_validate_user_refuses_bad_json(url, fetch):
    response = await fetch(url + "/validate-user", "POST", b"nope")
    assert response.code == 400 and json_of(response)["code"] == "invalid_json"


async def test_validate_user_without_validator_accepts(app_url, fetch):
    url = app_url()
    assert json_of(await fetch(url + "/validate-user", "POST", {"user_id": "anyone"})) == \
        {"valid": True, "user_id": "anyone", "normalized": None}


async def test_reject_invalid_users_answers_403_over_http(app_url, fetch):
    url = app_url(user_validator=spec_validator, reject_invalid_users=True)
    response = await fetch(url + "/model", "POST", {"prompt": "x", "user_id": "mallory"})
    assert response.code == 403 and json_of(response)["code"] == "forbidden"
    assert (await fetch(url + "/model", "POST", {"prompt": "x", "user_id": "user_1"})).code == 200
