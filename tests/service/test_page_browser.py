"""The page in a real browser: Playwright drives the system's chromium (Debian's `chromium` package, which
.ci/run installs; nothing downloads a browser) against a gateway serving a real export.

The test loads the page, picks a shopper, waits for the cards, toggles the overlay, opens an explanation
and checks what each shows, at desktop and phone widths. It writes screenshots under pytest's tmp folder;
with SCREENSHOTS=DIR it writes them there (`make screenshots` refreshes docs/page.png for the README,
from the demo model when PAGE_MODEL_DIR names its export).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.servers import Gateway
from tests.fixtures_model import build_tiny_export

K = 10
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}  # a phone's CSS pixels


def _chromium() -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        reason = "chromium is not on PATH: apt-get install chromium (as .ci/run does) to run the browser tests"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + " (CI=true: failing instead of skipping)")
        pytest.skip(reason)
    return binary


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    root = tmp_path_factory.mktemp("page")
    if os.environ.get("PAGE_MODEL_DIR"):  # the demo model, for the README's screenshot: default settings
        model_dir, settings = Path(os.environ["PAGE_MODEL_DIR"]), {}
    else:  # every map counts as informative, so the overlay is drawn whatever a 1-epoch model learnt
        model_dir = build_tiny_export(root) / "export"
        settings = {"explain_min_concentration": 0, "explain_min_visual_share": 0}
    with Gateway(model_dir, root / "gateway.log", **settings) as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    binary = _chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=binary, args=["--no-sandbox"])
        yield browser
        browser.close()


def screenshot_dir(tmp_path: Path) -> Path:
    folder = Path(os.environ["SCREENSHOTS"]) if os.environ.get("SCREENSHOTS") else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def open_page(browser, gateway: Gateway, viewport: dict):
    page = browser.new_page(viewport=viewport)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{gateway.url}/")
    page.wait_for_selector("#grid .card")
    return page, errors


def cards_of(page, count: int) -> list[dict]:
    page.wait_for_function(f"document.querySelectorAll('#grid .card').length === {count}")
    # each card's data-item is rewritten once its /explain answered (informative set)
    page.wait_for_function(
        "[...document.querySelectorAll('#grid .card')].every(c => 'informative' in JSON.parse(c.dataset.item))"
    )
    return [json.loads(c.get_attribute("data-item")) for c in page.query_selector_all("#grid .card")]


def test_pick_a_shopper_toggle_the_overlay_and_open_an_explanation(browser, gateway: Gateway, tmp_path: Path) -> None:
    page, errors = open_page(browser, gateway, DESKTOP)
    users = page.eval_on_selector_all("#user option", "options => options.map(o => o.value)")
    assert len(users) >= 2
    page.fill("#k", str(K))
    page.dispatch_event("#k", "change")
    page.select_option("#user", users[1])
    items = cards_of(page, K)
    assert page.text_content("#status").startswith(f"Top {K} for {users[1]}")
    expected = gateway.get("/recommend", user_id=users[1], k=K).json()["items"]
    assert [i["item_id"] for i in items] == [i["item_id"] for i in expected]  # the API's order, on the page

    sources = page.eval_on_selector_all("#grid .card img", "imgs => imgs.map(i => i.getAttribute('src'))")
    assert all("heatmap.png" in s for s, i in zip(sources, items) if i["informative"])
    assert any(i["informative"] for i in items), "no map to overlay: the toggle below would check nothing"
    page.wait_for_function("[...document.querySelectorAll('#grid .card img')].every(i => i.complete && i.naturalWidth)")
    page.screenshot(path=str(screenshot_dir(tmp_path) / "page.png"), full_page=False)

    page.uncheck("#overlay")
    sources = page.eval_on_selector_all("#grid .card img", "imgs => imgs.map(i => i.getAttribute('src'))")
    assert sources == [i["image_url"] for i in items]  # plain photos once the overlay is off
    page.check("#overlay")

    with page.expect_navigation():
        page.click("#grid .card >> nth=0 >> text=explanation (JSON)")
    explanation = json.loads(page.inner_text("body"))
    assert explanation["user_id"] == users[1] and explanation["item_id"] == items[0]["item_id"]
    assert explanation["top_regions"] and sum(explanation["attention"]["weights"][0]) >= 0
    assert errors == [], f"the page raised: {errors}"
    page.close()


def test_the_page_fits_a_phone(browser, gateway: Gateway, tmp_path: Path) -> None:
    page, errors = open_page(browser, gateway, PHONE)
    cards_of(page, 12)  # the page's default k
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow} px wider than a phone's screen"
    widths = page.eval_on_selector_all("#grid .card", "cards => cards.map(c => c.getBoundingClientRect().right)")
    assert max(widths) <= PHONE["width"]
    page.screenshot(path=str(screenshot_dir(tmp_path) / "page-phone.png"))
    assert errors == [], f"the page raised: {errors}"
    page.close()


def test_an_unknown_shopper_gets_popular_items_said_so(browser, gateway: Gateway) -> None:
    page, errors = open_page(browser, gateway, DESKTOP)
    page.fill("#user-text", "nobody-like-this")
    page.dispatch_event("#user-text", "change")
    page.wait_for_function("document.querySelector('#status').textContent.startsWith('Unknown user')")
    assert page.query_selector_all("#grid .card")
    assert errors == []
    page.close()
