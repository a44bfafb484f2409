"""Screenshots of every dashboard page into ``docs/dashboard/*.png``, reproducibly.

    PYTHONPATH=src:. python docs/screenshots.py [--home DIR] [--out docs/dashboard]

Without ``--home`` it builds the small home the browser tests use (generated events in three
segments, two pipeline runs with ALS, a four-trial tuning study: about 30 s), serves it with
``recforge serve``'s app on a free loopback port, and photographs each page in headless
Chromium (the system's ``chromium``; nothing is downloaded). The Users and Items pages show the
model's most active user and most popular item.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO)]

PAGES = ("overview", "pipeline", "models", "users", "items", "tuning")


def main() -> None:
    from urllib.parse import quote

    import numpy as np
    from tests.serving.dashboard.browser import chromium, serve
    from tests.serving.dashboard.homes import build_dashboard_home, dashboard_config

    from recforge.artifacts import ModelRegistry
    from recforge.serving import create_app

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "dashboard")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="recforge-screens-") as tmp:
        home = args.home or build_dashboard_home(Path(tmp) / "home")
        model = ModelRegistry(home).open().model
        seen = model.seen_
        user = model.users_.id(int(np.argmax(np.diff(seen.indptr))))
        item = model.items_.id(int(np.argmax(np.bincount(seen.indices, minlength=len(model.items_)))))
        app = create_app(dashboard_config(home))
        args.out.mkdir(parents=True, exist_ok=True)
        with serve(app) as base, chromium() as browser:
            deadline = time.monotonic() + 60
            while app.state.dashboard.refreshed is None and time.monotonic() < deadline:
                time.sleep(0.2)
            for _ in range(3):  # some traffic for the Overview's numbers
                for n in range(20):
                    browser_free_get(base, f"/v1/users/{quote(model.users_.id(n))}/recommendations?explain=3")
                time.sleep(2)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            paths = {
                "overview": "/ui/",
                "pipeline": "/ui/pipeline",
                "models": "/ui/models",
                "users": f"/ui/users?user_id={quote(user)}",
                "items": f"/ui/items?item_id={quote(item)}",
                "tuning": "/ui/tuning",
            }
            for name in PAGES:
                page.goto(base + paths[name])
                page.wait_for_load_state("networkidle")
                if name == "tuning":
                    page.click("details summary")
                target = args.out / f"{name}.png"
                page.screenshot(path=str(target), full_page=True)
                print(f"wrote {target.relative_to(REPO) if target.is_relative_to(REPO) else target}")


def browser_free_get(base: str, path: str) -> None:
    import httpx

    httpx.get(base + path, timeout=10)


if __name__ == "__main__":
    main()
