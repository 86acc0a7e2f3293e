"""Export a trained run as a SavedModel that TensorFlow Serving (and the gateway's in-process
backend) loads: a numbered version folder, the signatures named in `model.contract`, string ids in
and out (the id lookups travel inside the model), and the catalog side file for images/heatmaps.

TF Serving's files, rewritten on every export:

    EXPORT_DIR/<version>/assets.extra/tf_serving_warmup_requests  PredictionLog TFRecord, one per signature
    EXPORT_DIR/models.config           --model_config_file: name, base_path, versions served, labels
    EXPORT_DIR/batching_parameters.txt --batching_parameters_file (only read with --enable_batching)

Two-stage ranking (`recommend_candidates`): exact ranking costs N*R*(A+D+1) multiply-adds per user, too
much for large catalogs, so stage 1 retrieves candidates with one matrix product against item vectors
whose attention is fixed per cluster of users (`offline.retrieval`), and stage 2 scores them exactly.

`base_path` is where TF Serving sees EXPORT_DIR (docker-compose mounts it at /models/vecf), not
where it is written. Labels: `canary` is the newest version, `stable` too unless pinned to an older
one; the newest KEEP_VERSIONS versions (and stable) stay loaded, so a gateway still pinned to the
previous version keeps working while it is replaced.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from model import contract
from offline.dataset import load_catalog
from offline.features import load_features
from offline.newitems import NEW_ITEM_PICKS, TREND_WEIGHT, VISUAL_WEIGHT, NewItemScorer, check_every
from offline.repeats import REPEAT_SLOTS, RepeatTable
from offline.retrieval import RETRIEVAL_CLUSTERS, retrieval_index
from offline.topk import top_k_for
from offline.train import VECFRecommender


def _spec(tf, dtype: str, shape: tuple, name: str):
    return tf.TensorSpec(shape, getattr(tf, dtype), name=name)


NEW_ITEM_RETRIEVAL_BIAS = -1e9  # stage-1 bias of new items under new-item slots (a mask that costs nothing)


def build_module(
    model,
    user_ids: list[str],
    item_ids: list[str],
    item_counts: np.ndarray,
    user_counts: np.ndarray,
    grid: tuple[int, int],
    retrieval_clusters: int = RETRIEVAL_CLUSTERS,
    repeats: RepeatTable | None = None,
    repeat_unit: float = 0.0,
    new_items: NewItemScorer | None = None,
    new_item_every: int = 0,
    new_item_picks: int = NEW_ITEM_PICKS,
):
    """A tf.Module whose functions implement each contract signature with the model's own methods.
    `retrieval_clusters`: see `retrieval_index` (0: one uniform table). `repeats` with `repeat_unit`
    > 0 (score per log1p(purchase count), `VECFRecommender.repeat_boost_unit`): the repeat-purchase
    boost travels in the user state (`model.contract`, `repeat_slots` = REPEAT_SLOTS); else no slots.
    `new_items` with `new_item_every` > 0: both rankings keep every new_item_every-th place for an item
    without purchases (`offline.newitems`), chosen from the history rows the user state then carries.
    `user_embedding` ranks the new items once per user and the state carries the best `new_item_picks`:
    a ranking whose slots need no more reads them, a longer one ranks the new items again."""
    import tensorflow as tf

    region_proj, value_proj = (np.asarray(t) for t in model.catalog_tables())
    # [N, R, 2A]: the attention table in the form serving multiplies fastest (RegionAttention.split_regions)
    split_proj = np.asarray(model.attention.split_regions(region_proj))
    centroids, retrieval = retrieval_index(
        model, region_proj, value_proj, split_proj=split_proj, clusters=retrieval_clusters
    )
    rows, cols = grid
    stage1_top_k = top_k_for(len(item_ids))
    popular_order = np.lexsort((np.arange(len(item_ids)), -item_counts))
    # `users(limit)` lists the most active users first: people with a history worth looking at.
    active_users = np.array(user_ids, dtype=object)[np.lexsort((np.arange(len(user_ids)), -user_counts))]
    dim = model.dim
    check_every(new_item_every)
    every = new_item_every if new_items is not None and new_items.num_new else 0
    if every and len(new_items.new) != len(item_ids):
        raise ValueError(f"the new-item scorer has {len(new_items.new)} items, the catalog {len(item_ids)}")
    slots = REPEAT_SLOTS if repeats is not None and (repeat_unit > 0 or every) and len(repeats.items) else 0
    attribute_values = int(new_items.sizes.sum()) if every else 0
    picks = min(new_item_picks, new_items.num_new) if every else 0
    if every:  # stage 1 never retrieves a new item while old ones remain: they enter through their slots
        retrieval = np.array(retrieval)  # writable
        retrieval[:, new_items.new, -1] = NEW_ITEM_RETRIEVAL_BIAS
    if slots and len(item_ids) >= 2**24:
        raise ValueError("the user state carries item rows as float32: catalogs must hold < 2**24 items")
    if slots and repeats.num_users != len(user_ids):
        raise ValueError(f"the repeat table has {repeats.num_users} users, the model {len(user_ids)}")

    class Serving(tf.Module):
        repeat_slots = slots
        new_item_every = every
        new_item_picks = picks

        def __init__(self):
            super().__init__(name="vecf_serving")
            if every:  # the new-item scorer's tables: history rows read all items, the slots only new ones
                fresh = np.nonzero(new_items.new)[0]
                self.new_rows = tf.Variable(fresh.astype(np.int32), trainable=False)  # [M] catalog rows
                self.is_new = tf.Variable(new_items.new, trainable=False)  # [N]
                self.taste_vectors = tf.Variable(new_items.vectors, trainable=False)  # [N, P]
                # [M, P + 1]: one product with [profile | 1] gives the visual and trend terms together
                self.new_matrix = tf.Variable(
                    np.concatenate(
                        [VISUAL_WEIGHT * new_items.vectors[fresh], TREND_WEIGHT * new_items.trend[fresh, None]], 1
                    ).astype(np.float32),
                    trainable=False,
                )
                # attribute a's values are numbered after those of attributes < a: one one-hot, one gather
                offsets = np.concatenate([[0], np.cumsum(new_items.sizes)[:-1]]).astype(np.int32)
                self.attribute_codes = tf.Variable(new_items.codes + offsets, trainable=False)  # [N, A]
                self.new_codes = tf.Variable(new_items.codes[fresh] + offsets, trainable=False)  # [M, A]
            if slots:  # the ragged repeat table, user u's rows at [offsets[u], offsets[u + 1])
                self.repeat_offsets = tf.Variable(repeats.offsets, trainable=False)
                self.repeat_items = tf.Variable(repeats.items, trainable=False)
                self.repeat_boosts = tf.Variable(repeats.boosts(repeat_unit), trainable=False)
            self.attention_layer = model.attention  # its kernels are captured by the functions below
            self.attention_vars = [v.value for v in model.attention.weights]
            self.user_vectors = tf.Variable(np.asarray(model.user_embedding), trainable=False)
            self.item_vectors = tf.Variable(np.asarray(model.item_embedding), trainable=False)
            self.item_bias = tf.Variable(np.asarray(model.item_bias), trainable=False)
            self.split_proj = tf.Variable(split_proj, trainable=False)  # [N, R, 2A]
            self.value_proj = tf.Variable(value_proj, trainable=False)  # [N, R, D+1]
            self.retrieval_centroids = tf.Variable(centroids, trainable=False)  # [K, A]
            # K tables [N, D+1], one variable each: a gather from one [K, N, D+1] variable would copy a table
            self.retrieval = [tf.Variable(table, trainable=False) for table in retrieval]
            self.item_ids = tf.Variable(np.array(item_ids, dtype=object), trainable=False, dtype=tf.string)
            self.active_users = tf.Variable(active_users, trainable=False, dtype=tf.string)
            self.popular_ids = tf.Variable(
                np.array(item_ids, dtype=object)[popular_order], trainable=False, dtype=tf.string
            )
            self.popular_scores = tf.Variable(item_counts[popular_order].astype(np.float32), trainable=False)
            self.user_index = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(tf.constant(user_ids), tf.range(len(user_ids), dtype=tf.int64)),
                default_value=-1,
            )
            self.item_index = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(tf.constant(item_ids), tf.range(len(item_ids), dtype=tf.int64)),
                default_value=-1,
            )

        def _retrieve(self, embedding, users_aug):
            """Stage 1: approximate scores [B, N], each user's from the table of their nearest centroid."""
            if len(self.retrieval) == 1:
                return tf.matmul(users_aug, self.retrieval[0], transpose_b=True)
            queries = model.attention.project_users(embedding)  # [B, A]
            distance = tf.reduce_sum(tf.square(queries[:, None, :] - self.retrieval_centroids[None]), -1)  # [B, K]
            nearest = tf.cast(tf.argmin(distance, axis=1), tf.int32)  # [B]

            def one_user(row):
                user, table = row
                return tf.switch_case(
                    table, [lambda t=t: tf.matmul(user[None], t, transpose_b=True)[0] for t in self.retrieval]
                )  # [N]

            return tf.cond(  # one user (most requests): no loop around the product
                tf.shape(users_aug)[0] == 1,
                lambda: one_user((users_aug[0], nearest[0]))[None],
                lambda: tf.map_fn(one_user, (users_aug, nearest), fn_output_signature=tf.float32),
            )

        def _state(self, state):
            """User state [B, D + 2H + P] -> (embedding [B, D], repeat item rows [B, H] int32 (-1: empty),
            their boosts [B, H]); the rows and boosts are None without slots."""
            embedding, repeat_rows, boosts = contract.split_user_state(state, dim, slots)
            if not slots:
                return embedding, None, None
            return embedding, tf.cast(tf.round(repeat_rows), tf.int32), boosts

        def _new_picks(self, state, repeat_rows, fresh):
            """Catalog rows [B, fresh] of the user's best new items: from the state when it carries that
            many (`user_embedding` ranked them), else ranked now."""
            b = tf.shape(state)[0]

            def ranked():
                return tf.gather(self.new_rows, tf.math.top_k(self._new_scores(repeat_rows, b), k=fresh).indices)

            if not picks:
                return ranked()

            def carried():
                return tf.cast(tf.round(contract.new_item_picks(state, dim, slots, picks)[:, :fresh]), tf.int32)

            return tf.cond(fresh <= picks, carried, ranked)

        def _repeat_slots(self, index, known):
            """User indices [B] -> (item rows [B, H] int32, -1 padded; boosts [B, H]) of their newest repeats."""
            start = tf.gather(self.repeat_offsets, tf.maximum(index, 0))  # [B]
            length = tf.minimum(tf.gather(self.repeat_offsets, tf.maximum(index, 0) + 1) - start, slots)
            length = tf.where(known, length, tf.zeros_like(length))
            position = start[:, None] + tf.range(slots, dtype=start.dtype)[None, :]  # [B, H]
            used = tf.range(slots, dtype=start.dtype)[None, :] < length[:, None]
            position = tf.where(used, position, tf.zeros_like(position))
            repeat_rows = tf.where(used, tf.gather(self.repeat_items, position), -tf.ones_like(position, tf.int32))
            boosts = tf.where(used, tf.gather(self.repeat_boosts, position), tf.zeros_like(position, tf.float32))
            return repeat_rows, boosts

        def _dense_boosts(self, repeat_rows, boosts):
            """[B, N]: each user's repeat boosts scattered over the catalog (0 elsewhere)."""
            b = tf.shape(repeat_rows)[0]
            batch = tf.repeat(tf.range(b)[:, None], slots, axis=1)  # [B, H]
            indices = tf.stack([batch, tf.maximum(repeat_rows, 0)], -1)  # [B, H, 2]; padding adds 0 to item 0
            values = tf.where(repeat_rows >= 0, boosts, tf.zeros_like(boosts))
            return tf.scatter_nd(indices, values, tf.stack([b, tf.shape(self.item_ids)[0]]))

        def _new_scores(self, repeat_rows, b):
            """History rows [B, H] (None without history slots) -> new_score [B, M] of the new items."""
            if not slots:  # the trend alone
                return tf.broadcast_to(self.new_matrix[:, -1][None], [b, tf.shape(self.new_matrix)[0]])
            used = tf.cast(repeat_rows >= 0, tf.float32)  # [B, H]
            safe = tf.maximum(repeat_rows, 0)
            profile = tf.reduce_sum(tf.gather(self.taste_vectors, safe) * used[..., None], axis=1)  # [B, P]
            profile = profile / tf.maximum(tf.norm(profile, axis=1, keepdims=True), 1e-12)
            out = tf.matmul(tf.concat([profile, tf.ones_like(profile[:, :1])], 1), self.new_matrix, transpose_b=True)
            if attribute_values:
                codes = tf.one_hot(tf.gather(self.attribute_codes, safe), attribute_values)  # [B, H, A, V]
                share = tf.reduce_sum(codes * used[:, :, None, None], axis=[1, 2])  # [B, V]
                share = share / tf.maximum(tf.reduce_sum(used, axis=1, keepdims=True), 1.0)
                out = out + tf.reduce_sum(tf.gather(share, self.new_codes, axis=1), axis=-1)  # [B, M, A] -> [B, M]
            return out

        def _slot_counts(self, k):
            """(places for new items, places for the others) in a top-k (k <= catalog size)."""
            n_new = tf.shape(self.new_rows)[0]
            n_old = tf.shape(self.item_ids)[0] - n_new
            fresh = tf.maximum(tf.minimum(k // every, n_new), k - n_old)
            return fresh, k - fresh

        def _interleave(self, old_index, new_index):
            """Catalog rows [B, W] (ranked) and new rows [B, S] (ranked) -> [B, W + S] in slot order
            (`offline.newitems.slot_places`), and the permutation applied to their concatenation."""
            w, s_ = tf.shape(old_index)[1], tf.shape(new_index)[1]
            r = tf.range(w)
            places = tf.concat([r + r // (every - 1), (tf.range(s_) + 1) * every - 1], axis=0)
            order = tf.argsort(places, stable=True)
            return tf.gather(tf.concat([old_index, new_index], axis=1), order, axis=1), order

        def _candidates(self, embedding, item_index, method=model.score_candidates):
            """embedding [B, D], item_index [B, C] (>= 0) -> `method`'s answer: by default `score_candidates`'
            (scores [B, C], alpha [B, C, R]), or `explain_candidates`' dict of the scores' parts."""

            def run(users, index):
                return method(
                    users,
                    tf.gather(self.item_vectors, index),
                    tf.gather(self.item_bias, index),
                    tf.gather(self.split_proj, index),
                    tf.gather(self.value_proj, index),
                )

            def first_row(x):  # [1, ...] with the 1 static; valid for any batch (padded), as a branch's
                return tf.concat([x, tf.zeros_like(x[:1])], 0)[:1]  # inputs may be evaluated either way

            return tf.cond(  # one user: a static batch of 1 takes score_candidates' faster path
                tf.shape(embedding)[0] == 1,
                lambda: run(tf.reshape(first_row(embedding), [1, dim]), first_row(item_index)),
                lambda: run(embedding, item_index),
            )

        @tf.function(input_signature=[_spec(tf, "string", (None,), "user_id")])
        def user_embedding(self, user_id):
            index = self.user_index.lookup(user_id)  # [B]
            known = index >= 0
            vectors = tf.gather(self.user_vectors, tf.maximum(index, 0)) * tf.cast(known, tf.float32)[:, None]
            if slots:
                repeat_rows, boosts = self._repeat_slots(index, known)
                vectors = tf.concat([vectors, tf.cast(repeat_rows, tf.float32), boosts], axis=1)  # [B, D + 2H]
            if picks:  # the new items' ranking depends on the user alone: once here, not in every request
                best = tf.math.top_k(self._new_scores(repeat_rows if slots else None, tf.shape(index)[0]), k=picks)
                vectors = tf.concat([vectors, tf.cast(tf.gather(self.new_rows, best.indices), tf.float32)], axis=1)
            return {"embedding": vectors, "known": known}

        @tf.function(input_signature=[_spec(tf, "float32", (None, None), "embedding"), _spec(tf, "int32", (), "k")])
        def recommend(self, embedding, k):
            state = embedding
            embedding, repeat_rows, boosts = self._state(state)
            scores, alpha = model.score_catalog(
                embedding, self.item_vectors, self.item_bias, self.split_proj, self.value_proj
            )  # [B, N], [B, N, R]
            if slots:
                scores = scores + self._dense_boosts(repeat_rows, boosts)
            k = tf.minimum(k, tf.shape(scores)[1])
            if every:  # new items only in their slots, the rest ranked by score
                fresh, rest = self._slot_counts(k)
                old = tf.math.top_k(tf.where(self.is_new[None], -np.inf, scores), k=rest).indices
                index, _ = self._interleave(old, self._new_picks(state, repeat_rows, fresh))
                values = tf.gather(scores, index, batch_dims=1)
            else:
                top = tf.math.top_k(scores, k=k)
                index, values = top.indices, top.values
            grids = tf.gather(alpha, index, batch_dims=1)  # [B, K, R]
            shape = tf.concat([tf.shape(index), [rows, cols]], 0)
            return {
                "item_ids": tf.gather(self.item_ids, index),
                "scores": values,
                "attention": tf.reshape(grids, shape),
            }

        @tf.function(
            input_signature=[
                _spec(tf, "float32", (None, None), "embedding"),
                _spec(tf, "int32", (), "k"),
                _spec(tf, "int32", (), "candidates"),
            ]
        )
        def recommend_candidates(self, embedding, k, candidates):
            state = embedding
            embedding, repeat_rows, boosts = self._state(state)
            n = tf.shape(self.item_ids)[0]
            k = tf.minimum(k, n)
            c = tf.minimum(tf.maximum(candidates, k), n)
            users_aug = tf.concat([embedding, tf.ones_like(embedding[:, :1])], axis=-1)  # [B, D+1]
            approx = self._retrieve(embedding, users_aug)  # [B, N]
            if slots:  # boosted in stage 1 too, so a user's repeats reach stage 2
                dense = self._dense_boosts(repeat_rows, boosts)
                approx = approx + dense
            index = stage1_top_k(approx, c)  # [B, C] stage 1: candidates
            if every:  # the new items' slots do not depend on stage 1: scored with the candidates, in one call
                fresh, rest = self._slot_counts(k)
                new = self._new_picks(state, repeat_rows, fresh)
                scored = tf.concat([index, new], axis=1)  # [B, C + S]
            else:
                scored = index
            scores, alpha = self._candidates(embedding, scored)  # [B, C (+ S)], [B, C (+ S), R]
            if slots:  # new items were never bought: no boost to add to them
                scores = scores + tf.gather(dense, scored, batch_dims=1)
            if not every:
                top = tf.math.top_k(scores, k=k)  # stage 2: exact scores
                grids = tf.gather(alpha, top.indices, batch_dims=1)  # [B, K, R]
                shape = tf.concat([tf.shape(top.indices), [rows, cols]], 0)
                return {
                    "item_ids": tf.gather(self.item_ids, tf.gather(index, top.indices, batch_dims=1)),
                    "scores": top.values,
                    "attention": tf.reshape(grids, shape),
                }
            # stage 2 among the candidates that are not new (there are some only when C exceeds the old items)
            top = tf.math.top_k(tf.where(tf.gather(self.is_new, index), -np.inf, scores[:, :c]), k=rest)
            merged, order = self._interleave(tf.gather(index, top.indices, batch_dims=1), new)
            picked = tf.concat([top.indices, c + tf.range(fresh)[None] * tf.ones_like(new)], axis=1)  # [B, K]
            values = tf.gather(tf.gather(scores, picked, batch_dims=1), order, axis=1)
            grids = tf.gather(tf.gather(alpha, picked, batch_dims=1), order, axis=1)
            shape = tf.concat([tf.shape(merged), [rows, cols]], 0)
            return {
                "item_ids": tf.gather(self.item_ids, merged),
                "scores": values,
                "attention": tf.reshape(grids, shape),
            }

        @tf.function(
            input_signature=[
                _spec(tf, "float32", (None, None), "embedding"),
                _spec(tf, "string", (None, None), "item_ids"),
            ]
        )
        def score(self, embedding, item_ids):
            embedding, repeat_rows, boosts = self._state(embedding)
            index = self.item_index.lookup(item_ids)  # [B, N]
            scores, _ = self._candidates(embedding, tf.maximum(index, 0))
            if slots:  # item n's boost: the slot holding it (rows are distinct per user; padding adds 0)
                match = tf.equal(tf.cast(index, tf.int32)[:, :, None], repeat_rows[:, None, :])  # [B, N, H]
                scores = scores + tf.reduce_sum(tf.where(match, boosts[:, None, :], 0.0), axis=-1)
            return {"scores": tf.where(index >= 0, scores, tf.fill(tf.shape(scores), -np.inf))}

        @tf.function(
            input_signature=[_spec(tf, "float32", (None, None), "embedding"), _spec(tf, "string", (None,), "item_ids")]
        )
        def attention(self, embedding, item_ids):
            embedding, _, _ = self._state(embedding)
            index = self.item_index.lookup(item_ids)  # [B]
            parts = self._candidates(embedding, tf.maximum(index, 0)[:, None], model.explain_candidates)
            known = tf.cast(index >= 0, tf.float32)  # [B]; an unknown item: all zeros
            return {
                "attention": tf.reshape(parts["alpha"][:, 0] * known[:, None], [-1, rows, cols]),
                "contributions": tf.reshape(parts["contributions"][:, 0] * known[:, None], [-1, rows, cols]),
                "concentration": parts["concentration"][:, 0] * known,  # [B]
                "visual_share": parts["visual_share"][:, 0] * known,
            }  # [B]

        @tf.function(input_signature=[_spec(tf, "int32", (), "k")])
        def popular(self, k):
            k = tf.minimum(k, tf.shape(self.popular_ids)[0])
            return {"item_ids": self.popular_ids[:k], "scores": self.popular_scores[:k]}

        @tf.function(input_signature=[_spec(tf, "int32", (), "limit")])
        def users(self, limit):
            return {"user_ids": self.active_users[: tf.minimum(limit, tf.shape(self.active_users)[0])]}

    return Serving()


WARMUP_FILE = "tf_serving_warmup_requests"
MODELS_CONFIG_FILE = "models.config"
BATCHING_FILE = "batching_parameters.txt"
SERVING_BASE_PATH = "/models/{name}"  # where docker-compose mounts the export for TF Serving
KEEP_VERSIONS = 2
# BatchingParameters (tensorflow_serving/servables/tensorflow/session_bundle_config.proto), for CPU serving.
BATCHING = {"max_batch_size": 32, "batch_timeout_micros": 2000, "num_batch_threads": 4, "max_enqueued_batches": 64}
WARMUP_K = 10
WARMUP_CANDIDATES = 100


def versions_in(base: Path) -> list[int]:
    """The numbered version folders under `base`, ascending."""
    return sorted(int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit()) if base.exists() else []


def next_version(base: Path) -> int:
    return max(versions_in(base), default=0) + 1


def warmup_requests(module, model_name: str, k: int = WARMUP_K) -> list:
    """PredictionLog protos: one real request per contract signature, for the most active user."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    user = module.active_users.numpy()[:1]  # [1] bytes
    embedding = module.user_embedding(tf.constant(user))["embedding"].numpy()  # [1, D]
    top = module.recommend(tf.constant(embedding), tf.constant(k, tf.int32))["item_ids"].numpy()  # [1, K]
    values = {
        contract.USER_EMBEDDING.name: (user,),
        contract.RECOMMEND.name: (embedding, k),
        contract.RECOMMEND_CANDIDATES.name: (embedding, k, WARMUP_CANDIDATES),
        contract.SCORE.name: (embedding, top),
        contract.ATTENTION.name: (embedding, top[:, 0]),
        contract.POPULAR.name: (k,),
        contract.USERS.name: (k,),
    }
    logs = []
    for sig in contract.SIGNATURES:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model_name
        request.model_spec.signature_name = sig.name
        for (name, (dtype, _shape)), value in zip(sig.inputs.items(), values[sig.name], strict=True):
            request.inputs[name].CopyFrom(tf.make_tensor_proto(value, dtype=getattr(tf, dtype)))
        logs.append(prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request)))
    return logs


def write_warmup_requests(module, path: Path, model_name: str) -> int:
    import tensorflow as tf

    logs = warmup_requests(module, model_name)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for log in logs:
            writer.write(log.SerializeToString())
    return len(logs)


def _write_atomic(path: Path, text: str) -> None:
    """Write beside `path` and rename: TF Serving polling its config file never reads half of it."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def models_config(
    model_name: str, base_path: str, versions: list[int], stable: int | None = None, keep: int = KEEP_VERSIONS
) -> str:
    """ModelServerConfig text proto serving `versions`' newest `keep` (and `stable`), labelled."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    if not versions:
        raise ValueError("no version folders to serve: export one first")
    canary = versions[-1]
    stable = canary if stable is None else stable
    if stable not in versions:
        raise ValueError(f"stable version {stable} is not among the exported versions {versions}")
    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add(name=model_name, base_path=base_path, model_platform="tensorflow")
    model.model_version_policy.specific.versions.extend(sorted(set(versions[-keep:]) | {stable}))
    model.version_labels["stable"] = stable
    model.version_labels["canary"] = canary
    return text_format.MessageToString(config)


def batching_parameters() -> str:
    lines = [
        "# BatchingParameters for tensorflow_model_server --enable_batching --batching_parameters_file=...",
        "# Batching concatenates requests on dimension 0: signatures with scalar inputs (k, limit) fail under it.",
    ]
    lines += [f"{name} {{ value: {value} }}" for name, value in BATCHING.items()]
    return "\n".join(lines) + "\n"


def write_serving_files(
    base: Path, model_name: str, base_path: str | None = None, stable: int | None = None
) -> list[Path]:
    """(Re)write `models.config` and `batching_parameters.txt` in the export base folder."""
    base_path = base_path or SERVING_BASE_PATH.format(name=model_name)
    config = models_config(model_name, base_path, versions_in(base), stable)
    _write_atomic(base / MODELS_CONFIG_FILE, config)
    _write_atomic(base / BATCHING_FILE, batching_parameters())
    return [base / MODELS_CONFIG_FILE, base / BATCHING_FILE]


def write_version(
    module,
    base: Path,
    version: int,
    *,
    model_name: str,
    item_ids: list[str],
    images: list[str],
    boxes: list,
    grid: tuple[int, int],
    embedding_dim: int,
    num_users: int,
    image_root: Path,
    new: np.ndarray | None = None,
) -> Path:
    """Save `module` as version folder `base/version` with its assets.extra (catalog, serving.json,
    warmup requests): written beside the final folder and renamed, so a server polling `base` never
    sees half a version. `new` [N] bool: items without training purchases (catalog.csv's `new`; none
    when None). The user state's layout in serving.json is the module's own."""
    import tensorflow as tf

    base.mkdir(parents=True, exist_ok=True)
    final = base / str(version)
    if final.exists():
        raise FileExistsError(f"{final} exists; versions are immutable, pick another --version")
    staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=base))
    staging.chmod(0o755)  # mkdtemp makes it 0700: servers running as another user could not read the version
    signatures = {sig.name: getattr(module, sig.name) for sig in contract.SIGNATURES}
    signatures[contract.DEFAULT_SIGNATURE] = module.recommend
    tf.saved_model.save(module, str(staging), signatures=signatures)
    extra = staging / contract.ASSETS_EXTRA
    extra.mkdir()
    with open(extra / contract.CATALOG_FILE, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(contract.CATALOG_COLUMNS)
        new = np.zeros(len(item_ids), bool) if new is None else np.asarray(new, bool)
        for item, image, box, fresh in zip(item_ids, images, boxes, new.tolist(), strict=True):
            w.writerow([item, image, *box, int(fresh)])
    meta = {
        "model_name": model_name,
        "version": version,
        "grid_rows": grid[0],
        "grid_cols": grid[1],
        "embedding_dim": embedding_dim,
        "repeat_slots": module.repeat_slots,
        "new_item_every": module.new_item_every,
        "new_item_picks": module.new_item_picks,
        "num_items": len(item_ids),
        "num_users": num_users,
        "image_root": str(Path(image_root).resolve()),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    (extra / contract.SERVING_META_FILE).write_text(json.dumps(meta, indent=2))
    warmups = write_warmup_requests(module, extra / WARMUP_FILE, model_name)
    staging.rename(final)
    print(
        f"export: {model_name} version {version} ({len(item_ids)} items, {num_users} users, "
        f"{warmups} warmup requests) -> {final}"
    )
    return final


def export(
    run_dir: Path,
    base: Path,
    version: int | None = None,
    model_name: str = "vecf",
    serving_base_path: str | None = None,
    stable_version: int | None = None,
) -> Path:
    run = json.loads((run_dir / "run.json").read_text())
    features = load_features(run["features"])
    catalog = load_catalog(run["dataset"])
    item_ids = (run_dir / "items.txt").read_text().splitlines()
    if item_ids != features.item_ids or item_ids != catalog.item_ids:
        raise ValueError(f"{run_dir}: items.txt, the feature table and the catalog disagree on item order")
    user_ids = (run_dir / "users.txt").read_text().splitlines()
    rec = VECFRecommender.load(run_dir, features)  # the model, its repeat table and the boost's unit
    model = rec.model
    item_counts = np.load(run_dir / "item_counts.npy")
    module = build_module(
        model,
        user_ids,
        item_ids,
        item_counts,
        np.load(run_dir / "user_counts.npy"),
        features.grid,
        repeats=rec.repeats,
        repeat_unit=rec.repeat_boost_unit(),
        new_items=rec.new_items,
        new_item_every=rec.config.new_item_every,
    )

    version = version or next_version(base)
    if stable_version is not None and stable_version not in [*versions_in(base), version]:
        raise ValueError(f"--stable-version {stable_version} is neither exported under {base} nor this export")
    final = write_version(
        module,
        base,
        version,
        model_name=model_name,
        item_ids=item_ids,
        images=catalog.images,
        boxes=features.boxes.tolist(),
        grid=features.grid,
        embedding_dim=model.dim,
        num_users=len(user_ids),
        image_root=Path(run["dataset"]),
        new=item_counts == 0,
    )
    written = write_serving_files(base, model_name, serving_base_path, stable_version)
    print(f"export: TF Serving config for versions {versions_in(base)} -> {', '.join(map(str, written))}")
    return final


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m offline export", description=__doc__)
    ap.add_argument("--run", required=True, type=Path, help="run folder written by `offline train`")
    ap.add_argument("--out", required=True, type=Path, help="model base folder (version folders go inside)")
    ap.add_argument("--version", type=int)
    ap.add_argument("--name", default="vecf")
    ap.add_argument("--serving-base-path", help="where TF Serving sees --out (default /models/NAME)")
    ap.add_argument("--stable-version", type=int, help="version of the 'stable' label (default: the newest)")
    args = ap.parse_args(argv)
    export(args.run, args.out, args.version, args.name, args.serving_base_path, args.stable_version)
    return 0
