"""API keys as a user runs them: the ``keys`` command, real server processes, a real keys file,
and two servers sharing the real Redis (a key made on one works on the other, a revocation on
one is refused by the other within 2 s)."""
from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from monoai_tornado.cli import main
from tests.support.processes import Servers, call
from tests.support.ratelimit_fixtures import REDIS_URL, delete_prefix, need_redis

pytestmark = pytest.mark.process

ADMIN = "admin-token-for-tests"


def keys_cmd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "monoai_tornado", "keys", *args], capture_output=True, text=True,
                          timeout=60)


def prompt(base: str, key: str | None, user_id: str = "bob") -> int:
    return call(base + "/model", {"prompt": "hi", "user_id": user_id}, key=key)[0]


def within_2_s(check: Any) -> bool:
    """Poll ``check()`` (bounded: 2 s and 40 tries); True as soon as it holds."""
    deadline = time.monotonic() + 2.0
    for _ in range(40):
        if check():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return False


@pytest.fixture
def servers() -> Iterator[Servers]:
    started = Servers("--no-agents", "--demo-delay", "0", "--admin-token", ADMIN, capture=True)
    yield started
    started.stop_all()


def test_keys_command_and_a_server_on_a_keys_file(servers: Any, tmp_path: Path) -> None:
    keys_file = str(tmp_path / "keys.json")
    made = keys_cmd("create", "--user", "alice", "--name", "laptop", "--limit", "2/hour",
                    "--expires-in", "30d", "--keys-file", keys_file)
    assert made.returncode == 0, made.stderr
    alice = made.stdout.splitlines()[0]
    assert alice.startswith("sk-mt-") and made.stdout.strip() == alice  # the key alone
    base = servers("--keys-file", keys_file, "--require-api-key", "--limit", "100/minute")

    assert prompt(base, None) == 401
    assert [prompt(base, alice) for _ in range(3)] == [200, 200, 429]  # her key's own 2/hour
    status, stats = call(base + "/rate-limit/stats/alice", key=alice)  # her own key reads her stats
    assert status == 200 and stats["usage"] == {"2-per-3600": 2} and stats["remaining"] == {"2-per-3600": 0}
    assert call(base + "/rate-limit/stats/bob", key=ADMIN)[1]["usage"] == {"100-per-60": 0}  # bob paid nothing

    # A key made while the server runs works within 2 s; a revoked one is refused within 2 s.
    bob = keys_cmd("create", "--user", "bob", "--keys-file", keys_file).stdout.splitlines()[0]
    assert within_2_s(lambda: prompt(base, bob) == 200)
    listed = keys_cmd("list", "--json", "--keys-file", keys_file)
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [set(row) for row in rows] == [{"id", "user", "name", "prefix", "created_at", "expires_at", "revoked"}] * 2
    assert [(row["user"], row["name"], row["revoked"]) for row in rows] == [("alice", "laptop", False),
                                                                          ("bob", None, False)]
    assert rows[0]["expires_at"] is not None and rows[1]["expires_at"] is None
    revoked = keys_cmd("revoke", rows[1]["id"], "--keys-file", keys_file)
    assert revoked.returncode == 0 and rows[1]["id"] in revoked.stdout
    assert within_2_s(lambda: prompt(base, bob) == 401)
    assert json.loads(keys_cmd("list", "--json", "--keys-file", keys_file).stdout.splitlines()[1])["revoked"]
    assert keys_cmd("revoke", "key_doesnotexist", "--keys-file", keys_file).returncode == 1

    # Neither the keys file nor the server's log ever holds a key.
    log = servers.stop_all()
    assert "key=" + rows[0]["id"] in log  # the access log names the key id
    for secret in (alice, bob):
        assert secret not in Path(keys_file).read_text()
        assert secret not in log
        assert secret not in listed.stdout


def test_admin_api_on_a_real_server(servers: Any, tmp_path: Path) -> None:
    keys_file = str(tmp_path / "keys.json")
    base = servers("--keys-file", keys_file, "--require-api-key")
    status, created = call(base + "/admin/keys", {"user": "carol", "limits": ["1/hour"]}, key=ADMIN)
    assert status == 201 and created["key"].startswith("sk-mt-")
    assert prompt(base, created["key"]) == 200
    assert prompt(base, created["key"]) == 429
    assert call(base + "/admin/keys", key=created["key"])[0] == 403  # a key is not the admin token
    status, listed = call(base + "/admin/keys", key=ADMIN)
    assert status == 200 and [item["id"] for item in listed["keys"]] == [created["id"]]
    assert call(base + f"/admin/keys/{created['id']}", key=ADMIN, method="DELETE") == (
        200, {"id": created["id"], "revoked": True})
    assert prompt(base, created["key"]) == 401
    assert call(base + "/admin/keys/key_nope", key=ADMIN, method="DELETE")[0] == 404
    # The CLI reads the same file.
    assert json.loads(keys_cmd("list", "--json", "--keys-file", keys_file).stdout)["revoked"] is True
    log = servers.stop_all()
    assert created["key"] not in log and created["key"] not in Path(keys_file).read_text()


@pytest.mark.parametrize("argv", [["keys", "create", "--keys-file", "k.json"], ["keys", "create", "--user", "u"],
                                  ["keys", "create", "--user", "u", "--limit", "5/fortnight", "--keys-file", "k.json"],
                                  ["keys", "create", "--user", "u", "--expires-in", "soon", "--keys-file", "k.json"],
                                  ["keys", "list", "--keys-file", "a", "--redis-url", "redis://x"], ["keys", "nope"],
                                  ["--require-api-key"], ["--keys-redis"],
                                  ["--keys-file", "k.json", "--keys-redis", "--redis-url", REDIS_URL]])
def test_key_options_that_cannot_work_exit_2_with_an_error(argv: list[str], capsys: Any, tmp_path: Path,
                                                          monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2 and "error:" in capsys.readouterr().err
    assert not (tmp_path / "k.json").exists()


@pytest.mark.redis
def test_two_servers_sharing_redis_share_keys_and_revocations(servers: Any) -> None:
    need_redis()
    prefix = f"test:keys:{uuid.uuid4().hex[:8]}:"
    try:
        common = ("--redis-url", REDIS_URL, "--redis-prefix", prefix, "--keys-redis", "--require-api-key",
                  "--limit", "100/minute")
        one, two = servers(*common), servers(*common)
        status, created = call(one + "/admin/keys", {"user": "alice", "limits": ["50/hour"]}, key=ADMIN)
        assert status == 201
        assert within_2_s(lambda: prompt(two, created["key"]) == 200)  # made on one, works on two
        assert prompt(one, created["key"]) == 200
        # Both counted against one budget in Redis, as alice's.
        assert call(two + "/rate-limit/stats/alice", key=created["key"])[1]["usage"] == {"50-per-3600": 2}
        # A key made with the command line, in the same Redis, works on both.
        cli = keys_cmd("create", "--user", "dave", "--redis-url", REDIS_URL, "--redis-prefix", prefix)
        dave = cli.stdout.splitlines()[0]
        assert within_2_s(lambda: prompt(one, dave) == 200 and prompt(two, dave) == 200)
        # Revoked on two: refused by one within 2 s.
        assert call(two + f"/admin/keys/{created['id']}", key=ADMIN, method="DELETE")[0] == 200
        assert within_2_s(lambda: prompt(one, created["key"]) == 401)
        listed = keys_cmd("list", "--json", "--redis-url", REDIS_URL, "--redis-prefix", prefix).stdout
        assert {json.loads(line)["user"]: json.loads(line)["revoked"] for line in listed.splitlines()} == {
            "alice": True, "dave": False}
        log = servers.stop_all()
        assert created["key"] not in log and dave not in log
    finally:
        delete_prefix(REDIS_URL, prefix)
