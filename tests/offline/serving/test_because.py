"""The export's `because` signature names what offline evaluation names (`offline.evaluation.because`),
from the history the user state carries."""

from __future__ import annotations

import numpy as np

from offline.evaluation.because import agreement, named_items
from offline.features.regions import load_features
from offline.recommenders.vecf import VECFRecommender


def test_the_export_names_what_offline_evaluation_names(tiny_work) -> None:
    import tensorflow as tf

    run = tiny_work / "runs" / "vecf"
    rec = VECFRecommender.load(run, load_features(tiny_work / "features"))
    module = tf.saved_model.load(str(tiny_work / "export" / "1"))
    ids = run.joinpath("items.txt").read_text().splitlines()
    users = run.joinpath("users.txt").read_text().splitlines()
    rows = np.arange(len(users))
    recommended, named, history = named_items(rec, rows, 6)
    state = module.signatures["user_embedding"](user_id=tf.constant(users))["embedding"]
    asked = tf.constant([[ids[i] for i in r] for r in recommended])
    out = module.signatures["because"](embedding=state, item_ids=asked)
    served = np.vectorize(lambda b: ids.index(b.decode()) if b else -1)(out["item_ids"].numpy())
    np.testing.assert_array_equal(served, named)
    assert (named >= 0).any()
    similarity = out["similarity"].numpy()
    for u in rows:
        for k, item in enumerate(recommended[u]):
            shown = named[u, k][named[u, k] >= 0]
            assert set(shown) <= set(history[u][history[u] >= 0]) and item not in shown
            assert (np.diff(similarity[u, k][: len(shown)]) <= 1e-6).all()
    # every ranking answers it too, for its own items, as the signature does
    ranked = module.signatures["recommend"](embedding=state, k=tf.constant(6))
    alone = module.signatures["because"](embedding=state, item_ids=ranked["item_ids"])
    np.testing.assert_array_equal(ranked["because_ids"].numpy(), alone["item_ids"].numpy())
    np.testing.assert_allclose(ranked["because_similarity"].numpy(), alone["similarity"].numpy(), rtol=1e-5, atol=1e-6)
    # an unknown id names nothing
    nothing = module.signatures["because"](embedding=state[:1], item_ids=tf.constant([["no-such-item"]]))
    assert nothing["item_ids"].numpy().tolist() == [[[b"", b"", b""]]]


def test_agreement_counts_shared_attributes_against_chance() -> None:
    attributes = {"product_type": ["dress", "dress", "shirt", "shirt", ""], "colour": ["red", "blue", "red", "", ""]}
    recommended = np.array([[0, 2]])
    history = np.array([[1, 3, 2, 4]])
    named = np.array([[[1, 3, -1], [3, -1, -1]]])  # item 0 -> 1 (dress, a match); item 2 -> 3 (shirt, a match)
    out = agreement(recommended, named, history, attributes)
    # chance: item 0 matches 1 of its others {1 dress, 3 shirt, 2 red} -> 2/3; item 2 matches {1: no, 3: shirt} -> 1/2
    assert out["named"] == 1.0 and out["chance"] == np.mean([2 / 3, 1 / 2]) and out["pairs"] == 2
