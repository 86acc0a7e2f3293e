"""The page in a real browser: Playwright drives the system's chromium (Debian's `chromium` package, which
.ci/run installs; nothing downloads a browser) against a gateway serving a real export.

The tests pick a known shopper, paste a new shopper's history and type an unknown id, and check that each
of the three shelves (buy again, for you, new for you) shows what the API answers for the same shopper, in
order, with its badges, "because you bought" thumbnails, heatmap overlay (on the toggle and on hover), the
top regions outlined on the photo and the explanation panel; at desktop and phone widths. They write
screenshots under pytest's tmp folder; with SCREENSHOTS=DIR they write them there (`make screenshots`
refreshes docs/page.png and docs/page-phone.png for the README, from the demo model when PAGE_MODEL_DIR names
its export).
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.servers import Gateway

K = 10
SHELVES = ("buy_again", "for_you", "new_for_you")
EMPTY_BUY_AGAIN = "Nothing to buy again yet."
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}  # a phone's CSS pixels
UNKNOWN = "nobody-like-this"
REASONS = {"near_uniform": "no clear focus", "little_visual_score": "the photo barely counts"}

# Each card as the page shows it: what a shopper sees, read back from the DOM.
CARDS_JS = """shelf => [...document.querySelectorAll(`section[data-shelf="${shelf}"] .card`)].map(c => ({
  item_id: c.dataset.itemId,
  informative: c.dataset.informative === undefined ? null : c.dataset.informative === 'true',
  src: c.querySelector('.photo img').getAttribute('src'),
  alt: c.querySelector('.photo img').getAttribute('alt'),
  new: c.querySelectorAll('.badge.new').length,
  rebuy: c.querySelectorAll('.badge.rebuy').length,
  because: [...c.querySelectorAll('.because li')].map(li => li.dataset.itemId),
  title: c.querySelector('.title')?.textContent ?? null,
  category: c.querySelector('.category')?.textContent ?? null,
  muted_id: c.querySelector('.item-id')?.textContent ?? null,
  why: c.querySelectorAll('.why').length,
}))"""

# every card that has an explanation to ask for has had its answer (data-informative set)
EXPLAINED_JS = "[...document.querySelectorAll('.card')].every(c => !c.querySelector('.why') || c.dataset.informative)"

# the images a full-page screenshot shows (inside the viewport's width: those further right in a shelf wait,
# lazily, for the shelf's scroll) have loaded
IMAGES_LOADED_JS = """[...document.images].filter(i => {
  const r = i.getBoundingClientRect();
  return r.width > 0 && r.left >= 0 && r.right <= window.innerWidth;
}).every(i => i.complete && i.naturalWidth > 0)"""


def _chromium() -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        reason = "chromium is not on PATH: apt-get install chromium (as .ci/run does) to run the browser tests"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + " (CI=true: failing instead of skipping)")
        pytest.skip(reason)
    return binary


@pytest.fixture(scope="module")
def gateway(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    root = tmp_path_factory.mktemp("page")
    if os.environ.get("PAGE_MODEL_DIR"):  # the demo model, for the README's screenshot: default settings
        model_dir, settings = Path(os.environ["PAGE_MODEL_DIR"]), {}
    else:  # every map counts as informative, so the overlay is drawn whatever a 1-epoch model learnt
        model_dir = request.getfixturevalue("tiny_work") / "export"
        settings = {"explain_min_concentration": 0, "explain_min_visual_share": 0}
    with Gateway(model_dir, root / "gateway.log", **settings) as server:
        yield server


@pytest.fixture(scope="module")
def plain_gateway(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway with the default bars for an informative map, under which the tiny model's maps (1 epoch:
    near uniform) explain little; the demo model's gateway has them already."""
    if os.environ.get("PAGE_MODEL_DIR"):
        yield request.getfixturevalue("gateway")
        return
    root = tmp_path_factory.mktemp("page-plain")
    with Gateway(request.getfixturevalue("tiny_work") / "export", root / "gateway.log") as server:
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


class Watched:
    """A page with its JavaScript errors and its failed HTTP answers collected as it runs."""

    def __init__(self, browser, gateway: Gateway, viewport: dict) -> None:
        self.page = browser.new_page(viewport=viewport)
        self.errors: list[str] = []
        self.failed: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("response", lambda r: self.failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        self.page.goto(f"{gateway.url}/")
        self.page.wait_for_selector("#user option", state="attached")

    def users(self) -> list[str]:
        return self.page.eval_on_selector_all("#user option", "options => options.map(o => o.value)")

    def set_k(self, k: int) -> None:
        self.page.fill("#k", str(k))
        self.page.locator("#k").blur()  # a change event, once, as when a shopper leaves the field

    def wait_ready(self, greeting: str) -> None:
        """Until the shelves of the shopper the greeting names have loaded and every card has its explanation."""
        self.page.wait_for_function(
            "text => document.querySelector('#main').getAttribute('aria-busy') === 'false'"
            " && document.querySelector('#greeting').textContent.includes(text)",
            arg=greeting,
        )
        self.page.wait_for_function(EXPLAINED_JS)

    def cards(self, shelf: str) -> list[dict]:
        return self.page.evaluate(CARDS_JS, shelf)

    def history(self) -> list[str]:
        return self.page.eval_on_selector_all("#history li", "lis => lis.map(li => li.dataset.itemId)")

    def close(self, allowed_failures: int = 0) -> None:
        assert self.errors == [], f"the page raised: {self.errors}"
        assert len(self.failed) == allowed_failures, f"failed requests: {self.failed}"
        self.page.close()


def load_the_whole_page(page) -> None:
    """Scroll to the bottom and back, so the lazy photos below the fold load for a full-page screenshot."""
    page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
    page.wait_for_function(IMAGES_LOADED_JS)
    page.evaluate("window.scrollTo(0, 0)")


def recommend(gateway: Gateway, shopper: str | list[str], shelf: str, k: int = K) -> dict:
    """The API's answer for a known user's id or a new shopper's history."""
    if isinstance(shopper, list):
        body = {"history": shopper, "k": k, "shelf": shelf}
        response = httpx.post(f"{gateway.url}/recommend", json=body, timeout=60)
    else:
        response = gateway.get("/recommend", user_id=shopper, k=k, shelf=shelf)
    assert response.status_code == 200, response.text
    return response.json()


def fetch(gateway: Gateway, url: str) -> dict:
    """A URL as the API gave it, its query string included (`Gateway.get`'s params would replace it)."""
    response = httpx.get(f"{gateway.url}{url}", timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def check_shelves_match_the_api(watched: Watched, gateway: Gateway, shopper: str | list[str]) -> dict[str, dict]:
    """Each shelf's cards are the API's items for the same shopper and shelf, in order, with their badges,
    words and "because you bought" thumbnails; an empty shelf says so. Returns the API's answers."""
    answers = {shelf: recommend(gateway, shopper, shelf) for shelf in SHELVES}
    for shelf, answer in answers.items():
        cards, items = watched.cards(shelf), answer["items"]
        assert [c["item_id"] for c in cards] == [i["item_id"] for i in items], shelf
        bought = {h["item_id"] for h in answer["history"]}
        for card, item in zip(cards, items):
            assert card["new"] == int(item["new_item"]), (shelf, item["item_id"])
            assert card["rebuy"] == int((item["repeat_boost"] or 0) > 0 or item["item_id"] in bought), (shelf, item)
            assert card["because"] == [b["item_id"] for b in item["because"] or []][:3], (shelf, item["item_id"])
            assert card["why"] == int(item["explain_url"] is not None)
            assert card["src"] == item["image_url"]  # the overlay is off until asked for
            assert card["category"] == item["category"]
            if item["title"]:
                assert card["title"] == item["title"] and item["title"] in card["alt"]
            else:  # no title in the catalog: the id, muted
                assert card["title"] is None and card["muted_id"] == item["item_id"]
        empty = watched.page.locator(f'section[data-shelf="{shelf}"] .empty')
        if items:
            assert empty.is_hidden()
        else:
            assert empty.is_visible() and empty.inner_text().strip()
            if shelf == "buy_again":
                assert empty.inner_text() == EMPTY_BUY_AGAIN
    # the shopper's recent purchases: the same for every shelf
    assert watched.history() == [h["item_id"] for h in answers["for_you"]["history"]]
    return answers


def region_rects(page, selector: str) -> list[dict]:
    return page.eval_on_selector_all(
        selector,
        "nodes => nodes.filter(n => n.offsetParent !== null).map(n => {"
        " const r = n.getBoundingClientRect(); return {x0: r.left, y0: r.top, x1: r.right, y1: r.bottom}; })",
    )


def expected_rects(page, photo_selector: str, regions: list[dict]) -> list[dict]:
    """Where the API's boxes (the photo's own pixels) fall on screen: scaled to the square box the photo is
    shown in with object-fit contain, so offset by the letterbox's bars."""
    box = page.eval_on_selector(
        photo_selector,
        "p => { const r = p.getBoundingClientRect(); const i = p.querySelector('img');"
        " return {left: r.left, top: r.top, side: r.width, height: r.height, w: i.naturalWidth, h: i.naturalHeight}; }",
    )
    assert abs(box["side"] - box["height"]) < 1, "the photo's box is not square"
    scale = box["side"] / max(box["w"], box["h"])
    pad_x, pad_y = (box["side"] - box["w"] * scale) / 2, (box["side"] - box["h"] * scale) / 2
    return [
        {
            "x0": box["left"] + pad_x + x0 * scale,
            "y0": box["top"] + pad_y + y0 * scale,
            "x1": box["left"] + pad_x + x1 * scale,
            "y1": box["top"] + pad_y + y1 * scale,
        }
        for x0, y0, x1, y1 in (r["box"] for r in regions[:3])
    ]


def assert_rects_close(drawn: list[dict], expected: list[dict]) -> None:
    assert len(drawn) == len(expected)
    for got, want in zip(drawn, expected):
        assert all(abs(got[k] - want[k]) <= 1.0 for k in want), (got, want)


def percent(value: float) -> str:
    return f"{math.floor(100 * value + 0.5)}%"  # JavaScript's Math.round


def test_a_known_shopper_sees_three_shelves_with_their_reasons(browser, gateway: Gateway, tmp_path: Path) -> None:
    watched = Watched(browser, gateway, DESKTOP)
    page = watched.page
    users = watched.users()
    assert len(users) >= 2
    watched.set_k(K)
    page.select_option("#user", users[1])
    watched.wait_ready(users[1])
    assert "Welcome back" in page.inner_text("#greeting")
    answers = check_shelves_match_the_api(watched, gateway, users[1])
    assert answers["for_you"]["personalized"] and answers["for_you"]["items"]
    history_srcs = page.eval_on_selector_all("#history img", "imgs => imgs.map(i => i.getAttribute('src'))")
    assert history_srcs == [h["image_url"] for h in answers["for_you"]["history"]]

    # the overlay's toggle: the heatmap for the items whose map is informative, the photo for the others
    items = {shelf: answers[shelf]["items"] for shelf in SHELVES}
    page.check("#overlay")
    informative = 0
    for shelf in SHELVES:
        for card, item in zip(watched.cards(shelf), items[shelf]):
            explanation = fetch(gateway, item["explain_url"])
            assert card["informative"] == explanation["informative"], item["item_id"]
            assert card["src"] == (item["heatmap_url"] if explanation["informative"] else item["image_url"])
            informative += explanation["informative"]
    assert informative, "no map to overlay: the toggle would check nothing"

    # the top regions outlined where the API's boxes are, on the first informative card of "For you"
    first = next(i for i, c in enumerate(watched.cards("for_you")) if c["informative"])
    card = f'section[data-shelf="for_you"] .card >> nth={first}'
    item = items["for_you"][first]
    explanation = fetch(gateway, item["explain_url"])
    card_css = f'section[data-shelf="for_you"] .card:nth-child({first + 1})'
    page.wait_for_function(f"document.querySelectorAll('{card_css} .region').length > 0")
    drawn = region_rects(page, f"{card_css} .region")
    assert_rects_close(drawn, expected_rects(page, f"{card_css} .photo", explanation["top_regions"]))

    page.uncheck("#overlay")
    for shelf in SHELVES:
        assert [c["src"] for c in watched.cards(shelf)] == [i["image_url"] for i in items[shelf]]
    assert region_rects(page, ".card .region") == []  # no outlines over a plain photo

    # hovering a card peeks at its heatmap and outlines, and only its own
    load_the_whole_page(page)
    page.hover(card)
    page.wait_for_function(f"document.querySelector('{card_css} .photo img').getAttribute('src').includes('heatmap')")
    assert page.get_attribute(f"{card_css} .photo img", "src") == item["heatmap_url"]
    assert len(region_rects(page, f"{card_css} .region")) == min(3, len(explanation["top_regions"]))
    assert sum("heatmap" in c["src"] for shelf in SHELVES for c in watched.cards(shelf)) == 1
    page.hover("#greeting-title")
    assert page.get_attribute(f"{card_css} .photo img", "src") == item["image_url"]

    # the README's screenshot: every informative map over its photo, which is what the page is for
    page.check("#overlay")
    load_the_whole_page(page)
    page.wait_for_function(IMAGES_LOADED_JS)
    page.screenshot(path=str(screenshot_dir(tmp_path) / "page.png"), full_page=True)
    page.uncheck("#overlay")

    # the explanation panel: the photo's share of the score, the top regions listed and outlined, the JSON
    page.click(f"{card} >> .why")
    page.wait_for_selector("#explain[open]")
    page.wait_for_function("document.querySelector('#explain-body').textContent.includes('of the score')")
    body = page.inner_text("#explain-body")
    assert f"The photo carries {percent(explanation['visual_share'])} of the score." in body
    listed = page.eval_on_selector_all("#explain-body ol li", "lis => lis.map(li => li.textContent)")
    assert len(listed) == min(3, len(explanation["top_regions"]))
    for line, region in zip(listed, explanation["top_regions"]):
        assert line.startswith(f"row {region['row'] + 1}, column {region['col'] + 1}: {percent(region['weight'])}")
    assert page.get_attribute("#explain-photo img", "src") == explanation["heatmap_url"]
    page.wait_for_function("document.querySelectorAll('#explain-photo .region').length > 0")
    drawn = region_rects(page, "#explain-photo .region")
    assert_rects_close(drawn, expected_rects(page, "#explain-photo", explanation["top_regions"]))
    because = page.eval_on_selector_all("#explain-body .because li", "lis => lis.map(li => li.dataset.itemId)")
    assert because == [b["item_id"] for b in explanation["because"] or []][:3]
    link = page.get_attribute("#explain-body a", "href")
    assert link == item["explain_url"]
    linked = fetch(gateway, link)
    assert linked["user_id"] == users[1] and linked["item_id"] == item["item_id"]
    page.click("#explain .close")
    page.wait_for_selector("#explain", state="hidden")
    watched.close()


def test_the_page_fits_a_phone(browser, gateway: Gateway, tmp_path: Path) -> None:
    watched = Watched(browser, gateway, PHONE)
    page = watched.page
    first = watched.users()[0]
    watched.wait_ready(first)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow} px wider than a phone's screen"
    for shelf in SHELVES:
        cards = page.locator(f'section[data-shelf="{shelf}"] .card')
        if recommend(gateway, first, shelf, k=12)["items"]:  # the page's default k
            assert cards.count() > 0
            box = cards.first.bounding_box()
            assert cards.first.is_visible() and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
        row = page.locator(f'section[data-shelf="{shelf}"] .cards').bounding_box()
        assert row is None or row["x"] + row["width"] <= PHONE["width"]  # the shelf scrolls inside itself
    smallest = page.evaluate(
        "Math.min(...[...document.querySelectorAll('main *')].filter(e => e.offsetParent !== null"
        " && [...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim()))"
        ".map(e => parseFloat(getComputedStyle(e).fontSize)))"
    )
    assert smallest >= 11, f"text as small as {smallest} px"
    load_the_whole_page(page)
    page.screenshot(path=str(screenshot_dir(tmp_path) / "page-phone.png"), full_page=True)

    page.click('section[data-shelf="for_you"] .card >> nth=0 >> .why')  # the panel fits the phone too
    page.wait_for_function("document.querySelector('#explain-body').textContent.includes('JSON')")
    panel = page.locator("#explain").bounding_box()
    assert panel["x"] >= 0 and panel["x"] + panel["width"] <= PHONE["width"]
    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
    page.screenshot(path=str(tmp_path / "page-phone-explanation.png"))  # to look at; not for the README
    watched.close()


def test_a_pasted_history_gets_shelves_as_a_new_shopper(browser, gateway: Gateway) -> None:
    watched = Watched(browser, gateway, DESKTOP)
    page = watched.page
    known = recommend(gateway, watched.users()[0], "for_you")
    history = [h["item_id"] for h in known["history"]][:3]
    assert len(history) == 3
    watched.set_k(K)
    page.fill("#history-text", f"{history[0]}, {history[1]}\n{history[2]}")  # any mix of separators
    page.click("#history-form button")
    watched.wait_ready("new shopper")
    assert page.inner_text("#greeting-title") == "Hello, new shopper"
    answers = check_shelves_match_the_api(watched, gateway, history)
    assert answers["for_you"]["personalized"] and answers["for_you"]["history_known"] == 3
    # explanations asked for this history, not for a known user (the URLs as the API gave them)
    explained = [c for shelf in SHELVES for c in watched.cards(shelf) if c["why"]]
    assert explained and all(c["informative"] is not None for c in explained)
    urls = [i["explain_url"] for shelf in SHELVES for i in answers[shelf]["items"] if i["explain_url"]]
    assert urls and all("history=" in u and "user_id=" not in u for u in urls)
    watched.close()


def test_an_unknown_shopper_gets_popular_items_said_so(browser, gateway: Gateway) -> None:
    watched = Watched(browser, gateway, DESKTOP)
    page = watched.page
    watched.set_k(K)
    page.fill("#user-text", UNKNOWN)
    page.click("#known-form button")
    watched.wait_ready("know this shopper yet")
    assert UNKNOWN in page.inner_text("#greeting")
    answers = check_shelves_match_the_api(watched, gateway, UNKNOWN)
    assert not answers["for_you"]["personalized"]
    assert {i["source"] for i in answers["for_you"]["items"]} == {"popularity"}
    assert page.locator('section[data-shelf="for_you"] .card').count() == len(answers["for_you"]["items"]) > 0
    assert page.inner_text('section[data-shelf="for_you"] .shelf-note').startswith("Popular")
    assert page.locator("#history-empty").is_visible() and watched.history() == []
    watched.close()


def test_api_errors_show_in_the_status_line(browser, gateway: Gateway) -> None:
    watched = Watched(browser, gateway, DESKTOP)
    page = watched.page
    watched.wait_ready(watched.users()[0])
    expected = gateway.get("/recommend", user_id=watched.users()[0], k=101, shelf="for_you").json()["error"]
    assert expected["field"] == "k"
    watched.set_k(101)
    page.wait_for_function("document.querySelector('#status').classList.contains('error')")
    assert page.inner_text("#status") == expected["message"]
    # an empty paste never reaches the API: the page says what is missing
    page.fill("#history-text", " , \n")
    page.click("#history-form button")
    page.wait_for_function("document.querySelector('#status').textContent.startsWith('Paste at least one')")
    watched.close(allowed_failures=len(SHELVES))  # the three shelves' answers to k=101


def test_a_map_that_explains_little_is_not_drawn(browser, plain_gateway: Gateway) -> None:
    watched = Watched(browser, plain_gateway, DESKTOP)
    page = watched.page
    user = watched.users()[0]
    watched.wait_ready(user)
    page.check("#overlay")
    plain = 0
    for shelf in SHELVES:
        items = recommend(plain_gateway, user, shelf, k=12)["items"]  # the page's default k
        for index, (card, item) in enumerate(zip(watched.cards(shelf), items)):
            if item["explain_url"] is None:
                continue
            explanation = fetch(plain_gateway, item["explain_url"])
            assert card["informative"] == explanation["informative"]
            if explanation["informative"]:
                continue
            plain += 1
            card_css = f'section[data-shelf="{shelf}"] .card:nth-child({index + 1})'
            assert card["src"] == item["image_url"]  # a near-uniform map would be drawn as a misleading blob
            assert region_rects(page, f"{card_css} .region") == []
            assert page.inner_text(f"{card_css} .note") == REASONS[explanation["reason"]]
            if plain == 1:  # its explanation says so too, over the plain photo
                page.click(f"{card_css} .why")
                page.wait_for_function("document.querySelector('#explain-body').textContent.includes('JSON')")
                assert f"No heatmap for this one: {REASONS[explanation['reason']]}" in page.inner_text("#explain-body")
                assert page.get_attribute("#explain-photo img", "src") == item["image_url"]
                assert region_rects(page, "#explain-photo .region") == []
                page.click("#explain .close")
    if plain == 0:
        pytest.skip("every map of this model is informative: nothing to leave undrawn")
    watched.close()
