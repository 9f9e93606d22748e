"""Take the README's screenshot, ``docs/playground.png``, from the real server as a user starts it.

    .venv/bin/python docs/make_screenshot.py            # needs playwright (the test extra) and chromium

It starts ``python -m monoai_tornado`` with a request and a token limit, asks the default agent
``assistant`` a question in the playground over server-sent events, and saves the whole page.
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

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the repository, for tests/processes.py
COMMAND = ["--limit", "100/minute", "--token-limit", "100000/hour"]
APP_NAME = "MonoAI Tornado"  # the command line's default --name
PROMPT = "What is 12*(3+4)?"


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


async def shoot(base: str, output: pathlib.Path, chromium: str) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, headless=True,
                                                   args=["--no-sandbox", "--disable-gpu"])
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(15_000)
            await page.goto(base + "/playground")
            await page.wait_for_selector("#send:not([disabled])")
            await page.select_option("#target", "agent:assistant")
            await page.select_option("#transport", "sse")
            await page.fill("#prompt", PROMPT)
            await page.click("#send")
            await page.wait_for_function("() => document.getElementById('status').dataset.state === 'done'")
            await page.screenshot(path=str(output), full_page=True)
        finally:
            await browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=pathlib.Path, default=HERE / "playground.png")
    parser.add_argument("--chromium", default=os.environ.get("MONOAI_TEST_CHROMIUM", "/usr/bin/chromium"))
    args = parser.parse_args()
    from tests.processes import start_server, stop_server

    base, server = start_server(*COMMAND)
    try:
        asyncio.run(shoot(base, args.output, args.chromium))
    finally:
        stop_server(server)
    add_png_text(args.output, {"monoai_tornado:app": APP_NAME,
                               "monoai_tornado:command": " ".join(["python -m monoai_tornado", *COMMAND]),
                               "monoai_tornado:prompt": PROMPT})
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
