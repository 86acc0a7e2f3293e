"""The model is written with keras.ops only: it must train and rank under the JAX backend too.

Keras fixes its backend at import, so the check runs in a fresh interpreter with KERAS_BACKEND=jax."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import json, numpy as np, keras
from model.vecf import VECF
from offline.recommenders.vecf import NegativeSampler
m = VECF(num_users=20, num_items=30, num_regions=9, channels=8, dim=8, vocab_size=12, beta=0.5, seed=3)
rng = np.random.default_rng(1)
m.region_features.assign(rng.normal(size=(30, 9, 8)).astype("float16"))
m.compile(optimizer=keras.optimizers.Adam(0.02))
n = 512
x = {"user": rng.integers(0, 20, n), "pos": rng.integers(0, 15, n), "neg": rng.integers(15, 30, n),
     "tokens": rng.integers(0, 12, (n, 6))}
losses = m.fit(x, batch_size=64, epochs=4, verbose=0).history["loss"]
region_proj, value_proj = m.catalog_tables()
scores, alpha = m.score_tables(m.user_embedding[:3], m.item_embedding, m.item_bias, region_proj, value_proj,
                               pairwise=False)
pair, _, _ = m.score_pairs(m.user_embedding[:3], np.array([4, 5, 6]))
split = m.attention.split_regions(region_proj)  # serving's form of the same scores
served, _ = m.score_catalog(m.user_embedding[:3], m.item_embedding, m.item_bias, split, value_proj)
idx = np.array([[4, 9], [5, 9], [6, 9]])
cand, _ = m.score_candidates(m.user_embedding[:3], np.asarray(m.item_embedding)[idx], np.asarray(m.item_bias)[idx],
                             np.asarray(split)[idx], np.asarray(value_proj)[idx])
first = idx[:1]
one, _ = m.score_candidates(m.user_embedding[:1], np.asarray(m.item_embedding)[first], np.asarray(m.item_bias)[first],
                            np.asarray(split)[first], np.asarray(value_proj)[first])
print(json.dumps({"backend": keras.backend.backend(), "losses": losses,
                  "alpha_sums": np.asarray(alpha).sum(-1).ravel().tolist(),
                  "catalog": np.asarray(scores)[[0, 1, 2], [4, 5, 6]].tolist(), "pairs": np.asarray(pair).tolist(),
                  "served": np.asarray(served)[[0, 1, 2], [4, 5, 6]].tolist(),
                  "candidates": np.asarray(cand)[:, 0].tolist(), "one": float(np.asarray(one)[0, 0])}))
"""


def test_vecf_trains_and_ranks_under_jax() -> None:
    pytest.importorskip("jax", reason="jax is not installed (the `bench` extra pins it; run `make venv`)")
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["backend"] == "jax"
    assert result["losses"][-1] < result["losses"][0]  # positives (items 0-14) are learnable from ids
    assert all(abs(s - 1) < 1e-5 for s in result["alpha_sums"])
    # catalog ranking and pairwise scoring are one function on JAX as on TensorFlow
    assert result["catalog"] == pytest.approx(result["pairs"], abs=1e-4)
    # and serving's split-table form (score_catalog, score_candidates batched and for one user) agrees
    assert result["served"] == pytest.approx(result["pairs"], abs=1e-4)
    assert result["candidates"] == pytest.approx(result["pairs"], abs=1e-4)
    assert result["one"] == pytest.approx(result["pairs"][0], abs=1e-4)
