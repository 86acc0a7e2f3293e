"""Export a trained run as a SavedModel that TensorFlow Serving (and the gateway's in-process
backend) loads: a numbered version folder, the signatures named in `model.contract`, string ids in
and out (the id lookups travel inside the model), and the catalog side file for images/heatmaps."""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from model import contract
from offline.dataset import load_catalog
from offline.features import load_features
from offline.train import load_model


def _spec(tf, dtype: str, shape: tuple, name: str):
    return tf.TensorSpec(shape, getattr(tf, dtype), name=name)


def build_module(model, user_ids: list[str], item_ids: list[str], item_counts: np.ndarray,
                 user_counts: np.ndarray, grid: tuple[int, int]):
    """A tf.Module whose functions implement each contract signature with the model's own methods."""
    import tensorflow as tf

    region_proj, value_proj = (np.asarray(t) for t in model.catalog_tables())
    rows, cols = grid
    popular_order = np.lexsort((np.arange(len(item_ids)), -item_counts))
    # `users(limit)` lists the most active users first: people with a history worth looking at.
    active_users = np.array(user_ids, dtype=object)[np.lexsort((np.arange(len(user_ids)), -user_counts))]

    class Serving(tf.Module):
        def __init__(self):
            super().__init__(name="vecf_serving")
            self.attention_layer = model.attention  # its kernels are captured by the functions below
            self.attention_vars = [v.value for v in model.attention.weights]
            self.user_vectors = tf.Variable(np.asarray(model.user_embedding), trainable=False)
            self.item_vectors = tf.Variable(np.asarray(model.item_embedding), trainable=False)
            self.item_bias = tf.Variable(np.asarray(model.item_bias), trainable=False)
            self.region_proj = tf.Variable(region_proj, trainable=False)  # [N, R, A]
            self.value_proj = tf.Variable(value_proj, trainable=False)  # [N, R, D+1]
            self.item_ids = tf.Variable(np.array(item_ids, dtype=object), trainable=False, dtype=tf.string)
            self.active_users = tf.Variable(active_users, trainable=False, dtype=tf.string)
            self.popular_ids = tf.Variable(np.array(item_ids, dtype=object)[popular_order], trainable=False,
                                           dtype=tf.string)
            self.popular_scores = tf.Variable(item_counts[popular_order].astype(np.float32), trainable=False)
            self.user_index = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(tf.constant(user_ids), tf.range(len(user_ids), dtype=tf.int64)),
                default_value=-1)
            self.item_index = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(tf.constant(item_ids), tf.range(len(item_ids), dtype=tf.int64)),
                default_value=-1)

        def _pairs(self, embedding, item_index):
            """embedding [P, D], item_index [P] (>= 0) -> (scores [P], alpha [P, R])."""
            return model.score_tables(
                embedding, tf.gather(self.item_vectors, item_index), tf.gather(self.item_bias, item_index),
                tf.gather(self.region_proj, item_index), tf.gather(self.value_proj, item_index), pairwise=True)

        @tf.function(input_signature=[_spec(tf, "string", (None,), "user_id")])
        def user_embedding(self, user_id):
            index = self.user_index.lookup(user_id)  # [B]
            known = index >= 0
            vectors = tf.gather(self.user_vectors, tf.maximum(index, 0))  # [B, D]
            return {"embedding": vectors * tf.cast(known, tf.float32)[:, None], "known": known}

        @tf.function(input_signature=[_spec(tf, "float32", (None, None), "embedding"), _spec(tf, "int32", (), "k")])
        def recommend(self, embedding, k):
            scores, alpha = model.score_tables(embedding, self.item_vectors, self.item_bias, self.region_proj,
                                               self.value_proj, pairwise=False)  # [B, N], [B, N, R]
            top = tf.math.top_k(scores, k=tf.minimum(k, tf.shape(scores)[1]))
            grids = tf.gather(alpha, top.indices, batch_dims=1)  # [B, K, R]
            shape = tf.concat([tf.shape(top.indices), [rows, cols]], 0)
            return {"item_ids": tf.gather(self.item_ids, top.indices), "scores": top.values,
                    "attention": tf.reshape(grids, shape)}

        @tf.function(input_signature=[_spec(tf, "float32", (None, None), "embedding"),
                                      _spec(tf, "string", (None, None), "item_ids")])
        def score(self, embedding, item_ids):
            index = self.item_index.lookup(item_ids)  # [B, N]
            n = tf.shape(index)[1]
            flat_users = tf.repeat(embedding, n, axis=0)  # [B*N, D], row b repeated N times
            scores, _ = self._pairs(flat_users, tf.maximum(tf.reshape(index, [-1]), 0))
            scores = tf.reshape(scores, tf.shape(index))
            return {"scores": tf.where(index >= 0, scores, tf.fill(tf.shape(scores), -np.inf))}

        @tf.function(input_signature=[_spec(tf, "float32", (None, None), "embedding"),
                                      _spec(tf, "string", (None,), "item_ids")])
        def attention(self, embedding, item_ids):
            index = self.item_index.lookup(item_ids)  # [B]
            _, alpha = self._pairs(embedding, tf.maximum(index, 0))  # [B, R]
            alpha = alpha * tf.cast(index >= 0, tf.float32)[:, None]  # unknown item: all-zero grid
            return {"attention": tf.reshape(alpha, [-1, rows, cols])}

        @tf.function(input_signature=[_spec(tf, "int32", (), "k")])
        def popular(self, k):
            k = tf.minimum(k, tf.shape(self.popular_ids)[0])
            return {"item_ids": self.popular_ids[:k], "scores": self.popular_scores[:k]}

        @tf.function(input_signature=[_spec(tf, "int32", (), "limit")])
        def users(self, limit):
            return {"user_ids": self.active_users[: tf.minimum(limit, tf.shape(self.active_users)[0])]}

    return Serving()


def next_version(base: Path) -> int:
    versions = [int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit()] if base.exists() else []
    return max(versions, default=0) + 1


def export(run_dir: Path, base: Path, version: int | None = None, model_name: str = "vecf") -> Path:
    import tensorflow as tf

    run = json.loads((run_dir / "run.json").read_text())
    features = load_features(run["features"])
    catalog = load_catalog(run["dataset"])
    item_ids = (run_dir / "items.txt").read_text().splitlines()
    if item_ids != features.item_ids or item_ids != catalog.item_ids:
        raise ValueError(f"{run_dir}: items.txt, the feature table and the catalog disagree on item order")
    user_ids = (run_dir / "users.txt").read_text().splitlines()
    model = load_model(run_dir)
    module = build_module(model, user_ids, item_ids, np.load(run_dir / "item_counts.npy"),
                          np.load(run_dir / "user_counts.npy"), features.grid)

    version = version or next_version(base)
    base.mkdir(parents=True, exist_ok=True)
    final = base / str(version)
    if final.exists():
        raise FileExistsError(f"{final} exists; versions are immutable, pick another --version")
    # Write beside the final folder and rename: a server polling `base` never sees half a version.
    staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=base))
    signatures = {sig.name: getattr(module, sig.name) for sig in contract.SIGNATURES}
    signatures[contract.DEFAULT_SIGNATURE] = module.recommend
    tf.saved_model.save(module, str(staging), signatures=signatures)
    extra = staging / contract.ASSETS_EXTRA
    extra.mkdir()
    with open(extra / contract.CATALOG_FILE, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(contract.CATALOG_COLUMNS)
        for item, image, box in zip(item_ids, catalog.images, features.boxes.tolist()):
            w.writerow([item, image, *box])
    meta = {
        "model_name": model_name, "version": version, "grid_rows": features.grid[0],
        "grid_cols": features.grid[1], "embedding_dim": model.dim, "num_items": len(item_ids),
        "num_users": len(user_ids), "image_root": str(Path(run["dataset"]).resolve()),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    (extra / contract.SERVING_META_FILE).write_text(json.dumps(meta, indent=2))
    staging.rename(final)
    print(f"export: {model_name} version {version} ({len(item_ids)} items, {len(user_ids)} users) -> {final}")
    return final


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m offline export", description=__doc__)
    ap.add_argument("--run", required=True, type=Path, help="run folder written by `offline train`")
    ap.add_argument("--out", required=True, type=Path, help="model base folder (version folders go inside)")
    ap.add_argument("--version", type=int)
    ap.add_argument("--name", default="vecf")
    args = ap.parse_args(argv)
    export(args.run, args.out, args.version, args.name)
    return 0
