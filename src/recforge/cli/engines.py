"""Choosing the engine once: ``--engine local | spark`` (or ``[engine] name``) becomes an open
:class:`Engine`."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path

from recforge.config import Config
from recforge.errors import RecforgeError
from recforge.pipeline.engine import Engine, LocalEngine

__all__ = ["ENGINES", "open_engine"]

#: The engines ``--engine`` accepts.
ENGINES = ("local", "spark")

log = logging.getLogger("recforge.spark")


@contextlib.contextmanager
def open_engine(
    config: Config, name: str | None = None, *, master: str | None = None, driver_memory: str | None = None
) -> Iterator[Engine]:
    """The engine ``name`` (default ``[engine] name``), open for the duration of the context:
    the local engine, or a Spark engine on the active session or a new one on ``master``
    (default ``[engine] master``; stopped on exit), with ``[engine]``'s memory and log level and
    checkpoints under ``<home>/spark/checkpoints``."""
    settings = config.engine
    name = name or settings.name
    if name not in ENGINES:
        raise RecforgeError(f"the engine must be one of {', '.join(ENGINES)}, got {name!r}")
    if name == "local":
        yield LocalEngine()
        return
    from recforge.spark.session import require_spark

    require_spark()  # before the first line on the terminal: a missing JDK is one clear line
    from recforge.spark.engine import SparkEngine  # pyspark is optional: imported when chosen
    from recforge.spark.heartbeat import waiting

    master = master or settings.master
    log.info("spark: starting a session on %s", master)
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        with waiting("starting the session"):
            engine = stack.enter_context(
                SparkEngine.open(
                    master,
                    driver_memory=driver_memory or settings.driver_memory,
                    executor_memory=settings.executor_memory,
                    log_level=settings.log_level,
                    checkpoint_dir=Path(config.home).resolve() / "spark" / "checkpoints",
                )
            )
        log.info(
            "spark: session ready in %.1f s (%d cores)",
            time.perf_counter() - started,
            engine.spark.sparkContext.defaultParallelism,
        )
        yield engine
