"""A WebSocket client for /model/ws (or /agent/NAME/ws), as the spec shows.

    python -m monoai_tornado &
    python examples/ws_client.py "Ciao WebSocket"
    python examples/ws_client.py --path /agent/assistant/ws "what is 12*(3+4)?"
"""
import argparse
import asyncio
import json

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
                step = data["step"]
                print(f"\n  [{step['type']}] {step.get('name', '')} {json.dumps(step.get('arguments', ''))}")
            elif data.get("type") == "complete":
                print("\nusage:", data["result"]["usage"])
                return data["result"]
            elif "error" in data:
                raise RuntimeError(f"{data.get('code')}: {data['error']}")
    finally:
        ws.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("prompt")
    parser.add_argument("--server", default="ws://127.0.0.1:8000")
    parser.add_argument("--path", default="/model/ws")
    parser.add_argument("--user-id")
    args = parser.parse_args()
    asyncio.run(ask(args.server + args.path, args.prompt, args.user_id))


if __name__ == "__main__":
    main()
