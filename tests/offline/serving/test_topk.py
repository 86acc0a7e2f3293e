"""offline.serving.topk.top_k_indices: exactly tf.math.top_k's indices, on the pruned path and on its fallbacks."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from offline.serving import topk  # noqa: E402


def both(values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    ours = tf.function(topk.top_k_indices)(tf.constant(values, tf.float32), tf.constant(k, tf.int32))
    return ours.numpy(), tf.math.top_k(tf.constant(values, tf.float32), k=k).indices.numpy()


@pytest.mark.parametrize("rows", [1, 3])
@pytest.mark.parametrize(
    "n, k", [(20_000, 0), (20_000, 1), (20_000, 200), (50_000, 2_000), (50_000, 9_000), (50_000, 50_000), (3_000, 100)]
)
def test_equals_tf_top_k(rows: int, n: int, k: int) -> None:
    values = np.random.default_rng(n + k + rows).normal(size=(rows, n))
    ours, want = both(values, k)
    assert ours.shape == (rows, k) and ours.dtype == np.int32
    np.testing.assert_array_equal(ours, want)


@pytest.mark.parametrize("rows", [1, 4])
def test_ties_and_infinities_break_as_tf_top_k_does(rows: int) -> None:
    rng = np.random.default_rng(7)
    values = rng.integers(0, 30, size=(rows, 40_000)).astype(np.float32)  # ~1,300 copies of each value
    values[:, rng.choice(40_000, 5_000, replace=False)] = -np.inf
    values[0, :3] = np.inf
    ours, want = both(values, 3_000)
    np.testing.assert_array_equal(ours, want)


def test_rows_whose_sample_overshoots_fall_back_to_the_full_sort() -> None:
    # the strided sample holds the row's largest values, so fewer than k entries reach its bound
    n, k = 40_000, 500
    values = np.zeros((2, n), np.float32)
    stride = n // topk.SAMPLE
    values[:, ::stride] = np.arange(len(values[0, ::stride]), dtype=np.float32) + 1.0
    values[1] = np.random.default_rng(0).normal(size=n)  # an ordinary row beside it
    ours, want = both(values, k)
    np.testing.assert_array_equal(ours, want)
    ours, want = both(values[:1], k)  # and alone (the one-row path)
    np.testing.assert_array_equal(ours, want)


def test_an_empty_batch() -> None:
    ours, want = both(np.zeros((0, 30_000)), 10)
    assert ours.shape == want.shape == (0, 10)


def test_top_k_for_prunes_only_long_rows() -> None:
    assert topk.top_k_for(topk.MIN_ROW) is topk.top_k_indices
    short = topk.top_k_for(topk.MIN_ROW - 1)
    values = np.random.default_rng(3).normal(size=(2, 5_000)).astype(np.float32)
    np.testing.assert_array_equal(short(tf.constant(values), 40).numpy(), tf.math.top_k(values, 40).indices.numpy())
