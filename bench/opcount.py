"""Python opcodes and calls per request of a server of ``gateway.py``: a count, not a time.

    python bench/opcount.py                                    # ours, non-streamed and streamed
    python bench/opcount.py --server ours+features-usage-log --compare ours   # what every feature adds
    python bench/opcount.py --server ours --try-dir /tmp/before --compare try # a change, before and after
    python bench/opcount.py --features --only plain            # what each feature adds, one by one

The server runs under ``opcount_probe.py`` (a tracer counting each Python opcode, by function)
in front of the mock upstream; one keep-alive connection sends ``--warm`` requests, then the
counter runs over ``--requests`` more, one at a time. The count does not move with the
machine's speed or load (``ab_cpu.py``'s A/B of CPU time cannot tell 2 % from its noise; this
can), and follows time closely on this code: every feature on ran 1.20x the opcodes of
``ours`` and 1.22x its CPU time (bench/README.md, "Issue 34, eighth round"). What it does not
see: time in C (JSON, hashing, the kernel) and what caches make of the code. ``--top`` lists the
functions that add most; ``--save DIR`` keeps the raw counts.

Only 127.0.0.1 is contacted; every loop is bounded; the processes are stopped whatever happens.
"""
from __future__ import annotations

import argparse
import collections
import http.client
import os
import signal
import sys
import tempfile
import time
from dataclasses import replace

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import BENCH_DIR  # noqa: E402
from gateway import (MODEL, SERVERS, GatewayServer, ServerSpec, Setup, add_server, fast_upstream,  # noqa: E402
                     shape_for)

PROBE = os.path.join(BENCH_DIR, "opcount_probe.py")

#: Opcodes and calls per request, by function (``name  file:line``).
Counts = dict[str, tuple[float, float]]


def probed(argv: tuple[str, ...], out: str) -> tuple[str, ...]:
    """``argv`` (``... PYTHON -m monoai_tornado ...``, maybe behind ``taskset``) run under the probe."""
    index = argv.index("-m")
    return (*argv[:index], PROBE, out, *argv[index:])


def count(setup: Setup, server: str, stream: bool, warm: int, requests: int, save: str) -> Counts:
    """Run ``server``, send ``warm`` requests, then count the opcodes of ``requests`` more."""
    shape = shape_for(stream, server)
    variant = setup.variant(server)
    out = os.path.join(save, f"{server}-{'stream' if stream else 'plain'}.tsv")
    variant = replace(variant, argv=probed(variant.argv, out))
    if os.path.exists(out):
        os.unlink(out)
    with GatewayServer(variant, shape, None, 60.0) as srv:
        connection = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
        headers = dict(shape.headers)

        def send(number: int) -> None:
            for _ in range(number):
                connection.request("POST", shape.path, body=shape.body.encode(), headers=headers)
                answer = connection.getresponse()
                body = answer.read()
                if answer.status != 200 or shape.marker not in body:
                    raise RuntimeError(f"{server}: {answer.status} {body[:300]!r}")

        send(warm)
        os.kill(srv.pid, signal.SIGUSR1)
        time.sleep(0.3)
        send(requests)
        time.sleep(0.3)  # the last access line's flush, the run's task ending
        os.kill(srv.pid, signal.SIGUSR2)
        deadline = time.monotonic() + 30
        while not os.path.exists(out) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        connection.close()
    counts: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0])
    with open(out, encoding="utf-8") as file:
        for line in file:
            opcodes, calls, name, where = line.rstrip("\n").split("\t")
            for top in (variant.cwd, os.path.dirname(BENCH_DIR)):  # the same name whichever copy ran
                if where.startswith(top + os.sep):
                    where = os.path.relpath(where, top)
                    break
            figures = counts[f"{name}  {where.split(':')[0]}"]
            figures[0] += int(opcodes) / requests
            figures[1] += int(calls) / requests
    return {name: (figures[0], figures[1]) for name, figures in counts.items()}


def _without(feature: str, argv: list[str], setup: Setup) -> list[str]:
    """The command line of every feature on (``ours+features-usage-log``) without ``feature``."""
    def drop(option: str, values: int = 1) -> None:
        index = argv.index(option)
        del argv[index:index + 1 + values]

    if feature == "routing":  # one model from the command line, at the same prices
        drop("--config")
        argv[3:3] = ["--backend", "openai", "--base-url", f"{setup.upstream}/v1", "--model", MODEL,
                     "--price-input", "0.15", "--price-output", "0.60"]
    elif feature == "access log":
        argv[argv.index("--access-log") + 1] = "off"
    elif feature == "API key":
        drop("--require-api-key", 0)
        drop("--keys-file")
    elif feature == "spend limit":
        drop("--spend-limit")
    elif feature == "concurrency limit":
        drop("--concurrency-limit")
    return argv


#: What ``--features`` takes away from every feature on, one at a time.
FEATURES = ("routing", "access log", "API key", "spend limit", "concurrency limit")


def add_feature_servers() -> None:
    """``ours+features-without-...`` servers: every feature on but one (for ``--features``)."""
    every = SERVERS["ours+features-usage-log"]
    for feature in FEATURES:
        def args(setup: Setup, feature: str = feature) -> list[str]:
            assert callable(every.args)
            return _without(feature, list(every.args(setup)), setup)

        add_server(f"ours+features-without-{feature.replace(' ', '-')}", ServerSpec(args, ours=True, headers=every.headers))


def feature_table(setup: Setup, stream: bool, warm: int, requests: int, save: str) -> None:
    """What each feature adds: every feature on, against it without that one feature."""
    kind = "streamed" if stream else "non-streamed"
    base = totals(count(setup, "ours", stream, warm, requests, save))[0]
    every = totals(count(setup, "ours+features-usage-log", stream, warm, requests, save))[0]
    print(f"{kind}: ours {base:,.0f} opcodes per request; every feature on {every:,.0f} "
          f"({every / base:.3f}x, {every - base:+,.0f})")
    print(f"  {'feature':<18} {'opcodes it adds':>15} {'x ours':>7}")
    for feature in FEATURES:
        without = totals(count(setup, f"ours+features-without-{feature.replace(' ', '-')}", stream, warm, requests,
                               save))[0]
        print(f"  {feature:<18} {every - without:>+15,.0f} {(every - without) / base:>+7.3f}", flush=True)


def totals(counts: Counts) -> tuple[float, float]:
    return sum(o for o, _ in counts.values()), sum(c for _, c in counts.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="ours", help="a server of gateway.py (default: ours)")
    parser.add_argument("--compare", help="another server, counted the same way: differences by function")
    parser.add_argument("--try-dir", help="the copy of the repository the try servers run")
    parser.add_argument("--warm", type=int, default=300)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--top", type=int, default=25, help="functions listed (most added first)")
    parser.add_argument("--only", choices=("plain", "stream"), help="one kind of request (default: both)")
    parser.add_argument("--save", help="directory for the raw counts (default: a temporary one)")
    parser.add_argument("--features", action="store_true",
                        help="what each feature adds: every feature on against it without each one in turn")
    args = parser.parse_args()
    add_feature_servers()
    save = args.save or tempfile.mkdtemp(prefix="opcount-")
    os.makedirs(save, exist_ok=True)
    kinds = [False, True] if args.only is None else [args.only == "stream"]
    with fast_upstream("") as upstream:
        setup = Setup(upstream.port, "", "", try_dir=os.path.abspath(args.try_dir) if args.try_dir else None)
        for stream in kinds:
            if args.features:
                feature_table(setup, stream, args.warm, args.requests, save)
                continue
            kind = "streamed" if stream else "non-streamed"
            counted = count(setup, args.server, stream, args.warm, args.requests, save)
            opcodes, calls = totals(counted)
            print(f"{args.server} {kind}: {opcodes:,.0f} opcodes and {calls:,.1f} calls per request", flush=True)
            if args.compare is None:
                rows = sorted(((o, c, name) for name, (o, c) in counted.items()), reverse=True)[: args.top]
                for o, c, name in rows:
                    print(f"  {o:8.1f} {c:6.1f}  {name}")
                continue
            other = count(setup, args.compare, stream, args.warm, args.requests, save)
            other_opcodes, other_calls = totals(other)
            print(f"{args.compare} {kind}: {other_opcodes:,.0f} opcodes and {other_calls:,.1f} calls per request; "
                  f"{args.server} / {args.compare} = {opcodes / other_opcodes:.3f} "
                  f"({opcodes - other_opcodes:+,.0f} opcodes, {calls - other_calls:+,.1f} calls)", flush=True)
            names = set(counted) | set(other)
            diffs = sorted(((counted.get(n, (0.0, 0.0))[0] - other.get(n, (0.0, 0.0))[0],
                             counted.get(n, (0.0, 0.0))[1] - other.get(n, (0.0, 0.0))[1], n) for n in names),
                           reverse=True)
            print(f"  {'opcodes':>8} {'calls':>6}  function ({args.server} minus {args.compare}; most added first)")
            for o, c, name in diffs[: args.top]:
                print(f"  {o:+8.1f} {c:+6.1f}  {name}")
            print("  ... and most taken away: " + ", ".join(f"{name.split('  ')[0]} {o:+.0f}"
                                                               for o, c, name in diffs[-5:] if o < 0))


if __name__ == "__main__":
    main()
