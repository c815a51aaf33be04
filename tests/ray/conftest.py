"""A two-node Ray cluster on this machine, started once per session for the Ray executor tests.

Each node is a `ray start ... --block` child in its own session, so one node can die alone:
`kill_worker` SIGKILLs the worker node's process group and every process below its raylet (Ray's
worker processes call setsid, so the group alone would miss the actors). Teardown kills only the
processes this module started, found by their ids, and any left over that name our own temp dir;
never `ray stop`, which kills every Ray process on the machine, other people's clusters included.
The head runs with short GCS health checks so that a dead node is noticed in seconds, not 30.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tests.server import free_port

RAY = str(Path(sys.executable).with_name("ray"))
STARTED_LINE = b"Ray runtime started"
NOT_ACTORS = {b"IDLE", b"DashboardAgent", b"RuntimeEnvAgent"}
OBJECT_STORE_BYTES = 100_000_000  # Ray's minimum is 75 MiB
HEALTH_CHECKS = {
    # A killed raylet refuses connections at once: 5 failed checks 1 s apart mark it dead.
    "RAY_health_check_initial_delay_ms": "1000",
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "5000",
    "RAY_health_check_failure_threshold": "5",
}
NODES_SCRIPT = """
import json, sys
import ray
ray.init(address=sys.argv[1], log_to_driver=False, configure_logging=False)
print(json.dumps([
    {"node_id": n["NodeID"], "alive": n["Alive"],
     "head": "node:__internal_head__" in n.get("Resources", {})}
    for n in ray.nodes()
]))
"""


def _children_by_parent() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # it exited while we looked
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])  # comm may hold spaces and parentheses
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, read from /proc (Linux)."""
    tree = _children_by_parent()
    found: list[int] = []
    stack = list(tree.get(pid, []))
    while stack:
        child = stack.pop()
        found.append(child)
        stack.extend(tree.get(child, []))
    return found


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


@dataclass
class RayNode:
    """One `ray start --block` process and the Ray processes below it."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def wait_started(self, timeout: float = 120.0) -> RayNode:
        deadline = time.monotonic() + timeout
        while STARTED_LINE not in self.log_path.read_bytes():
            if self.process.poll() is not None:
                raise RuntimeError(f"ray node {self.name} exited early:\n{self.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"ray node {self.name} did not start:\n{self.log()}")
            time.sleep(0.1)  # polling a separate process's log for its ready line
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def actors(self) -> dict[int, str]:
        """Ray worker processes of this node that host an actor (a private cluster: ours), by pid.

        Ray retitles a worker `ray::<ActorClass>` once it hosts an actor and
        `ray::<ActorClass>.<method>` while it runs a call; the node's own agents and pooled idle
        workers carry the names in NOT_ACTORS. Returns each title without `ray::`.
        """
        found = {}
        for pid in descendants(self.process.pid):
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            if title.startswith(b"ray::") and title[5:].split(b".")[0] not in NOT_ACTORS:
                found[pid] = title[5:].decode(errors="replace")
        return found

    def actor_pids(self) -> list[int]:
        return list(self.actors())

    def busy_actor_pids(self) -> list[int]:
        """Actors of this node running a call right now."""
        return [pid for pid, title in self.actors().items() if "." in title]

    def kill(self) -> None:
        """SIGKILL the node: its process group, then everything that was below it."""
        below = descendants(self.process.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        for pid in below:
            _kill(pid)
        self.process.wait()


@dataclass
class RayCluster:
    """A head node and worker nodes on this machine, all sharing the head's temp dir."""

    temp_dir: Path
    port: int = field(default_factory=free_port)
    head: RayNode | None = None
    workers: list[RayNode] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **HEALTH_CHECKS}

    def _spawn(self, name: str, args: list[str]) -> RayNode:
        log_path = self.temp_dir / f"{name}.log"
        cmd = [
            RAY, "start", "--block", "--num-cpus", "1",
            "--object-store-memory", str(OBJECT_STORE_BYTES), "--disable-usage-stats",
            "--include-log-monitor", "false",
            # Free ports of our own: the defaults (52365, ...) clash between nodes on one host.
            "--dashboard-agent-listen-port", str(free_port()),
            "--dashboard-agent-grpc-port", str(free_port()),
            "--metrics-export-port", str(free_port()),
            "--runtime-env-agent-port", str(free_port()),
            *args,
        ]  # fmt: skip
        with open(log_path, "ab") as log:  # the child keeps its own descriptor
            process = subprocess.Popen(
                cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return RayNode(name, process, log_path)

    def start_head(self) -> RayNode:
        self.head = self._spawn("head", [
            "--head", "--port", str(self.port), "--temp-dir", str(self.temp_dir / "ray"),
            "--include-dashboard", "false", "--ray-client-server-port", str(free_port()),
        ]).wait_started()  # fmt: skip
        return self.head

    def add_worker(self) -> RayNode:
        node = self._spawn(f"worker-{len(self.workers) + 1}", ["--address", self.address])
        self.workers.append(node.wait_started())
        return node

    def live_workers(self) -> list[RayNode]:
        return [node for node in self.workers if node.alive()]

    def nodes(self) -> list[dict[str, object]]:
        """What the GCS says about every node it has seen (`ray.nodes()` in a throwaway driver)."""
        result = subprocess.run(
            [sys.executable, "-c", NODES_SCRIPT, self.address],
            env=self.env, capture_output=True, timeout=120, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"ray.nodes() failed:\n{result.stderr.decode(errors='replace')}")
        nodes: list[dict[str, object]] = json.loads(result.stdout.splitlines()[-1])
        return nodes

    def wait_alive(self, count: int, timeout: float = 120.0) -> list[dict[str, object]]:
        deadline = time.monotonic() + timeout
        while True:
            alive = [n for n in self.nodes() if n["alive"]]
            if len(alive) == count:
                return alive
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} live Ray nodes, GCS has {len(alive)}")
            time.sleep(0.5)  # each poll is a driver start; the GCS lags a node's own start

    def close(self) -> None:
        for node in [*self.workers, *([self.head] if self.head else [])]:
            node.kill()
        # Anything still naming our temp dir (a process that escaped its parent) is ours.
        marker = str(self.temp_dir).encode()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != os.getpid():
                try:
                    if marker in (entry / "cmdline").read_bytes():
                        _kill(int(entry.name))
                except OSError:
                    continue
        shutil.rmtree(self.temp_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    """Head plus one worker node, one CPU each; both alive in the GCS before any test runs."""
    # Short: Ray's socket paths live under it and Unix socket paths are limited to 107 bytes.
    cluster = RayCluster(Path(tempfile.mkdtemp(prefix="oray-", dir="/tmp")))
    try:
        cluster.start_head()
        cluster.add_worker()
        cluster.wait_alive(2)
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def two_nodes(ray_cluster: RayCluster) -> RayCluster:
    """The session cluster with a live worker node (a new one if a test killed the last)."""
    if not ray_cluster.live_workers():
        ray_cluster.add_worker()
        ray_cluster.wait_alive(2)
    return ray_cluster
