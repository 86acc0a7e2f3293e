"""The HTTP API against a hand-made fake backend (injected through app.dependency_overrides)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from bench.servers import free_port
from model import explanation
from model.contract import ASSETS_EXTRA, CATALOG_COLUMNS, CATALOG_FILE, SERVING_META_FILE, SERVING_META_KEYS
from service.__main__ import parse_settings
from service.app import MODEL_VERSION_HEADER, create_app
from service.backend import AttentionMaps
from service.catalog import Catalog, ServingMeta, find_version_dir
from service.deps import get_backend, get_catalog
from service.errors import BackendUnavailable, ReexportNeeded
from service.schemas import RecommendResponse
from service.settings import Settings, SettingsError, load_settings

VERSION = 7
GRID = (2, 3)
DIM = 4
USERS = ["alice", "bob"]
ITEMS = ["shoe", "bag", "coat", "hat", "belt"]
POPULARITY = {"coat": 30.0, "shoe": 20.0, "hat": 10.0, "bag": 5.0, "belt": 1.0}
MODEL_ONLY_MISSING = "belt"  # in the catalog, but the fake model scores it -inf
NEW_ITEMS = {"bag"}  # no purchase when the model was trained (catalog.csv `new`)


class FakeBackend:
    """Implements service.backend.ModelBackend with hand-made arrays; counts calls."""

    version = VERSION
    grid = GRID

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.unavailable: Exception | None = None
        # Region l's contribution is visual_scale * its weight, so the visual score is visual_scale and the
        # regions' shares of it are their weights. parts=False: an export from before the score's parts.
        self.visual_scale, self.parts, self.uniform = 0.5, True, False
        self.because_served = True  # False: an export from before "because you bought"
        # user u's embedding is e_u; item i's score for user u is (u+1) * (i+1) with a twist per user
        self._vectors = {u: np.full(DIM, i + 1, np.float32) for i, u in enumerate(USERS)}

    def _called(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1
        if self.unavailable is not None:
            raise self.unavailable

    def _user(self, embedding: np.ndarray) -> str:
        return USERS[int(round(float(embedding[0]))) - 1]

    def _score(self, user: str, item: str) -> float:
        if item == MODEL_ONLY_MISSING or item not in ITEMS:
            return float("-inf")
        order = ITEMS if user == "alice" else ITEMS[::-1]
        return 1.0 - 0.1 * order.index(item)

    def _attention(self, item: str) -> np.ndarray:
        if self.uniform:
            return np.full(GRID, 1 / (GRID[0] * GRID[1]), np.float32)
        grid = np.full(GRID, 0.1 / (GRID[0] * GRID[1] - 1), np.float32)
        hot = ITEMS.index(item) % (GRID[0] * GRID[1])
        grid.flat[hot] = 0.9
        return grid

    async def user_embeddings(self, user_ids):
        self._called("user_embeddings")
        known = np.array([u in self._vectors for u in user_ids])
        vectors = np.stack([self._vectors.get(u, np.zeros(DIM, np.float32)) for u in user_ids])
        return vectors, known

    async def history_embeddings(self, histories):
        # a history folds into alice's vector when it holds a shoe, else bob's; no catalog item: unknown
        self._called("history_embeddings")
        known = np.array([any(i in ITEMS for i in h) for h in histories])
        vectors = np.stack(
            [self._vectors["alice" if "shoe" in h else "bob"] * k for h, k in zip(histories, known, strict=True)]
        )
        return vectors.astype(np.float32), known

    async def recommend(self, embeddings, k):
        self._called("recommend")
        out = []
        for row in embeddings:
            user = self._user(row)
            ranked = sorted(ITEMS[:-1], key=lambda i: -self._score(user, i))[:k]
            scores = np.array([self._score(user, i) for i in ranked], np.float32)
            out.append((ranked, scores, np.stack([self._attention(i) for i in ranked])))
        return out

    async def recommend_candidates(self, embeddings, k, candidates):
        self._called(f"recommend_candidates:{candidates}")
        out = await self.recommend(embeddings, k)
        self.calls["recommend"] -= 1
        return out

    async def recommend_shelf(self, embeddings, k, candidates, shelf):
        # the fake's shelves: alice and bob bought the shoe; the catalog's new item is the bag
        self._called(f"recommend_shelf:{shelf}")
        out = []
        for ranked, scores, attention in await self.recommend(embeddings, len(ITEMS)):
            keep = {
                "all": lambda i: True,
                "buy_again": lambda i: i == "shoe",
                "for_you": lambda i: i != "shoe",
                "new_for_you": lambda i: i in NEW_ITEMS,
            }[shelf]
            picked = [n for n, i in enumerate(ranked) if keep(i)][:k]
            out.append(([ranked[n] for n in picked], scores[picked], attention[picked]))
        self.calls["recommend"] -= 1
        return out

    async def score(self, embeddings, item_ids):
        self._called("score")
        return np.array(
            [[self._score(self._user(row), i) for i in items] for row, items in zip(embeddings, item_ids)],
            np.float32,
        )

    async def attention(self, embeddings, item_ids):
        self._called("attention")
        grids = np.stack([self._attention(i) for i in item_ids])  # [B, H, W]
        if not self.parts:
            return AttentionMaps(grids)
        scores = np.array([self._score(self._user(row), i) for row, i in zip(embeddings, item_ids)])
        visual = np.full(len(item_ids), self.visual_scale)
        return AttentionMaps(
            grids,
            grids * self.visual_scale,
            explanation.concentration(grids.reshape(len(grids), -1), np),
            explanation.visual_share(scores - visual, visual, np),
        )

    async def because(self, embeddings, item_ids):
        # every item resembles the shoe most (similarity 0.9), then the hat; the shoe itself the hat alone
        self._called("because")
        if not self.because_served:
            raise ReexportNeeded(VERSION, "because")
        named = [[["shoe", "hat", ""] if i != "shoe" else ["hat", "", ""] for i in items] for items in item_ids]
        similarity = [
            [[0.9, 0.4, -np.inf] if i != "shoe" else [0.5, -np.inf, -np.inf] for i in items] for items in item_ids
        ]
        return np.array(named, dtype=object), np.array(similarity, np.float32)

    async def popular(self, k):
        self._called("popular")
        ranked = sorted(POPULARITY, key=lambda i: -POPULARITY[i])[:k]
        return ranked, np.array([POPULARITY[i] for i in ranked], np.float32)

    async def users(self, limit):
        self._called("users")
        return USERS[:limit]

    async def aclose(self):
        pass


def write_export(version_dir: Path, image_root: Path, **meta_overrides: object) -> None:
    """A version folder's assets.extra (no SavedModel) and the photos it points at; `meta_overrides`
    replace serving.json's values."""
    image_root.mkdir(parents=True)
    rows = []
    for n, item in enumerate(ITEMS):
        name = f"{item}.jpg" if n % 2 else f"{item}.png"
        Image.new("RGB", (60, 40), (40 * n, 100, 150)).save(image_root / name)
        # the 60x40 photo padded to 60x60; the belt has no title or category in the catalog
        text = ["", ""] if item == "belt" else [f"The {item}", "shoes" if item == "shoe" else "accessories"]
        rows.append([item, name, 0, -10, 60, 50, int(item in NEW_ITEMS), *text])
    rows.append(["escapee", "../secret.png", 0, 0, 10, 10, 0, "", ""])
    rows.append(["ghost", "missing.png", 0, 0, 10, 10, 0, "", ""])
    (image_root.parent / "secret.png").write_bytes(b"not for you")
    assets = version_dir / ASSETS_EXTRA
    assets.mkdir(parents=True)
    with (assets / CATALOG_FILE).open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CATALOG_COLUMNS)
        writer.writerows(rows)
    meta = (
        dict(
            model_name="vecf",
            version=VERSION,
            grid_rows=GRID[0],
            grid_cols=GRID[1],
            embedding_dim=DIM,
            num_items=len(ITEMS),
            num_users=len(USERS),
            image_root="/nonexistent/at/export/time",
            created="2026-01-01T00:00:00Z",
        )
        | meta_overrides
    )
    (assets / SERVING_META_FILE).write_text(json.dumps(meta))


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    write_export(tmp_path / "export" / str(VERSION), tmp_path / "images")
    return Catalog.load(tmp_path / "export" / str(VERSION), image_root=tmp_path / "images")


def fake_app(backend: FakeBackend, catalog: Catalog, **settings: object):
    app = create_app(Settings(model_dir=None, redis_url=None, retry_after_s=7, **settings))
    app.dependency_overrides[get_backend] = lambda: backend
    app.dependency_overrides[get_catalog] = lambda: catalog
    return app


@pytest.fixture
def app(backend: FakeBackend, catalog: Catalog):
    return fake_app(backend, catalog)


@pytest.fixture
def client(app) -> TestClient:
    with TestClient(app) as client:
        yield client


@pytest.fixture(params=[0, 1], ids=["render-in-threads", "render-workers"])
def heatmap_client(request: pytest.FixtureRequest, backend: FakeBackend, catalog: Catalog) -> TestClient:
    """The heatmap tests run with renders on the gateway's threads and in a worker process."""
    with TestClient(fake_app(backend, catalog, render_workers=request.param)) as client:
        assert client.app.state.renderer.workers == request.param
        yield client


def assert_error(response, status: int, code: str, field: str | None, *fragments: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error.get("field") == field
    for fragment in fragments:
        assert fragment in error["message"], error["message"]
    return error


# ---- /recommend --------------------------------------------------------------------------------


def test_recommend_personalized(client: TestClient, backend: FakeBackend) -> None:
    response = client.get("/recommend", params={"user_id": "alice", "k": 3})
    assert response.status_code == 200, response.text
    assert response.headers[MODEL_VERSION_HEADER] == str(VERSION)
    body = response.json()
    assert body["user_id"] == "alice" and body["personalized"] is True
    assert body["model_version"] == VERSION
    assert body["grid"] == {"rows": 2, "cols": 3}
    assert [i["item_id"] for i in body["items"]] == ["shoe", "bag", "coat"]
    assert [i["rank"] for i in body["items"]] == [1, 2, 3]
    assert [i["new_item"] for i in body["items"]] == [False, True, False]  # from catalog.csv's `new`
    # Without new-item slots VECF's score placed the new item too; no repeat boosts in this export.
    assert [i["source"] for i in body["items"]] == ["vecf", "vecf", "vecf"]
    assert body["items"][0]["score"] == pytest.approx(1.0)
    first = body["items"][0]
    assert first["image_url"] == "/items/shoe/image"
    assert first["heatmap_url"] == "/explain/heatmap.png?user_id=alice&item_id=shoe"
    assert first["explain_url"] == "/explain?user_id=alice&item_id=shoe"
    attention = first["attention"]
    assert (attention["rows"], attention["cols"]) == GRID
    assert np.array(attention["weights"]).shape == GRID
    assert np.array(attention["weights"]).sum() == pytest.approx(1.0, abs=1e-4)
    # the catalog's text, and the history items each resembles most ("because you bought")
    assert (first["title"], first["category"]) == ("The shoe", "shoes")
    assert first["because"] == [
        {
            "item_id": "hat",
            "image_url": "/items/hat/image",
            "title": "The hat",
            "category": "accessories",
            "similarity": 0.5,
        }
    ]  # never the item itself
    assert [n["item_id"] for n in body["items"][1]["because"]] == ["shoe", "hat"]
    assert body["history"] == []  # this export's states carry no history
    assert backend.calls == {"user_embeddings": 1, "recommend": 1, "because": 1}


def test_recommend_of_an_export_from_before_because_you_bought(client: TestClient, backend: FakeBackend) -> None:
    backend.because_served = False
    body = client.get("/recommend", params={"user_id": "alice", "k": 2}).json()
    assert [i["because"] for i in body["items"]] == [None, None]
    assert client.get("/explain", params={"user_id": "alice", "item_id": "bag"}).json()["because"] is None


def test_the_history_a_state_carries_is_shown_newest_first(tmp_path: Path, backend: FakeBackend) -> None:
    # An export whose states carry 2 history rows after the embedding: [e (4) | rows (2) | boosts (2)].
    write_export(tmp_path / "export" / str(VERSION), tmp_path / "images", repeat_slots=2)
    catalog = Catalog.load(tmp_path / "export" / str(VERSION), image_root=tmp_path / "images")
    backend._vectors["alice"] = np.array([1, 1, 1, 1, 3, 0, 0.5, 0.5], np.float32)  # hat, then shoe
    with TestClient(fake_app(backend, catalog)) as client:
        body = client.get("/recommend", params={"user_id": "alice", "k": 2}).json()
    assert body["history"] == [
        {"item_id": "hat", "image_url": "/items/hat/image", "title": "The hat", "category": "accessories"},
        {"item_id": "shoe", "image_url": "/items/shoe/image", "title": "The shoe", "category": "shoes"},
    ]


def test_two_stage_ranking_by_default_where_the_export_measured_it(tmp_path: Path, backend: FakeBackend) -> None:
    # serving.json's `candidates` (measured at export) is the default; CANDIDATES overrides it, 0 is exact
    write_export(tmp_path / "export" / str(VERSION), tmp_path / "images", candidates=40)
    catalog = Catalog.load(tmp_path / "export" / str(VERSION), image_root=tmp_path / "images")
    cases = (
        ({}, "recommend_candidates:40"),
        ({"candidates": 0}, "recommend"),
        ({"candidates": 7}, "recommend_candidates:7"),
    )
    for settings, call in cases:
        backend.calls.clear()
        with TestClient(fake_app(backend, catalog, **settings)) as client:
            assert client.get("/recommend", params={"user_id": "alice", "k": 3}).status_code == 200
        assert backend.calls.get(call) == 1, (settings, backend.calls)
    # an export from before the figure was measured ranks exactly
    assert Catalog.load(tmp_path / "export" / str(VERSION)).meta.candidates == 40
    meta = tmp_path / "export" / str(VERSION) / ASSETS_EXTRA / SERVING_META_FILE
    meta.write_text(json.dumps({k: v for k, v in json.loads(meta.read_text()).items() if k != "candidates"}))
    assert Catalog.load(tmp_path / "export" / str(VERSION)).meta.candidates == 0


def test_recommend_default_k_and_other_user(client: TestClient) -> None:
    body = client.get("/recommend", params={"user_id": "bob"}).json()
    assert [i["item_id"] for i in body["items"]] == ["hat", "coat", "bag", "shoe"]  # fake has 4 rankable items


def test_recommend_caches_the_user_embedding(client: TestClient, backend: FakeBackend, app) -> None:
    for _ in range(3):
        assert client.get("/recommend", params={"user_id": "alice"}).status_code == 200
    assert backend.calls["user_embeddings"] == 1
    assert backend.calls["recommend"] == 3
    stats = client.get("/healthz").json()["cache"]
    assert stats == {"kind": "lru", "hits": 2, "misses": 1, "errors": 0, "bypassed": 0}


def test_recommend_unknown_user_falls_back_to_popular(client: TestClient, backend: FakeBackend) -> None:
    for _ in range(2):  # the second answer comes from the cached "unknown" entry
        response = client.get("/recommend", params={"user_id": "stranger", "k": 2})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["personalized"] is False
        assert [(i["item_id"], i["score"]) for i in body["items"]] == [("coat", 30.0), ("shoe", 20.0)]
        for item in body["items"]:
            assert item["attention"] is None and item["heatmap_url"] is None and item["explain_url"] is None
            assert item["image_url"] == f"/items/{item['item_id']}/image"
    assert backend.calls == {"user_embeddings": 1, "popular": 2}


@pytest.mark.parametrize("k", ["0", "101", "-5"])
def test_recommend_k_out_of_range(client: TestClient, k: str) -> None:
    response = client.get("/recommend", params={"user_id": "alice", "k": k})
    assert_error(response, 422, "invalid_request", "k", f"k must be between 1 and 100, got {k}")


def test_recommend_k_not_a_number(client: TestClient) -> None:
    assert_error(client.get("/recommend?user_id=alice&k=ten"), 422, "invalid_request", "k", "valid integer")


def test_recommend_missing_user_id(client: TestClient, backend: FakeBackend) -> None:
    assert_error(client.get("/recommend?k=3"), 422, "invalid_request", "user_id", "user_id is required")
    assert_error(client.get("/recommend?user_id="), 422, "invalid_request", "user_id", "at least 1 character")
    assert backend.calls == {}


@pytest.mark.parametrize("error", [BackendUnavailable("model server down"), ConnectionError("refused")])
def test_backend_outage_is_503_with_retry_after(client: TestClient, backend: FakeBackend, error) -> None:
    backend.unavailable = error
    for path in ("/recommend?user_id=alice", "/users", "/explain?user_id=alice&item_id=shoe"):
        response = client.get(path)
        assert_error(response, 503, "backend_unavailable", None, "unavailable", str(error))
        assert response.headers["Retry-After"] == "7"


def test_sources_name_the_new_item_slot_and_popularity(tmp_path: Path, backend: FakeBackend) -> None:
    # With slots (serving.json's new_item_every) the rankings hold new items only in their slots, so the new
    # item's place came from the new-item scorer, and /recommend and /explain say so.
    write_export(tmp_path / "export" / str(VERSION), tmp_path / "images", new_item_every=2)
    catalog = Catalog.load(tmp_path / "export" / str(VERSION), image_root=tmp_path / "images")
    with TestClient(fake_app(backend, catalog)) as client:
        body = client.get("/recommend", params={"user_id": "alice", "k": 3}).json()
        assert [(i["item_id"], i["source"]) for i in body["items"]] == [
            ("shoe", "vecf"),
            ("bag", "new_item_slot"),
            ("coat", "vecf"),
        ]
        assert client.get("/explain", params={"user_id": "alice", "item_id": "bag"}).json()["source"] == "new_item_slot"
        assert client.get("/explain", params={"user_id": "alice", "item_id": "shoe"}).json()["source"] == "vecf"
        unknown = client.get("/recommend", params={"user_id": "nobody", "k": 2}).json()
        assert unknown["personalized"] is False
        assert {i["source"] for i in unknown["items"]} == {"popularity"}


def test_recommend_from_a_history(client: TestClient, backend: FakeBackend) -> None:
    # A shopper the model never saw, given by their recent items: folded into a state, then served as a user.
    response = client.post("/recommend", json={"history": ["hat", "shoe", "no-such-item"], "k": 3})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user_id"] is None and body["personalized"] is True and body["history_known"] == 2
    assert [i["item_id"] for i in body["items"]] == ["shoe", "bag", "coat"]  # alice's vector: the history has a shoe
    first = body["items"][0]
    assert first["heatmap_url"] == "/explain/heatmap.png?history=hat&history=shoe&history=no-such-item&item_id=shoe"
    assert first["explain_url"] == "/explain?history=hat&history=shoe&history=no-such-item&item_id=shoe"
    explained = client.get(first["explain_url"])
    assert explained.status_code == 200, explained.text
    assert explained.json()["user_id"] is None and explained.json()["score"] == pytest.approx(first["score"])
    heatmap = client.get(first["heatmap_url"])
    assert heatmap.status_code == 200 and heatmap.headers["content-type"] == "image/png"
    posted = client.post("/explain", json={"history": ["hat", "shoe", "no-such-item"], "item_id": "coat"})
    assert posted.status_code == 200 and posted.json()["item_id"] == "coat", posted.text
    # the state is cached by the history (in order) and the model version: folded in once for all of the above
    assert backend.calls["history_embeddings"] == 1
    other = client.post("/recommend", json={"history": ["shoe", "hat", "no-such-item"], "k": 3})
    assert other.status_code == 200 and backend.calls["history_embeddings"] == 2
    bob = client.post("/recommend", json={"history": ["hat"], "k": 2}).json()
    assert [i["item_id"] for i in bob["items"]] == ["hat", "coat"]


def test_shelves(client: TestClient, backend: FakeBackend) -> None:
    def shelf(name: str, user: str = "alice") -> dict:
        response = client.get("/recommend", params={"user_id": user, "k": 3, "shelf": name})
        assert response.status_code == 200, response.text
        assert response.json()["shelf"] == name
        return response.json()

    assert [i["item_id"] for i in shelf("buy_again")["items"]] == ["shoe"]  # a shelf may be short
    assert [i["item_id"] for i in shelf("for_you")["items"]] == ["bag", "coat", "hat"]
    new = shelf("new_for_you")["items"]
    assert [(i["item_id"], i["source"], i["new_item"]) for i in new] == [("bag", "new_item_slot", True)]
    assert new[0]["heatmap_url"] and new[0]["attention"]  # explained like any other place
    assert shelf("all")["items"] == client.get("/recommend", params={"user_id": "alice", "k": 3}).json()["items"]
    assert backend.calls["recommend_shelf:for_you"] == 1 and "recommend_shelf:all" not in backend.calls
    # through the history form too
    body = client.post("/recommend", json={"history": ["shoe"], "k": 3, "shelf": "buy_again"}).json()
    assert body["shelf"] == "buy_again" and [i["item_id"] for i in body["items"]] == ["shoe"]
    # a shopper the model does not know: nothing to buy again, the popular items, new items by trend
    assert shelf("buy_again", "stranger")["items"] == []
    assert [i["item_id"] for i in shelf("for_you", "stranger")["items"]] == ["coat", "shoe", "hat"]
    unknown_new = shelf("new_for_you", "stranger")
    assert unknown_new["personalized"] is False and [i["item_id"] for i in unknown_new["items"]] == ["bag"]
    assert unknown_new["items"][0]["heatmap_url"] is None and unknown_new["items"][0]["source"] == "new_item_slot"
    bad = client.get("/recommend", params={"user_id": "alice", "shelf": "sale"})
    assert_error(bad, 422, "invalid_request", "shelf", "'all', 'buy_again', 'for_you' or 'new_for_you'")


def test_every_kind_of_recommend_answer_conforms_to_its_schema(client: TestClient, backend: FakeBackend) -> None:
    # FastAPI takes the model instances an endpoint returns as they are: the schema a client reads in
    # /openapi.json is checked here, strictly, on the JSON it gets, for every branch that builds an answer.
    answers = [
        client.get("/recommend", params={"user_id": user, "k": 4, "shelf": shelf})
        for user in ("alice", "stranger")
        for shelf in ("all", "buy_again", "for_you", "new_for_you")
    ]
    answers += [client.post("/recommend", json={"history": history, "k": 4}) for history in (["hat"], ["nothing"])]
    backend.because_served = False
    answers.append(client.get("/recommend", params={"user_id": "bob", "k": 4}))
    for response in answers:
        assert response.status_code == 200, response.text
        RecommendResponse.model_validate_json(response.text, strict=True)
    assert sum(len(r.json()["items"]) for r in answers) > 20
    broken = answers[0].json()
    broken["items"][0]["source"] = "guess"
    with pytest.raises(ValueError, match="source"):
        RecommendResponse.model_validate(broken, strict=True)


def test_a_history_of_unknown_items_gets_the_popular_items(client: TestClient, backend: FakeBackend) -> None:
    body = client.post("/recommend", json={"history": ["no-such-item"], "k": 2}).json()
    assert body["personalized"] is False and body["history_known"] == 0
    assert [i["item_id"] for i in body["items"]] == ["coat", "shoe"]
    assert {i["source"] for i in body["items"]} == {"popularity"}
    assert_error(
        client.post("/explain", json={"history": ["no-such-item"], "item_id": "shoe"}),
        404,
        "unknown_history",
        "history",
        "no item of the history",
    )


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ({"history": []}, "history", "at least 1 item"),
        ({"history": ["shoe"] * 201}, "history", "at most 200 items"),
        ({"history": [""]}, "history.0", "at least 1 character"),
        ({"history": "shoe"}, "history", "valid list"),
        ({"k": 3}, "history", "history is required"),
        ({"history": ["shoe"], "k": 0}, "k", "k must be between 1 and 100"),
        ({"history": ["shoe"], "user_id": "alice"}, "user_id", "Extra inputs"),
    ],
)
def test_recommend_from_a_history_validates_the_body(
    client: TestClient, backend: FakeBackend, body: dict, field: str, fragment: str
) -> None:
    assert_error(client.post("/recommend", json=body), 422, "invalid_request", field, fragment)
    assert backend.calls == {}


def test_explain_takes_one_shopper(client: TestClient, backend: FakeBackend) -> None:
    both = client.get("/explain", params={"user_id": "alice", "history": "shoe", "item_id": "bag"})
    assert_error(both, 422, "invalid_request", "user_id", "exactly one of user_id and history")
    assert_error(client.get("/explain", params={"item_id": "bag"}), 422, "invalid_request", "user_id", "exactly one")
    assert backend.calls == {}


# ---- /explain ----------------------------------------------------------------------------------


def test_explain(client: TestClient) -> None:
    response = client.get("/explain", params={"user_id": "alice", "item_id": "bag"})
    assert response.status_code == 200, response.text
    assert response.headers[MODEL_VERSION_HEADER] == str(VERSION)
    body = response.json()
    assert (body["user_id"], body["item_id"], body["model_version"]) == ("alice", "bag", VERSION)
    assert body["score"] == pytest.approx(0.9) and body["new_item"] is True
    assert (body["attention"]["rows"], body["attention"]["cols"]) == GRID
    regions = body["top_regions"]
    assert len(regions) == 3
    assert regions[0]["weight"] == pytest.approx(0.9, abs=1e-6)
    assert [r["weight"] for r in regions] == sorted((r["weight"] for r in regions), reverse=True)
    # "bag" is hot in cell (0, 1); the 60x40 photo's box is (0, -10, 60, 50): 2 rows of 30 px, 3 cols of 20 px,
    # so that cell covers x 20..40, y -10..20, clipped to the photo: y 0..20.
    assert (regions[0]["row"], regions[0]["col"], regions[0]["box"]) == (0, 1, [20, 0, 40, 20])
    for r in regions:
        x0, y0, x1, y1 = r["box"]
        assert 0 <= x0 <= x1 <= 60 and 0 <= y0 <= y1 <= 40
    assert body["image_url"] == "/items/bag/image"
    assert body["heatmap_url"] == "/explain/heatmap.png?user_id=alice&item_id=bag"


def _entropy_concentration(weights: list[float]) -> float:
    """1 - entropy / log R by hand, for the tests below."""
    w = np.asarray(weights, np.float64)
    return 1 - float(-(w * np.log(w)).sum() / np.log(len(w)))


def test_explain_says_how_much_of_the_score_the_map_carries(client: TestClient) -> None:
    body = client.get("/explain", params={"user_id": "alice", "item_id": "bag"}).json()
    # "bag": 0.9 in one cell, 0.02 in the 5 others; the fake's visual score is 0.5 of the score 0.9
    assert body["concentration"] == pytest.approx(_entropy_concentration([0.9] + [0.02] * 5), abs=1e-5)
    assert body["visual_score"] == pytest.approx(0.5, abs=1e-6)
    assert body["visual_share"] == pytest.approx(0.5 / (0.4 + 0.5), abs=1e-6)
    assert body["informative"] is True and body["reason"] is None
    top = body["top_regions"][0]
    assert top["contribution"] == pytest.approx(0.45, abs=1e-6) and top["share"] == pytest.approx(0.9, abs=1e-6)
    assert sum(r["share"] for r in body["top_regions"]) == pytest.approx(0.94, abs=1e-6)


@pytest.mark.parametrize(
    "change,reason",
    [
        ({"uniform": True}, "near_uniform"),  # concentration 0
        ({"visual_scale": 0.01}, "little_visual_score"),  # 0.01 / (0.89 + 0.01): about 1% of the score
    ],
)
def test_explain_says_when_the_map_is_not_informative(
    client: TestClient, backend: FakeBackend, change: dict, reason: str
) -> None:
    for name, value in change.items():
        setattr(backend, name, value)
    body = client.get("/explain", params={"user_id": "alice", "item_id": "bag"}).json()
    assert body["informative"] is False and body["reason"] == reason
    assert reason in explanation.REASON_LABELS  # the schema's codes are model.explanation's


def test_explain_thresholds_come_from_the_settings(backend: FakeBackend, catalog: Catalog) -> None:
    with TestClient(fake_app(backend, catalog, explain_min_visual_share=0.6)) as client:  # 0.56 is below
        body = client.get("/explain", params={"user_id": "alice", "item_id": "bag"}).json()
    assert body["informative"] is False and body["reason"] == "little_visual_score"
    with TestClient(fake_app(backend, catalog, explain_min_concentration=0.99)) as client:
        body = client.get("/explain", params={"user_id": "alice", "item_id": "bag"}).json()
    assert body["informative"] is False and body["reason"] == "near_uniform"


def test_explain_of_an_export_without_the_score_parts(client: TestClient, backend: FakeBackend) -> None:
    backend.parts = False
    body = client.get("/explain", params={"user_id": "alice", "item_id": "bag"}).json()
    assert body["concentration"] == pytest.approx(_entropy_concentration([0.9] + [0.02] * 5), abs=1e-5)
    assert body["visual_score"] is None and body["visual_share"] is None
    assert all(r["contribution"] is None and r["share"] is None for r in body["top_regions"])
    assert body["informative"] is True  # judged on concentration alone
    backend.uniform = True
    body = client.get("/explain", params={"user_id": "alice", "item_id": "bag"}).json()
    assert body["informative"] is False and body["reason"] == "near_uniform"


def test_explain_unknown_user(client: TestClient) -> None:
    response = client.get("/explain", params={"user_id": "stranger", "item_id": "bag"})
    assert_error(response, 404, "unknown_user", "user_id", "'stranger'")


def test_explain_unknown_item(client: TestClient, backend: FakeBackend) -> None:
    response = client.get("/explain", params={"user_id": "alice", "item_id": "sock"})
    assert_error(response, 404, "unknown_item", "item_id", "'sock'", "catalog")
    assert backend.calls == {}  # checked before any model call


def test_explain_item_unknown_to_the_model(client: TestClient) -> None:
    response = client.get("/explain", params={"user_id": "alice", "item_id": MODEL_ONLY_MISSING})
    assert_error(response, 404, "unknown_item", "item_id", repr(MODEL_ONLY_MISSING), f"version {VERSION}")


def test_explain_missing_item_id(client: TestClient) -> None:
    assert_error(client.get("/explain?user_id=alice"), 422, "invalid_request", "item_id", "item_id is required")


def test_heatmap_png(heatmap_client: TestClient) -> None:
    response = heatmap_client.get("/explain/heatmap.png", params={"user_id": "alice", "item_id": "shoe"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert response.headers[MODEL_VERSION_HEADER] == str(VERSION)
    image = Image.open(io.BytesIO(response.content))
    assert image.format == "PNG" and image.size == (60, 40)


def test_heatmap_is_cacheable_and_revalidates_without_rendering(client: TestClient, backend: FakeBackend) -> None:
    params = {"user_id": "alice", "item_id": "shoe"}
    first = client.get("/explain/heatmap.png", params=params)
    assert first.status_code == 200
    etag = first.headers["etag"]
    assert etag.startswith(f'"v{VERSION}-') and first.headers["cache-control"] == "private, max-age=300"
    assert client.get("/explain/heatmap.png", params=params).headers["etag"] == etag  # stable
    calls = dict(backend.calls)
    for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        again = client.get("/explain/heatmap.png", params=params, headers={"If-None-Match": header})
        assert again.status_code == 304 and again.content == b"", header
        assert again.headers["etag"] == etag and again.headers[MODEL_VERSION_HEADER] == str(VERSION)
    assert backend.calls == calls  # no model call, no render
    stale = client.get("/explain/heatmap.png", params=params, headers={"If-None-Match": '"v6-r2-0000"'})
    assert stale.status_code == 200 and stale.content == first.content
    other = client.get("/explain/heatmap.png", params={"user_id": "bob", "item_id": "shoe"})
    assert other.headers["etag"] != etag
    backend.version = VERSION + 1  # a new model version: the old ETag no longer matches
    renewed = client.get("/explain/heatmap.png", params=params, headers={"If-None-Match": etag})
    assert renewed.status_code == 200 and renewed.headers["etag"] != etag


def test_heatmap_of_an_unreadable_photo_is_a_clear_404(heatmap_client: TestClient, catalog: Catalog) -> None:
    # The photo passed the path check but is not an image (or went away): the renderer's error
    # comes back as the item's 404, not a 500.
    catalog.image_path("coat").write_bytes(b"not a picture")
    response = heatmap_client.get("/explain/heatmap.png", params={"user_id": "alice", "item_id": "coat"})
    assert_error(response, 404, "unknown_item", "item_id", "cannot be read", "UnidentifiedImageError")


def test_heatmap_system_errors_stay_server_errors(app) -> None:
    # Out of file handles is the server's trouble, not the photo's: a 500, not "unknown item".
    import errno

    from service.deps import get_renderer

    class OutOfHandles:
        async def png(self, *args):
            raise OSError(errno.EMFILE, "Too many open files")

    app.dependency_overrides[get_renderer] = OutOfHandles
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/explain/heatmap.png", params={"user_id": "alice", "item_id": "shoe"})
    assert response.status_code == 500


def test_heatmap_unknown_user_and_item(client: TestClient) -> None:
    response = client.get("/explain/heatmap.png", params={"user_id": "stranger", "item_id": "shoe"})
    assert_error(response, 404, "unknown_user", "user_id", "'stranger'")
    assert response.headers["content-type"] == "application/json"
    response = client.get("/explain/heatmap.png", params={"user_id": "alice", "item_id": "sock"})
    assert_error(response, 404, "unknown_item", "item_id", "'sock'")


# ---- /items, /users ----------------------------------------------------------------------------


@pytest.mark.parametrize(("item", "media_type"), [("shoe", "image/png"), ("bag", "image/jpeg")])
def test_item_image(client: TestClient, catalog: Catalog, item: str, media_type: str) -> None:
    response = client.get(f"/items/{item}/image")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == media_type
    assert response.headers[MODEL_VERSION_HEADER] == str(VERSION)
    assert response.content == catalog.image_path(item).read_bytes()


def test_item_image_unknown_ids_never_reach_the_filesystem(client: TestClient, catalog: Catalog) -> None:
    assert_error(client.get("/items/sock/image"), 404, "unknown_item", "item_id", "'sock'")
    assert_error(client.get("/items/..%2Fsecret.png/image"), 404, "not_found", None)
    assert_error(client.get("/items/shoe.png/image"), 404, "unknown_item", "item_id", "'shoe.png'")


def test_item_image_catalog_path_is_confined_to_the_image_root(client: TestClient) -> None:
    assert_error(client.get("/items/escapee/image"), 404, "unknown_item", "item_id", "leaves the image root")
    assert_error(client.get("/items/ghost/image"), 404, "unknown_item", "item_id", "missing")


def test_users(client: TestClient) -> None:
    response = client.get("/users")
    assert response.status_code == 200
    assert response.json() == {"model_version": VERSION, "users": USERS}
    assert client.get("/users", params={"limit": 1}).json()["users"] == ["alice"]


@pytest.mark.parametrize("limit", ["0", "1001"])
def test_users_limit_out_of_range(client: TestClient, limit: str) -> None:
    response = client.get("/users", params={"limit": limit})
    assert_error(response, 422, "invalid_request", "limit", f"limit must be between 1 and 1000, got {limit}")


# ---- health, page, docs, errors ----------------------------------------------------------------


def test_healthz_and_readyz(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "model_version": VERSION, "cache": {"kind": "lru", "ok": True}}
    assert response.headers[MODEL_VERSION_HEADER] == str(VERSION)


def test_not_ready_without_a_model() -> None:
    with TestClient(create_app(Settings(model_dir=None, redis_url=None))) as client:
        response = client.get("/healthz")
        assert response.status_code == 200 and MODEL_VERSION_HEADER not in response.headers
        response = client.get("/readyz")
        assert_error(response, 503, "model_not_loaded", None, "--model")
        assert "Retry-After" in response.headers
        assert_error(client.get("/recommend?user_id=alice"), 503, "model_not_loaded", None, "MODEL_DIR")


@pytest.mark.parametrize("required", [False, True])
def test_redis_down_never_fails_a_request(backend: FakeBackend, catalog: Catalog, required: bool) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # a loopback port nobody listens on
    app = create_app(Settings(model_dir=None, redis_url=url, redis_required=required))
    app.dependency_overrides[get_backend] = lambda: backend
    app.dependency_overrides[get_catalog] = lambda: catalog
    with TestClient(app) as client:
        response = client.get("/recommend", params={"user_id": "alice", "k": 2})
        assert response.status_code == 200 and response.json()["personalized"] is True
        assert client.get("/healthz").json()["cache"]["errors"] >= 1
        response = client.get("/readyz")
        if required:
            assert_error(response, 503, "cache_unavailable", None, "REDIS_REQUIRED")
        else:
            assert response.status_code == 200
            assert response.json()["cache"] == {"kind": "redis", "ok": False}


def test_page(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    for needle in ("/users", "/recommend", "heatmap_url", "/docs", "informative"):
        assert needle in response.text
    for reason, label in explanation.REASON_LABELS.items():  # the page says why it shows the plain photo
        assert f'{reason}: "{label}"' in response.text
    assert "http://" not in response.text and "https://" not in response.text  # no CDN


def test_docs_and_openapi(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/recommend", "/explain", "/explain/heatmap.png", "/users", "/items/{item_id}/image"} <= set(paths)
    k = next(p for p in paths["/recommend"]["get"]["parameters"] if p["name"] == "k")
    assert (k["schema"]["minimum"], k["schema"]["maximum"]) == (1, 100)


def test_unknown_route_and_method(client: TestClient) -> None:
    assert_error(client.get("/nope"), 404, "not_found", None, "/nope")
    assert_error(client.delete("/recommend"), 405, "method_not_allowed", None, "DELETE")
    # the history form wants a JSON body
    assert_error(client.post("/recommend"), 422, "invalid_request", "body", "body is required")


# ---- catalog, settings, imports ----------------------------------------------------------------


def test_serving_meta_matches_the_contract() -> None:
    assert tuple(f.name for f in fields(ServingMeta)) == SERVING_META_KEYS


def test_catalog_load(catalog: Catalog) -> None:
    assert catalog.meta.version == VERSION and (catalog.meta.grid_rows, catalog.meta.grid_cols) == GRID
    assert len(catalog) == len(ITEMS) + 2 and "shoe" in catalog and "sock" not in catalog
    assert catalog.get("shoe").box == (0.0, -10.0, 60.0, 50.0)
    assert catalog.image_size("bag") == (60, 40)
    assert catalog.text("bag") == {"title": "The bag", "category": "accessories"}
    assert catalog.text("belt") == {"title": None, "category": None} == catalog.text("no-such-item")


def test_catalog_rejects_wrong_columns(tmp_path: Path) -> None:
    write_export(tmp_path / "1", tmp_path / "images")
    (tmp_path / "1" / ASSETS_EXTRA / CATALOG_FILE).write_text("item_id,path\nx,y.png\n")
    with pytest.raises(ValueError, match="expected"):
        Catalog.load(tmp_path / "1")


def test_find_version_dir(tmp_path: Path) -> None:
    for version in ("1", "2", "10", "notes"):
        (tmp_path / version).mkdir()
        (tmp_path / version / "saved_model.pb").write_bytes(b"")
    (tmp_path / "11").mkdir()  # no saved_model.pb yet: still being written
    assert find_version_dir(tmp_path) == tmp_path / "10"
    assert find_version_dir(tmp_path / "2") == tmp_path / "2"
    with pytest.raises(FileNotFoundError, match="holds no SavedModel"):
        find_version_dir(tmp_path / "11")
    with pytest.raises(ValueError, match="named by its version number"):
        find_version_dir(tmp_path / "notes")


def test_cli_options_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_DIR", "/env/model")
    monkeypatch.setenv("PORT", "9000")
    monkeypatch.setenv("CACHE_SIZE", "5")
    settings = parse_settings(["--model", "/cli/model", "--redis-url", "redis://127.0.0.1:1/0"])
    assert settings.model_dir == Path("/cli/model") and settings.port == 9000 and settings.cache_size == 5
    assert settings.redis_url == "redis://127.0.0.1:1/0"
    monkeypatch.delenv("MODEL_DIR")
    with pytest.raises(SystemExit):
        parse_settings([])


def test_a_model_dir_without_a_model_is_one_line_naming_the_variable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from service.__main__ import main

    assert main(["--model", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"python -m service: error: MODEL_DIR={tmp_path / 'missing'}: ")


def test_a_bad_setting_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EXPLAIN_MIN_VISUAL_SHARE", "lots")
    monkeypatch.setenv("EXPLAIN_MIN_CONCENTRATION", "")  # empty: unset, the default
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert str(raised.value) == (
        "invalid settings: EXPLAIN_MIN_VISUAL_SHARE='lots': Input should be a valid "
        "number, unable to parse string as a number"
    )
    with pytest.raises(SystemExit):
        parse_settings(["--model", "/cli/model"])
    assert capsys.readouterr().err.splitlines()[-1].endswith(str(raised.value))
    monkeypatch.setenv("EXPLAIN_MIN_VISUAL_SHARE", "1.5")
    with pytest.raises(SettingsError, match=r"^invalid settings: EXPLAIN_MIN_VISUAL_SHARE='1.5': .*less than or "):
        load_settings()
    monkeypatch.setenv("EXPLAIN_MIN_VISUAL_SHARE", "")
    settings = load_settings()
    assert settings.explain_min_visual_share == explanation.MIN_VISUAL_SHARE
    assert settings.explain_min_concentration == explanation.MIN_CONCENTRATION


def test_import_service_does_not_import_tensorflow() -> None:
    code = "import sys, service, service.app, service.__main__; print('tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def older_catalog(tmp_path: Path, columns: int) -> tuple[Path, list[list[str]]]:
    """test_api's export with catalog.csv cut to its first `columns` columns, as older exports wrote it."""
    version_dir = tmp_path / "export" / str(VERSION)
    write_export(version_dir, tmp_path / "images")
    path = version_dir / ASSETS_EXTRA / CATALOG_FILE
    with path.open(newline="") as f:
        rows = [row[:columns] for row in csv.reader(f)]
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    return path, rows


def test_catalog_of_an_export_from_before_titles_reads_them_as_none(tmp_path) -> None:
    older_catalog(tmp_path, 7)
    old = Catalog.load(tmp_path / "export" / str(VERSION), tmp_path / "images")
    assert old.is_new("bag") and old.text("bag") == {"title": None, "category": None}


def test_catalog_of_an_export_from_before_the_new_column_reads_every_item_as_not_new(tmp_path) -> None:
    path, rows = older_catalog(tmp_path, 6)
    version_dir = path.parents[1]
    assert tuple(rows[0]) == CATALOG_COLUMNS[:6]
    old = Catalog.load(version_dir, tmp_path / "images")
    assert len(old) == len(ITEMS) + 2 and not any(old.is_new(i) for i in ITEMS)
    assert Catalog.load(tmp_path / "export" / str(VERSION), tmp_path / "images").get("shoe").box == (0, -10, 60, 50)
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([[*rows[0], "extra"], *rows[1:]])
    with pytest.raises(ValueError, match="columns"):
        Catalog.load(version_dir, tmp_path / "images")
