"""A serving process freezes what start-up made and collects cycles less often."""
from __future__ import annotations

import subprocess
import sys

from monoai_tornado.collector import SERVING_THRESHOLDS


def test_a_served_process_freezes_its_start_and_spaces_collections_out() -> None:
    code = ("import gc; from monoai_tornado.collector import tune_for_serving; before = gc.get_freeze_count(); "
            "tune_for_serving(); print(before, gc.get_freeze_count(), *gc.get_threshold())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    before, frozen, *thresholds = map(int, out.stdout.split())
    assert before == 0 and frozen > 1000  # the modules' objects are no longer walked by any collection
    assert tuple(thresholds) == SERVING_THRESHOLDS
