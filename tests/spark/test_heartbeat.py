"""A silent Spark job still puts a line on the terminal every few seconds (issue 19)."""

from __future__ import annotations

import itertools
import logging
import re
import time

import pytest

from recforge.spark.heartbeat import heartbeat, waiting

pytestmark = pytest.mark.spark


def slow(rows):
    time.sleep(2.5)
    yield from rows


def test_a_silent_job_gets_a_line_every_few_seconds(spark, caplog):
    caplog.set_level(logging.INFO, logger="recforge")
    with heartbeat(spark.sparkContext, every=1.0) as beat:
        assert beat.beat() is None  # a line was just "seen": nothing to say yet
        spark.sparkContext.parallelize(range(4), 2).mapPartitions(slow).collect()
    lines = [r.getMessage() for r in caplog.records if r.name == "recforge.spark"]
    assert lines, "no heartbeat while the job ran"
    assert all(
        re.match(r"spark: \d+ s since the last line; (stage \d+ \(|the driver is working)", x) for x in lines
    )
    assert any("(collect at test_heartbeat.py:" in line and "/2 tasks done" in line for line in lines)
    # the lines are at least a second apart: each one counts as the last line
    times = [r.created for r in caplog.records if r.name == "recforge.spark"]
    assert all(b - a >= 0.9 for a, b in itertools.pairwise(times))
    assert beat.last not in logging.getLogger("recforge").handlers  # gone with the context


def test_an_idle_driver_stays_quiet(spark, caplog):
    """Long after the last Spark stage (a scheduler between runs), no line at all."""
    caplog.set_level(logging.INFO, logger="recforge")
    with heartbeat(spark.sparkContext, every=0.3) as beat:
        time.sleep(1.5)
        assert beat.beat() is None
    lines = [r.getMessage() for r in caplog.records if r.name == "recforge.spark"]
    assert 1 <= len(lines) <= 3 and all("the driver is working" in line for line in lines)


def test_before_there_is_a_context_the_wait_is_counted(caplog):
    caplog.set_level(logging.INFO, logger="recforge")
    with waiting("starting the session", every=0.2):
        time.sleep(0.7)
    lines = [r.getMessage() for r in caplog.records if r.name == "recforge.spark"]
    assert len(lines) >= 2
    assert all(re.fullmatch(r"spark: still starting the session \(\d+ s\)", line) for line in lines)
    time.sleep(0.4)
    assert len([r for r in caplog.records if r.name == "recforge.spark"]) == len(lines)  # stopped
