"""The review decoder: regenerates the user's review from the attended visual feature (weak supervision)."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="vecf")
class ReviewDecoder(keras.layers.Layer):
    """A GRU language model conditioned on (user, item, attended image), as in VECF.

    Initial state `h_0 = tanh(U_p p + U_q q)`. At step t a scalar gate `g_t = sigmoid(w_g h_{t-1})`
    mixes visual and user/item context, `c_t = ReLU(g_t V_v v + (1 - g_t)(V_p p + V_q q) + b)`
    (zero at t = 0), and the GRU input is `[embed(w_t); c_t]`.

    Call inputs: `tokens` [B, T] int (teacher-forced inputs, starting with BOS), `visual` [B, C],
    `users` [B, D], `items` [B, D]. Output: next-token logits [B, T, V].
    """

    def __init__(self, vocab_size: int, embed_dim: int = 32, hidden: int = 64, context_dim: int = 32, **kwargs):
        super().__init__(**kwargs)
        for name, value in (
            ("vocab_size", vocab_size),
            ("embed_dim", embed_dim),
            ("hidden", hidden),
            ("context_dim", context_dim),
        ):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        self.vocab_size, self.embed_dim, self.hidden, self.context_dim = vocab_size, embed_dim, hidden, context_dim
        self.embedding = keras.layers.Embedding(vocab_size, embed_dim, name="word_embedding")
        self.init_state = keras.layers.Dense(hidden, activation="tanh", name="init_state")
        self.gate = keras.layers.Dense(1, activation="sigmoid", name="gate")
        self.visual_context = keras.layers.Dense(context_dim, use_bias=False, name="visual_context")
        self.pair_context = keras.layers.Dense(context_dim, use_bias=False, name="pair_context")
        self.gru_input = keras.layers.Dense(3 * hidden, name="gru_input")
        self.gru_recurrent = keras.layers.Dense(3 * hidden, use_bias=False, name="gru_recurrent")
        self.output_logits = keras.layers.Dense(vocab_size, name="output_logits")

    def build(self, tokens_shape, visual_shape, users_shape, items_shape) -> None:
        dim = users_shape[-1] + items_shape[-1]
        self.embedding.build(tokens_shape)
        self.init_state.build((None, dim))
        self.gate.build((None, self.hidden))
        self.visual_context.build(visual_shape)
        self.pair_context.build((None, dim))
        self.gru_input.build((None, self.embed_dim + self.context_dim))
        self.gru_recurrent.build((None, self.hidden))
        self.output_logits.build((None, None, self.hidden))
        self.context_bias = self.add_weight(shape=(self.context_dim,), initializer="zeros", name="context_bias")

    def _gru_step(self, x, h):
        xz, xr, xn = ops.split(self.gru_input(x), 3, axis=-1)
        hz, hr, hn = ops.split(self.gru_recurrent(h), 3, axis=-1)
        z = ops.sigmoid(xz + hz)
        r = ops.sigmoid(xr + hr)
        n = ops.tanh(xn + r * hn)
        return (1.0 - z) * n + z * h

    def call(self, tokens, visual, users, items):
        pair = ops.concatenate([users, items], axis=-1)  # [B, 2D]
        h = self.init_state(pair)  # [B, H]
        visual_c = self.visual_context(visual)  # [B, Cc]
        pair_c = self.pair_context(pair)  # [B, Cc]
        words = self.embedding(tokens)  # [B, T, E]
        states = []
        # Reviews are short (about 30 tokens); an unrolled loop runs the same on every Keras backend.
        for t in range(tokens.shape[1]):
            if t == 0:
                context = ops.zeros_like(visual_c)
            else:
                g = self.gate(h)  # [B, 1]
                context = ops.relu(g * visual_c + (1.0 - g) * pair_c + self.context_bias)  # [B, Cc]
            h = self._gru_step(ops.concatenate([words[:, t, :], context], axis=-1), h)
            states.append(h)
        return self.output_logits(ops.stack(states, axis=1))  # [B, T, V]

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "vocab_size": self.vocab_size,
            "embed_dim": self.embed_dim,
            "hidden": self.hidden,
            "context_dim": self.context_dim,
        }
