"""Run records: ``<home>/runs/<run-id>/state.json``, one per pipeline run.

A run is the sequence of stages that takes new events to a published (or rejected) model. Its
record says, per stage, whether it is ``running``, ``done`` (with its result), ``failed`` (with
the error) or ``interrupted``; and for the run, its ``status``:

* ``open``: stages remain, and no process is working on it (between two stage commands of an
  orchestrator, or after a graceful stop);
* ``running``: a process holding the pipeline lock is executing one of its stages;
* ``succeeded`` / ``failed``: the last stage finished / a stage raised;
* ``interrupted``: its process died mid-stage (found ``running`` by the next lock holder).

Every write replaces the file atomically (temporary file, fsync, rename), so a reader or a
process killed mid-write never sees half a record. Run ids sort by creation time
(``rYYYYMMDDTHHMMSSffffffZ-xxxx``); an orchestrator may name runs itself (``--run-id``), any
character outside ``[A-Za-z0-9._-]`` becoming ``-`` in the directory name.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recforge._files import write_json_atomic
from recforge.errors import RecforgeError

__all__ = ["STAGES", "Run", "list_runs", "new_run_id", "now_iso", "safe_run_id"]

#: The stages of a run, in order.
STAGES: tuple[str, ...] = (
    "ingest",
    "build",
    "tune",
    "train",
    "evaluate",
    "gate",
    "precompute",
    "publish",
    "prune",
)
FINISHED = ("succeeded",)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_run_id() -> str:
    return f"r{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(2)}"


def safe_run_id(run_id: str) -> str:
    """The directory name of a run id: unsafe characters become ``-``."""
    name = _UNSAFE.sub("-", run_id.strip()).strip(".")
    if not name:
        raise RecforgeError(f"not a usable run id: {run_id!r}")
    return name


class Run:
    """One run's record, loaded from and saved to ``<home>/runs/<id>/state.json``."""

    def __init__(self, path: Path, state: dict[str, Any]) -> None:
        self.path = path
        self.state = state

    # creation and loading -------------------------------------------------------------------
    @classmethod
    def create(cls, home: str | Path, run_id: str | None = None) -> Run:
        run_id = run_id or new_run_id()
        path = Path(home) / "runs" / safe_run_id(run_id)
        if (path / "state.json").exists():
            raise RecforgeError(f"run {run_id} already exists")
        path.mkdir(parents=True, exist_ok=True)
        created = now_iso()
        run = cls(
            path,
            {
                "run_id": run_id,
                "created": created,
                "updated": created,
                "status": "open",
                "outcome": None,
                "error": None,
                "pid": None,
                "stages": {},
            },
        )
        run.save()
        return run

    @classmethod
    def load(cls, path: Path) -> Run:
        try:
            state = json.loads((path / "state.json").read_text())
        except FileNotFoundError:
            raise RecforgeError(f"no pipeline run at {path}") from None
        return cls(path, state)

    @classmethod
    def open(cls, home: str | Path, run_id: str) -> Run:
        return cls.load(Path(home) / "runs" / safe_run_id(run_id))

    @classmethod
    def open_or_create(cls, home: str | Path, run_id: str) -> Run:
        path = Path(home) / "runs" / safe_run_id(run_id)
        return cls.load(path) if (path / "state.json").exists() else cls.create(home, run_id)

    # fields ---------------------------------------------------------------------------------
    @property
    def id(self) -> str:
        return str(self.state["run_id"])

    @property
    def status(self) -> str:
        return str(self.state["status"])

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def stage(self, name: str) -> dict[str, Any] | None:
        return self.state["stages"].get(name)

    def done(self, name: str) -> bool:
        stage = self.stage(name)
        return stage is not None and stage["status"] == "done"

    def result(self, name: str) -> dict[str, Any]:
        """The result of a finished stage; a clear error when it has not run."""
        if not self.done(name):
            raise RecforgeError(
                f"stage {name} has not run in pipeline run {self.id}; run `recforge pipeline {name}` first"
            )
        return dict(self.state["stages"][name]["result"])

    # updates ---------------------------------------------------------------------------------
    def update(self, **fields: Any) -> None:
        self.state.update(fields)
        self.save()

    def set_stage(self, name: str, **fields: Any) -> None:
        self.state["stages"].setdefault(name, {}).update(fields)
        self.save()

    def save(self) -> None:
        self.state["updated"] = now_iso()
        write_json_atomic(self.path / "state.json", self.state)

    def delete(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def list_runs(home: str | Path) -> list[Run]:
    """Every run with a readable record, oldest first (by creation time)."""
    root = Path(home) / "runs"
    if not root.exists():
        return []
    runs = []
    for path in root.iterdir():
        if path.is_dir() and (path / "state.json").exists():
            try:
                runs.append(Run.load(path))
            except (OSError, ValueError):
                continue  # a record being replaced right now, or not ours
    return sorted(runs, key=lambda r: (r.state.get("created", ""), r.path.name))
