"""Take the README's screenshots, ``docs/playground.png`` (light) and ``docs/playground-dark.png``,
from the real server as a user starts it.

    .venv/bin/python docs/make_screenshot.py            # needs playwright (the test extra) and chromium

It starts ``python -m monoai_tornado`` with a request and a token limit, has a two-turn chat with
the model over ``/v1/chat/completions`` (a system prompt set), asks the default agent
``assistant`` a question over server-sent events, and saves the whole page in both colour schemes.
The app name shown and the command are written into the PNG (``tEXt`` chunks), so that a test
can tell the picture is of this project's default server.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import pathlib
import struct
import sys
import zlib
from typing import Any

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the repository, for tests/support/processes.py
COMMAND = ["--limit", "100/minute", "--token-limit", "100000/hour"]
APP_NAME = "MonoAI Tornado"  # the command line's default --name
PROMPT = "What is 12*(3+4)?"
CHAT = ["Hello! What can you do?", "And what did I just ask you?"]
SYSTEM = "You are a concise assistant."


def png_text(path: pathlib.Path) -> dict[str, str]:
    """The ``tEXt`` chunks of a PNG file, by keyword."""
    data = path.read_bytes()
    chunks, offset = {}, 8
    while offset + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        if kind == b"tEXt":
            keyword, _, text = data[offset + 8:offset + 8 + length].partition(b"\0")
            chunks[keyword.decode("latin-1")] = text.decode("latin-1")
        offset += 12 + length
    return chunks


def add_png_text(path: pathlib.Path, texts: dict[str, str]) -> None:
    """Insert ``tEXt`` chunks right after the PNG header chunk."""
    data = path.read_bytes()
    end_of_header = 8 + 12 + struct.unpack(">I", data[8:12])[0]
    extra = b""
    for keyword, text in texts.items():
        body = keyword.encode("latin-1") + b"\0" + text.encode("latin-1")
        extra += struct.pack(">I", len(body)) + b"tEXt" + body + struct.pack(">I", zlib.crc32(b"tEXt" + body))
    path.write_bytes(data[:end_of_header] + extra + data[end_of_header:])


async def shoot(base: str, outputs: dict[str, pathlib.Path], chromium: str) -> None:
    from playwright.async_api import async_playwright

    async def ask(page: Any, prompt: str, transport: str, target: str) -> None:
        await page.select_option("#target", target)
        await page.select_option("#transport", transport)
        await page.fill("#prompt", prompt)
        await page.click("#send")
        await page.wait_for_function("() => ['done', 'error'].includes(document.getElementById('status').dataset.state)")

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, headless=True,
                                                   args=["--no-sandbox", "--disable-gpu"])
        try:
            for scheme, output in outputs.items():
                page = await browser.new_page(viewport={"width": 1280, "height": 900}, color_scheme=scheme)
                page.set_default_timeout(15_000)
                await page.goto(base + "/playground")
                await page.wait_for_selector("#send:not([disabled])")
                await page.fill("#system", SYSTEM)
                for prompt in CHAT:
                    await ask(page, prompt, "chat", "model")
                await ask(page, PROMPT, "sse", "agent:assistant")
                await page.screenshot(path=str(output), full_page=True)
                await page.close()
        finally:
            await browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=pathlib.Path, default=HERE / "playground.png",
                        help="the light screenshot; the dark one goes beside it as NAME-dark.png")
    parser.add_argument("--chromium", default=os.environ.get("MONOAI_TEST_CHROMIUM", "/usr/bin/chromium"))
    args = parser.parse_args()
    from tests.support.processes import start_server, stop_server

    outputs = {"light": args.output, "dark": args.output.with_name(args.output.stem + "-dark.png")}
    base, server = start_server(*COMMAND)
    try:
        asyncio.run(shoot(base, outputs, args.chromium))
    finally:
        stop_server(server)
    for output in outputs.values():
        add_png_text(output, {"monoai_tornado:app": APP_NAME,
                              "monoai_tornado:command": " ".join(["python -m monoai_tornado", *COMMAND]),
                              "monoai_tornado:prompt": PROMPT})
        print(f"wrote {output}")


if __name__ == "__main__":
    main()
