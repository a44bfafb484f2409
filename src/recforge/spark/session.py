"""Spark sessions for recforge, and the few RDD helpers the distributed code shares.

recforge's code runs inside Spark's Python workers, so the workers must import the same
``recforge`` as the driver (installed on the cluster's nodes, or, in local mode, from the
driver's source tree: :func:`spark_session` adds it to the workers' ``PYTHONPATH``) and run the
driver's interpreter (``PYSPARK_PYTHON``). With the same source files, the workers also share
numba's on-disk cache of compiled kernels, so they load them instead of compiling them.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recforge._files import write_text_atomic
from recforge._source import child_pythonpath
from recforge.errors import RecforgeError

if TYPE_CHECKING:
    from pyspark import RDD, SparkContext
    from pyspark.sql import SparkSession

__all__ = [
    "FAIL_ONCE",
    "LOG_LEVELS",
    "block_of",
    "check_executors",
    "inject_failure",
    "log_config",
    "managed_session",
    "require_java",
    "require_pyspark",
    "require_spark",
    "spark_session",
    "task_threads",
    "zip_partitions",
]

log = logging.getLogger("recforge.spark")

#: default ``spark.sql.shuffle.partitions`` of :func:`spark_session` (Spark's 200 cost a task
#: each on small data; AQE coalesces, but only after planning them)
SHUFFLE_PARTITIONS = 8

INSTALL_HINT = "recforge's Spark engine needs pyspark (and Java 17): pip install 'recforge[spark]'"


def require_pyspark() -> None:
    """Raise a :class:`RecforgeError` saying how to install pyspark when it is missing."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise RecforgeError(INSTALL_HINT) from None


def require_java() -> None:
    """Raise a :class:`RecforgeError` when no ``java`` can start Spark's JVM (``JAVA_HOME`` or
    ``PATH``)."""
    home = os.environ.get("JAVA_HOME")
    java = os.path.join(home, "bin", "java") if home else shutil.which("java")
    if not java or not os.access(java, os.X_OK):
        where = f"JAVA_HOME={home} has no bin/java" if home else "no java on PATH"
        raise RecforgeError(
            f"recforge's Spark engine needs Java 17 ({where}): install a JDK 17 or set JAVA_HOME"
        )


def require_spark() -> None:
    """Raise a :class:`RecforgeError` (one line) when a Spark session cannot be had here:
    pyspark missing, or no active session and no ``java`` to start one."""
    require_pyspark()
    from pyspark.sql import SparkSession

    if SparkSession.getActiveSession() is None:
        require_java()


#: Spark's log levels (``[engine] log_level``)
LOG_LEVELS = ("ALL", "TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OFF")

_LOG4J2 = """# written by recforge.spark.session: Spark's own messages at {level} and above, on stderr
rootLogger.level = {level}
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{{yy/MM/dd HH:mm:ss}} %p %c{{1}}: %m%n%ex
# the JVM of a session started from Python: a level of its own, else Spark announces one
logger.gateway.name = org.apache.spark.api.python.PythonGatewayServer
logger.gateway.level = {level}
"""


def log_config(level: str) -> Path:
    """A log4j2 configuration file for Spark's JVMs at ``level`` (one of :data:`LOG_LEVELS`):
    in place of Spark's default profile, whose start-up warnings are noise for a user."""
    level = level.upper()
    if level not in LOG_LEVELS:
        raise RecforgeError(f"the Spark log level must be one of {', '.join(LOG_LEVELS)}, got {level!r}")
    text = _LOG4J2.format(level=level)
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    path = Path(tempfile.gettempdir()) / f"recforge-spark-log4j2-{digest}.properties"
    if not path.exists():
        write_text_atomic(path, text)
    return path


def spark_session(
    master: str = "local[2]",
    *,
    app_name: str = "recforge",
    driver_memory: str = "4g",
    executor_memory: str | None = None,
    log_level: str | None = "ERROR",
    checkpoint_dir: str | Path | None = None,
    config: dict[str, Any] | None = None,
) -> SparkSession:
    """A ``SparkSession`` (``getOrCreate``) set up for recforge.

    Sets ``PYSPARK_PYTHON`` to this interpreter when unset, and in local mode adds recforge's
    source directory to the workers' ``PYTHONPATH``; ``driver_memory`` (and the other JVM
    options) only take effect when this starts the JVM. ``log_level``: Spark's own messages
    below it are not shown (``None``: Spark's defaults, warnings included). ``checkpoint_dir``:
    where RDDs are checkpointed (SparkALS cuts its lineage there; on a cluster, a directory every
    node sees), unless one is set. ``config`` entries are passed to the builder last.
    """
    require_spark()
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.master(master)
        .appName(app_name)
        .config("spark.driver.memory", driver_memory)
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", str(SHUFFLE_PARTITIONS))
    )
    if executor_memory is not None:
        builder = builder.config("spark.executor.memory", executor_memory)
    if log_level is not None:
        option = f"-Dlog4j2.configurationFile=file:{log_config(log_level)}"
        builder = builder.config("spark.driver.extraJavaOptions", option)
        builder = builder.config("spark.executor.extraJavaOptions", option)
    if master.startswith("local"):
        builder = builder.config("spark.executorEnv.PYTHONPATH", child_pythonpath())
    for key, value in (config or {}).items():
        builder = builder.config(key, str(value))
    session = builder.getOrCreate()
    if log_level is not None:
        session.sparkContext.setLogLevel(log_level.upper())
    if checkpoint_dir is not None and not session.sparkContext._jsc.sc().getCheckpointDir().isDefined():
        session.sparkContext.setCheckpointDir(str(checkpoint_dir))
    return session


@contextlib.contextmanager
def managed_session(master: str = "local[2]", **options: Any) -> Iterator[SparkSession]:
    """The active ``SparkSession`` if there is one (left running), else a new one from
    :func:`spark_session` that is stopped on exit."""
    require_pyspark()
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        yield active
        return
    session = spark_session(master, **options)
    try:
        yield session
    finally:
        session.stop()


def _probe(iterator: Iterable[Any]) -> Iterator[str]:
    """Runs on an executor: import what the distributed code needs."""
    import numba  # noqa: F401

    from recforge._version import __version__

    yield __version__


def check_executors(sc: SparkContext) -> None:
    """Fail early, with a clear message, when the executors cannot import recforge."""
    from py4j.protocol import Py4JJavaError

    try:
        sc.parallelize([0], 1).mapPartitions(_probe).collect()
    except Py4JJavaError as error:
        detail = str(error.java_exception).splitlines()[0] if error.java_exception else str(error)
        raise RecforgeError(
            "Spark's Python workers cannot run recforge: install recforge on the executors, or in local "
            f"mode create the session with recforge.spark.spark_session ({detail})"
        ) from None


def task_threads(requested: int = 0) -> int:
    """Threads a task may use: ``requested`` when positive, else ``spark.task.cpus``."""
    if requested > 0:
        return requested
    from pyspark import TaskContext

    context = TaskContext.get()
    return max(1, context.cpus()) if context is not None else 1


def block_of(key: int) -> int:
    """The partition function of every block-keyed RDD: block ``b`` lives in partition ``b``.

    One function object for all of them, so that Spark sees them as partitioned alike."""
    return key


def zip_partitions(*rdds: RDD[Any]) -> RDD[Any]:
    """One RDD whose partition ``i`` holds partition ``i`` of every input (all partitioned by
    :func:`block_of` into the same number of partitions): no shuffle, no copy.

    ``RDD.union`` would do the same but first re-serialises the output of ``partitionBy`` (its
    batches are declared differently though their bytes have the same format: pickled lists),
    which costs a pass over the data; this builds the union on the JVM side directly.
    """
    from pyspark import RDD

    first = rdds[0]
    for rdd in rdds:
        if rdd.partitioner is None or rdd.partitioner != first.partitioner:
            raise ValueError("zip_partitions needs RDDs partitioned alike")
    jrdd = first._jrdd
    for rdd in rdds[1:]:
        jrdd = jrdd.union(rdd._jrdd)
    zipped: RDD[Any] = RDD(jrdd, first.ctx, first.ctx.serializer)
    if zipped.getNumPartitions() != first.getNumPartitions():  # pragma: no cover - Spark's contract
        raise RuntimeError("Spark did not keep the partitioning of the zipped RDDs")
    zipped.partitioner = first.partitioner
    return zipped


#: the local property (``SparkContext.setLocalProperty``) ``"<kind>:<marker file>"`` that makes
#: one task of that kind fail once, so tests can check that a retried task recomputes the same
#: result
FAIL_ONCE = "recforge.failOnce"


def inject_failure(kind: str) -> None:
    """Executor: raise in the first task of ``kind`` (``"solve"``, ``"topk"``) that creates the
    marker file named by the job's ``FAIL_ONCE`` local property (so exactly one task fails on a
    shared file system); Spark then retries it (``spark.task.maxFailures``, e.g. master
    ``local[2,4]``)."""
    from pyspark import TaskContext

    context = TaskContext.get()
    setting = context.getLocalProperty(FAIL_ONCE) if context is not None else None
    if not setting or not setting.startswith(f"{kind}:"):
        return
    try:
        os.close(os.open(setting[len(kind) + 1 :], os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    raise RuntimeError(f"failure injected into a {kind} task")
