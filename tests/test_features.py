"""Square padding boxes, image loading and the region-feature extraction (offline.features)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from offline.dataset import load_catalog, write_catalog
from offline.features import extract, load_features, load_square, square_box


@pytest.mark.parametrize(("size", "box"), [
    ((40, 60), (-10.0, 0.0, 50.0, 60.0)),   # portrait: 20 px of padding, 10 on each side
    ((60, 40), (0.0, -10.0, 60.0, 50.0)),   # landscape
    ((50, 50), (0.0, 0.0, 50.0, 50.0)),     # square: no padding
    ((3, 6), (-1.0, 0.0, 5.0, 6.0)),        # odd padding: 1 px left, 2 px right (whole pixels)
])
def test_square_box(size: tuple[int, int], box: tuple[float, ...]) -> None:
    got = square_box(*size)
    assert got == box
    assert got[2] - got[0] == got[3] - got[1] == max(size)  # a square
    assert got[0] <= 0 and got[1] <= 0 and got[2] >= size[0] and got[3] >= size[1]  # containing the image


def write_png(path: Path, pixels: np.ndarray) -> Path:
    Image.fromarray(pixels.astype(np.uint8), "RGB").save(path)
    return path


def test_load_square_pads_a_portrait_with_the_border_colour(tmp_path: Path) -> None:
    # 3 wide x 5 tall, border (10, 20, 30), one red pixel in the middle
    pixels = np.empty((5, 3, 3), np.uint8)
    pixels[:] = (10, 20, 30)
    pixels[2, 1] = (255, 0, 0)
    image, box = load_square(write_png(tmp_path / "p.png", pixels), size=5)  # no resize: 5 = the square side
    assert box == (-1.0, 0.0, 4.0, 5.0)
    assert image.shape == (5, 5, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image[:, 1:4], pixels)  # the original at offset (1, 0)
    np.testing.assert_array_equal(image[:, 0], np.full((5, 3), (10, 20, 30)))  # padding left
    np.testing.assert_array_equal(image[:, 4], np.full((5, 3), (10, 20, 30)))  # padding right


def test_load_square_fills_with_the_mean_border_colour_of_a_landscape(tmp_path: Path) -> None:
    # 4 wide x 2 tall: top row black, bottom row white. Border pixels: top row 4 black, bottom row 4 white,
    # left and right columns 2 black + 2 white -> 6 black, 6 white -> mean 127.5 -> 127
    pixels = np.zeros((2, 4, 3), np.uint8)
    pixels[1] = 255
    image, box = load_square(write_png(tmp_path / "l.png", pixels), size=4)
    assert box == (0.0, -1.0, 4.0, 3.0)
    np.testing.assert_array_equal(image[1:3], pixels)  # rows 1..2
    np.testing.assert_array_equal(image[0], np.full((4, 3), 127))
    np.testing.assert_array_equal(image[3], np.full((4, 3), 127))


def test_load_square_resizes_to_the_requested_side(tmp_path: Path) -> None:
    image, box = load_square(write_png(tmp_path / "s.png", np.full((6, 6, 3), 200)), size=12)
    assert image.shape == (12, 12, 3) and box == (0.0, 0.0, 6.0, 6.0)
    np.testing.assert_array_equal(image, 200)


@pytest.fixture(scope="module")
def catalog_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("catalog")
    (folder / "images").mkdir()
    sizes = {"a": (40, 60), "b": (60, 40), "c": (50, 50), "d": (30, 30)}
    rng = np.random.default_rng(0)
    for k, (item, (w, h)) in enumerate(sizes.items()):
        pixels = np.full((h, w, 3), 40 * k, np.uint8)
        pixels[h // 4: h // 2, w // 4: w // 2] = rng.integers(0, 256, 3)  # a coloured patch
        write_png(folder / "images" / f"{item}.png", pixels)
    write_catalog(folder, list(sizes), [f"images/{item}.png" for item in sizes])
    return folder


def test_extract_writes_float16_regions_boxes_and_meta_and_reuses_them(catalog_dir: Path, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    catalog = load_catalog(catalog_dir)
    out = tmp_path / "features"
    features = extract(catalog, out, workers=1, progress=False)
    assert "features: 4 items x 7x7 regions x 64 channels" in capsys.readouterr().out
    assert features.regions.dtype == np.float16 and features.regions.shape == (4, 49, 64)
    regions = np.asarray(features.regions, dtype=np.float32)
    assert np.isfinite(regions).all() and regions.std() > 0
    assert not np.allclose(regions[0], regions[1])  # different images, different features
    np.testing.assert_array_equal(features.boxes, [square_box(40, 60), square_box(60, 40),
                                                   square_box(50, 50), square_box(30, 30)])
    assert features.boxes.dtype == np.float32
    assert features.item_ids == ["a", "b", "c", "d"]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["complete"] is True and meta["num_items"] == 4 and features.grid == (7, 7)
    assert meta["channels"] == 64 and meta["backbone"] == "random_cnn"
    # stored features are standardised per channel (statistics over every item and region, kept in meta)
    flat = regions.reshape(-1, 64)
    channel_std = np.array(meta["channel_std"])
    assert len(meta["channel_mean"]) == 64 and channel_std.shape == (64,) and meta["feature_scale"] == 1.0
    live = channel_std > 1e-4  # channels that vary across the catalog; the others are dead ReLUs
    assert live.sum() >= 32
    np.testing.assert_allclose(flat[:, live].mean(0), 0.0, atol=1e-2)
    np.testing.assert_allclose(flat[:, live].std(0), 1.0, rtol=1e-2)
    assert np.abs(flat[:, ~live]).max(initial=0.0) < 1e-2
    assert (out / "backbone.keras").exists()

    stamps = {name: (out / name).stat().st_mtime_ns for name in ("regions.npy", "boxes.npy", "meta.json")}
    again = extract(catalog, out, workers=1, progress=False)
    assert "reusing" in capsys.readouterr().out
    assert {name: (out / name).stat().st_mtime_ns for name in stamps} == stamps
    np.testing.assert_array_equal(np.asarray(again.regions), np.asarray(features.regions))

    # a different catalog (same images, another order) is not mistaken for the finished one
    reordered = load_catalog(catalog_dir)
    reordered.item_ids.reverse()
    reordered.images.reverse()
    swapped = extract(reordered, out, workers=1, progress=False)
    assert "reusing" not in capsys.readouterr().out
    assert swapped.item_ids == ["d", "c", "b", "a"]
    np.testing.assert_allclose(np.asarray(swapped.regions[0], np.float32), regions[3], rtol=1e-2, atol=2e-2)


def test_load_features_refuses_an_unfinished_extraction(tmp_path: Path) -> None:
    (tmp_path / "meta.json").write_text(json.dumps({"complete": False}))
    with pytest.raises(ValueError, match="did not finish"):
        load_features(tmp_path)
