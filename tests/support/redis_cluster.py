"""A real three-master Redis Cluster on free local ports, for the tests that need one.

``start_cluster()`` runs three ``redis-server --cluster-enabled yes`` in a temporary folder,
joins them with ``redis-cli --cluster create``, waits until every node says ``cluster_state:ok``
and returns a :class:`LocalCluster`; ``stop()`` ends the processes. Nothing is kept on disk
beyond the folder, which is removed. Every wait is bounded.
"""
from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

from tests.support.ci import skip_or_fail

NODES = 3


def _free_port() -> int:
    # Cluster nodes also listen on port + 10000 (the bus): pick ports whose bus port is free too.
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port + 10000 > 65535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


def _cli(port: int, *args: str, timeout: float = 10) -> str:
    return subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args], capture_output=True,
                          text=True, timeout=timeout, check=False).stdout


@dataclass
class LocalCluster:
    """Three cluster nodes on 127.0.0.1; ``url`` names them all for ``--redis-url``."""

    folder: str
    ports: list[int]
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def start_node(self, port: int) -> None:
        """Start (or restart, with its saved cluster config) the node on ``port``."""
        node_dir = f"{self.folder}/{port}"
        self.processes[port] = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
             "--cluster-config-file", f"{node_dir}/nodes.conf", "--cluster-node-timeout", "2000",
             "--dir", node_dir, "--save", "", "--appendonly", "no", "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while _cli(port, "ping", timeout=2).strip() != "PONG":
            if time.monotonic() > deadline:
                raise RuntimeError(f"cluster node on port {port} did not start")
            time.sleep(0.05)

    def stop_node(self, port: int) -> None:
        process = self.processes.pop(port, None)
        if process is not None:
            process.kill()
            process.wait(timeout=10)

    def wait_ok(self, seconds: float = 30) -> None:
        """Until every running node reports ``cluster_state:ok``."""
        deadline = time.monotonic() + seconds
        while True:
            states = [_cli(port, "cluster", "info", timeout=2) for port in self.processes]
            if all("cluster_state:ok" in state for state in states):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"cluster not ok after {seconds} s: {states}")
            time.sleep(0.1)

    def stop(self) -> None:
        for port in list(self.processes):
            self.stop_node(port)
        shutil.rmtree(self.folder, ignore_errors=True)


def need_cluster() -> None:
    """Skip (locally) or fail (under CI) without redis-server and redis-cli."""
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        skip_or_fail("redis-server/redis-cli are not installed", "CI must run the cluster tests")


def start_cluster() -> LocalCluster:
    cluster = LocalCluster(tempfile.mkdtemp(prefix="monoai-cluster-"), [])
    try:
        for _ in range(NODES):
            port = _free_port()
            cluster.ports.append(port)
            subprocess.run(["mkdir", "-p", f"{cluster.folder}/{port}"], check=True)
            cluster.start_node(port)
        created = subprocess.run(
            ["redis-cli", "--cluster", "create", *[f"127.0.0.1:{p}" for p in cluster.ports],
             "--cluster-replicas", "0", "--cluster-yes"], capture_output=True, text=True, timeout=60, check=False)
        if created.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {created.stdout[-500:]} {created.stderr[-500:]}")
        cluster.wait_ok()
    except BaseException:
        with contextlib.suppress(Exception):
            cluster.stop()
        raise
    return cluster
