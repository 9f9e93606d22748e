"""Two servers side by side on one core, loaded at once, each sampled by py-spy over the same window.

    python bench/ab_profile.py --try-dir . --server ours --try-server try-config --save /tmp/ab
    python bench/ab_profile.py --try-dir . --try-args "--usage-log /tmp/u.jsonl" --save /tmp/ab   # one option

Whatever slows the machine slows both alike, so the difference between the two profiles (and
their CPU per request) is the difference of the servers, not of the minute they ran in (what
two runs of ``profile_v1.py`` one after the other cannot tell apart). py-spy samples without
pausing the servers (``--blocking`` pauses them, which on this machine inflates the lines of
system calls: bench/README.md). Writes py-spy's raw
stacks of A and B (``a.txt``, ``b.txt``) to ``--save`` and prints each one's CPU per request.

Only 127.0.0.1 is contacted; the load and the sampling are bounded in time; every process is
stopped whatever happens.
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import PYTHON  # noqa: E402
from gateway import GatewayServer, Setup, fast_upstream, ours_server, shape_for  # noqa: E402
from side_by_side import load_at_once, two_servers  # noqa: E402

PY_SPY = os.path.join(os.path.dirname(PYTHON), "py-spy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--try-dir", required=True, help="the B copy of the repository")
    parser.add_argument("--server", default="ours", help="A's server of gateway.py")
    parser.add_argument("--try-server", default="try", help="B's server of gateway.py")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--connections", type=int, default=16, help="per server")
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--server-cpus", default="0")
    parser.add_argument("--load-cpus", default="1")
    parser.add_argument("--save", required=True, help="directory for a.txt and b.txt")
    parser.add_argument("--try-args", default="", help="more arguments for B (the try server) only")
    parser.add_argument("--blocking", action="store_true",
                        help="let py-spy pause the servers for each sample (its default; on this machine the pauses "
                             "land at system calls and inflate their lines: see bench/README.md)")
    args = parser.parse_args()
    ours_server("try", *shlex.split(args.try_args), tries=True)
    os.makedirs(args.save, exist_ok=True)
    shape = shape_for(args.stream, args.server, args.try_server)

    def spy(name: str, server: GatewayServer) -> None:
        subprocess.run([PY_SPY, "record", "--pid", str(server.pid), "--duration", str(args.seconds), "--rate",
                        str(args.rate), "--gil", "--format", "raw", "--full-filenames",
                        *(() if args.blocking else ("--nonblocking",)),
                        "-o", os.path.join(args.save, f"{name}.txt")],
                       capture_output=True, timeout=args.seconds + 60, check=False)

    with fast_upstream(args.load_cpus) as upstream:
        setup = Setup(upstream.port, args.server_cpus, args.load_cpus, try_dir=os.path.abspath(args.try_dir))
        with two_servers(setup, args.server, args.try_server, shape, args.connections) as servers:
            figures = load_at_once(servers, shape, args.seconds + 1, args.connections, args.load_cpus, during=spy)
            for name, server in servers.items():
                requests, per_request = figures[name]
                print(f"{name} ({server.variant.name}): {per_request:.0f} us of CPU per request, "
                      f"{requests:.0f} requests; stacks in {os.path.join(args.save, name + '.txt')}")

if __name__ == "__main__":
    main()
