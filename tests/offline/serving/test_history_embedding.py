"""The export's history signature: a shopper the model never saw, folded in from their item ids, gets the
state a trained user with that history gets, but for p_u, which `model.foldin` solves for."""

from __future__ import annotations

import numpy as np
import pytest

from model.foldin import fold_in, item_vectors
from tests.offline.small_models import exported


def test_a_history_folds_into_a_trained_users_slots_and_the_solved_vector() -> None:
    import tensorflow as tf

    model, module, users, items, _ = exported(unit=0.5)
    own = module.user_embedding(tf.constant(["u0"]))["embedding"].numpy()
    # u0 bought i5 at t=1, 2 and 4 and i2 at t=3: the same items in time order, with padding and an unknown id
    out = module.history_embedding(tf.constant([["i5", "i5", "i2", "nope", "i5", ""], ["nope", "", "", "", "", ""]]))
    state, known = out["embedding"].numpy(), out["known"].numpy()
    assert known.tolist() == [True, False]
    d = model.dim
    np.testing.assert_allclose(state[0, d:], own[0, d:], rtol=1e-6)  # the repeat rows and boosts of u0
    _, value_proj = model.catalog_tables()
    vectors = item_vectors(model.item_embedding, model.item_bias, value_proj)
    negatives = np.ones(len(items), np.float32)  # exported() gives every item a purchase count of 1
    p = np.asarray(fold_in(vectors, np.array([[5, 5, 2, 5]]), negatives))[0]
    np.testing.assert_allclose(state[0, :d], p, rtol=1e-4, atol=1e-5)
    assert np.abs(p).max() > 0
    # no known item: the state of an unknown user (p = 0, no history)
    unknown = module.user_embedding(tf.constant(["nobody"]))["embedding"].numpy()
    np.testing.assert_allclose(state[1], unknown[0])


@pytest.mark.parametrize("padding", [0, 3])
def test_padding_does_not_change_the_state(padding: int) -> None:
    import tensorflow as tf

    _, module, *_ = exported(unit=0.5)
    base = module.history_embedding(tf.constant([["i1", "i4", "i1"]]))["embedding"].numpy()
    padded = module.history_embedding(tf.constant([["i1", "i4", "i1"] + [""] * padding]))["embedding"].numpy()
    np.testing.assert_allclose(padded, base, rtol=1e-5, atol=1e-6)
