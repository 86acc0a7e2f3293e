"""Split interactions into train / validation / test by time.

`per_user`: each user's own history in time order, the last fraction to test, the fraction before
it to validation (model selection only). `global_time`: everything from `test_start` on is test,
[val_start, test_start) validation; test and validation keep only users seen in training.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from offline.data.dataset import Interactions, read_interactions, write_interactions_file

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Split:
    train: Interactions
    validation: Interactions
    test: Interactions

    def parts(self) -> dict[str, Interactions]:
        return {"train": self.train, "validation": self.validation, "test": self.test}


def split_per_user(
    data: Interactions, val_fraction: float = 0.1, test_fraction: float = 0.2, min_train: int = 2
) -> Split:
    """Per user, in time order (ties kept in file order): [train | validation | test]."""
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError("val_fraction and test_fraction must be in [0, 1) and sum below 1")
    order = np.lexsort((np.arange(len(data)), data.timestamps, data.user_ids.astype(str)))
    users = data.user_ids[order]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    ends = np.r_[starts[1:], len(order)]
    label = np.zeros(len(order), dtype=np.int8)  # 0 train, 1 validation, 2 test
    for s, e in zip(starts, ends):
        n = e - s
        n_test = int(round(n * test_fraction))
        n_val = int(round(n * val_fraction))
        if n - n_test - n_val < min_train:  # too short a history to hold anything out
            continue
        label[e - n_test : e] = 2
        label[e - n_test - n_val : e - n_test] = 1
    return Split(*(data.take(order[label == k]) for k in range(3)))


def split_global_time(data: Interactions, val_start: int, test_start: int) -> Split:
    if not val_start <= test_start:
        raise ValueError(f"val_start ({val_start}) must not be after test_start ({test_start})")
    train = data.take(np.flatnonzero(data.timestamps < val_start))
    known = set(train.user_ids.tolist())
    seen = np.array([u in known for u in data.user_ids], dtype=bool)
    val = data.take(np.flatnonzero((data.timestamps >= val_start) & (data.timestamps < test_start) & seen))
    test = data.take(np.flatnonzero((data.timestamps >= test_start) & seen))
    return Split(train, val, test)


DAY = 86_400
WEEK = 7 * DAY


@dataclass(frozen=True)
class TimeWindows:
    """Three nested time splits of one history for a forecast horizon of `weeks` (repeat purchases
    count: a user's test items may include items they bought before).

    selection: train before `val_start`, validation [val_start, test_start)  -> choose settings
    evaluation: train before `test_start`, test [test_start, end)            -> report
    final: everything before `end` in training                               -> the model to deploy
    The validation horizon matches the test's: a short one over-rewards recency."""

    selection: Split
    evaluation: Split
    final: Split
    val_start: int
    test_start: int
    end: int


def split_time_windows(
    data: Interactions, weeks: int = 16, end: int | None = None, validation_weeks: int | None = None
) -> TimeWindows:
    """`end` (exclusive, unix seconds) defaults to the day after the last interaction; the validation
    window is `validation_weeks` long (default: `weeks`, the test's horizon)."""
    validation_weeks = weeks if validation_weeks is None else validation_weeks
    if weeks < 1:
        raise ValueError(f"weeks must be >= 1, got {weeks}")
    if validation_weeks < 1:
        raise ValueError(f"validation_weeks must be >= 1, got {validation_weeks}")
    if len(data) == 0:
        raise ValueError("no interactions to split")
    end = int(end if end is not None else (int(data.timestamps.max()) // DAY + 1) * DAY)
    test_start = end - weeks * WEEK
    val_start = test_start - validation_weeks * WEEK
    if not (data.timestamps < val_start).any():
        raise ValueError(
            f"no interactions before the validation window (starts {val_start}): history shorter than "
            f"{weeks} + {validation_weeks} weeks; use shorter --weeks / --validation-weeks"
        )
    before_end = data.take(np.flatnonzero(data.timestamps < end))
    selection = split_global_time(data.take(np.flatnonzero(data.timestamps < test_start)), val_start, test_start)
    evaluation = split_global_time(before_end, test_start, test_start)
    final = Split(
        before_end, before_end.take(np.array([], dtype=np.int64)), before_end.take(np.array([], dtype=np.int64))
    )
    return TimeWindows(selection, evaluation, final, val_start, test_start, end)


def write_split(split: Split, out: Path) -> dict[str, int]:
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name, part in split.parts().items():
        write_interactions_file(out / f"{name}.csv", part)
        counts[name] = len(part)
    (out / "split.json").write_text(json.dumps(counts, indent=2))
    return counts


def read_split(folder: Path | str) -> Split:
    folder = Path(folder)
    return Split(*(read_interactions(folder / f"{name}.csv") for name in SPLITS))
