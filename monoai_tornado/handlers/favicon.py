"""``GET /favicon.ico``: a small icon, so that a browser's first request is not a 404.

The icon (16x16, a teal funnel on transparent ground) is drawn here into a 32-bit ICO, once:
no file to ship, nothing to load.
"""
from __future__ import annotations

import functools
import struct

from .base import JsonHandler

SIZE = 16
TEAL = (0x8A, 0x96, 0x0D, 0xFF)  # BGRA of #0d968a


def _inside(x: int, y: int) -> bool:
    """The funnel: rows narrowing from the top (y = 0) down, a little off-centre as it turns."""
    half = max(1, 7 - y // 2)
    centre = 7.5 + (y % 4 - 1.5) * 0.5
    return 1 <= y <= 14 and abs(x - centre) <= half and (y % 3 != 0 or half > 2)


@functools.lru_cache(maxsize=1)
def favicon_ico() -> bytes:
    """The icon as ICO bytes (one BMP image: BGRA rows bottom-up, then an empty AND mask)."""
    pixels = bytearray()
    for y in reversed(range(SIZE)):
        for x in range(SIZE):
            pixels += bytes(TEAL) if _inside(x, y) else b"\0\0\0\0"
    mask = b"\0" * (4 * SIZE)  # 16 bits a row, padded to 32
    header = struct.pack("<IiiHHIIiiII", 40, SIZE, 2 * SIZE, 1, 32, 0, len(pixels) + len(mask), 0, 0, 0, 0)
    image = header + bytes(pixels) + mask
    directory = struct.pack("<BBBBHHII", SIZE, SIZE, 0, 0, 1, 32, len(image), 6 + 16)
    return struct.pack("<HHH", 0, 1, 1) + directory + image


class FaviconHandler(JsonHandler):
    """``GET /favicon.ico``: the icon, cached for a day."""

    endpoint = "favicon"

    def get(self) -> None:
        self.set_header("Content-Type", "image/x-icon")
        self.set_header("Cache-Control", "public, max-age=86400")
        self.finish(favicon_ico())
