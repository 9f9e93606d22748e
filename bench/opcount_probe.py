"""Runs a module (``python opcount_probe.py OUT -m monoai_tornado ARGS...``) with an opcode counter
that ``SIGUSR1`` starts and ``SIGUSR2`` stops, writing to OUT what each Python function ran
meanwhile: ``opcodes<TAB>calls<TAB>qualified name<TAB>file:line`` per line, most opcodes first.

``bench/opcount.py`` drives it. Tracing makes the server some 20x slower; what it counts does not
depend on the machine's speed or load, so a change of 1 % of a request's Python work shows.
"""
from __future__ import annotations

import collections
import runpy
import signal
import sys
import types
from typing import Any

opcodes: collections.Counter[types.CodeType] = collections.Counter()
calls: collections.Counter[types.CodeType] = collections.Counter()


def _each_opcode(frame: types.FrameType, event: str, arg: Any) -> Any:
    if event == "opcode":
        opcodes[frame.f_code] += 1
    return _each_opcode


def _each_call(frame: types.FrameType, event: str, arg: Any) -> Any:
    if event != "call":  # (a resumed generator or coroutine is a call too)
        return None
    frame.f_trace_opcodes = True
    calls[frame.f_code] += 1
    return _each_opcode


def _start(signum: int, frame: Any) -> None:
    opcodes.clear()
    calls.clear()
    sys.settrace(_each_call)


def _stop(signum: int, frame: Any) -> None:
    sys.settrace(None)
    with open(OUT, "w", encoding="utf-8") as file:
        for code, count in opcodes.most_common():
            file.write(f"{count}\t{calls[code]}\t{code.co_qualname}\t{code.co_filename}:{code.co_firstlineno}\n")


if __name__ == "__main__":
    OUT = sys.argv[1]
    if sys.argv[2] != "-m":
        raise SystemExit("usage: opcount_probe.py OUT -m MODULE [ARGS...]")
    module = sys.argv[3]
    sys.argv = [module, *sys.argv[4:]]
    signal.signal(signal.SIGUSR1, _start)
    signal.signal(signal.SIGUSR2, _stop)
    runpy.run_module(module, run_name="__main__", alter_sys=True)
