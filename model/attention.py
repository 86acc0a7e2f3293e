"""User-conditioned attention over image regions (VECF, eq. for a_l and alpha)."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="vecf")
class RegionAttention(keras.layers.Layer):
    """`a_l = w^T ReLU((W_f f_l + e_l) * (W_p p_u))`, `alpha = softmax_l(a)`.

    `e_l` is a learned embedding of region l's position in the grid (our addition to VECF): a CNN
    cell's features say *what* is there but barely *where*, and "a red collar" differs from "a red
    hem" only by where the red is. The item side (`W_f f_l + e_l`) is computed once per item
    (`project_regions`) and reused for every user; only `weights_from_projections` depends on both.

    Call inputs: `regions` [B, R, C] and `users` [B, D]. Output: attention weights [B, R], summing to 1.
    """

    def __init__(self, attention_dim: int = 10, logit_scale: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        if attention_dim < 1:
            raise ValueError(f"attention_dim must be >= 1, got {attention_dim}")
        if logit_scale <= 0:
            raise ValueError(f"logit_scale must be > 0, got {logit_scale}")
        self.attention_dim, self.logit_scale = attention_dim, logit_scale

    def build(self, regions_shape, users_shape) -> None:
        regions, channels, dim, a = regions_shape[-2], regions_shape[-1], users_shape[-1], self.attention_dim
        self.region_kernel = self.add_weight(shape=(channels, a), initializer="glorot_uniform", name="region_kernel")
        self.position = self.add_weight(shape=(regions, a), initializer="zeros", name="position")
        self.user_kernel = self.add_weight(shape=(dim, a), initializer="glorot_uniform", name="user_kernel")
        # w starts at zero: attention starts uniform and sharpens where it pays. A random start
        # locks it onto whichever cells have the largest features (bright background) before
        # the value path has learnt anything, and softmax saturation keeps it there.
        self.logit_kernel = self.add_weight(shape=(a, 1), initializer="zeros", name="logit_kernel")

    def project_regions(self, regions):
        return ops.matmul(regions, self.region_kernel) + self.position  # [..., R, C] -> [..., R, A]

    def project_users(self, users):
        # The direction of p_u says what the user likes; its length is shrunk by L2 regularisation
        # and would otherwise flatten every user's attention towards uniform. Normalise it away.
        unit = users / ops.sqrt(ops.sum(ops.square(users), axis=-1, keepdims=True) + 1e-12)
        return ops.matmul(unit, self.user_kernel)  # [..., D] -> [..., A]

    def logits_from_projections(self, region_proj, user_proj):
        """region_proj [..., R, A] and user_proj [..., A] with broadcastable leading dims -> logits [..., R]."""
        joint = ops.relu(region_proj * ops.expand_dims(user_proj, -2))  # [..., R, A]
        # logit_scale multiplies how fast the logits move per optimizer step (Adam's steps have a
        # fixed size), so attention can sharpen within the few epochs early stopping allows.
        return self.logit_scale * ops.squeeze(ops.matmul(joint, self.logit_kernel), -1)  # [..., R]

    def weights_from_projections(self, region_proj, user_proj):
        """region_proj [..., R, A] and user_proj [..., A] with broadcastable leading dims -> [..., R]."""
        return ops.softmax(self.logits_from_projections(region_proj, user_proj), axis=-1)

    # Serving's form of the same logits. relu(x * y) = relu(x) relu(y) + relu(-x) relu(-y) for scalars, so
    # the logits are one product of an item-only table [..., R, 2A] with a user-only vector [..., 2A]: a
    # matrix product over the flattened regions instead of broadcasting each user over [..., R, A] and
    # reducing it: stage 2 of 2,000 candidates on bench/serve.py's 200k model took 3.2 ms of CPU instead of 4.3.
    def split_regions(self, region_proj):
        """region_proj [..., R, A] -> [..., R, 2A], computed once per item like region_proj."""
        return ops.concatenate([ops.relu(region_proj), ops.relu(-region_proj)], axis=-1)

    def split_query(self, user_proj):
        """user_proj [..., A] -> [..., 2A]: logits = sum(split_regions(region_proj) * split_query(user_proj), -1)."""
        kernel = self.logit_scale * self.logit_kernel[:, 0]  # [A]
        return ops.concatenate([ops.relu(user_proj) * kernel, ops.relu(-user_proj) * kernel], axis=-1)

    def call(self, regions, users):
        return self.weights_from_projections(self.project_regions(regions), self.project_users(users))

    def get_config(self) -> dict:
        return {**super().get_config(), "attention_dim": self.attention_dim, "logit_scale": self.logit_scale}
