"""Shelf recall by hand: what each shelf could hold, and recall over ranked rows with padding."""

from __future__ import annotations

import numpy as np

from offline.data.indexed import IndexedData
from offline.evaluation.shelves import recall_at, reference_rows, shelf_relevant


def _data() -> IndexedData:
    # user 0 bought items 0 and 1 before the test, user 1 item 1; nobody bought 2, 3 or 4 before it
    return IndexedData(
        user_ids=["a", "b"],
        item_ids=["i0", "i1", "i2", "i3", "i4"],
        train_users=np.array([0, 0, 1]),
        train_items=np.array([0, 1, 1]),
        train_reviews=np.array(["", "", ""], dtype=object),
        train_times=np.array([1, 2, 3]),
        validation={},
        test={0: {0, 2, 3}, 1: {2}},
    )


def test_each_shelf_holds_its_part_of_the_test_purchases() -> None:
    data = _data()
    assert shelf_relevant(data, "all") == {0: {0, 2, 3}, 1: {2}}
    assert shelf_relevant(data, "buy_again") == {0: {0}}  # user 1 re-bought nothing: not counted
    assert shelf_relevant(data, "for_you") == {0: {2, 3}, 1: {2}}
    assert shelf_relevant(data, "new_for_you") == {0: {2, 3}, 1: {2}}


def test_recall_over_rows_ignores_padding() -> None:
    rows = np.array([[3, -1, -1], [2, 0, 1]])
    np.testing.assert_allclose(recall_at(rows, [{3, 4}, {1}], 2), [0.5, 0.0])
    np.testing.assert_allclose(recall_at(rows, [{3, 4}, {1}], 3), [0.5, 1.0])


def test_reference_rankings() -> None:
    data = _data()
    users = np.array([0, 1])
    assert reference_rows(data, users, "for_you", None, 3).tolist() == [[2, 3, 4], [0, 2, 3]]  # by purchases
    assert reference_rows(data, users, "all", None, 2).tolist() == [[1, 0], [1, 0]]
    assert reference_rows(data, users, "new_for_you", None, 3).tolist() == [[2, 3, 4], [2, 3, 4]]
    history = np.array([[1, 0], [1, -1]])
    assert reference_rows(data, users, "buy_again", history, 3).tolist() == [[1, 0, -1], [1, -1, -1]]
