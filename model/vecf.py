"""VECF: collaborative filtering with user-conditioned attention over image regions.

Score of user u for item i (the `add` merge with a dot product, see docs/vecf-model.md):

    score(u, i) = p_u . q_i + b_i + sum_l alpha_l(u, i) * ([p_u, 1] . W_v f_i^l)

W_v f stacks the merge projection W_m f (D values) and a user-independent visual bias (1 value).
An item with no training interactions keeps q_i = 0 and b_i = 0 (both start at zero and are only
touched when the item is sampled), so it is scored from its image alone.

Because the item side of every term is linear in the region features, the "tables"
`W_f f_i^l` [N, R, A] and `W_v f_i^l` [N, R, D+1] are computed once per model version and
`score_tables` ranks a catalog from them; training computes the same tables for the batch's items
and calls the same function, so serving and training share one forward pass.
"""

from __future__ import annotations

import keras
from keras import ops

from model import explanation
from model.attention import RegionAttention
from model.decoder import ReviewDecoder

LOSSES = ("bpr", "pointwise")


@keras.saving.register_keras_serializable(package="vecf")
class VECF(keras.Model):
    """Call inputs (dict): `user` [B], `pos` [B], `neg` [B] int indices, and `tokens` [B, T+1]
    (BOS review EOS, 0-padded) when the review decoder is on. Outputs (dict): `pos`, `neg` scores [B],
    and `review_logits` [B, T, V] for the positive pairs when the decoder is on.
    The catalog's region features are a non-trainable table [N, R, C] gathered by item index."""

    def __init__(
        self,
        num_users: int,
        num_items: int,
        num_regions: int,
        channels: int,
        dim: int = 32,
        attention_dim: int = 10,
        attention_scale: float = 1.0,
        use_attention: bool = True,
        feature_scale: float = 1.0,
        loss: str = "bpr",
        beta: float = 0.1,
        l2: float = 1e-4,
        vocab_size: int = 0,
        decoder_hidden: int = 64,
        seed: int = 0,
        affinity: float = 0.0,
        where_channels: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        if min(num_users, num_items, num_regions, channels, dim) < 1:
            raise ValueError("num_users, num_items, num_regions, channels and dim must all be >= 1")
        self.num_users, self.num_items, self.num_regions, self.channels = num_users, num_items, num_regions, channels
        self.dim, self.attention_dim, self.use_attention = dim, attention_dim, use_attention
        self.attention_scale = attention_scale
        self.feature_scale, self.loss_name, self.beta, self.l2 = feature_scale, loss, beta, l2
        self.vocab_size, self.decoder_hidden, self.seed = vocab_size, decoder_hidden, seed
        if affinity < 0:
            raise ValueError(f"affinity must be >= 0, got {affinity}")
        self.affinity = affinity
        if not 0 <= where_channels <= channels:
            raise ValueError(f"where_channels must be in [0, channels={channels}], got {where_channels}")
        self.where_channels = where_channels

        self.user_embedding = self.add_weight(
            shape=(num_users, dim),
            initializer=keras.initializers.RandomNormal(stddev=0.1, seed=seed),
            name="user_embedding",
        )
        self.item_embedding = self.add_weight(shape=(num_items, dim), initializer="zeros", name="item_embedding")
        self.item_bias = self.add_weight(shape=(num_items,), initializer="zeros", name="item_bias")
        self.region_features = self.add_weight(
            shape=(num_items, num_regions, channels),
            initializer="zeros",
            dtype="float16",
            trainable=False,
            name="region_features",
        )
        self.attention = RegionAttention(attention_dim, logit_scale=attention_scale, name="attention")
        self.attention.build((None, num_regions, where_channels or channels), (None, dim))
        # Zero start, like the item embeddings: a random visual term would add item-score noise as
        # large as the popularity signal; from zero it grows only where the images explain choices.
        self.value = keras.layers.Dense(dim + 1, use_bias=False, name="value", kernel_initializer="zeros")
        self.value.build((None, where_channels or channels))
        self.content = None  # a two-part backbone's "what" channels, pooled over the photo
        if where_channels and where_channels < channels:
            self.content = keras.layers.Dense(dim + 1, use_bias=False, name="content", kernel_initializer="zeros")
            self.content.build((None, channels - where_channels))
        self.decoder = None
        if vocab_size > 0 and beta > 0:
            self.decoder = ReviewDecoder(vocab_size, hidden=decoder_hidden, name="decoder")
            self.decoder.build((None, None), (None, channels), (None, dim), (None, dim))
        self.built = True

    # ---- shared forward pieces -------------------------------------------------------------
    def regions(self, items):
        """items [B] int -> region features [B, R, C] float32."""
        return ops.cast(ops.take(self.region_features, items, axis=0), "float32") * self.feature_scale

    def tables(self, regions):
        """regions [..., R, C] -> (attention table [..., R, A], value table [..., R, D+1]).

        With `where_channels` k > 0 (a two-part backbone) the first k channels are each cell's local
        features and the rest its semantic ones. The attention and the per-region value see the local
        part alone; the semantic part, averaged over the photo, adds one content vector to every region's
        value. The attention weights sum to 1, so that vector enters the score once, whatever the map:
        what the garment is counts everywhere, and only where-it-is-what decides what the map points at.
        Fed to the per-region value, the semantic channels let a score be earned without looking at the
        right place, and the map learns little."""
        if not self.where_channels:
            return self.attention.project_regions(regions), self.value(regions)
        where = regions[..., : self.where_channels]
        value = self.value(where)
        if self.content is not None:
            what = ops.mean(regions[..., self.where_channels :], axis=-2)  # [..., C - k]
            value = value + ops.expand_dims(self.content(what), -2)
        return self.attention.project_regions(where), value

    def attention_weights(self, region_proj, user_proj, region_scores):
        """Attention [..., R] from the item's projected regions, the user's query and the user's value of
        each region `region_scores` [..., R] ([p_u, 1] . W_v f_l, broadcastable to the logits)."""
        return self._alpha(self.attention.logits_from_projections(region_proj, user_proj), region_scores)

    def _alpha(self, logits, region_scores):
        # `affinity` adds the user's value of each region to the attention logits: the map looks where
        # this user's score comes from, and the score is a soft maximum over regions rather than a near
        # average. VECF's own logits see the user only through a ReLU gate of a few dimensions, and on
        # real photos they stay near uniform and alike for everyone.
        if self.affinity:
            logits = logits + self.affinity * region_scores
        alpha = ops.softmax(logits, axis=-1)  # [..., R]
        if not self.use_attention:  # VECF(-att): every region weighs the same
            alpha = ops.ones_like(alpha) / self.num_regions
        return alpha

    def score_tables(self, users, items, biases, region_proj, value_proj, pairwise: bool):
        """Scores and attention from item tables.

        pairwise=True: users [B, D] go with items [B, D], biases [B], tables [B, R, *] -> ([B], [B, R]).
        pairwise=False: every user with every item: tables [N, R, *] -> ([B, N], [B, N, R]).
        """
        user_proj = self.attention.project_users(users)  # [B, A]
        users_aug = ops.concatenate([users, ops.ones_like(users[:, :1])], axis=-1)  # [B, D+1]
        if pairwise:
            region_scores = ops.einsum("brk,bk->br", value_proj, users_aug)  # [B, R]
            alpha = self.attention_weights(region_proj, user_proj, region_scores)  # [B, R]
            collaborative = ops.sum(users * items, axis=-1) + biases  # [B]
        else:
            region_scores = ops.einsum("nrk,bk->bnr", value_proj, users_aug)  # [B, N, R]
            alpha = self.attention_weights(region_proj[None], user_proj[:, None, :], region_scores)  # [B, N, R]
            collaborative = ops.matmul(users, ops.transpose(items)) + biases[None, :]  # [B, N]
        return collaborative + ops.sum(alpha * region_scores, axis=-1), alpha

    # ---- serving: the same scores from split tables (RegionAttention.split_regions) -------------
    def _split_users(self, users):
        """users [B, D] -> (attention query in split form [B, 2A], [p_u, 1] [B, D+1])."""
        query = self.attention.split_query(self.attention.project_users(users))
        return query, ops.concatenate([users, ops.ones_like(users[:, :1])], axis=-1)

    def score_candidates(self, users, items, biases, split_proj, value_proj):
        """`score_tables` for B users, each with their own C items, from split tables.

        users [B, D], items [B, C, D], biases [B, C], split_proj [B, C, R, 2A], value_proj [B, C, R, D+1]
        -> (scores [B, C], alpha [B, C, R]). Each per-region term is one matrix product over the C*R
        flattened rows (no user broadcast over them, no [B, C, R, A] intermediate). With B statically 1
        (serving's common case) they are plain matrix products, which TensorFlow's CPU kernels run about
        1.5x faster than batched ones."""
        b, c, r = ops.shape(split_proj)[0], ops.shape(split_proj)[1], ops.shape(split_proj)[2]
        query, users_aug = self._split_users(users)  # [B, 2A], [B, D+1]
        if users.shape[0] == 1:
            logits = ops.matmul(ops.reshape(split_proj, (c * r, -1)), ops.transpose(query))  # [C*R, 1]
            region_scores = ops.matmul(ops.reshape(value_proj, (c * r, -1)), ops.transpose(users_aug))
            collaborative = ops.transpose(ops.matmul(items[0], ops.transpose(users)))  # [1, C]
        else:
            logits = ops.matmul(ops.reshape(split_proj, (b, c * r, -1)), ops.expand_dims(query, -1))  # [B, C*R, 1]
            region_scores = ops.matmul(ops.reshape(value_proj, (b, c * r, -1)), ops.expand_dims(users_aug, -1))
            collaborative = ops.squeeze(ops.matmul(items, ops.expand_dims(users, -1)), -1)  # [B, C]
        region_scores = ops.reshape(region_scores, (b, c, r))
        alpha = self._alpha(ops.reshape(logits, (b, c, r)), region_scores)
        return collaborative + biases + ops.sum(alpha * region_scores, axis=-1), alpha

    def explain_candidates(self, users, items, biases, split_proj, value_proj) -> dict:
        """`score_candidates` (same inputs) with each score taken apart (`model.explanation`).

        -> dict of `scores` [B, C], `alpha` [B, C, R], `contributions` [B, C, R] (alpha_l * v_l, region l's
        part of the score), and [B, C]: `visual` (their sum), `collaborative` (p_u . q_i + b_i),
        `concentration` and `visual_share`. With a two-part backbone a region's value holds the photo's
        content vector too (`tables`), so its contribution is its attention's share of that as well."""
        scores, alpha = self.score_candidates(users, items, biases, split_proj, value_proj)  # [B, C], [B, C, R]
        users_aug = ops.concatenate([users, ops.ones_like(users[:, :1])], axis=-1)  # [B, D+1]
        contributions = alpha * ops.einsum("bcrk,bk->bcr", value_proj, users_aug)  # [B, C, R]
        visual = ops.sum(contributions, axis=-1)  # [B, C]
        collaborative = ops.einsum("bcd,bd->bc", items, users) + biases  # [B, C]
        return {
            "scores": scores,
            "alpha": alpha,
            "contributions": contributions,
            "visual": visual,
            "collaborative": collaborative,
            "concentration": explanation.concentration(alpha, ops),
            "visual_share": explanation.visual_share(collaborative, visual, ops),
        }

    def score_catalog(self, users, items, biases, split_proj, value_proj):
        """`score_tables(..., pairwise=False)` from split tables: every user [B, D] with every item
        (items [N, D], biases [N], split_proj [N, R, 2A], value_proj [N, R, D+1]) -> ([B, N], [B, N, R])."""
        n, r = ops.shape(split_proj)[0], ops.shape(split_proj)[1]
        query, users_aug = self._split_users(users)  # [B, 2A], [B, D+1]
        logits = ops.matmul(ops.reshape(split_proj, (n * r, -1)), ops.transpose(query))  # [N*R, B]
        region_scores = ops.matmul(ops.reshape(value_proj, (n * r, -1)), ops.transpose(users_aug))  # [N*R, B]
        region_scores = ops.transpose(ops.reshape(region_scores, (n, r, -1)), (2, 0, 1))  # [B, N, R]
        alpha = self._alpha(ops.transpose(ops.reshape(logits, (n, r, -1)), (2, 0, 1)), region_scores)  # [B, N, R]
        collaborative = ops.matmul(users, ops.transpose(items)) + biases[None, :]  # [B, N]
        return collaborative + ops.sum(alpha * region_scores, axis=-1), alpha

    def catalog_tables(self, chunk: int = 4096):
        """Item tables for the whole catalog, computed once per model version (chunked: the raw
        region features of a large catalog do not fit in float32 at once)."""
        n = self.num_items
        parts = [self.tables(self.regions(ops.arange(s, min(s + chunk, n)))) for s in range(0, n, chunk)]
        return ops.concatenate([p[0] for p in parts], 0), ops.concatenate([p[1] for p in parts], 0)

    def retrieval_vectors(self, items, biases, region_proj, value_proj, users=None, budget: int = 1 << 24):
        """Stage 1 of two-stage ranking: one user-independent vector per item, so that a matrix product
        and a top-k pick the candidates that `score_tables` then ranks exactly.

        `score_tables` computes score(u, i) = [p_u, 1] . ([q_i, b_i] + sum_l alpha_l(u, i) W_v f_i^l), and
        only alpha depends on both sides. With alpha_l(u, i) replaced by a weight w_il of the item alone,
        score(u, i) ~ [p_u, 1] . r_i where r_i = [q_i, b_i] + sum_l w_il W_v f_i^l. w_il is the attention
        the sample `users` [U, D] pay to region l of item i, averaged over them; without users (or with
        attention off) the uniform 1/R, exact for VECF(-att). Either way each w_i sums to 1.

        items [N, D], biases [N], region_proj [N, R, A], value_proj [N, R, D+1] -> r [N, D+1] float32.
        `budget` caps the floats of one chunk's [U, n, R, A] attention intermediate.
        """
        base = ops.concatenate([ops.convert_to_tensor(items), ops.expand_dims(biases, -1)], axis=-1)  # [N, D+1]
        if users is None or not self.use_attention:
            return base + ops.mean(value_proj, axis=1)
        user_proj = ops.expand_dims(self.attention.project_users(users), 1)  # [U, 1, A]
        users_aug = ops.concatenate([users, ops.ones_like(users[:, :1])], axis=-1)  # [U, D+1]
        n, (u, r, a) = value_proj.shape[0], (users.shape[0], region_proj.shape[1], region_proj.shape[2])
        chunk = max(1, budget // (u * r * a))
        parts = []
        for s in range(0, n, chunk):
            region_scores = ops.einsum("nrk,uk->unr", value_proj[s : s + chunk], users_aug)  # [U, n, R]
            weights = ops.mean(
                self.attention_weights(region_proj[None, s : s + chunk], user_proj, region_scores), axis=0
            )  # [n, R]
            parts.append(ops.einsum("nr,nrk->nk", weights, value_proj[s : s + chunk]))  # [n, D+1]
        return base + ops.concatenate(parts, axis=0)

    def score_pairs(self, user_vectors, items, regions=None):
        """user_vectors [B, D], items [B] int -> (scores [B], alpha [B, R], regions [B, R, C]).
        `regions` [B, R, C]: the items' features when the caller has them already."""
        regions = self.regions(items) if regions is None else regions
        region_proj, value_proj = self.tables(regions)
        scores, alpha = self.score_tables(
            user_vectors,
            ops.take(self.item_embedding, items, axis=0),
            ops.take(self.item_bias, items, axis=0),
            region_proj,
            value_proj,
            pairwise=True,
        )
        return scores, alpha, regions

    # ---- training --------------------------------------------------------------------------
    def batch_regions(self, inputs, side: str):
        """Region features of a batch's `side` ("pos" or "neg") items, gathered from the table on the
        accelerator; bench.train overrides it to measure the host-fed alternative."""
        return self.regions(inputs[side])

    def call(self, inputs, training: bool = False):
        users = ops.take(self.user_embedding, inputs["user"], axis=0)  # [B, D]
        pos, pos_alpha, pos_regions = self.score_pairs(users, inputs["pos"], self.batch_regions(inputs, "pos"))
        neg, _, _ = self.score_pairs(users, inputs["neg"], self.batch_regions(inputs, "neg"))
        out = {"pos": pos, "neg": neg}
        if self.decoder is not None and "tokens" in inputs:
            visual = ops.einsum("br,brc->bc", pos_alpha, pos_regions)  # attended feature v_ui [B, C]
            items = ops.take(self.item_embedding, inputs["pos"], axis=0)
            out["review_logits"] = self.decoder(inputs["tokens"][:, :-1], visual, users, items)  # [B, T, V]
        return out

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if self.loss_name == "bpr":
            loss = ops.mean(ops.softplus(y_pred["neg"] - y_pred["pos"]))  # -log sigmoid(pos - neg)
        else:  # binary cross-entropy with logits, one negative per positive (the authors' choice)
            loss = ops.mean(ops.softplus(-y_pred["pos"]) + ops.softplus(y_pred["neg"]))
        if "review_logits" in y_pred:
            targets = x["tokens"][:, 1:]  # [B, T]
            mask = ops.cast(ops.not_equal(targets, 0), "float32")
            ce = keras.losses.sparse_categorical_crossentropy(targets, y_pred["review_logits"], from_logits=True)
            loss = loss + self.beta * ops.sum(ce * mask) / ops.maximum(ops.sum(mask), 1.0)
        batch = ops.cast(ops.shape(x["user"])[0], "float32")
        squares = sum(
            ops.sum(ops.square(ops.take(table, x[key], axis=0)))
            for table, key in (
                (self.user_embedding, "user"),
                (self.item_embedding, "pos"),
                (self.item_embedding, "neg"),
            )
        )
        return loss + self.l2 * squares / batch

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "num_users": self.num_users,
            "num_items": self.num_items,
            "num_regions": self.num_regions,
            "channels": self.channels,
            "dim": self.dim,
            "attention_dim": self.attention_dim,
            "attention_scale": self.attention_scale,
            "use_attention": self.use_attention,
            "feature_scale": self.feature_scale,
            "loss": self.loss_name,
            "beta": self.beta,
            "l2": self.l2,
            "vocab_size": self.vocab_size,
            "decoder_hidden": self.decoder_hidden,
            "seed": self.seed,
            "affinity": self.affinity,
            "where_channels": self.where_channels,
        }
