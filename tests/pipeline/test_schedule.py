"""The schedule loop and the lock, as real processes: repeated runs, a failing run counted and
followed by the next, SIGTERM, two schedulers on one home, a SIGKILLed run."""

import itertools
import re
import signal
import subprocess
import time
from datetime import datetime

import pytest

from recforge.pipeline import PipelineBusy, run_pipeline
from recforge.pipeline.state import Run, list_runs
from tests.conftest import REPO
from tests.pipeline.conftest import GOOD, cli_command, cli_env, drop, make_config

pytestmark = pytest.mark.slow


def write_config(path, delay=0.0):
    path.write_text(
        f'[model]\nname = "{GOOD}"\n[model.{GOOD}]\ndelay = {delay}\n'
        "[pipeline]\nk_users = 20\nk_items = 10\nk_popular = 50\n"
    )
    return path


def start(home, config, *args):
    return subprocess.Popen(
        cli_command("--home", str(home), "--config", str(config), "pipeline", *args),
        cwd=REPO,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(predicate, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def stage_running(home, stage):
    return any((r.stage(stage) or {}).get("status") == "running" for r in list_runs(home))


def finish(proc, sig=signal.SIGTERM, timeout=60):
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def counts(out):
    line = re.search(r"scheduler stopped: (\d+) runs(?: \((.*)\))?", out)
    assert line, out
    found = {"runs": int(line[1])}
    for part in (line[2] or "").split(", "):
        if part:
            number, kind = part.split(" ", 1)
            found[kind] = int(number)
    return found


def test_schedule_runs_repeatedly_survives_a_failure_and_stops_on_sigterm(tmp_path, events):
    home = tmp_path / "home"
    proc = start(home, write_config(tmp_path / "c.toml"), "schedule", "--every", "1s")
    try:
        # the store is empty: the first run fails, and the loop goes on
        wait_for(lambda: any(r.status == "failed" for r in list_runs(home)), what="a failed run")
        drop(home, events)
        wait_for(lambda: any(r.state["outcome"] == "published" for r in list_runs(home)), what="a publish")
        wait_for(lambda: sum(r.state["outcome"] == "unchanged" for r in list_runs(home)) >= 2, what="reruns")
    finally:
        code, out, err = finish(proc)
    assert code == 0, err
    seen = counts(out)
    assert seen["failed"] >= 1 and seen["published"] == 1 and seen["unchanged"] >= 2
    assert seen["runs"] == sum(v for k, v in seen.items() if k != "runs")
    assert re.search(r"scheduler: run failed: no events in .*; drop event files", err), err
    assert "SIGTERM received, stopping" in err
    assert all(r.status in ("succeeded", "failed") for r in list_runs(home))


def test_sigterm_during_a_run_stops_after_the_stage_and_the_run_resumes(tmp_path, events):
    home = tmp_path / "home"
    drop(home, events)
    config = write_config(tmp_path / "c.toml", delay=3.0)
    proc = start(home, config, "schedule", "--every", "1h")
    try:
        wait_for(lambda: stage_running(home, "train"), what="training to start")
    finally:
        code, out, err = finish(proc)
    assert code == 0, err
    assert counts(out) == {"runs": 1, "stopped": 1}
    [run] = list_runs(home)
    assert run.status == "open" and run.done("train") and run.stage("evaluate") is None
    resumed = subprocess.run(
        cli_command("--home", str(home), "--config", str(config), "pipeline", "run", "--run-id", run.id),
        cwd=REPO,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"run {run.id}: published" in resumed.stdout
    assert "train already done" in resumed.stderr


def test_two_schedulers_never_overlap(tmp_path, events):
    home = tmp_path / "home"
    drop(home, events)
    config = write_config(tmp_path / "c.toml", delay=6.0)
    first = start(home, config, "schedule", "--every", "0.5s")
    second = None
    try:
        wait_for(lambda: stage_running(home, "train"), what="the first run to train")
        second = start(home, config, "schedule", "--every", "0.5s")
        wait_for(lambda: sum(r.finished for r in list_runs(home)) >= 4, what="four runs")
    finally:
        results = [finish(p) for p in (first, second) if p is not None]
    for code, _, err in results:
        assert code == 0, err
    tallies = [counts(out) for _, out, _ in results]
    assert sum(t.get("skipped", 0) for t in tallies) >= 1  # a tick found the other's run in progress
    assert "another pipeline run holds" in "".join(err for _, _, err in results)
    spans = []
    for run in list_runs(home):
        stages = [s for s in run.state["stages"].values() if s.get("started")]
        start_at = min(datetime.fromisoformat(s["started"]) for s in stages)
        end_at = max(datetime.fromisoformat(s["finished"]) for s in stages if s.get("finished"))
        spans.append((start_at, end_at))
    spans.sort()
    assert len(spans) >= 4
    for (_, end), (next_start, _) in itertools.pairwise(spans):
        assert next_start >= end


def test_a_sigkilled_run_does_not_leave_the_lock_stuck(tmp_path, events):
    home = tmp_path / "home"
    drop(home, events)
    proc = start(home, write_config(tmp_path / "c.toml", delay=60.0), "run")
    try:
        wait_for(lambda: stage_running(home, "train"), what="training to start")
        with pytest.raises(PipelineBusy, match=r"another pipeline run holds .*pipeline.lock \(pid \d+\)"):
            run_pipeline(home, make_config(home))
    finally:
        code, _, _ = finish(proc, signal.SIGKILL)
    assert code == -signal.SIGKILL
    result = run_pipeline(home, make_config(home))
    assert result.outcome == "published"
    killed = next(r for r in list_runs(home) if r.id != result.run_id)
    assert killed.status == "interrupted" and killed.stage("train")["status"] == "interrupted"
    assert Run.load(killed.path).done("build")
