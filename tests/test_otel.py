"""OpenTelemetry traces, end to end: the SDK's OTLP/HTTP exporter sends to a receiver in this
process, which decodes the protobuf; the fake upstream records the traceparent it was sent."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any, Iterator

import pytest

from monoai_tornado import Application
from monoai_tornado.backends.openai import OpenAIBackend
from monoai_tornado.ratelimit import RateLimiter, parse_limit
from tests.support.fake_openai import FakeOpenAI
from tests.support.http import json_of
from tests.support.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.support.processes import call, start_server, stop_server
from tests.support.ws_helpers import connect, read_until_end, send

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
CHAT = {"model": "test-model", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[OtlpReceiver]:
    """The receiver, with the OTEL_* variables that send this test's spans to it."""
    with OtlpReceiver() as running:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", running.endpoint)
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "20")
        monkeypatch.setenv("OTEL_SERVICE_NAME", "gateway-under-test")
        yield running


@pytest.fixture
def traced(make_app: Any, serve: Any, receiver: OtlpReceiver) -> Iterator[Any]:
    """``traced(**kwargs)``: serve an app with ``otel=True``; its tracer is shut down after the test."""
    apps: list[Application] = []

    def build(**kwargs: Any) -> tuple[Application, str]:
        app = make_app(otel=True, **kwargs)
        apps.append(app)
        return app, serve(app)

    yield build
    for app in apps:
        assert app.pipeline.tracing is not None
        app.pipeline.tracing.shutdown()


def flush(app: Application) -> None:
    assert app.pipeline.tracing is not None
    app.pipeline.tracing.provider.force_flush()  # type: ignore[attr-defined]


def by_kind(spans: list[ReceivedSpan], kind: str) -> list[ReceivedSpan]:
    return [span for span in spans if span.kind == kind]


async def test_a_request_continues_the_clients_trace_and_each_upstream_call_is_its_child(traced, fetch, receiver):
    async with FakeOpenAI() as upstream:
        app, url = traced(model=OpenAIBackend(upstream.base_url, "test-model"))
        answer = await fetch(url + "/v1/chat/completions", method="POST", body=CHAT,
                             headers={"traceparent": TRACEPARENT, "X-Request-Id": "rid-otel", "Authorization": "x"})
        assert answer.code == 200 and json_of(answer)["usage"]["total_tokens"] == 18
        flush(app)
        spans = receiver.wait_for(2)
        sent = {name.lower(): value for name, value in upstream.requests[0].headers.items()}
    [server] = by_kind(spans, "server")
    [client] = by_kind(spans, "client")
    assert server.trace_id == client.trace_id == TRACE_ID and server.parent_span_id == PARENT_ID
    assert client.parent_span_id == server.span_id
    assert sent["traceparent"] == f"00-{TRACE_ID}-{client.span_id}-01"  # the upstream continues our span
    assert server.name == "chat test-model" and client.name == "chat test-model"
    assert server.service == "gateway-under-test" and server.status_code != 2  # not an error
    attributes = server.attributes
    assert attributes["gen_ai.operation.name"] == "chat" and attributes["gen_ai.request.model"] == "test-model"
    assert attributes["gen_ai.response.model"] == "test-model"
    assert (attributes["gen_ai.usage.input_tokens"], attributes["gen_ai.usage.output_tokens"]) == (11, 7)
    assert attributes["gen_ai.response.finish_reasons"] == ["stop"] and attributes["http.response.status_code"] == 200
    assert attributes["monoai.request_id"] == "rid-otel" and attributes["monoai.limited"] is False
    assert attributes["monoai.user"].startswith("ip:") and attributes["gen_ai.server.time_to_first_token"] >= 0
    calls = client.attributes
    assert calls["server.address"] == "127.0.0.1" and calls["server.port"] == upstream.port
    assert calls["gen_ai.provider.name"] == "openai-compatible" and calls["gen_ai.request.model"] == "test-model"
    assert (calls["gen_ai.usage.input_tokens"], calls["gen_ai.usage.output_tokens"]) == (11, 7)
    assert calls["gen_ai.response.finish_reasons"] == ["stop"]


async def test_a_failed_upstream_call_is_an_error_span(traced, fetch, receiver):
    async with FakeOpenAI(status=500) as upstream:
        app, url = traced(model=OpenAIBackend(upstream.base_url, "test-model"))
        answer = await fetch(url + "/v1/chat/completions", method="POST", body=CHAT)
        assert answer.code == 502
        flush(app)
        spans = receiver.wait_for(2)
    [server], [client] = by_kind(spans, "server"), by_kind(spans, "client")
    assert server.status_code == client.status_code == 2  # STATUS_CODE_ERROR
    assert server.attributes["http.response.status_code"] == 502 and client.attributes["error.type"] == "BackendError"


async def test_a_refused_request_is_traced_as_limited_without_an_upstream_call(traced, fetch, receiver):
    app, url = traced(rate_limiter=RateLimiter([parse_limit("1/minute")]))
    assert (await fetch(url + "/model", method="POST", body={"prompt": "hi", "user_id": "ann"})).code == 200
    assert (await fetch(url + "/model", method="POST", body={"prompt": "hi", "user_id": "ann"})).code == 429
    flush(app)
    spans = receiver.wait_for(3)
    servers = by_kind(spans, "server")
    refused = [span for span in servers if span.attributes["http.response.status_code"] == 429]
    assert len(servers) == 2 and len(refused) == 1 and len(by_kind(spans, "client")) == 1
    assert refused[0].attributes["monoai.limited"] is True and refused[0].attributes["monoai.user"] == "ann"
    assert "gen_ai.usage.input_tokens" not in refused[0].attributes


async def test_websocket_prompts_are_traced_one_by_one(traced, receiver):
    app, url = traced()
    ws = await connect(url, "/model/ws")
    for _ in range(2):
        await send(ws, {"prompt": "hi"})
        assert (await read_until_end(ws))[-1]["type"] == "complete"
    ws.close()
    flush(app)
    spans = receiver.wait_for(4)
    servers = by_kind(spans, "server")
    assert len(servers) == 2 and servers[0].trace_id != servers[1].trace_id
    assert all(span.attributes["monoai.outcome"] == "complete" for span in servers)
    assert sorted(span.parent_span_id for span in by_kind(spans, "client")) == sorted(s.span_id for s in servers)


async def test_an_unsampled_request_exports_nothing_and_the_upstream_still_gets_the_clients_trace(
        traced, fetch, receiver, monkeypatch):
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    async with FakeOpenAI() as upstream:
        app, url = traced(model=OpenAIBackend(upstream.base_url, "test-model"))
        answer = await fetch(url + "/v1/chat/completions", method="POST", body=CHAT,
                             headers={"traceparent": TRACEPARENT})
        assert answer.code == 200
        sent = {name.lower(): value for name, value in upstream.requests[0].headers.items()}
    flush(app)
    assert receiver.spans == [] and sent["traceparent"] == TRACEPARENT  # passed on as the client sent it


def test_without_the_switch_nothing_of_opentelemetry_is_imported() -> None:
    script = (
        "import sys, asyncio\n"
        "from monoai_tornado.cli import build_application, build_parser\n"
        "from monoai_tornado import Application, DemoBackend\n"
        "app = build_application(build_parser().parse_args(['--demo-delay', '0']))\n"
        "from tornado.testing import bind_unused_port\n"
        "from tornado.httpclient import AsyncHTTPClient\n"
        "async def main():\n"
        "    sock, port = bind_unused_port()\n"
        "    server = app.http_server(); server.add_sockets([sock])\n"
        "    answer = await AsyncHTTPClient().fetch(f'http://127.0.0.1:{port}/model', method='POST',\n"
        "                                           body='{\"prompt\": \"hi\"}')\n"
        "    assert answer.code == 200\n"
        "    server.stop()\n"
        "asyncio.run(main())\n"
        "print(sorted(name for name in sys.modules if name.startswith('opentelemetry')))\n"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MONOAI_", "OTEL_"))}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().replace("'", '"')) == []


@pytest.mark.slow
@pytest.mark.process
def test_a_server_started_with_monoai_otel_exports_its_spans_before_it_exits(receiver) -> None:
    env = {**os.environ, "MONOAI_OTEL": "1", "OTEL_BSP_SCHEDULE_DELAY": "60000"}  # sent at shutdown
    base, proc = start_server("--demo-delay", "0", env=env)
    try:
        status, _ = call(base + "/model", {"prompt": "hi"})
        assert status == 200
    finally:
        stop_server(proc)
    spans = receiver.wait_for(2)
    assert {span.kind for span in spans} == {"server", "client"} and spans[0].service == "gateway-under-test"


async def test_a_streamed_answer_is_one_span_ended_after_its_last_event(traced, fetch, receiver):
    async with FakeOpenAI(delay=0.01) as upstream:
        app, url = traced(model=OpenAIBackend(upstream.base_url, "test-model"))
        answer = await fetch(url + "/v1/chat/completions", method="POST", body={**CHAT, "stream": True},
                             headers={"X-Request-Id": "rid-stream"})
        assert answer.code == 200 and answer.body.endswith(b"data: [DONE]\n\n")
        flush(app)
        spans = receiver.wait_for(2)
    [server], [client] = by_kind(spans, "server"), by_kind(spans, "client")
    assert client.parent_span_id == server.span_id and server.attributes["monoai.request_id"] == "rid-stream"
    assert server.attributes["gen_ai.usage.output_tokens"] == 7 and server.attributes["http.response.status_code"] == 200
    assert server.attributes["gen_ai.server.time_to_first_token"] > 0


def test_otel_without_the_extra_says_what_to_install() -> None:
    script = ("import sys\n"
              "sys.modules['opentelemetry'] = None  # as if the otel extra were not installed\n"
              "from monoai_tornado.cli import main\n"
              "main(['--otel', '--port', '0'])\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "pip install 'monoai_tornado[otel]'" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
