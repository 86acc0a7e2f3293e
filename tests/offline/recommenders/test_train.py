"""Training configuration, --set overrides and negative sampling (offline.recommenders.vecf); no model is built."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from offline.data.indexed import IndexedData
from offline.recommenders.vecf import NegativeSampler, TrainConfig, parse_overrides, where_channels


def test_train_config_defaults_are_valid_and_from_dict_sets_fields() -> None:
    config = TrainConfig.from_dict({"dim": 8, "negatives": "popularity", "use_attention": False})
    assert (config.dim, config.negatives, config.use_attention) == (8, "popularity", False)
    assert config.loss == TrainConfig().loss == "bpr"


def test_train_config_rejects_an_unknown_negatives_mode() -> None:
    with pytest.raises(ValueError, match="'hard'"):
        TrainConfig(negatives="hard")
    with pytest.raises(ValueError, match="negatives"):
        TrainConfig.from_dict({"negatives": "hard"})


def test_train_config_from_dict_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError, match=r"\['dimension'\]"):
        TrainConfig.from_dict({"dim": 8, "dimension": 8})


def test_parse_overrides_parses_numbers_booleans_and_bare_words() -> None:
    out = parse_overrides(["dim=16", "lr=0.01", "use_attention=false", "loss=bpr", "beta=0", "negatives=popularity"])
    assert out == {"dim": 16, "lr": 0.01, "use_attention": False, "loss": "bpr", "beta": 0, "negatives": "popularity"}
    assert type(out["dim"]) is int and type(out["lr"]) is float and out["use_attention"] is False
    assert parse_overrides(["loss=a=b"]) == {"loss": "a=b"}  # only the first '=' separates
    assert parse_overrides([]) == {}


def test_parse_overrides_rejects_a_pair_without_equals() -> None:
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_overrides(["dim"])


def test_parse_overrides_python_style_false_does_not_turn_into_a_truthy_string() -> None:
    config = TrainConfig.from_dict(parse_overrides(["use_attention=False"]))
    assert config.use_attention is False


def indexed(users: list[int], items: list[int], num_users: int, num_items: int) -> IndexedData:
    return IndexedData(
        user_ids=[f"u{k}" for k in range(num_users)],
        item_ids=[f"i{k}" for k in range(num_items)],
        train_users=np.array(users, dtype=np.int32),
        train_items=np.array(items, dtype=np.int32),
        train_reviews=np.array([""] * len(users), dtype=object),
        train_times=np.arange(len(users), dtype=np.int64),
        validation={},
        test={},
    )


# 3 users, 8 items; items 6 and 7 have no training interactions; item 0 is the most popular.
USERS = [0, 0, 0, 1, 1, 2, 2, 2, 2]
ITEMS = [0, 1, 2, 0, 3, 0, 4, 5, 1]


@pytest.mark.parametrize("mode", ["uniform", "popularity"])
def test_negative_sampler_never_returns_a_positive_or_an_item_without_interactions(mode: str) -> None:
    # 4 users, 24 items: user 3 interacted with items 0..19 (so they are candidates), users 0..2 with a few;
    # items 20..23 have no training interactions. Sparse users: collisions are resolved by the resampling.
    positives = {0: {0, 1, 2}, 1: {0, 3}, 2: {5, 7, 11, 19}}
    users = [u for u, items in positives.items() for _ in items] + [3] * 20
    items = [i for its in positives.values() for i in sorted(its)] + list(range(20))
    sampler = NegativeSampler(indexed(users, items, 4, 24), mode, seed=0)
    batch = np.repeat(np.arange(3), 2000)
    neg = sampler.sample(batch)
    assert neg.shape == batch.shape and neg.dtype == np.int32
    assert neg.min() >= 0 and neg.max() < 20  # never one of the items 20..23 without interactions
    for u, i in zip(batch.tolist(), neg.tolist()):
        assert i not in positives[u], (u, i)
    assert set(neg[batch == 1].tolist()) == set(range(20)) - positives[1]  # every allowed negative shows up


def test_negative_sampler_popularity_mode_weights_by_count_to_the_power_075() -> None:
    sampler = NegativeSampler(indexed(USERS, ITEMS, 3, 8), "popularity", seed=0)
    # candidates 0..5 with counts 3, 2, 1, 1, 1, 1 -> weights count^0.75
    np.testing.assert_array_equal(sampler.candidates, [0, 1, 2, 3, 4, 5])
    w = np.array([3, 2, 1, 1, 1, 1], dtype=float) ** 0.75
    np.testing.assert_allclose(sampler.p, w / w.sum())
    np.testing.assert_allclose(NegativeSampler(indexed(USERS, ITEMS, 3, 8), "uniform", 0).p, np.full(6, 1 / 6))


def test_negative_sampler_is_reproducible_for_a_seed() -> None:
    data = indexed(USERS, ITEMS, 3, 8)
    users = np.repeat(np.arange(3), 50)
    a, b = NegativeSampler(data, "uniform", 7).sample(users), NegativeSampler(data, "uniform", 7).sample(users)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, NegativeSampler(data, "uniform", 8).sample(users))


def test_negative_sampler_never_returns_a_positive_for_a_dense_user() -> None:
    # user 0 interacted with 3 of the 4 items that have interactions: a draw clashes with p = 3/4, and after
    # 11 draws about 0.75^11 = 4% of 1000 slots are still positives
    sampler = NegativeSampler(indexed([0, 0, 0, 1], [0, 1, 2, 3], 2, 4), "uniform", seed=0)
    neg = sampler.sample(np.zeros(1000, dtype=np.int32))
    assert set(neg.tolist()) == {3}


def test_train_config_rejects_a_stop_window_below_one() -> None:
    with pytest.raises(ValueError, match="stop_window must be >= 1, got 0"):
        TrainConfig(stop_window=0)


def random_features(data: IndexedData, rng: np.random.Generator):
    """Random 2x2-grid, 3-channel region features for `data`'s catalog."""
    from offline.features.regions import RegionFeatures

    return RegionFeatures(
        regions=rng.standard_normal((data.num_items, 4, 3)).astype(np.float16),
        boxes=np.zeros((data.num_items, 4), np.float32),
        item_ids=data.item_ids,
        meta={"feature_scale": 1.0, "grid_rows": 2, "grid_cols": 2},
    )


def test_early_stopping_keeps_the_epoch_with_the_best_trailing_mean_of_validation_recall() -> None:
    from offline.recommenders.vecf import VECFRecommender

    rng = np.random.default_rng(0)
    num_users, num_items = 30, 40
    users = rng.integers(0, num_users, 300)
    items = (users * 7 + rng.integers(0, 5, 300)) % num_items  # each user keeps to a few items
    data = replace(
        indexed(users.tolist(), items.tolist(), num_users, num_items),
        validation={u: {int((u * 7 + 2) % num_items)} for u in range(num_users)},
    )
    features = random_features(data, rng)
    config = TrainConfig(
        dim=4,
        attention_dim=4,
        epochs=6,
        patience=6,
        stop_window=2,
        beta=0.0,
        eval_k=5,
        batch_size=64,
        lr=0.05,
        l2=0.0,
        exclude_seen=False,
    )  # the validation items are bought ones too
    rec = VECFRecommender(config, features, progress=False).fit(data)
    recalls = [row["val_recall@5"] for row in rec.history]
    criteria = [row["val_criterion"] for row in rec.history]
    assert len(recalls) == 6 and len(set(recalls)) > 2, recalls  # recall moves, so the window matters
    assert criteria == pytest.approx([recalls[0]] + [(a + b) / 2 for a, b in zip(recalls, recalls[1:])])
    assert rec.best_epoch == int(np.argmax(criteria)) + 1
    assert rec.best_validation == pytest.approx(max(criteria))
    # the kept weights are that epoch's: validation recall recomputed now is the recall logged then
    from offline.evaluation.rank_eval import rank_metrics

    again = rank_metrics(rec, data.validation, {}, ks=(5,))["recall@5"]
    assert again == pytest.approx(recalls[rec.best_epoch - 1])


def test_where_channels_come_from_the_meta_or_else_from_the_backbone_registration() -> None:
    assert where_channels({"backbone": "efficientnet_lite0_dual", "where_channels": 7}) == 7
    assert where_channels({"backbone": "efficientnet_lite0_dual"}) == 40  # a folder from before the field
    assert where_channels({"backbone": "efficientnet_lite0"}) == 0
    assert where_channels({"backbone": "someone_elses_cnn"}) == 0


def test_train_config_rejects_an_ema_momentum_outside_zero_to_one() -> None:
    with pytest.raises(ValueError, match=r"ema must be in \[0, 1\), got 1.0"):
        TrainConfig(ema=1.0)


def test_ema_keeps_the_average_of_the_steps() -> None:
    # With a momentum near 1 the average of one epoch's steps is still almost the starting point; without
    # it the same steps move the weights away.
    from offline.recommenders.vecf import VECFRecommender

    rng = np.random.default_rng(0)
    users = rng.integers(0, 20, 200)
    items = (users * 3 + rng.integers(0, 4, 200)) % 30
    data = indexed(users.tolist(), items.tolist(), 20, 30)
    features = random_features(data, rng)
    base = TrainConfig(dim=4, attention_dim=4, epochs=1, beta=0.0, batch_size=32, lr=0.05, l2=0.0, exclude_seen=False)
    moved = {}
    for ema in (0.0, 0.999999):
        rec = VECFRecommender(replace(base, ema=ema), features, progress=False)
        rec._build(data.num_users, 0, data.item_counts())
        start = np.asarray(rec.model.user_embedding).copy()
        rec.fit(data)
        moved[ema] = float(np.abs(np.asarray(rec.model.user_embedding) - start).max())
    assert moved[0.0] > 1e-2 and moved[0.999999] < 1e-3 * moved[0.0], moved
