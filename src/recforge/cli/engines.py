"""Choosing the engine once: ``--engine local | spark`` becomes an open :class:`Engine`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from recforge.errors import RecforgeError
from recforge.pipeline.engine import Engine, LocalEngine

__all__ = ["ENGINES", "open_engine"]

#: The engines ``--engine`` accepts.
ENGINES = ("local", "spark")


@contextlib.contextmanager
def open_engine(name: str, *, master: str, driver_memory: str) -> Iterator[Engine]:
    """The engine ``name``, open for the duration of the context: the local engine, or a Spark
    engine on the active session or a new one on ``master`` (stopped on exit)."""
    if name not in ENGINES:
        raise RecforgeError(f"--engine must be one of {', '.join(ENGINES)}, got {name!r}")
    if name == "local":
        yield LocalEngine()
        return
    from recforge.spark.engine import SparkEngine  # pyspark is optional: imported when chosen

    with SparkEngine.open(master, driver_memory=driver_memory) as engine:
        yield engine
