"""Two-stage ranking: user-independent retrieval vectors (`VECF.retrieval_vectors`), the exported
`recommend_candidates` signature, and the gateway's CANDIDATES setting."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anyio
import keras
import numpy as np
import pytest
from fastapi.testclient import TestClient

from model.vecf import VECF
from service.app import create_app
from service.backend import InProcessBackend, intra_op_threads
from service.settings import Settings, ranking_candidates
from tests.offline.small_models import random_vecf

ROOT = Path(__file__).resolve().parents[3]
GRID = (7, 7)
NUM_ITEMS = 100  # build_tiny_export's catalog


def exact_and_retrieval(model: VECF, users: np.ndarray, sample: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    region_proj, value_proj = model.catalog_tables()
    exact, _ = model.score_tables(
        users, model.item_embedding, model.item_bias, region_proj, value_proj, pairwise=False
    )  # [B, N]
    vectors = model.retrieval_vectors(model.item_embedding, model.item_bias, region_proj, value_proj, sample)
    approx = np.concatenate([users, np.ones((len(users), 1), np.float32)], axis=1) @ np.asarray(vectors).T
    return np.asarray(exact), approx


def test_retrieval_vectors_are_exact_for_the_user_whose_attention_weighs_them() -> None:
    model = random_vecf()
    users = np.asarray(model.user_embedding)
    for u in range(len(users)):
        exact, approx = exact_and_retrieval(model, users[u : u + 1], users[u : u + 1])
        np.testing.assert_allclose(approx, exact, rtol=1e-5, atol=1e-5)
    # ...but not for everyone: attention depends on the user, so the average is an approximation
    exact, approx = exact_and_retrieval(model, users, users)
    assert not np.allclose(approx, exact, atol=1e-3)


def test_retrieval_vectors_are_exact_without_attention() -> None:
    model = random_vecf(use_attention=False)
    users = np.asarray(model.user_embedding)
    for sample in (None, users[:2]):  # uniform weights either way
        exact, approx = exact_and_retrieval(model, users, sample)
        np.testing.assert_allclose(approx, exact, rtol=1e-5, atol=1e-5)


def test_uniform_retrieval_vectors_by_hand() -> None:
    """r_i = [q_i, b_i] + mean_l W_v f_i^l, on hand-set tables."""
    model = random_vecf()
    items = np.array([[1.0, 2.0, 3.0]], np.float32)
    biases = np.array([0.5], np.float32)
    region_proj = np.zeros((1, 4, 2), np.float32)
    value_proj = np.arange(16, dtype=np.float32).reshape(1, 4, 4)  # regions 0..3, rows [4l, 4l+1, 4l+2, 4l+3]
    got = np.asarray(model.retrieval_vectors(items, biases, region_proj, value_proj))
    np.testing.assert_allclose(got, [[1 + 6, 2 + 7, 3 + 8, 0.5 + 9]])


@pytest.fixture(scope="module")
def export_base(tiny_work: Path) -> Path:
    return tiny_work / "export"


async def _rankings(backend: InProcessBackend, k: int, candidates: list[int]) -> dict:
    users = await backend.users(8)
    embeddings, _ = await backend.user_embeddings(users)
    out = {"exact": await backend.recommend(embeddings, k), "embeddings": embeddings}
    for c in candidates:
        out[c] = await backend.recommend_candidates(embeddings, k, c)
    return out


def test_enough_candidates_give_the_exact_ranking(export_base: Path) -> None:
    backend = InProcessBackend(export_base / "1", GRID)
    got = anyio.run(_rankings, backend, 10, [NUM_ITEMS, NUM_ITEMS + 50, 10**6])
    for c in (NUM_ITEMS, NUM_ITEMS + 50, 10**6):
        for (ids, scores, grids, _), (want_ids, want_scores, want_grids, _) in zip(got[c], got["exact"], strict=True):
            assert ids == want_ids, c
            np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(grids, want_grids, rtol=1e-5, atol=1e-7)


def test_few_candidates_are_ranked_by_their_exact_scores(export_base: Path) -> None:
    backend = InProcessBackend(export_base / "1", GRID)
    got = anyio.run(_rankings, backend, 5, [20, 3])

    async def exact_scores(ids: list[list[str]]) -> np.ndarray:
        return await backend.score(got["embeddings"], ids)

    for c in (20, 3):  # 3 < k: counts as k
        ids = [items for items, *_ in got[c]]
        assert all(len(items) == 5 and len(set(items)) == 5 for items in ids), c
        scores = np.stack([s for _, s, *_ in got[c]])
        np.testing.assert_allclose(scores, anyio.run(exact_scores, ids), rtol=1e-5, atol=1e-6)
        assert (np.diff(scores, axis=1) <= 0).all(), "not best first"
        grids = np.stack([g for _, _, g, _ in got[c]])
        assert grids.shape == (8, 5, *GRID)
        np.testing.assert_allclose(grids.sum(axis=(2, 3)), 1.0, atol=1e-5)


def test_gateway_candidates_setting(export_base: Path) -> None:
    def answer(candidates: int) -> list[tuple[str, float]]:
        settings = Settings(model_dir=export_base, redis_url=None, candidates=candidates, model_poll_s=0)
        with TestClient(create_app(settings)) as client:
            user = client.get("/users", params={"limit": 1}).json()["users"][0]
            r = client.get("/recommend", params={"user_id": user, "k": 8})
            assert r.status_code == 200, r.text
            assert r.json()["personalized"] is True
            return [(item["item_id"], item["score"]) for item in r.json()["items"]]

    exact = answer(0)
    two_stage = answer(NUM_ITEMS)
    assert [i for i, _ in two_stage] == [i for i, _ in exact]
    np.testing.assert_allclose([s for _, s in two_stage], [s for _, s in exact], rtol=1e-5)
    assert len(answer(10)) == 8


def test_intra_op_threads_default_to_one_for_two_stage_and_to_tensorflow_for_exact() -> None:
    def threads(settings: Settings, exported: int) -> int | None:  # as create_backend asks
        return intra_op_threads(settings, ranking_candidates(settings, exported))

    assert threads(Settings(), 200) == 1  # the model's own figure
    assert threads(Settings(), 0) is None
    assert threads(Settings(candidates=0), 200) is None  # CANDIDATES=0: exact, whatever the model says
    assert threads(Settings(candidates=50), 0) == 1
    assert intra_op_threads(Settings(candidates=200, tf_intra_op_threads=2), 200) == 2
    with pytest.raises(ValueError, match="tf_intra_op_threads"):
        Settings(tf_intra_op_threads=0)


def test_intra_op_threads_are_set_before_the_first_model_loads(export_base: Path) -> None:
    # A fresh process: in this one TensorFlow's runtime is already up and its pools are fixed.
    script = (
        "import anyio, tensorflow as tf\n"
        "from service.backend import InProcessBackend\n"
        f"backend = InProcessBackend({str(export_base / '1')!r}, (7, 7), threads=1)\n"
        "users = anyio.run(backend.users, 2)\n"
        "assert len(users) == 2, users\n"
        "print(tf.config.threading.get_intra_op_parallelism_threads(),"
        " tf.config.threading.get_inter_op_parallelism_threads())\n"
    )  # inter-op: TensorFlow's (0)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["1", "0"]


def test_candidates_setting_rejects_negative_values() -> None:
    with pytest.raises(ValueError, match="candidates"):
        Settings(candidates=-1)


def test_each_user_in_a_cluster_of_their_own_retrieves_exactly() -> None:
    """With as many retrieval clusters as users, each user's table is weighted by their own attention,
    so even `candidates` = k gives the exact top k."""
    import tensorflow as tf

    from offline.serving.export import build_module

    model = random_vecf()
    users = [f"u{n}" for n in range(model.num_users)]
    items = [f"i{n}" for n in range(model.num_items)]
    module = build_module(
        model, users, items, np.ones(len(items)), np.ones(len(users)), (2, 2), retrieval_clusters=len(users)
    )
    assert [t.shape for t in module.retrieval] == [(len(items), model.dim + 1)] * len(users)
    embeddings = tf.constant(np.asarray(model.user_embedding))
    exact = module.recommend(embeddings, tf.constant(3))
    two_stage = module.recommend_candidates(embeddings, tf.constant(3), tf.constant(3))
    np.testing.assert_array_equal(two_stage["item_ids"].numpy(), exact["item_ids"].numpy())
    np.testing.assert_allclose(two_stage["scores"].numpy(), exact["scores"].numpy(), rtol=1e-5, atol=1e-6)
    uniform = build_module(model, users, items, np.ones(len(items)), np.ones(len(users)), (2, 2), retrieval_clusters=0)
    assert [t.shape for t in uniform.retrieval] == [(len(items), model.dim + 1)]
    missed = uniform.recommend_candidates(embeddings, tf.constant(3), tf.constant(3))["item_ids"].numpy()
    assert (missed != exact["item_ids"].numpy()).any(), "uniform weights should not be exact on this model"


def test_kmeans_finds_separated_clusters() -> None:
    from offline.serving.retrieval import kmeans

    rng = np.random.default_rng(0)
    points = np.concatenate([rng.normal(0, 0.1, (20, 2)), rng.normal(5, 0.1, (30, 2))]).astype(np.float32)
    centroids, assignment = kmeans(points, 2, seed=0)
    assert sorted(np.bincount(assignment).tolist()) == [20, 30]
    np.testing.assert_allclose(sorted(centroids[:, 0]), [0, 5], atol=0.1)
    few, assignment = kmeans(np.zeros((5, 2), np.float32), 3, seed=0)  # one distinct point: one cluster
    assert len(few) == 1 and (assignment == 0).all()


def test_fitted_tables_predict_their_users_scores_better_than_averaged_attention() -> None:
    from model.ranking import nearest_centroid
    from offline.serving.retrieval import fit_tables

    model = VECF(num_users=60, num_items=40, num_regions=4, channels=5, dim=3, attention_dim=2, seed=2)
    rng = np.random.default_rng(2)
    for weight in model.weights:
        weight.assign(rng.normal(size=weight.shape).astype(keras.backend.standardize_dtype(weight.dtype)))
    region_proj, value_proj = (np.asarray(t) for t in model.catalog_tables())
    users = np.asarray(model.user_embedding)
    exact = np.asarray(
        model.score_tables(users, model.item_embedding, model.item_bias, region_proj, value_proj, pairwise=False)[0]
    )  # [U, N]
    queries = np.asarray(model.attention.project_users(users))
    centroids = np.stack([queries[:30].mean(0), queries[30:].mean(0), np.full(2, 1e6, np.float32)])  # 3rd: nobody
    start = np.stack(
        [np.asarray(model.retrieval_vectors(model.item_embedding, model.item_bias, region_proj, value_proj, users))] * 3
    )
    split = np.asarray(model.attention.split_regions(region_proj))
    fitted = fit_tables(model, split, value_proj, centroids, start, users, ridge=0.01)
    assignment = np.asarray(nearest_centroid(queries, centroids))
    x = np.concatenate([users, np.ones((len(users), 1), np.float32)], 1)

    def error(tables):
        return sum(((x[assignment == k] @ tables[k].T - exact[assignment == k]) ** 2).sum() for k in range(3))

    assert error(fitted) < 0.5 * error(start)  # the fit's own objective, far below the start's
    np.testing.assert_array_equal(fitted[2], start[2])  # a cluster without users keeps its table
    # attention off: the start (uniform weights) is already exact, and the fit leaves it there
    flat = VECF(
        num_users=60, num_items=40, num_regions=4, channels=5, dim=3, attention_dim=2, seed=2, use_attention=False
    )
    for weight, source in zip(flat.weights, model.weights, strict=True):
        weight.assign(np.asarray(source))
    uniform = np.asarray(flat.retrieval_vectors(flat.item_embedding, flat.item_bias, region_proj, value_proj))[None]
    np.testing.assert_allclose(
        fit_tables(flat, split, value_proj, centroids[:1], uniform, users), uniform, rtol=1e-4, atol=1e-4
    )


def test_bench_two_stage_recall_reads_the_user_state(export_base: Path) -> None:
    """bench.serve's recall check on a model whose user state carries repeat boosts: every item a
    candidate gives recall 1, in the signature and in the uniform-weights simulation alike."""
    from bench.serve_models import two_stage_recall

    out = two_stage_recall(export_base / "1", users=5, candidates=[NUM_ITEMS], k=10, timing_repeats=1)
    assert out["users"] == 5 and out["items"] == NUM_ITEMS
    assert out["rows"] == [{"candidates": NUM_ITEMS, "recall@10": 1.0, "recall@10_uniform_weights": 1.0}]


def test_a_catalog_long_enough_for_the_pruned_top_k_ranks_as_with_tf_top_k(monkeypatch: pytest.MonkeyPatch) -> None:
    # stage 1 of a catalog of >= topk.MIN_ROW items goes through offline.serving.topk's pruned top-k: the same
    # candidates, so the same rankings, as a module built with tf.math.top_k
    import tensorflow as tf

    from bench.serve_models import Shape, random_model
    from offline.serving import export, topk
    from offline.serving import module as serving_module

    shape = Shape(items=topk.MIN_ROW + 500, users=4, channels=2, dim=4, attention_dim=2, grid=(2, 2))
    model = random_model(shape)
    args = (
        model,
        [f"u{n}" for n in range(shape.users)],
        [f"i{n}" for n in range(shape.items)],
        np.ones(shape.items),
        np.ones(shape.users),
        shape.grid,
    )
    pruned = export.build_module(*args, retrieval_clusters=2)
    monkeypatch.setattr(serving_module, "top_k_for", lambda row: lambda values, k: tf.math.top_k(values, k=k).indices)
    plain = export.build_module(*args, retrieval_clusters=2)
    states = pruned.user_embedding(tf.constant(["u0", "u1", "u2"]))["embedding"]
    exact = pruned.recommend(states, tf.constant(30))["item_ids"].numpy()
    for rows in (states[:1], states):  # the one-user paths and the batched ones
        got = pruned.recommend_candidates(rows, tf.constant(30), tf.constant(3000))
        want = plain.recommend_candidates(rows, tf.constant(30), tf.constant(3000))
        np.testing.assert_array_equal(got["item_ids"].numpy(), want["item_ids"].numpy())
        np.testing.assert_allclose(got["scores"].numpy(), want["scores"].numpy(), rtol=1e-6, atol=1e-6)
        overlap = [len(set(got["item_ids"].numpy()[u]) & set(exact[u])) for u in range(len(rows))]
        assert min(overlap) >= 15, overlap  # a tenth of the catalog keeps most of the exact top 30
        every = pruned.recommend_candidates(rows, tf.constant(30), tf.constant(shape.items))["item_ids"].numpy()
        np.testing.assert_array_equal(every, exact[: len(rows)])  # every item a candidate: the exact ranking
