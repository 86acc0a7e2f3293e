"""The real-data path on a tiny shop in the documented format, bad rows and photos included: checked
preparation -> time windows -> choose on validation -> test figures -> final fit -> export ->
`offline recommend` CSV. H&M's raw files are prepared into the same format."""

from __future__ import annotations

import csv
import json
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from offline.commands.pipeline import main as pipeline_main
from offline.commands.recommend import main as recommend_main
from offline.data.dataset import Interactions, load_catalog, load_interactions
from offline.data.split import WEEK, split_time_windows
from offline.features.regions import load_features
from offline.pipeline import REAL_BASE, prepared_source, run
from offline.protocol import COLD_BIAS_QUANTILES
from offline.recommenders.newitems import NEW_ITEM_EVERY
from offline.recommenders.repeats import REPEAT_WEIGHTS
from offline.recommenders.vecf import TrainConfig, VECFRecommender
from offline.serving.batch import resolve_version
from service.catalog import Catalog
from tests.offline.shop_files import write_tiny_shop

COLOURS = [(200, 30, 30), (30, 160, 40), (40, 60, 200), (230, 200, 40), (20, 20, 20), (240, 240, 240)]


def write_tiny_hm(root: Path, seed: int = 3) -> tuple[list[str], list[str]]:
    """H&M's raw layout: 60 articles (ids with a leading zero), 24 customers who buy mostly one colour."""
    rng = np.random.default_rng(seed)
    articles = [f"0{100000000 + 1000 * k + 1:09d}" for k in range(60)]
    colour = {a: k % len(COLOURS) for k, a in enumerate(articles)}
    (root / "images").mkdir(parents=True)
    with open(root / "catalog.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["article_id", "image"])
        for a in articles:
            folder = root / "images" / a[:3]
            folder.mkdir(exist_ok=True)
            im = Image.new("RGB", (40, 60), (235, 235, 235))
            im.paste(COLOURS[colour[a]], (8, 10, 32, 52))
            im.save(folder / f"{a}.jpg")
            w.writerow([a, f"images/{a[:3]}/{a}.jpg"])
    customers = [f"c{k:03d}" for k in range(24)]
    start = date(2019, 1, 7)
    with open(root / "transactions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t_dat", "customer_id", "article_id", "price", "sales_channel_id"])
        for k, c in enumerate(customers):
            liked = [a for a in articles[:50] if colour[a] == k % len(COLOURS)]
            for _ in range(14):
                a = rng.choice(liked) if rng.random() < 0.8 else rng.choice(articles[:50])
                day = start + timedelta(days=int(rng.integers(0, 30 * 7)))
                w.writerow([day.isoformat(), c, a, "0.03", "2"])
    with open(root / "articles.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["article_id", "product_type_name", "colour_group_name", "detail_desc"])
        for a in articles[:40]:
            w.writerow(
                [
                    a,
                    "Top",
                    ["Red", "Green", "Blue", "Yellow", "Black", "White"][colour[a]],
                    f"A soft top in {['red', 'green', 'blue', 'yellow', 'black', 'white'][colour[a]]}.",
                ]
            )
    return articles, customers


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("shop")
    tiny = write_tiny_shop(root / "source")
    articles, customers = tiny.items, tiny.customers
    base = TrainConfig.from_dict(
        {
            **REAL_BASE,
            "dim": 8,
            "attention_dim": 4,
            "epochs": 3,
            "patience": 2,
            "batch_size": 64,
            "vocab_size": 100,
            "max_review_len": 8,
        }
    )
    metrics = run(
        "shop",
        root / "source",
        root / "work",
        base,
        backbone="random_cnn",
        models=("vecf", "vecf_no_text"),
        progress=False,
        grid=[{}, {"half_life_days": 30.0}],
        weeks=6,
    )
    return {
        "root": root,
        "work": root / "work",
        "metrics": metrics,
        "articles": articles,
        "customers": customers,
        "tiny": tiny,
    }


def test_time_windows_are_back_to_back_and_never_overlap() -> None:
    day = 86_400
    times = np.arange(0, 70 * day, day, dtype=np.int64)
    data = Interactions(
        np.array(["u"] * 70, dtype=object),
        np.array([f"i{t}" for t in range(70)], dtype=object),
        times,
        np.array([""] * 70, dtype=object),
    )
    w = split_time_windows(data, weeks=2)
    assert w.end == 70 * day and w.test_start == w.end - 2 * WEEK and w.val_start == w.test_start - 2 * WEEK
    assert w.selection.train.timestamps.max() < w.val_start <= w.selection.validation.timestamps.min()
    assert w.selection.validation.timestamps.max() < w.test_start
    assert w.evaluation.train.timestamps.max() < w.test_start <= w.evaluation.test.timestamps.min()
    assert len(w.final.train) == 70 and len(w.evaluation.test) == 14 and len(w.selection.validation) == 14
    with pytest.raises(ValueError, match="shorter than 20 \\+ 20 weeks"):
        split_time_windows(data, weeks=20)
    # the validation window has its own length, and the test can end before the last interaction
    w = split_time_windows(data, weeks=2, validation_weeks=3, end=63 * day)
    assert w.test_start == 49 * day and w.val_start == 28 * day and len(w.evaluation.test) == 14
    assert len(w.final.train) == 63 and len(w.selection.validation) == 21
    with pytest.raises(ValueError, match="validation_weeks must be >= 1"):
        split_time_windows(data, weeks=2, validation_weeks=0)


def test_pipeline_chooses_on_validation_and_reports_test_figures(shop: dict) -> None:
    m = json.loads((shop["work"] / "metrics.json").read_text())
    assert m["dataset"] == "shop" and m["backbone"] == "random_cnn"
    # Two candidates, each with every cold-bias quantile (no new-item slots) or new-item slot spacing
    # (the bias is moot then) and every repeat weight, all scored on validation only.
    assert {t["trial"] for t in m["selection"]} == {0, 1}
    assert {t["config"]["repeat_weight"] for t in m["selection"]} == set(REPEAT_WEIGHTS)
    assert {t["config"]["new_item_every"] for t in m["selection"]} == set(NEW_ITEM_EVERY)
    slotted = [e for e in NEW_ITEM_EVERY if e]
    assert len(m["selection"]) == 2 * (len(COLD_BIAS_QUANTILES) + len(slotted)) * len(REPEAT_WEIGHTS)
    chosen = max(m["selection"], key=lambda t: t["validation"]["recall@50"])
    assert m["chosen"]["epochs"] == chosen["best_epoch"]
    assert m["chosen"]["cold_bias_quantile"] == chosen["config"]["cold_bias_quantile"]
    assert m["chosen"]["repeat_weight"] == chosen["config"]["repeat_weight"]
    assert m["chosen"]["new_item_every"] == chosen["config"]["new_item_every"]
    # the same fit without the boost, and without the slots, is reported beside it
    assert ("vecf_no_repeat" in m["models"]) == (m["chosen"]["repeat_weight"] > 0)
    assert ("vecf_no_new_slots" in m["models"]) == (m["chosen"]["new_item_every"] > 0)
    for name in ("popularity", "vecf", "vecf_no_text"):
        row = m["models"][name]
        for key in ("recall@10", "ndcg@10", "hr@10", "recall@50", "recall_warm@50"):
            assert 0.0 <= row[key] <= 1.0, (name, key)
            assert row[f"{key}_low"] <= row[key] <= row[f"{key}_high"], (name, key)
    assert "| vecf |" in (shop["work"] / "metrics.md").read_text()
    # VECF paired with every other model on the same test customers, the means matching the rows'
    assert {"vecf - popularity", "vecf - vecf_no_text"} <= set(m["paired"])
    for name in ("popularity", "vecf_no_text"):
        d = m["paired"][f"vecf - {name}"]["recall@50"]
        assert d["difference"] == pytest.approx(m["models"]["vecf"]["recall@50"] - m["models"][name]["recall@50"])
        assert d["low"] <= d["difference"] <= d["high"] and 0 < d["p_value"] <= 1 and d["users"] == m["test_users"]
    assert "| vecf - popularity |" in (shop["work"] / "metrics.md").read_text()
    assert {"vecf", "item_mean", "centre_prior"} <= set(m["explanations"])  # vecf_no_att was not trained here
    assert 0 <= m["explanations"]["vecf"]["own_deletion_win_rate"] <= 1
    assert "## Explanations" in (shop["work"] / "metrics.md").read_text()
    assert m["split"]["final_train"] > m["split"]["evaluation_train"] > m["split"]["selection_train"]


def test_recommend_writes_the_whole_ranking_per_user_and_falls_back_for_strangers(shop: dict) -> None:
    users = shop["root"] / "users.txt"
    users.write_text("\n".join([shop["customers"][0], "nobody", shop["customers"][1], ""]) + "\n")
    out = shop["root"] / "recs.csv"
    assert (
        recommend_main(["--model", str(shop["work"] / "export"), "--users", str(users), "--k", "55", "--out", str(out)])
        == 0
    )
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["user_id", "rank", "item_id", "score"]
    by_user: dict[str, list[dict]] = {}
    for r in rows:
        by_user.setdefault(r["user_id"], []).append(r)
    assert list(by_user) == [shop["customers"][0], "nobody", shop["customers"][1]]
    known = by_user[shop["customers"][0]]
    assert [int(r["rank"]) for r in known] == list(range(1, 56))
    assert len({r["item_id"] for r in known}) == 55
    assert all(r["item_id"] in shop["articles"] for r in known)  # ids as written: leading zeros, "sku 59/a"
    scores = [float(r["score"]) for r in known]
    # The exported model ranks as the offline scoring of its run does (VECF plus any repeat boost, and
    # any new-item slots), and its scores are the model's own (the boost included).
    final = VECFRecommender.load(shop["work"] / "runs" / "final", load_features(shop["work"] / "features"))
    user_row = (shop["work"] / "runs" / "final" / "users.txt").read_text().splitlines().index(shop["customers"][0])
    ranked = np.argsort(-final.score(np.array([user_row]))[0], kind="stable")[:55]
    every = final.config.new_item_every
    final.set_new_item_every(0)
    own = final.score(np.array([user_row]))[0]
    item_row = {item: n for n, item in enumerate(final.features.item_ids)}
    np.testing.assert_allclose(scores, [own[item_row[r["item_id"]]] for r in known], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(scores, own[ranked], rtol=1e-4, atol=1e-4)
    # The export's catalog says which items are new (the gateway's `new_item`): those the final run never saw bought.
    catalog = Catalog.load(resolve_version(shop["work"] / "export"))
    assert [catalog.is_new(i) for i in final.features.item_ids] == final.new_items.new.tolist()
    assert 0 < final.new_items.num_new < len(final.features.item_ids)
    if every:
        assert all(final.new_items.new[item_row[r["item_id"]]] for r in known[every - 1 :: every])
    else:
        assert scores == sorted(scores, reverse=True)
    # Never-bought articles are in the exported catalog and can be recommended (ranked from photos).
    assert len(shop["articles"]) == 60 and len(catalog.items) == 60
    assert not set(shop["tiny"].broken_items) & set(catalog.items)  # their photos did not decode
    # The stranger gets the popularity list: training purchase counts, highest first; the bought
    # articles (0..49) come before the never-bought ones.
    stranger = by_user["nobody"]
    counts = [float(r["score"]) for r in stranger]
    assert len(stranger) == 55 and counts == sorted(counts, reverse=True) and counts[0] > 1
    assert all(r["item_id"] in shop["articles"][:50] for r in stranger if float(r["score"]) > 0)


def test_the_workdir_keeps_the_report_of_what_preparation_left_out(shop: dict) -> None:
    m = json.loads((shop["work"] / "metrics.json").read_text())
    report = json.loads(Path(m["data_report"]).read_text())
    assert Path(m["data_report"]).parent == shop["work"] / "data"
    assert report["sections"]["photos"]["skipped"] == {
        "photo is not an image Pillow can read": 1,
        "photo is truncated or corrupt": 1,
    }
    for reason, count in shop["tiny"].bad_interactions.items():
        assert report["sections"]["interactions.csv"]["skipped"][reason] == count


def test_hm_files_are_prepared_into_the_same_format(tmp_path: Path) -> None:
    articles, customers = write_tiny_hm(tmp_path / "raw")
    out = prepared_source("hm", tmp_path / "raw", tmp_path / "work", progress=False)
    assert out == tmp_path / "work" / "data"
    assert load_catalog(out).item_ids == articles
    assert set(load_interactions(out).user_ids.tolist()) == set(customers)


def test_a_shop_folder_without_its_files_fails_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "source").mkdir()
    assert pipeline_main(["--source", str(tmp_path / "source"), "--workdir", str(tmp_path / "work")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "catalog.csv: no such file" in error
