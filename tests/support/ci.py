"""Whether this run is CI's, and what a test does there when a part it needs is missing: CI must run
every test, so what is a skip with its reason elsewhere is a failure there."""
from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    """``CI`` is set, to anything but empty, ``0``, ``false`` or ``no`` (CI services set ``true``)."""
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def skip_or_fail(reason: str, under_ci: str) -> NoReturn:
    """Skip the test saying ``reason``; under CI, fail it, saying ``reason`` and ``under_ci``."""
    if in_ci():
        pytest.fail(f"{reason} ({under_ci})")
    pytest.skip(reason)
