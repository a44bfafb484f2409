"""Faults on purpose (issue 14): the disk fills up in the middle of ingest, build, train and
publish. Each time: a clear one-line error (exit 2), nothing half-written visible, and the
previous state intact and usable once space is back.

The home lives on a real, small tmpfs (``mount -t tmpfs -o size=...``), filled with a ballast
file until only a little room is left, so the kernel itself answers ``ENOSPC`` wherever the write
happens to hit it. Mounting needs root: elsewhere the tests skip, saying so.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from recforge.artifacts import ModelRegistry
from recforge.cli.main import main
from recforge.data.build import load_interactions
from recforge.data.generate import generate_events, write_events
from recforge.data.store import EventStore

SIZE_MB = 24


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """An empty tmpfs of ``SIZE_MB`` MiB, unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={SIZE_MB}m", "tmpfs", str(mount)],
            check=True,
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError) as error:
        pytest.skip(f"cannot mount a tmpfs here (root is needed): {error}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False, capture_output=True, timeout=30)


def fill(disk: Path, leave: int) -> Path:
    """Fill ``disk`` with a ballast file until about ``leave`` bytes are free."""
    ballast = disk / "ballast"
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with ballast.open("ab") as handle:
        handle.write(b"\0" * max(0, free - leave))
    return ballast


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_no_space(err: str) -> None:
    lines = err.strip().splitlines()
    assert lines and lines[-1].startswith("recforge: error: ") and "No space left on device" in lines[-1], err
    assert "Traceback" not in err


def visible_leftovers(home: Path) -> list[str]:
    """Entries a reader could take for data: anything but hidden temporaries and the ballast."""
    return sorted(
        str(p.relative_to(home))
        for p in home.rglob("*")
        if not any(part.startswith(".") for part in p.relative_to(home).parts)
    )


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    small = write_events(generate_events(users=200, items=60, events=5_000, seed=1), tmp_path / "a.csv")
    large = write_events(generate_events(users=5_000, items=900, events=300_000, seed=2), tmp_path / "b.csv")
    return small, large


def test_ingest_on_a_full_disk(disk, files, capsys):
    home = disk / "home"
    small, large = files
    assert run(capsys, "--home", str(home), "ingest", str(small))[0] == 0
    before = visible_leftovers(home)
    ballast = fill(disk, leave=200_000)
    code, out, err = run(capsys, "--home", str(home), "ingest", str(large))
    assert code == 2
    one_line_no_space(err)
    assert EventStore(home).stats()["events"] == 5_000  # the previous state, as it was
    assert visible_leftovers(home) == before  # no half-written segment
    assert not list((home / "events").glob(".tmp-*"))  # the writer's temporary file is gone too
    ballast.unlink()
    assert run(capsys, "--home", str(home), "ingest", str(large))[0] == 0  # usable once space is back
    assert EventStore(home).stats()["events"] == 305_000


def test_build_and_train_on_a_full_disk(disk, files, capsys):
    home = disk / "home"
    small, large = files
    h = ["--home", str(home)]
    assert run(capsys, *h, "ingest", str(small))[0] == 0
    assert run(capsys, *h, "build", "--as-of", "2024-04-01")[0] == 0
    assert run(capsys, *h, "train", "--model", "popular")[0] == 0
    registry = ModelRegistry(home)
    (first,) = [v.version for v in registry.list()]
    assert run(capsys, *h, "models", "publish", first)[0] == 0
    build = (home / "interactions").resolve()
    assert run(capsys, *h, "ingest", str(large))[0] == 0

    ballast = fill(disk, leave=150_000)
    code, _, err = run(capsys, *h, "build", "--as-of", "2024-04-01")
    assert code == 2
    one_line_no_space(err)
    assert (home / "interactions").resolve() == build  # the previous build is still the build
    assert load_interactions(home).info["events"] == 5_000
    assert sorted(p.name for p in (home / "interactions.builds").iterdir() if not p.name.startswith(".")) == [
        build.name
    ]

    ballast.unlink()
    assert run(capsys, *h, "build", "--as-of", "2024-04-01")[0] == 0
    fill(disk, leave=100_000)
    code, _, err = run(capsys, *h, "train", "--model", "itemknn")
    assert code == 2
    one_line_no_space(err)
    assert [v.version for v in registry.list()] == [first]  # no half-written version
    assert not list(registry.versions_dir.glob(".tmp-*"))
    assert registry.current() == first
    registry.open(first, verify=True)  # the served version is intact


def test_publish_on_a_full_disk(disk, files, capsys):
    home = disk / "home"
    small, _ = files
    h = ["--home", str(home)]
    assert run(capsys, *h, "ingest", str(small))[0] == 0
    assert run(capsys, *h, "build", "--as-of", "2024-04-01")[0] == 0
    for _ in range(2):
        assert run(capsys, *h, "train", "--model", "popular")[0] == 0
    registry = ModelRegistry(home)
    first, second = [v.version for v in registry.list()]
    assert run(capsys, *h, "models", "publish", first)[0] == 0
    journal = (home / "models" / "journal.jsonl").read_text()
    ballast = fill(disk, leave=0)
    with ballast.open("ab", buffering=0) as handle:  # to the last byte
        for size in (65536, 4096, 512, 1):
            try:
                while handle.write(b"\0" * size):
                    pass
            except OSError:
                continue
    code, _, err = run(capsys, *h, "models", "publish", second)
    assert code == 2
    one_line_no_space(err)
    assert registry.current() == first and registry.get(first).status == "published"
    assert not [p for p in (home / "models").iterdir() if p.name.startswith(".CURRENT")]
    # the journal is written first: a record whose switch then failed is recognised as such
    assert registry.published_history() == [first]
    assert (home / "models" / "journal.jsonl").read_text().startswith(journal)
    ballast.unlink()
    assert run(capsys, *h, "models", "publish", second)[0] == 0
    assert registry.current() == second and registry.published_history() == [first, second]
    assert registry.rollback().version == first  # the history is whole
