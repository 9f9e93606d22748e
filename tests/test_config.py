"""``--config PATH`` and ``MONOAI_*``: what a file and the environment set, what wins, and how a
broken file is refused (one line, exit 2, no traceback)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from monoai_tornado.cli import build_parser
from monoai_tornado.config import ConfigError, load_config, resolve_options

ROOT = Path(__file__).resolve().parent.parent

GOOD = """
[server]
port = 9100
limit = ["60/minute"]
require_api_key = false
extra_body = { top_k = 40 }

[[models]]
name = "chat"
base_url = "http://10.0.0.1:8000/v1"
upstream_model = "Qwen/Qwen2.5-7B-Instruct"
weight = 2
max_concurrent = 64
rpm = 600
tpm = 200000

[[models]]
name = "chat"
id = "chat-b"
base_url = "http://10.0.0.2:8000/v1"

[[models]]
name = "gpt-4o-mini"
base_url = "https://api.openai.com/v1"
api_key_env = "OPENAI_API_KEY"
price_input = 0.15
price_output = 0.60

[[models]]
name = "local-demo"
backend = "demo"

[routing]
default_model = "chat"
strategy = "weighted"
fallbacks = { chat = ["gpt-4o-mini"] }
aliases = { "claude-*" = "chat" }
"""


def write(tmp_path: Path, text: str, name: str = "gateway.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_a_whole_file_becomes_typed_deployments_and_routing(tmp_path):
    config = load_config(write(tmp_path, GOOD), build_parser())
    assert [d.id for d in config.models] == ["chat#1", "chat-b", "gpt-4o-mini#1", "local-demo#1"]
    assert config.model_names == ("chat", "gpt-4o-mini", "local-demo")
    first, _, hosted, demo = config.models
    assert (first.sent_model, first.weight, first.max_concurrent, first.rpm, first.tpm) == \
        ("Qwen/Qwen2.5-7B-Instruct", 2.0, 64, 600, 200000)
    assert first.prices is None and demo.backend == "demo"
    assert hosted.prices is not None and (hosted.prices.input, hosted.prices.output, hosted.prices.cached_input) == \
        (0.15, 0.60, 0.15)
    assert config.routing.fallbacks == {"chat": ("gpt-4o-mini",)} and config.routing.strategy == "weighted"
    assert config.server["port"] == 9100 and config.server["extra_body"] == {"top_k": 40}
    assert [limit.value for limit in config.server["limit"]] == [60]


def options(argv: list[str], environ: dict[str, str]):
    parser = build_parser()
    args = parser.parse_args(argv)
    config = resolve_options(parser, args, argv, environ)
    return args, config


def test_command_line_then_environment_then_file_then_default(tmp_path):
    path = write(tmp_path, '[server]\nport = 9100\nname = "from file"\nhost = "0.0.0.0"\nlimit = ["60/minute"]\n')
    args, _ = options(["--config", path, "--port", "9300"],
                      {"MONOAI_PORT": "9200", "MONOAI_NAME": "from env", "MONOAI_TOKEN_LIMIT": "100/minute,5000/hour"})
    assert args.port == 9300  # command line
    assert args.name == "from env"  # environment over file
    assert args.host == "0.0.0.0"  # file over default
    assert [limit.value for limit in args.token_limit] == [100, 5000]  # comma-separated repeatable
    assert [limit.value for limit in args.limit] == [60]
    assert args.idle_timeout == 60.0  # default


def test_a_repeatable_option_on_the_command_line_replaces_the_file(tmp_path):
    path = write(tmp_path, '[server]\nlimit = ["60/minute"]\n')
    args, _ = options(["--config", path, "--limit", "5/second"], {})
    assert [limit.value for limit in args.limit] == [5]


def test_environment_flags_and_the_config_path_itself(tmp_path):
    path = write(tmp_path, GOOD)
    args, config = options([], {"MONOAI_CONFIG": path, "MONOAI_NO_AGENTS": "yes", "MONOAI_ADMIN_TOKEN": "s3cret"})
    assert config is not None and config.model_names[0] == "chat"
    assert args.no_agents is True and args.admin_token == "s3cret" and args.port == 9100


def test_a_bad_environment_variable_names_itself():
    with pytest.raises(ConfigError, match="MONOAI_PORT: not a port"):
        options([], {"MONOAI_PORT": "eighty"})


MODEL = '[[models]]\nname = "chat"\nbase_url = "http://127.0.0.1:1/v1"\n'

BROKEN = {
    "syntax": ("[server\nport = 1\n", "not valid TOML"),
    "unknown table": ("[serverr]\nport = 1\n", "serverr: unknown table"),
    "unknown server key": ("[server]\nprot = 1\n", "server.prot: unknown option"),
    "unknown model key": (MODEL + "wieght = 2\n", "models[0].wieght: unknown key"),
    "unknown routing key": (MODEL + "[routing]\nretry = 2\n", "routing.retry: unknown key"),
    "wrong server type": ("[server]\nport = true\n", "server.port: must be a string or a number"),
    "wrong model type": (MODEL + 'max_concurrent = "many"\n', "models[0].max_concurrent: must be a whole number"),
    "bad server value": ('[server]\nlimit = ["5/fortnight"]\n', "server.limit:"),
    "unknown fallback": (MODEL + '[routing]\nfallbacks = { chat = ["gpt-5"] }\n',
                         "routing.fallbacks.chat: fallback 'gpt-5' is not a model"),
    "unknown default": (MODEL + '[routing]\ndefault_model = "nope"\n', "routing.default_model:"),
    "duplicate id": (MODEL + 'id = "a"\n' + MODEL + 'id = "a"\n', "models[1].id: duplicate deployment id 'a'"),
    "negative weight": (MODEL + "weight = -1\n", "models[0].weight: must be > 0, not -1"),
    "model without name": ('[[models]]\nbase_url = "http://127.0.0.1:1/v1"\n', "models[0].name: required"),
    "openai without url": ('[[models]]\nname = "x"\n', "models[0].base_url: required"),
    "bad strategy": (MODEL + '[routing]\nstrategy = "fastest"\n', "routing.strategy: must be one of"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_file_is_one_error_naming_file_and_key(tmp_path, case):
    text, says = BROKEN[case]
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, build_parser())
    assert str(caught.value).startswith(path) and says in str(caught.value)


@pytest.mark.process
@pytest.mark.parametrize("case", ["syntax", "unknown model key", "unknown fallback", "negative weight"])
def test_a_broken_file_stops_the_command_with_one_line_and_exit_2(tmp_path, case):
    text, says = BROKEN[case]
    path = write(tmp_path, text)
    proc = subprocess.run([sys.executable, "-m", "monoai_tornado", "--config", path], capture_output=True,
                          text=True, timeout=30, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(f"monoai-tornado: error: {path}: ")
    assert says in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.process
def test_an_admin_token_on_the_command_line_is_warned_about(tmp_path):
    from tests.support.processes import start_server, stop_server

    base, proc = start_server("--admin-token", "visible-in-ps", capture=True)
    output = stop_server(proc)
    assert "--admin-token was given on the command line" in output and "MONOAI_ADMIN_TOKEN" in output
    env = {**os.environ, "MONOAI_ADMIN_TOKEN": "hidden"}
    base, proc = start_server(capture=True, env=env)
    assert "given on the command line" not in stop_server(proc)
