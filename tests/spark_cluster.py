"""A Spark standalone cluster on loopback ports, started from the pyspark package, for tests and
benchmarks.

:func:`standalone_cluster` starts a master and ``workers`` workers of ``cores`` cores and
``memory`` each (``bin/spark-class org.apache.spark.deploy.master.Master`` / ``...worker.Worker``
from the pyspark package, which is a Spark distribution: its directory is ``SPARK_HOME``) on
free loopback ports, the master's REST server off, an empty configuration directory, every
process in a session of its own (``setsid``) so that a worker can be killed with everything it
started (:meth:`Cluster.kill_worker`), and waits until the master's JSON page lists the
workers ``ALIVE``. A directory on this machine stands in for the shared file system: the
workers (and their executors' Python workers) run this interpreter with ``src/`` and the
repository on ``PYTHONPATH``, so they import the same recforge and test helpers.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Cluster", "ClusterUnavailable", "standalone_cluster"]

REPO = Path(__file__).resolve().parents[1]


class ClusterUnavailable(RuntimeError):
    """The cluster did not come up (no pyspark or Java, or a daemon died)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Cluster:
    """A running standalone cluster: its master URL, web UI port and daemons."""

    url: str
    web_port: int
    root: Path
    master: subprocess.Popen[bytes]
    env: dict[str, str]
    cores: int
    memory: str
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def state(self) -> dict[str, object]:
        """The master's JSON status page."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/json/", timeout=5) as response:
            return dict(json.loads(response.read()))

    def alive_workers(self) -> int:
        workers = self.state().get("workers", [])
        assert isinstance(workers, list)
        return sum(1 for w in workers if w.get("state") == "ALIVE")

    def start_worker(self, index: int) -> None:
        """Start worker ``index`` (a new one, or in place of one that was killed)."""
        spark_class = str(Path(self.env["SPARK_HOME"]) / "bin" / "spark-class")
        command = [
            spark_class,
            "org.apache.spark.deploy.worker.Worker",
            self.url,
            "--cores",
            str(self.cores),
            "--memory",
            self.memory,
            "--host",
            "127.0.0.1",
            "--webui-port",
            str(free_port()),
            "--work-dir",
            str(self.root / f"work-{index}"),
        ]
        process = _start(command, self.env, self.root / "logs" / f"worker-{index}.log")
        if index < len(self.workers):
            self.workers[index] = process
        else:
            self.workers.append(process)

    def wait_until_alive(self, timeout: float = 120.0) -> None:
        """Until the master lists every worker ``ALIVE`` (:class:`ClusterUnavailable` if a
        daemon exits or ``timeout`` passes)."""
        deadline = time.monotonic() + timeout
        while True:
            if any(p.poll() is not None for p in (self.master, *self.workers)):
                raise ClusterUnavailable(f"a Spark daemon exited; see {self.root / 'logs'}")
            with contextlib.suppress(OSError, ValueError):
                if self.alive_workers() == len(self.workers):
                    return
            if time.monotonic() > deadline:
                raise ClusterUnavailable(
                    f"the workers did not register in {timeout:.0f} s; see {self.root / 'logs'}"
                )
            time.sleep(0.5)

    def kill_worker(self, index: int) -> None:
        """SIGKILL worker ``index`` and everything it started (its executor, their Python
        workers): a machine lost mid-job."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.workers[index].pid, signal.SIGKILL)
        self.workers[index].wait(timeout=30)


def _environment(root: Path) -> dict[str, str]:
    import pyspark

    spark_home = Path(pyspark.__file__).resolve().parent
    conf = root / "conf"
    conf.mkdir(parents=True, exist_ok=True)
    python_path = os.pathsep.join(
        p for p in (str(REPO / "src"), str(REPO), os.environ.get("PYTHONPATH")) if p
    )
    return {
        **os.environ,
        "SPARK_HOME": str(spark_home),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_DAEMON_MEMORY": "512m",
        "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false",
        "SPARK_CONF_DIR": str(conf),
        "SPARK_LOCAL_DIRS": str(root / "local"),
        "SPARK_LOG_DIR": str(root / "logs"),
        "PYSPARK_PYTHON": sys.executable,
        "PYTHONPATH": python_path,
    }


def _start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


@contextlib.contextmanager
def standalone_cluster(
    root: Path, workers: int = 2, cores: int = 1, memory: str = "1500m", timeout: float = 120.0
) -> Iterator[Cluster]:
    """Start the cluster under ``root`` (logs, work and local directories) and stop every daemon
    on exit (see the module doc)."""
    env = _environment(root)
    spark_class = str(Path(env["SPARK_HOME"]) / "bin" / "spark-class")
    port, web_port = free_port(), free_port()
    master = _start(
        [
            spark_class,
            "org.apache.spark.deploy.master.Master",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--webui-port",
            str(web_port),
        ],
        env,
        root / "logs" / "master.log",
    )
    cluster = Cluster(f"spark://127.0.0.1:{port}", web_port, root, master, env, cores, memory)
    try:
        for index in range(workers):
            cluster.start_worker(index)
        cluster.wait_until_alive(timeout)
        yield cluster
    finally:
        for process in (*cluster.workers, master):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in (*cluster.workers, master):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=20)
