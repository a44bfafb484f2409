"""Every dashboard page in headless Chromium, served by ``recforge serve``'s app over HTTP:
no console errors, charts drawn, a user's recommendations with explanations, and publish /
rollback that work with the admin key and are refused without it."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import quote

import httpx
import numpy as np
import pytest

from recforge.artifacts import ModelRegistry
from recforge.serving import create_app
from tests.serving.dashboard.browser import CHROMIUM, chromium, serve
from tests.serving.dashboard.homes import ADMIN_KEY, dashboard_config

pytest.importorskip("playwright", reason="the browser tests need Playwright (pip install playwright)")
if not Path(CHROMIUM).exists():
    pytest.skip("no chromium (apt-get install chromium)", allow_module_level=True)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(dashboard_home):
    app = create_app(dashboard_config(dashboard_home))
    with serve(app) as base:
        deadline = time.monotonic() + 60
        while app.state.dashboard.refreshed is None and time.monotonic() < deadline:
            time.sleep(0.1)
        for n in range(10):  # some traffic for the Overview's numbers
            httpx.get(f"{base}/v1/users/u{n}/recommendations", timeout=10)
        app.state.dashboard.live.sample()
        yield base, dashboard_home


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


@pytest.fixture
def page(browser):
    """A page that records console errors and uncaught exceptions."""
    page = browser.new_page()
    page.problems = []
    page.on(
        "console",
        lambda m: page.problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None,
    )
    page.on("pageerror", lambda e: page.problems.append(f"page error: {e}"))
    yield page
    page.close()


def marks(page) -> list[int]:
    """Drawn marks (lines, points, bars) per chart on the page."""
    return page.eval_on_selector_all(
        "svg.chart", "charts => charts.map(c => c.querySelectorAll('polyline, circle, rect').length)"
    )


def sample_ids(home: Path) -> tuple[str, str]:
    model = ModelRegistry(home).open().model
    user = model.users_.id(int(np.argmax(np.diff(model.seen_.indptr))))
    item = model.items_.id(int(np.argmax(np.bincount(model.seen_.indices))))
    return user, item


def test_every_page_loads_without_errors_and_draws_its_charts(site, page):
    base, home = site
    user, item = sample_ids(home)
    expected = {  # page -> how many charts must have marks
        "/ui/": 2,  # events per hour; requests/s
        "/ui/pipeline": 2,  # quality per published version; stage durations
        "/ui/models": 0,
        f"/ui/users?user_id={quote(user)}": 0,
        f"/ui/items?item_id={quote(item)}": 1,  # popularity over time
        "/ui/tuning": 8,  # one scatter per hyperparameter and weighting knob
    }
    for path, drawn in expected.items():
        response = page.goto(base + path)
        assert response is not None and response.status == 200, path
        page.wait_for_load_state("networkidle")
        assert page.title().endswith("· recforge")
        assert sum(count > 0 for count in marks(page)) >= drawn, (path, marks(page))
        assert page.locator("main#page").inner_text().strip()
    assert page.problems == []


def test_the_overview_shows_the_store_the_versions_and_the_traffic(site, page):
    base, home = site
    page.goto(base + "/ui/")
    assert page.locator("#events-total").inner_text() == "20,000"
    current = ModelRegistry(home).current()
    assert current in page.locator("main").inner_text()
    assert float(page.locator("#rate").inner_text()) > 0  # the ten requests above
    assert page.problems == []


def test_searching_a_user_shows_recommendations_with_explanations(site, page):
    base, home = site
    user, _ = sample_ids(home)
    model = ModelRegistry(home).open().model
    history = {model.items_.id(int(i)) for i in model.seen_[model.users_.index(user)].indices}
    page.goto(base + "/ui/users")
    page.fill("input[name=user_id]", user)
    page.click("form.search button")
    page.wait_for_selector("ol.recs li.rec")
    assert "precomputed" in page.locator("#rec-source").inner_text()
    recommendations = page.locator("ol.recs > li.rec")
    assert recommendations.count() == 10
    for n in range(recommendations.count()):
        reasons = recommendations.nth(n).locator("ul.why > li")
        assert reasons.count() == 3
        for m in range(3):
            text = reasons.nth(m).inner_text()
            assert text.endswith("%")
            assert reasons.nth(m).locator("code").inner_text() in history
    assert page.locator("table.history tbody tr").count() > 0
    assert page.problems == []


def test_publish_and_rollback_work_with_the_admin_key_and_are_refused_without_it(site, page):
    base, home = site
    registry = ModelRegistry(home)
    newest = registry.current()
    older = next(v.version for v in registry.list() if v.version != newest)
    page.goto(base + "/ui/models")
    # roll back: refused with a wrong key, done with the admin key
    page.fill("form.action input[name=key] >> nth=0", "not-the-key")
    page.click("#rollback")
    assert "refused" in page.locator("p.message").inner_text()
    assert registry.current() == newest
    page.fill("form.action input[name=key] >> nth=0", ADMIN_KEY)
    page.click("#rollback")
    assert page.locator("p.message").inner_text() == f"rolled back to {older}"
    assert registry.current() == older and page.locator("#current").inner_text() == older
    assert wait_for_version(base, older) == older  # the server swapped to it
    # publish the newest again: refused with a wrong key, done with the admin key
    row = page.locator(f'tr.version[data-version="{newest}"]')
    row.locator("input[name=key]").fill("not-the-key")
    row.locator("button.publish").click()
    assert "refused" in page.locator("p.message").inner_text()
    assert registry.current() == older
    row = page.locator(f'tr.version[data-version="{newest}"]')
    row.locator("input[name=key]").fill(ADMIN_KEY)
    row.locator("button.publish").click()
    assert page.locator("p.message").inner_text() == f"published {newest}"
    assert registry.current() == newest and page.locator("#current").inner_text() == newest
    assert wait_for_version(base, newest) == newest
    # the browser reports each refusal's 401 as a failed load; nothing else went wrong
    refusals = [p for p in page.problems if "status of 401 (Unauthorized)" in p]
    assert len(refusals) == 2 and len(page.problems) == 2


def wait_for_version(base: str, version: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    served = ""
    while time.monotonic() < deadline:
        served = httpx.get(f"{base}/v1/model", timeout=10).json()["version"]
        if served == version:
            break
        time.sleep(0.1)
    return served
