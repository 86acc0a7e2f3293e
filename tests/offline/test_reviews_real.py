"""Reviews proper, on real records: the Amazon Fashion 2018 5-core reviews go through prepare ->
vocabulary -> VECF's review decoder, which must learn them (its per-token cross-entropy falls well
below the uniform guess). The photos of that sample cannot be fetched here, so the region features
are a fixed random table: this tests the text path, not the visual one."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from offline.data.dataset import load_catalog, load_interactions
from offline.data.indexed import index_split
from offline.data.prepare import write_prepared
from offline.data.prepare.amazon import prepare_amazon2018
from offline.data.split import split_per_user
from offline.features.regions import RegionFeatures
from offline.features.text import tokenize
from offline.recommenders.vecf import TrainConfig, VECFRecommender
from tests.shared_data import shared_data


def decoder_cross_entropy(rec: VECFRecommender, users: np.ndarray, items: np.ndarray, tokens: np.ndarray) -> float:
    """Mean per-token cross-entropy of the decoder on (user, item, review) triples."""
    out = rec.model({"user": users, "pos": items, "neg": items, "tokens": tokens})
    logits = np.asarray(out["review_logits"], dtype=np.float64)  # [B, T, V]
    targets = tokens[:, 1:]
    logp = (
        logits
        - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True))
        - logits.max(-1, keepdims=True)
    )
    picked = np.take_along_axis(logp, targets[..., None], -1)[..., 0]
    mask = targets != 0
    return float(-(picked * mask).sum() / mask.sum())


def test_review_decoder_learns_real_amazon_reviews(tmp_path: Path) -> None:
    source = shared_data("amazon_fashion_2018_5core")
    write_prepared(prepare_amazon2018(source, tmp_path / "data", progress=False), tmp_path / "data")
    interactions = load_interactions(tmp_path / "data")
    catalog = load_catalog(tmp_path / "data")
    reviews = [r for r in interactions.reviews.tolist() if r]
    assert len(reviews) >= 400 and sum(len(tokenize(r)) for r in reviews) > 5_000  # real text, de-duplicated

    rng = np.random.default_rng(0)
    n = len(catalog.item_ids)
    features = RegionFeatures(
        regions=rng.standard_normal((n, 4, 8)).astype(np.float16),
        boxes=np.zeros((n, 4), np.float32),
        item_ids=list(catalog.item_ids),
        meta={"grid_rows": 2, "grid_cols": 2, "feature_scale": 1.0},
    )
    data = index_split(split_per_user(interactions), features.item_ids)
    config = TrainConfig(
        dim=8,
        attention_dim=4,
        beta=1.0,
        epochs=12,
        patience=99,
        batch_size=64,
        lr=0.01,
        vocab_size=800,
        max_review_len=16,
        decoder_hidden=32,
    )
    rec = VECFRecommender(config, features, progress=False).fit(data)
    assert rec.vocab is not None and {"great", "fit", "size"} <= set(rec.vocab.words)

    has_text = np.flatnonzero([bool(r) for r in data.train_reviews])
    tokens = rec.vocab.encode(data.train_reviews[has_text], config.max_review_len)
    users, items = data.train_users[has_text], data.train_items[has_text]
    trained = decoder_cross_entropy(rec, users, items, tokens)
    untrained = VECFRecommender(config, features, progress=False)
    untrained.vocab = rec.vocab
    untrained._build(data.num_users, len(rec.vocab), data.item_counts())
    before = decoder_cross_entropy(untrained, users, items, tokens)
    uniform = math.log(len(rec.vocab))
    assert before > 0.9 * uniform  # an untrained decoder is about as good as a uniform guess
    assert trained < 0.75 * before, (trained, before, uniform)
