""" "Because you bought" (model.because) by hand: cosines of attended vectors, the item itself never named,
short histories padded."""

from __future__ import annotations

import numpy as np
import pytest

from model.because import attended, name_from_history


def test_attended_vectors_are_the_maps_weighted_region_vectors_at_unit_length() -> None:
    alpha = np.array([[[0.75, 0.25]]], np.float32)  # one shopper, one item, two regions
    vectors = np.array([[[[4.0, 0.0], [0.0, 4.0]]]], np.float32)
    np.testing.assert_allclose(np.asarray(attended(alpha, vectors)), [[[3 / np.sqrt(10), 1 / np.sqrt(10)]]], rtol=1e-6)


def test_the_nearest_history_items_are_named_most_similar_first() -> None:
    e = np.eye(3, dtype=np.float32)
    items = np.array([[7, 4]])  # item 4 is in the history too: it never names itself
    item_vectors = np.array([[e[0], e[1]]])
    history = np.array([[4, 5, 6, -1]])
    history_vectors = np.array([[e[1], (e[0] + e[1]) / np.sqrt(2), e[0], e[2]]], np.float32)
    rows, cosines = (np.asarray(a) for a in name_from_history(items, item_vectors, history, history_vectors))
    assert rows.tolist() == [[[6, 5, 4], [5, 6, -1]]]  # padding (-1) never named, nor item 4 for itself
    np.testing.assert_allclose(cosines[0, 0], [1.0, 1 / np.sqrt(2), 0.0], atol=1e-6)
    assert cosines[0, 1, 0] == pytest.approx(1 / np.sqrt(2)) and cosines[0, 1, 1] == pytest.approx(0, abs=1e-6)
    assert np.isneginf(cosines[0, 1, 2])
    # a history of one item names one
    rows, _ = name_from_history(items, item_vectors, np.array([[6]]), history_vectors[:, 2:3])
    assert np.asarray(rows).tolist() == [[[6], [6]]]
