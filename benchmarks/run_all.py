"""Run every benchmark (``make bench``), one after another, each in its own process.

    python benchmarks/run_all.py [NAME ...]      # e.g. run_all.py als topk; default: all

Each ``benchmarks/bench_NAME.py`` runs with its default settings (the ones ``BENCHMARKS.md``
quotes) and ``src`` and the repository root on ``PYTHONPATH``; its output goes to the terminal
and to ``benchmarks/results/NAME.log``. Exits non-zero when any benchmark failed, after running
the rest. Several need the optional extras (``make bench`` installs ``.[dev,bench]``), Java for
Spark, and a few minutes to half an hour each on two cores.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def main(names: list[str]) -> int:
    available = sorted(path.stem.removeprefix("bench_") for path in HERE.glob("bench_*.py"))
    unknown = sorted(set(names) - set(available))
    if unknown:
        print(f"unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(available)}")
        return 2
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT)]))
    (HERE / "results").mkdir(exist_ok=True)
    failed = []
    for name in names or available:
        print(f"=== bench_{name}", flush=True)
        started = time.perf_counter()
        with open(HERE / "results" / f"{name}.log", "w") as log:
            process = subprocess.Popen(
                [sys.executable, str(HERE / f"bench_{name}.py")],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            assert process.stdout is not None
            for line in process.stdout:
                sys.stdout.write(line)
                log.write(line)
        if process.wait():
            failed.append(name)
        seconds = time.perf_counter() - started
        print(f"=== bench_{name}: exit {process.returncode}, {seconds:.0f} s", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
