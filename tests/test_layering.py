"""The imports follow DESIGN.md's floors: a part imports only the parts below it."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "recforge"

#: From the ground floor up; each entry names the top-level modules or packages on that floor.
FLOORS = [
    ("plumbing", {"_numba", "_validation", "_files", "_source", "_time", "_progress", "_version", "errors"}),
    ("weighting", {"weighting"}),
    ("kernels", {"kernels"}),
    ("data", {"data", "config"}),
    ("catalog", {"catalog"}),
    ("topk", {"topk", "lists"}),
    ("models", {"models"}),
    ("evaluation", {"evaluation", "precompute"}),
    ("artifacts", {"artifacts", "version_checks"}),
    ("online", {"online"}),
    ("pipeline", {"pipeline", "demo"}),
    ("spark", {"spark"}),
    ("serving", {"serving"}),
    ("cli", {"cli", "__main__"}),
]


def floor(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "recforge":
        return None
    if len(parts) == 1:
        return len(FLOORS)  # the package itself re-exports from every floor
    for level, (_, names) in enumerate(FLOORS):
        if parts[1] in names:
            return level
    raise AssertionError(f"{module} is on no floor: add it to FLOORS (and to DESIGN.md)")


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_every_import_goes_down_or_sideways():
    upward = []
    for path in sorted(SRC.rglob("*.py")):
        module = ".".join(("recforge", *path.relative_to(SRC).with_suffix("").parts)).removesuffix(
            ".__init__"
        )
        mine = floor(module)
        for name in imports(path):
            theirs = floor(name)
            if theirs is not None and mine is not None and theirs > mine:
                upward.append(f"{module} ({FLOORS[mine][0]}) imports {name} ({FLOORS[theirs][0]})")
    assert upward == []
