"""One smoke run of the whole path: tiny synthetic catalog -> split -> features -> train -> export ->
gateway (real SavedModel, in-process backend) -> /recommend, /explain, heatmap, page. Also checks
that the exported SavedModel's signatures are exactly the ones `model.contract` names."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from model import contract
from offline.data.synth import SynthConfig, generate
from offline.pipeline import run
from offline.recommenders.vecf import TrainConfig
from service.app import create_app
from service.settings import Settings


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("e2e")
    generate(SynthConfig(seed=5, users=60, items=150, mean_interactions=12), root / "data", workers=1)
    config = TrainConfig(dim=8, attention_dim=4, epochs=2, batch_size=128, max_review_len=8, vocab_size=200)
    run("synthetic", root / "data", root / "work", config, models=("vecf", "vecf_no_att"), progress=False)
    return root / "work"


@pytest.fixture(scope="module")
def client(workdir: Path):
    # render_workers=1: the production default (tests/conftest.py makes 0 the suite's default)
    with TestClient(create_app(Settings(model_dir=workdir / "export", redis_url=None, render_workers=1))) as c:
        yield c


def test_pipeline_writes_metrics_for_every_model_and_explanations(workdir: Path) -> None:
    metrics = json.loads((workdir / "metrics.json").read_text())
    for name in ("vecf", "vecf_no_att", "popularity"):
        for key in ("recall@10", "ndcg@10", "hr@10"):
            assert 0.0 <= metrics["models"][name][key] <= 1.0, (name, key)
    vecf = metrics["models"]["vecf"]
    assert vecf["pairs"] > 0
    assert 0 < vecf["pointing_game_uniform"] < 1
    # VECF(-att) attends uniformly, so its explanation scores are exactly the uniform baseline.
    no_att = metrics["models"]["vecf_no_att"]
    assert no_att["attention_mass_in_mask"] == pytest.approx(no_att["attention_mass_in_mask_uniform"], abs=1e-6)
    assert "| vecf |" in (workdir / "metrics.md").read_text()


def test_pipeline_measures_the_maps_without_labels(workdir: Path) -> None:
    report = json.loads((workdir / "metrics.json").read_text())["explanations"]
    assert set(report) == {"vecf", "vecf_no_att", "item_mean", "centre_prior", "garment_area_share"}
    no_att = report["vecf_no_att"]
    # uniform maps: entropy 1, top 5 of 49 cells hold 5/49, and two customers' maps are the same
    assert no_att["normalised_entropy"] == pytest.approx(1.0, abs=1e-5)
    assert no_att["top5_mass"] == pytest.approx(5 / 49, abs=1e-5)
    assert no_att["js_between_customers"] == pytest.approx(0.0, abs=1e-6)
    assert report["item_mean"]["js_between_customers"] == 0.0
    for row in ("vecf", "vecf_no_att", "item_mean", "centre_prior"):
        for key in (
            "deletion_top5_over_random",
            "image_deletion_top5_over_random",
            "garment_ratio",
            "deletion_area",
            "insertion_area",
        ):
            assert np.isfinite(report[row][key]), (row, key)
    assert 0 < report["garment_area_share"]["mean"] < 1
    assert "## Explanations: the 200 most active" in (workdir / "metrics.md").read_text()
    with Image.open(workdir / "explanations.png") as sheet:  # 6 x 6 tiles of 160 px and their labels
        assert sheet.size == (120 + 6 * 160, 20 + 6 * 160)
    paired = json.loads((workdir / "metrics.json").read_text())["paired"]["vecf - vecf_no_att"]["recall@10"]
    assert paired["low"] <= paired["difference"] <= paired["high"] and 0 < paired["p_value"] <= 1
    assert "| vecf - vecf_no_att | " in (workdir / "metrics.md").read_text()


def test_export_signatures_match_the_contract(workdir: Path) -> None:
    import tensorflow as tf

    version_dir = workdir / "export" / "1"
    loaded = tf.saved_model.load(str(version_dir))
    assert set(loaded.signatures) == {sig.name for sig in contract.SIGNATURES} | {contract.DEFAULT_SIGNATURE}
    for sig in contract.SIGNATURES:
        fn = loaded.signatures[sig.name]
        inputs = fn.structured_input_signature[1]
        assert {
            n: (s.dtype.name, tuple(s.shape.as_list()) if s.shape.rank is not None else None) for n, s in inputs.items()
        } == {n: (d, shape) for n, (d, shape) in sig.inputs.items()}, sig.name
        outputs = fn.structured_outputs
        assert set(outputs) == set(sig.outputs), sig.name
        for name, (dtype, shape) in sig.outputs.items():
            assert outputs[name].dtype.name == dtype, (sig.name, name)
            assert outputs[name].shape.rank == len(shape), (sig.name, name)
    assert contract.DEFAULT_SIGNATURE in loaded.signatures
    meta = json.loads((version_dir / contract.ASSETS_EXTRA / contract.SERVING_META_FILE).read_text())
    assert set(meta) == set(contract.SERVING_META_KEYS)
    header = (version_dir / contract.ASSETS_EXTRA / contract.CATALOG_FILE).read_text().splitlines()[0]
    assert tuple(header.split(",")) == contract.CATALOG_COLUMNS


def test_exported_scores_agree_with_the_trained_model(workdir: Path) -> None:
    """The SavedModel ranks with the same function as training; its scores must match the Keras model."""
    import tensorflow as tf

    from offline.recommenders.vecf import load_model

    model = load_model(workdir / "runs" / "vecf")
    users = (workdir / "runs" / "vecf" / "users.txt").read_text().split()[:3]
    items = (workdir / "runs" / "vecf" / "items.txt").read_text().split()
    loaded = tf.saved_model.load(str(workdir / "export" / "1"))
    emb = loaded.signatures["user_embedding"](user_id=tf.constant(users))["embedding"]
    got = loaded.signatures["score"](embedding=emb, item_ids=tf.constant([items[:20]] * 3))["scores"].numpy()
    region_proj, value_proj = model.catalog_tables()
    want, _ = model.score_tables(
        np.asarray(model.user_embedding)[:3],
        model.item_embedding,
        model.item_bias,
        region_proj,
        value_proj,
        pairwise=False,
    )
    np.testing.assert_allclose(got, np.asarray(want)[:, :20], rtol=1e-4, atol=1e-4)


def test_recommend_returns_ranked_items_with_attention_grids(client: TestClient) -> None:
    user = client.get("/users", params={"limit": 3}).json()["users"][0]
    r = client.get("/recommend", params={"user_id": user, "k": 7})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["personalized"] is True and body["model_version"] == 1
    assert r.headers["X-Model-Version"] == "1"
    assert [it["rank"] for it in body["items"]] == list(range(1, 8))
    scores = [it["score"] for it in body["items"]]
    assert scores == sorted(scores, reverse=True)
    for it in body["items"]:
        grid = np.array(it["attention"]["weights"])
        assert grid.shape == (7, 7) and grid.sum() == pytest.approx(1.0, abs=1e-4)
    image = client.get(body["items"][0]["image_url"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"


def test_unknown_user_gets_popularity_fallback(client: TestClient) -> None:
    body = client.get("/recommend", params={"user_id": "nobody", "k": 5}).json()
    assert body["personalized"] is False
    assert len(body["items"]) == 5 and all(it["attention"] is None for it in body["items"])


def test_explain_and_heatmap_for_a_recommended_item(client: TestClient) -> None:
    user = client.get("/users", params={"limit": 1}).json()["users"][0]
    item = client.get("/recommend", params={"user_id": user, "k": 1}).json()["items"][0]
    r = client.get("/explain", params={"user_id": user, "item_id": item["item_id"]})
    assert r.status_code == 200, r.text
    body = r.json()
    # /explain and /recommend answer from the same model: same grid for the same pair.
    np.testing.assert_allclose(body["attention"]["weights"], item["attention"]["weights"], atol=1e-5)
    assert len(body["top_regions"]) == 3
    png = client.get("/explain/heatmap.png", params={"user_id": user, "item_id": item["item_id"]})
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(png.content)).size == (192, 256)


def test_explain_unknown_ids_are_404_naming_them(client: TestClient) -> None:
    user = client.get("/users", params={"limit": 1}).json()["users"][0]
    r = client.get("/explain", params={"user_id": user, "item_id": "no-such-item"})
    assert r.status_code == 404 and "no-such-item" in r.text
    r = client.get("/explain", params={"user_id": "ghost", "item_id": "i0000001"})
    assert r.status_code == 404 and "ghost" in r.text


def test_page_is_served(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200 and "<html" in r.text.lower()


def test_evaluate_command_reproduces_the_pipeline_metrics(workdir: Path, tmp_path: Path) -> None:
    from offline.commands.evaluate import main as evaluate_main

    out = tmp_path / "eval"
    assert (
        evaluate_main(["--run", str(workdir / "runs" / "vecf"), "--split", str(workdir / "split"), "--out", str(out)])
        == 0
    )
    again = json.loads((out / "metrics.json").read_text())["models"]["vecf"]
    first = json.loads((workdir / "metrics.json").read_text())["models"]["vecf"]
    for key in ("recall@10", "ndcg@10", "hr@10", "pointing_game", "attention_mass_in_mask_core"):
        assert again[key] == pytest.approx(first[key], abs=1e-6), key
