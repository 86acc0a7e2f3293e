"""The synthetic catalog: determinism, file contract, and the planted location-specific structure."""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from offline.commands.synth import main
from offline.data import garments
from offline.data.dataset import load_catalog, load_interactions
from offline.data.ground_truth import load_ground_truth
from offline.data.synth import ATTRIBUTES, SynthConfig, attribute_word, generate, image_path, sample_users

TINY = dict(users=60, items=400, width=48, height=64, mean_interactions=15.0)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "data"
    generate(SynthConfig(seed=3, **TINY), out)
    return out


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _preferences(folder: Path) -> dict[str, list[tuple[str, str]]]:
    with open(folder / "users.csv", newline="") as f:
        return {r["user_id"]: [tuple(x.split(":")) for x in r["preferences"].split(";")] for r in csv.DictReader(f)}


def _has(catalog, row: int, part: str, attribute: str) -> bool:
    return attribute in (catalog.attributes[f"{part}_color"][row], catalog.attributes[f"{part}_pattern"][row])


def test_same_seed_gives_identical_files_also_when_rerun_in_place_and_in_parallel(dataset, tmp_path):
    again = tmp_path / "again"
    generate(SynthConfig(seed=3, **TINY), again, workers=2)
    first = _files(again)
    generate(SynthConfig(seed=3, **TINY), again, workers=1)  # rerun over the same folder
    assert _files(again) == first
    assert first == _files(dataset)


def test_different_seed_gives_different_data(dataset, tmp_path):
    generate(SynthConfig(seed=4, **TINY), tmp_path, images=False)
    for name in ("catalog.csv", "interactions.csv", "users.csv"):
        assert (tmp_path / name).read_bytes() != (dataset / name).read_bytes(), name


def test_catalog_ids_images_and_sizes(dataset):
    catalog = load_catalog(dataset)
    assert len(catalog) == TINY["items"]
    assert all(re.fullmatch(r"i\d{7}", i) for i in catalog.item_ids)
    assert image_path(12345) == "images/012/item_0012345.jpg"
    for k in range(len(catalog)):
        with Image.open(catalog.image_path(k)) as image:
            assert image.size == (TINY["width"], TINY["height"]) and image.mode == "RGB"
    for part in garments.PARTS:
        assert set(catalog.attributes[f"{part}_color"]) <= set(garments.COLORS)
        assert set(catalog.attributes[f"{part}_pattern"]) <= set(garments.PATTERNS)
    assert {"kind", "tx", "ty", "scale"} <= set(catalog.attributes)
    assert len(set(catalog.attributes["tx"])) > 1 and len(set(catalog.attributes["scale"])) > 1


def test_interactions_unique_sorted_and_enough_per_user(dataset):
    data = load_interactions(dataset)
    cfg = SynthConfig(**json.loads((dataset / "synth_config.json").read_text()))
    pairs = list(zip(data.user_ids, data.item_ids))
    assert len(set(pairs)) == len(pairs)
    assert all(re.fullmatch(r"u\d{5}", u) for u in data.user_ids)
    counts = Counter(data.user_ids.tolist())
    assert len(counts) == TINY["users"] and min(counts.values()) >= cfg.min_interactions
    key = list(zip(data.user_ids, data.timestamps.tolist()))
    assert key == sorted(key)  # grouped by user, time ascending
    assert data.timestamps.min() >= cfg.start_timestamp
    assert data.timestamps.max() < cfg.start_timestamp + cfg.period_days * 86400


def test_interactions_follow_the_liked_part_not_the_attribute_anywhere(dataset):
    catalog, data, prefs = load_catalog(dataset), load_interactions(dataset), _preferences(dataset)
    row = {item: k for k, item in enumerate(catalog.item_ids)}
    liked = liked_n = other = other_n = 0
    for user, item in zip(data.user_ids, data.item_ids):
        for part, attribute in prefs[user]:
            liked += _has(catalog, row[item], part, attribute)
            liked_n += 1
            for elsewhere in (p for p in garments.PARTS if p != part):
                other += _has(catalog, row[item], elsewhere, attribute)
                other_n += 1
    liked_rate, other_rate = liked / liked_n, other / other_n
    # The same attribute on another part sits at its base rate (1/8 colours, 0.15 patterns).
    assert other_rate < 0.2
    assert liked_rate > 2.5 * other_rate


def test_users_have_one_to_three_mostly_small_part_tastes_with_skewed_popularity():
    users = sample_users(SynthConfig(users=5000), np.random.default_rng(0))
    assert set(users.count.tolist()) == {1, 2, 3}
    parts = users.pref_part[users.pref_part >= 0]
    assert (parts == garments.PARTS.index("body")).mean() < 0.12
    attrs = users.pref_attr[users.pref_attr >= 0]
    assert (attrs < len(garments.COLORS)).mean() > 0.6  # mostly colours
    assert not np.isin(attrs, [ATTRIBUTES.index("solid")]).any()
    tastes = Counter(zip(parts.tolist(), attrs.tolist()))
    counts = sorted(tastes.values(), reverse=True)
    assert counts[0] > 4 * counts[len(counts) // 2]
    for u in range(50):  # no user likes the same taste twice
        pairs = list(zip(users.pref_part[u], users.pref_attr[u]))[: users.count[u]]
        assert len(set(pairs)) == len(pairs)


def test_ground_truth_rows_match_catalog_attributes(dataset):
    catalog, data, prefs = load_catalog(dataset), load_interactions(dataset), _preferences(dataset)
    row = {item: k for k, item in enumerate(catalog.item_ids)}
    expected = {}
    for user, item in zip(data.user_ids, data.item_ids):
        present = {part for part, attribute in prefs[user] if _has(catalog, row[item], part, attribute)}
        if present:
            expected[(user, item)] = tuple(p for p in garments.PARTS if p in present)
    truth = load_ground_truth(dataset)
    assert truth == expected
    assert 0.5 < len(truth) / len(data) < 0.95  # most but not all interactions are explained


def test_reviews_name_liked_parts_often_and_only_when_present(dataset):
    data, prefs, truth = load_interactions(dataset), _preferences(dataset), load_ground_truth(dataset)
    named_in_truth = named_elsewhere = 0
    for user, item, review in zip(data.user_ids, data.item_ids, data.reviews):
        phrases = [f"{attribute_word(ATTRIBUTES.index(a))} {p}" for p, a in prefs[user]]
        named = any(phrase in review for phrase in phrases)
        if (user, item) in truth:
            named_in_truth += named
        else:
            named_elsewhere += named
    assert named_in_truth / len(truth) > 0.45
    assert named_elsewhere == 0
    assert len(set(data.reviews.tolist())) > 30  # several templates, not one fixed sentence


def test_cli_writes_folder_and_prints_summary(tmp_path, capsys):
    out = tmp_path / "cli"
    argv = [
        "--out",
        str(out),
        "--seed",
        "1",
        "--users",
        "8",
        "--items",
        "30",
        "--width",
        "40",
        "--height",
        "56",
        "--workers",
        "1",
        "--p-pref",
        "0.6",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "8 users" in printed and "30 items" in printed and str(out) in printed
    saved = json.loads((out / "synth_config.json").read_text())
    assert saved["p_pref"] == 0.6 and saved["width"] == 40
    spec = json.loads((out / "garments.json").read_text())
    assert spec["image_size"] == {"width": 40, "height": 56} and set(spec["kinds"]) == set(garments.KINDS)
    assert len(list((out / "images").rglob("*.jpg"))) == 30


def test_cli_rejects_impossible_probabilities(tmp_path, capsys):
    argv = ["--out", str(tmp_path), "--p-pref", "0.9", "--p-pop", "0.3"]
    assert main(argv) == 2
    assert "p_pref + p_pop" in capsys.readouterr().out
    assert not (tmp_path / "catalog.csv").exists()
