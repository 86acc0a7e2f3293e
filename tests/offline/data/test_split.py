"""Train / validation / test splits by time (offline.data.split) on tiny hand-made histories."""

from __future__ import annotations

import numpy as np
import pytest

from offline.data.dataset import Interactions
from offline.data.split import read_split, split_global_time, split_per_user, write_split


def make(rows: list[tuple[str, str, int]]) -> Interactions:
    users, items, times = zip(*rows)
    return Interactions(
        np.array(users, dtype=object),
        np.array(items, dtype=object),
        np.array(times, dtype=np.int64),
        np.array([f"review of {i}" for i in items], dtype=object),
    )


# u1 has 8 interactions written out of time order, u2 has 3, u3 has 4; item names encode the time order.
ROWS = [
    ("u1", "a5", 50),
    ("u2", "b1", 10),
    ("u1", "a1", 10),
    ("u1", "a8", 80),
    ("u3", "c2", 20),
    ("u1", "a3", 30),
    ("u1", "a2", 20),
    ("u3", "c4", 40),
    ("u2", "b2", 20),
    ("u1", "a7", 70),
    ("u3", "c1", 10),
    ("u1", "a6", 60),
    ("u2", "b3", 30),
    ("u1", "a4", 40),
    ("u3", "c3", 30),
]


def by_user(part: Interactions) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for u, i in zip(part.user_ids.tolist(), part.item_ids.tolist()):
        out.setdefault(u, []).append(i)
    return out


def test_split_per_user_holds_out_the_latest_interactions() -> None:
    split = split_per_user(make(ROWS), val_fraction=0.25, test_fraction=0.25, min_train=2)
    train, val, test = by_user(split.train), by_user(split.validation), by_user(split.test)
    # u1: n=8 -> round(2) test, round(2) validation, 4 train, in time order
    assert train["u1"] == ["a1", "a2", "a3", "a4"]
    assert val["u1"] == ["a5", "a6"]
    assert test["u1"] == ["a7", "a8"]
    # u3: n=4 -> 1 test, 1 validation, 2 train (= min_train)
    assert (train["u3"], val["u3"], test["u3"]) == (["c1", "c2"], ["c3"], ["c4"])
    # u2: n=3 -> round(0.75)=1 test, 1 validation would leave 1 < min_train train: all train
    assert train["u2"] == ["b1", "b2", "b3"] and "u2" not in val and "u2" not in test
    assert len(split.train) + len(split.validation) + len(split.test) == len(ROWS)
    # reviews and timestamps travel with their rows
    assert all(r == f"review of {i}" for i, r in zip(split.test.item_ids, split.test.reviews))
    assert split.test.timestamps.tolist() == [70, 80, 40]


def test_split_per_user_every_test_item_is_later_than_every_train_item_of_its_user() -> None:
    rng = np.random.default_rng(0)
    rows = [(f"u{u}", f"i{k}", int(t)) for k, (u, t) in enumerate(zip(rng.integers(0, 5, 200), rng.permutation(200)))]
    split = split_per_user(make(rows), val_fraction=0.1, test_fraction=0.2)
    for user in {r[0] for r in rows}:
        train_t = split.train.timestamps[split.train.user_ids == user]
        val_t = split.validation.timestamps[split.validation.user_ids == user]
        test_t = split.test.timestamps[split.test.user_ids == user]
        n = len(train_t) + len(val_t) + len(test_t)
        assert len(test_t) == round(n * 0.2) and len(val_t) == round(n * 0.1)
        assert train_t.max() < val_t.min() <= val_t.max() < test_t.min()


def test_split_per_user_keeps_ties_in_file_order() -> None:
    data = make([("u", "first", 5), ("u", "second", 5), ("u", "third", 5), ("u", "fourth", 5)])
    split = split_per_user(data, val_fraction=0.0, test_fraction=0.25, min_train=1)
    assert split.train.item_ids.tolist() == ["first", "second", "third"]
    assert split.test.item_ids.tolist() == ["fourth"]


def test_split_per_user_with_zero_fractions_is_all_train() -> None:
    split = split_per_user(make(ROWS), val_fraction=0.0, test_fraction=0.0)
    assert len(split.train) == len(ROWS) and len(split.validation) == 0 and len(split.test) == 0


@pytest.mark.parametrize(("val", "test"), [(-0.1, 0.2), (0.1, 1.0), (0.5, 0.5), (1.0, 0.0)])
def test_split_per_user_rejects_invalid_fractions(val: float, test: float) -> None:
    with pytest.raises(ValueError, match="fraction"):
        split_per_user(make(ROWS), val_fraction=val, test_fraction=test)


def test_split_global_time_cuts_at_the_dates_and_drops_unseen_users() -> None:
    data = make(
        [
            ("u1", "a", 10),
            ("u1", "b", 25),
            ("u1", "c", 35),
            ("u2", "d", 15),
            ("u2", "e", 30),
            ("new", "f", 22),
            ("new", "g", 40),  # first seen after val_start: dropped from val and test
        ]
    )
    split = split_global_time(data, val_start=20, test_start=30)
    assert split.train.item_ids.tolist() == ["a", "d"]
    assert split.validation.item_ids.tolist() == ["b"]
    assert split.test.item_ids.tolist() == ["c", "e"]  # t = test_start belongs to test
    assert "new" not in set(split.validation.user_ids) | set(split.test.user_ids)


def test_split_global_time_rejects_val_after_test() -> None:
    with pytest.raises(ValueError, match="val_start"):
        split_global_time(make(ROWS), val_start=40, test_start=30)


def test_write_and_read_split_round_trip(tmp_path) -> None:
    split = split_per_user(make(ROWS), val_fraction=0.25, test_fraction=0.25)
    counts = write_split(split, tmp_path / "split")
    assert counts == {"train": 9, "validation": 3, "test": 3}
    again = read_split(tmp_path / "split")
    for name, part in split.parts().items():
        other = again.parts()[name]
        for field in ("user_ids", "item_ids", "timestamps", "reviews"):
            assert getattr(other, field).tolist() == getattr(part, field).tolist(), (name, field)
