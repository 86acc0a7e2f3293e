"""CNN backbones that turn a square image into a grid of region features.

Each backbone maps float32 images [B, S, S, 3] (0..255 RGB) to region features [B, rows, cols, C].
`random_cnn` is a small fully convolutional net with fixed, seeded weights: it needs no download,
keeps colour and texture local to each cell (its receptive field is exactly one cell), and is the
default for the synthetic demo. Pretrained backbones are added beside it under their own names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable


@dataclass(frozen=True)
class Backbone:
    name: str
    input_size: int  # the square side the image is resized to
    grid: int  # rows == cols of the output grid
    channels: int
    build: Callable[[], "object"]  # -> a keras.Model


def _random_cnn(seed: int = 7):
    import keras

    init = lambda k: keras.initializers.HeNormal(seed=seed + k)  # noqa: E731 - a seed per layer
    inputs = keras.Input((224, 224, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)
    # Kernels equal to strides: no two cells share a pixel, so a cell's vector describes exactly
    # the 32x32 pixels its heatmap cell covers (overlapping receptive fields smear a part's edge
    # into the neighbouring cell, and the attention then lands beside the part).
    x = keras.layers.Conv2D(48, 4, strides=4, activation="relu", kernel_initializer=init(0))(x)  # 56
    x = keras.layers.Conv2D(64, 2, strides=2, activation="relu", kernel_initializer=init(1))(x)  # 28
    x = keras.layers.Conv2D(64, 2, strides=2, activation="relu", kernel_initializer=init(2))(x)  # 14
    x = keras.layers.AveragePooling2D(2)(x)  # [B, 7, 7, 64]: one vector per 32x32 cell
    return keras.Model(inputs, x, name="random_cnn")


BACKBONES: dict[str, Backbone] = {
    "random_cnn": Backbone("random_cnn", input_size=224, grid=7, channels=64, build=_random_cnn),
}


def get_backbone(name: str) -> Backbone:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}")
    return BACKBONES[name]


def save_backbone(model, folder: Path) -> Path:
    """Keep the exact network next to its features, so new items later get comparable features."""
    path = folder / "backbone.keras"
    model.save(path)
    return path
