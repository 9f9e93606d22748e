"""A/B of our server's CPU per request: two copies side by side on one core, loaded at once.

    python bench/ab_cpu.py --try-dir DIR [--rounds 6] [--seconds 4] [--connections 16] [--stream] [--server-args "..."]
    python bench/ab_cpu.py --try-dir . --try-args "--http-parser tornado"      # one option, A/B
    python bench/ab_cpu.py --try-dir . --try-server try+features               # every feature on, A/B
    python bench/ab_cpu.py --try-dir /tmp/before --server ours-routed --try-server try-routed

Our server from this checkout (A) and from ``--try-dir`` (B, a copy of the repository, its
``monoai_tornado/`` measured) run in front of the same mock upstream (``fast_upstream.py``),
both pinned to ``--server-cpus``; two wrk loads, one per server, run at the same time from
``--load-cpus``. Whatever slows the machine (another tenant, the CPU's clock) slows both
alike, so the ratio of their CPU time per request, round by round, is steadier than two runs
one after the other (``gateway.py --lines ours-v1,try-v1``), which is what a change of 5 % needs.
Prints each round's µs per request of A and B and A/B, then the median ratio.

Only 127.0.0.1 is contacted; each load is bounded in time; the servers are stopped whatever happens.
"""
from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from gateway import Setup, fast_upstream, ours_server, shape_for  # noqa: E402
from side_by_side import load_at_once, two_servers  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--try-dir", required=True, help="the B copy of the repository")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--connections", type=int, default=16, help="per server")
    parser.add_argument("--stream", action="store_true", help="streamed requests (default: non-streamed)")
    parser.add_argument("--server-cpus", default="0")
    parser.add_argument("--load-cpus", default="1")
    parser.add_argument("--server-args", default="", help="more arguments for both servers")
    parser.add_argument("--try-args", default="", help="more arguments for B only")
    parser.add_argument("--server", default="ours",
                        help="A's server of gateway.py (default: ours; ours-routed: two deployments, for an A/B "
                             "of routing with --try-server try-routed)")
    parser.add_argument("--try-server", default="try",
                        help="B's server of gateway.py (default: try, ours with --try-args; try+features: every "
                             "feature on, with an API key the A server ignores)")
    args = parser.parse_args()
    upstream = fast_upstream(args.load_cpus)
    ours_server("ours", *shlex.split(args.server_args))
    ours_server("try", *shlex.split(args.server_args), *shlex.split(args.try_args), tries=True)
    ratios: list[float] = []
    shape = shape_for(args.stream, args.server, args.try_server)
    with upstream:
        setup = Setup(upstream.port, args.server_cpus, args.load_cpus, try_dir=os.path.abspath(args.try_dir))
        with two_servers(setup, args.server, args.try_server, shape, args.connections) as servers:
            print(f"{'round':>5}  {'A us/req':>9}  {'B us/req':>9}  {'A/B':>6}  (A: this checkout, B: {args.try_dir} "
                  f"{args.try_server} {args.try_args}; "
                  f"{'streamed' if args.stream else 'non-streamed'})", flush=True)
            for number in range(1, args.rounds + 1):
                figures = load_at_once(servers, shape, args.seconds, args.connections, args.load_cpus)
                a, b = figures["a"][1], figures["b"][1]
                ratios.append(a / b)
                print(f"{number:>5}  {a:>9.0f}  {b:>9.0f}  {a / b:>6.3f}", flush=True)
    print(f"median A/B CPU per request: {statistics.median(ratios):.3f} over {len(ratios)} rounds")


if __name__ == "__main__":
    main()
