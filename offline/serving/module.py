"""The exported model: a tf.Module whose signatures (`model.contract`) call `model.ranking` and the
model's own scoring methods. What is TensorFlow here is only what a SavedModel needs: the id lookups,
the tables as variables, and the choice of one retrieval table per user without copying it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from model import contract, foldin, ranking
from model.because import NAMED, attended, name_from_history
from offline.serving.topk import top_k_for


def specs(signature: contract.Signature) -> list[tf.TensorSpec]:
    """The signature's inputs as tf.function's input_signature, in the contract's order."""
    return [tf.TensorSpec(shape, getattr(tf, dtype), name=name) for name, (dtype, shape) in signature.inputs.items()]


@dataclass(frozen=True)
class Static:
    """What the functions read that is not a variable (kept off the module, which would save the
    whole Keras model's variables, the region features among them)."""

    model: Any  # model.vecf.VECF
    layout: ranking.Layout
    grid: tuple[int, int]
    stage1_top_k: Any
    repeat_unit: float  # the boost per log1p(count) a folded-in history's repeat slots get (with slots)


def _constant_table(keys: list[str]) -> tf.lookup.StaticHashTable:
    init = tf.lookup.KeyValueTensorInitializer(tf.constant(keys), tf.range(len(keys), dtype=tf.int64))
    return tf.lookup.StaticHashTable(init, default_value=-1)


class Serving(tf.Module):
    def __init__(
        self,
        model,
        tables: dict[str, np.ndarray],
        layout: ranking.Layout,
        *,
        user_ids: list[str],
        item_ids: list[str],
        active_users: np.ndarray,
        popular_order: np.ndarray,
        item_counts: np.ndarray,
        split_proj: np.ndarray,
        value_proj: np.ndarray,
        centroids: np.ndarray,
        retrieval: np.ndarray,
        grid: tuple[int, int],
        repeat_unit: float = 0.0,
    ):
        super().__init__(name="vecf_serving")
        self.static = Static(model, layout, grid, top_k_for(len(item_ids)), float(repeat_unit))
        self.repeat_slots, self.new_item_every, self.new_item_picks = layout.slots, layout.every, layout.picks
        self.tables = {name: tf.Variable(value, trainable=False) for name, value in tables.items()}
        self.attention_layer = model.attention  # its kernels are captured by the functions below
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
        # the items training drew negatives from (those with purchases): a fold-in contrasts with the same
        self.negatives = tf.Variable((item_counts > 0).astype(np.float32), trainable=False)
        self.user_index = _constant_table(user_ids)
        self.item_index = _constant_table(item_ids)

    # -- helpers ------------------------------------------------------------------------------
    def _retrieve(self, embedding):
        """Stage 1: approximate scores [B, N], each user's from the table of their nearest centroid."""
        users_aug = tf.concat([embedding, tf.ones_like(embedding[:, :1])], axis=-1)  # [B, D+1]
        if len(self.retrieval) == 1:
            return tf.matmul(users_aug, self.retrieval[0], transpose_b=True)
        queries = self.static.model.attention.project_users(embedding)  # [B, A]
        nearest = ranking.nearest_centroid(queries, self.retrieval_centroids)  # [B]

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

    def _candidates(self, embedding, item_index, method=None):
        """embedding [B, D], item_index [B, C] (>= 0) -> `method`'s answer: by default `score_candidates`'
        (scores [B, C], alpha [B, C, R]), or `explain_candidates`' dict of the scores' parts."""
        model = self.static.model
        method = method or model.score_candidates

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
            lambda: run(tf.reshape(first_row(embedding), [1, model.dim]), first_row(item_index)),
            lambda: run(embedding, item_index),
        )

    def _answer(self, state, index, scores, alpha):
        """rows [B, K] (-1: none, answered as "") with their scores and attention -> a ranking's outputs, with
        "because you bought" for each from the same attention."""
        rows, cols = self.static.grid
        index = tf.cast(index, tf.int32)
        named = self._because(state, index, alpha)
        return {
            "item_ids": tf.where(index >= 0, tf.gather(self.item_ids, tf.maximum(index, 0)), ""),
            "scores": scores,
            "attention": tf.reshape(alpha, tf.concat([tf.shape(index), [rows, cols]], 0)),
            "because_ids": named["item_ids"],
            "because_similarity": named["similarity"],
        }

    def _because(self, state, index, alpha=None):
        """state [B, S], catalog rows [B, K] (-1: none) and, where known already, the shopper's attention over
        them [B, K, R] -> the history items each resembles most (`model.because`): ids "" and similarity -inf
        where there is nothing to name."""
        layout = self.static.layout
        p, history, _ = ranking.split_state(state, layout)
        shape = tf.concat([tf.shape(index), [NAMED]], 0)
        if history is None:  # a model whose states carry no history: nothing to name
            return {"item_ids": tf.fill(shape, ""), "similarity": tf.fill(shape, -np.inf)}

        def vectors(rows, alpha=None):  # [B, X] -> the shopper's attended value vectors [B, X, D+1]
            rows = tf.maximum(rows, 0)
            alpha = self._candidates(p, rows)[1] if alpha is None else alpha
            return attended(alpha, tf.gather(self.value_proj, rows))

        named, similarity = name_from_history(index, vectors(index, alpha), history, vectors(history))
        named = tf.where(index[..., None] >= 0, named, -1)
        return {
            "item_ids": tf.where(named >= 0, tf.gather(self.item_ids, tf.maximum(named, 0)), ""),
            "similarity": tf.where(named >= 0, similarity, -np.inf),
        }

    # -- signatures ---------------------------------------------------------------------------
    @tf.function(input_signature=specs(contract.USER_EMBEDDING))
    def user_embedding(self, user_id):
        state, known = ranking.user_state(self.tables, self.static.layout, self.user_index.lookup(user_id))
        return {"embedding": state, "known": known}

    @tf.function(input_signature=specs(contract.HISTORY_EMBEDDING))
    def history_embedding(self, history):
        rows = tf.cast(self.item_index.lookup(history), tf.int32)  # [B, L]; "" and unknown ids: -1
        state, known = foldin.history_state(
            self.tables, self.static.layout, rows, self.negatives, self.static.repeat_unit
        )
        return {"embedding": state, "known": known}

    def _exact(self, state, k, for_you: bool = False):
        """The whole catalog ranked (`ranking.rank`) -> rows [B, K], scores [B, K], attention [B, K, R];
        `for_you`: without the history the states carry (the "for_you" shelf), else with its boosts."""
        layout = self.static.layout
        embedding, _, _ = ranking.split_state(state, layout)
        scores, alpha = self.static.model.score_catalog(
            embedding, self.item_vectors, self.item_bias, self.split_proj, self.value_proj
        )  # [B, N], [B, N, R]
        if for_you:
            scores = ranking.for_you_scores(scores, state, layout)
        else:
            scores = ranking.boosted_scores(scores, state, layout)
        index = ranking.rank(self.tables, layout, state, scores, k)  # [B, K]
        return index, tf.gather(scores, index, batch_dims=1), tf.gather(alpha, index, batch_dims=1)

    def _two_stage(self, state, k, candidates, for_you: bool = False):
        """`_exact`'s answer from `candidates` items retrieved in stage 1 (at least k)."""
        layout = self.static.layout
        embedding, _, _ = ranking.split_state(state, layout)
        n = tf.shape(self.item_ids)[0]
        approx = self._retrieve(embedding)  # [B, N]
        if for_you:  # the history leaves both stages
            dense = tf.where(ranking.history_mask(state, layout, n), -np.inf, 0.0)
        else:  # boosted in stage 1 too, so a user's repeats reach stage 2
            dense = ranking.catalog_boosts(state, layout, n)
        if dense is not None:
            approx = approx + dense
        index = self.static.stage1_top_k(approx, tf.minimum(tf.maximum(candidates, k), n))  # [B, C]
        return ranking.rank_candidates(
            self.tables, layout, state, index, lambda rows: self._candidates(embedding, rows), k, dense
        )

    @tf.function(input_signature=specs(contract.RECOMMEND))
    def recommend(self, embedding, k):
        return self._answer(embedding, *self._exact(embedding, k))

    @tf.function(input_signature=specs(contract.RECOMMEND_CANDIDATES))
    def recommend_candidates(self, embedding, k, candidates):
        return self._answer(
            embedding, *self._two_stage(embedding, tf.minimum(k, tf.shape(self.item_ids)[0]), candidates)
        )

    @tf.function(input_signature=specs(contract.RECOMMEND_SHELF))
    def recommend_shelf(self, embedding, k, candidates, shelf):
        state, layout = embedding, self.static.layout
        k = tf.minimum(k, tf.shape(self.item_ids)[0])
        p, _, _ = ranking.split_state(state, layout)

        def score(rows):
            return self._candidates(p, rows)

        def ranked(for_you: bool):
            return tf.cond(
                candidates > 0,
                lambda: self._two_stage(state, k, candidates, for_you),
                lambda: self._exact(state, k, for_you),
            )

        def branch(name: str):
            return lambda: ranking.rank_shelf(self.tables, layout, state, name, k, score, ranked)

        check = tf.debugging.assert_less(
            shelf, len(contract.SHELVES), message=f"shelf must index {list(contract.SHELVES)}"
        )
        with tf.control_dependencies([check, tf.debugging.assert_non_negative(shelf)]):
            index, values, alpha = tf.switch_case(shelf, [branch(name) for name in contract.SHELVES])
        return self._answer(state, tf.where(values > -np.inf, index, -1), values, alpha)

    @tf.function(input_signature=specs(contract.SCORE))
    def score(self, embedding, item_ids):
        state, layout = embedding, self.static.layout
        embedding, _, _ = ranking.split_state(state, layout)
        index = tf.cast(self.item_index.lookup(item_ids), tf.int32)  # [B, X]
        rows = tf.maximum(index, 0)
        scores, _ = self._candidates(embedding, rows)
        scores = ranking.boosted_items(scores, rows, ranking.catalog_boosts(state, layout, tf.shape(self.item_ids)[0]))
        return {"scores": tf.where(index >= 0, scores, tf.fill(tf.shape(scores), -np.inf))}

    @tf.function(input_signature=specs(contract.ATTENTION))
    def attention(self, embedding, item_ids):
        rows, cols = self.static.grid
        embedding, _, _ = ranking.split_state(embedding, self.static.layout)
        index = self.item_index.lookup(item_ids)  # [B]
        parts = self._candidates(embedding, tf.maximum(index, 0)[:, None], self.static.model.explain_candidates)
        known = tf.cast(index >= 0, tf.float32)  # [B]; an unknown item: all zeros
        return {
            "attention": tf.reshape(parts["alpha"][:, 0] * known[:, None], [-1, rows, cols]),
            "contributions": tf.reshape(parts["contributions"][:, 0] * known[:, None], [-1, rows, cols]),
            "concentration": parts["concentration"][:, 0] * known,  # [B]
            "visual_share": parts["visual_share"][:, 0] * known,
        }  # [B]

    @tf.function(input_signature=specs(contract.BECAUSE))
    def because(self, embedding, item_ids):
        return self._because(embedding, tf.cast(self.item_index.lookup(item_ids), tf.int32))

    @tf.function(input_signature=specs(contract.POPULAR))
    def popular(self, k):
        k = tf.minimum(k, tf.shape(self.popular_ids)[0])
        return {"item_ids": self.popular_ids[:k], "scores": self.popular_scores[:k]}

    @tf.function(input_signature=specs(contract.USERS))
    def users(self, limit):
        return {"user_ids": self.active_users[: tf.minimum(limit, tf.shape(self.active_users)[0])]}
