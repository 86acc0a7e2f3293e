"""Compile a numeric function with the active Keras backend's compiler (XLA on TensorFlow, jax.jit).

Ranking a catalog builds [B, N, R, A] intermediates; compiled, the backend fuses the ReLU, product
and reduction instead of materialising each (about 1.7x faster on CPU for the H&M catalog)."""

from __future__ import annotations

from collections.abc import Callable

import keras


def jit(fn: Callable) -> Callable:
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=True, reduce_retracing=True)
    if backend == "jax":
        import jax

        return jax.jit(fn)
    return fn  # other backends run eagerly
