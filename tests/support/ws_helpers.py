"""Helpers for WebSocket tests: connect, send JSON, read until a prompt's end."""
from __future__ import annotations

import asyncio
import json
from typing import Any

from tornado.websocket import WebSocketClientConnection, websocket_connect


async def connect(base_url: str, path: str, **kwargs: Any) -> WebSocketClientConnection:
    return await websocket_connect(base_url.replace("http://", "ws://") + path, **kwargs)


async def send(ws: WebSocketClientConnection, message: dict[str, Any]) -> None:
    await ws.write_message(json.dumps(message))


async def read(ws: WebSocketClientConnection, timeout: float = 10) -> Any:
    raw = await asyncio.wait_for(ws.read_message(), timeout)
    return None if raw is None else json.loads(raw)


async def read_until_end(ws: WebSocketClientConnection, timeout: float = 10) -> list[dict[str, Any]]:
    """Messages up to and including a complete, cancelled or error message."""
    messages = []
    for _ in range(100_000):
        message = await read(ws, timeout)
        if message is None:
            break
        messages.append(message)
        if message.get("type") in ("complete", "cancelled") or "error" in message:
            break
    return messages


def chunks_of(messages: list[dict[str, Any]]) -> str:
    return "".join(m["content"] for m in messages if m.get("type") == "chunk")
