"""A WebSocket client for /model/ws (or /agent/NAME/ws), as the spec shows.

    python -m monoai_tornado &
    python examples/ws_client.py "Ciao WebSocket"
    python examples/ws_client.py --agent assistant "what is 12*(3+4)?"
    python examples/ws_client.py --port 8080 "hi"          # or --url ws://host:port

It needs nothing beyond the server's own install (Tornado's WebSocket client).
"""
import argparse
import asyncio
import json
import sys

from tornado.httpclient import HTTPClientError
from tornado.websocket import websocket_connect


async def ask(url: str, prompt: str, user_id: str | None) -> dict:
    ws = await websocket_connect(url)
    try:
        message = {"prompt": prompt, **({"user_id": user_id} if user_id else {})}
        await ws.write_message(json.dumps(message))
        while True:
            raw = await ws.read_message()
            if raw is None:
                raise ConnectionError(f"connection closed ({ws.close_code}: {ws.close_reason})")
            data = json.loads(raw)
            if data.get("type") == "chunk":
                print(data["content"], end="", flush=True)
            elif data.get("type") == "step":
                print("\n  " + describe_step(data["step"]))
            elif data.get("type") == "complete":
                print("\nusage:", data["result"]["usage"])
                return data["result"]
            elif "error" in data:
                raise RuntimeError(f"{data.get('code')}: {data['error']}")
    finally:
        ws.close()


def describe_step(step: dict) -> str:
    """One line per agent step: a tool call with its arguments, and once it ran, its output."""
    line = f"[{step['type']}] {step.get('name', '')} {json.dumps(step.get('arguments', ''))}".rstrip()
    if step["type"] == "tool":
        line += f" -> error: {step['error']}" if step.get("error") else f" -> {json.dumps(step.get('output'))}"
    return line


def server_url(args: argparse.Namespace) -> str:
    """The WebSocket URL of the prompt path: ``--url`` (http:// or ws://) or localhost ``--port``."""
    base = args.url or f"ws://127.0.0.1:{args.port}"
    base = base.rstrip("/").replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    path = f"/agent/{args.agent}/ws" if args.agent else args.path
    return base + path


def main() -> None:
    parser = argparse.ArgumentParser(description="Send one prompt over WebSocket and print the answer as it streams.")
    parser.add_argument("prompt")
    parser.add_argument("--port", type=int, default=8000, help="the server's port on 127.0.0.1 (default 8000)")
    parser.add_argument("--url", "--server", help="the server's base URL instead, e.g. ws://10.0.0.5:8000")
    parser.add_argument("--agent", help="ask this agent instead of the model")
    parser.add_argument("--path", default="/model/ws", help="the WebSocket path (default /model/ws)")
    parser.add_argument("--user-id")
    args = parser.parse_args()
    url = server_url(args)
    try:
        asyncio.run(ask(url, args.prompt, args.user_id))
    except (RuntimeError, HTTPClientError, OSError) as exc:  # OSError includes ConnectionError
        hint = " (is the server running? python -m monoai_tornado)" if isinstance(exc, ConnectionRefusedError) else ""
        sys.exit(f"\nerror: {url}: {exc}{hint}")


if __name__ == "__main__":
    main()
