"""``recforge models list | show | publish | rollback`` end to end, over versions made by
``recforge build`` + ``recforge train``."""

import json

from recforge.artifacts import ModelRegistry
from recforge.cli.main import main
from recforge.data.generate import generate_events
from recforge.data.store import EventStore


def run(capsys, *args):
    code = main([*args])
    out, err = capsys.readouterr()
    return code, out, err


def test_build_list_show_publish_rollback(tmp_path, capsys):
    home = tmp_path / "home"
    EventStore(home).append(generate_events(users=120, items=40, events=3_000, seed=2))
    h = ["--home", str(home)]

    code, out, _ = run(capsys, *h, "models", "list")
    assert code == 0 and "no model versions" in out
    code, _, err = run(capsys, *h, "models", "show")
    assert code == 2 and "nothing is published" in err

    assert run(capsys, *h, "build")[0] == 0
    code, out, _ = run(capsys, *h, "train", "--model", "popular")
    assert code == 0 and "candidate version v" in out
    first = ModelRegistry(home).list()[-1].version
    code, out, _ = run(capsys, *h, "models", "publish", first)
    assert code == 0 and ModelRegistry(home).current() == first
    assert run(capsys, *h, "build", "--end", "2024-02-01")[0] == 0
    code, out, _ = run(capsys, *h, "train", "--model", "popular")
    assert code == 0
    second = ModelRegistry(home).list()[-1].version
    assert ModelRegistry(home).current() == first  # trained, not published

    code, out, _ = run(capsys, *h, "models", "list", "--json")
    listed = json.loads(out)
    assert [v["version"] for v in listed] == [first, second]
    assert [v["published"] for v in listed] == [True, False] and listed[1]["status"] == "candidate"
    assert "checksums" not in listed[0]
    code, out, _ = run(capsys, *h, "models", "list")
    assert f"* {first}" in out and f"  {second}" in out

    code, out, _ = run(capsys, *h, "models", "show", second, "--json")
    shown = json.loads(out)
    assert shown["model"] == "popular" and shown["data_window"]["window_end"] == "2024-02-01T00:00:00Z"
    assert shown["k_users"] == 100
    assert shown["published"] is False

    code, out, _ = run(capsys, *h, "models", "publish", second)
    assert code == 0 and ModelRegistry(home).current() == second
    code, out, _ = run(capsys, *h, "models", "show")
    assert f"version: {second}" in out and "data_window" in out
    code, out, _ = run(capsys, *h, "models", "rollback")
    assert code == 0 and f"rolled back to {first}" in out and ModelRegistry(home).current() == first

    code, _, err = run(capsys, *h, "train", "--model", "nonsense")
    assert code == 2 and "unknown model 'nonsense'" in err and "popular" in err
    code, _, err = run(capsys, *h, "models", "publish", "v-not-a-version")
    assert code == 2 and "no model version 'v-not-a-version'" in err


def test_publish_and_rollback_refuse_what_fails_verification(tmp_path, capsys):
    # issue 14: a truncated version published with exit 0; a bad manifest broke `models list`
    home = tmp_path / "home"
    EventStore(home).append(generate_events(users=60, items=30, events=1_000, seed=3))
    h = ["--home", str(home)]
    assert run(capsys, *h, "build", "--as-of", "2024-04-01")[0] == 0
    versions = []
    for _ in range(3):
        assert run(capsys, *h, "train", "--model", "popular")[0] == 0
        versions.append(ModelRegistry(home).list()[-1].version)
    first, second, third = versions
    assert run(capsys, *h, "models", "publish", second)[0] == 0
    assert run(capsys, *h, "models", "publish", first)[0] == 0

    lists = home / "models" / "versions" / third / "lists" / "users.ids.npy"
    lists.write_bytes(lists.read_bytes()[:100])  # truncated
    code, out, err = run(capsys, *h, "models", "publish", third)
    assert code == 2 and out == ""
    assert (
        err.strip() == f"recforge: error: model {third} is corrupt: checksum mismatch in lists/users.ids.npy"
    )
    assert ModelRegistry(home).current() == first

    (home / "models" / "versions" / third / "manifest.json").write_text("{")
    code, out, _ = run(capsys, *h, "models", "list")
    line = next(line for line in out.splitlines() if third in line)
    assert code == 0 and line.split()[:2] == [third, "broken"] and "manifest.json: not valid JSON" in line
    code, out, err = run(capsys, *h, "models", "rollback")  # back in history: to second
    assert code == 0 and f"rolled back to {second}" in out
