"""Square padding boxes, image loading and the region-feature extraction (offline.features.regions)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from offline.data.dataset import load_catalog, write_catalog
from offline.data.photos import load_square, square_box
from offline.features.regions import extract, load_features, parse_shard, shard_rows


@pytest.mark.parametrize(
    ("size", "box"),
    [
        ((40, 60), (-10.0, 0.0, 50.0, 60.0)),  # portrait: 20 px of padding, 10 on each side
        ((60, 40), (0.0, -10.0, 60.0, 50.0)),  # landscape
        ((50, 50), (0.0, 0.0, 50.0, 50.0)),  # square: no padding
        ((3, 6), (-1.0, 0.0, 5.0, 6.0)),  # odd padding: 1 px left, 2 px right (whole pixels)
    ],
)
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
        pixels[h // 4 : h // 2, w // 4 : w // 2] = rng.integers(0, 256, 3)  # a coloured patch
        write_png(folder / "images" / f"{item}.png", pixels)
    write_catalog(folder, list(sizes), [f"images/{item}.png" for item in sizes])
    return folder


def test_extract_writes_float16_regions_boxes_and_meta_and_reuses_them(
    catalog_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    catalog = load_catalog(catalog_dir)
    out = tmp_path / "features"
    features = extract(catalog, out, workers=1, progress=False)
    assert "features: 4 items x 7x7 regions x 64 channels" in capsys.readouterr().out
    assert features.regions.dtype == np.float16 and features.regions.shape == (4, 49, 64)
    regions = np.asarray(features.regions, dtype=np.float32)
    assert np.isfinite(regions).all() and regions.std() > 0
    assert not np.allclose(regions[0], regions[1])  # different images, different features
    np.testing.assert_array_equal(
        features.boxes, [square_box(40, 60), square_box(60, 40), square_box(50, 50), square_box(30, 30)]
    )
    assert features.boxes.dtype == np.float32
    assert features.item_ids == ["a", "b", "c", "d"]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["complete"] is True and meta["num_items"] == 4 and features.grid == (7, 7)
    assert meta["channels"] == 64 and meta["backbone"] == "random_cnn" and meta["where_channels"] == 0
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


@pytest.fixture(scope="module")
def ten_items(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ten small images of different sizes and colours (enough for several batches and shards)."""
    folder = tmp_path_factory.mktemp("ten")
    (folder / "images").mkdir()
    rng = np.random.default_rng(1)
    items = [f"i{k}" for k in range(10)]
    for k, item in enumerate(items):
        w, h = 30 + 7 * k, 60 - 3 * k
        pixels = np.full((h, w, 3), 20 * k, np.uint8)
        pixels[h // 3 : h // 2, w // 4 : w // 2] = rng.integers(0, 256, 3)
        write_png(folder / "images" / f"{item}.png", pixels)
    write_catalog(folder, items, [f"images/{item}.png" for item in items])
    return folder


def assert_same_features(a, b) -> None:
    np.testing.assert_array_equal(np.asarray(a.regions), np.asarray(b.regions))
    np.testing.assert_array_equal(a.boxes, b.boxes)
    assert a.item_ids == b.item_ids
    assert a.meta == b.meta


class CountingLoads:
    """Stands in for offline.features.regions.load_square: counts the images read, can fail on one of them."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.paths: list[str] = []
        self.fail_on = fail_on

    def __call__(self, path: Path, size: int):
        if path.stem == self.fail_on:
            raise RuntimeError(f"simulated interruption at {path.name}")
        self.paths.append(path.stem)
        return load_square(path, size)


def test_shards_then_merge_equal_one_whole_extraction(
    ten_items: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    catalog = load_catalog(ten_items)
    whole = extract(catalog, tmp_path / "whole", batch_size=3, workers=2, progress=False)
    out = tmp_path / "sharded"
    for index in range(3):  # rows 0-2, 3-5, 6-9
        assert extract(catalog, out, batch_size=3, workers=2, progress=False, shard=(index, 3)) is None
        assert (out / "parts" / f"{index}-of-3" / "done.npy").exists()
        assert not (out / "meta.json").exists()
    assert "3 of 3 parts complete" in capsys.readouterr().out
    loads = CountingLoads()
    monkeypatch.setattr("offline.features.regions.load_square", loads)
    merged = extract(catalog, out, batch_size=3, workers=2, progress=False)  # the call without --shard merges
    assert loads.paths == []  # nothing extracted twice
    assert_same_features(merged, whole)
    assert not (out / "parts").exists() and (out / "backbone.keras").exists()
    # a finished extraction is reused by shard calls too
    assert extract(catalog, out, progress=False, shard=(1, 3)) is not None
    assert "reusing" in capsys.readouterr().out


def test_merge_finishes_missing_shards_itself(ten_items: Path, tmp_path: Path) -> None:
    catalog = load_catalog(ten_items)
    whole = extract(catalog, tmp_path / "whole", batch_size=4, workers=1, progress=False)
    out = tmp_path / "partial"
    extract(catalog, out, batch_size=4, workers=1, progress=False, shard=(1, 2))
    merged = extract(catalog, out, batch_size=4, workers=1, progress=False)  # runs shard 0/2, then merges
    assert_same_features(merged, whole)


def test_an_interrupted_extraction_resumes_where_it_stopped(
    ten_items: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = load_catalog(ten_items)
    reference = extract(catalog, tmp_path / "reference", batch_size=2, workers=1, progress=False)
    out = tmp_path / "interrupted"
    monkeypatch.setattr("offline.features.regions.load_square", CountingLoads(fail_on="i7"))  # in the 4th batch
    with pytest.raises(RuntimeError, match="simulated interruption at i7.png"):
        extract(catalog, out, batch_size=2, workers=1, progress=False)
    done = np.load(out / "parts" / "0-of-1" / "done.npy")
    np.testing.assert_array_equal(done, [True] * 6 + [False] * 4)  # the three finished batches were kept
    with pytest.raises(ValueError, match="did not finish"):
        load_features(out)

    loads = CountingLoads()
    monkeypatch.setattr("offline.features.regions.load_square", loads)
    resumed = extract(catalog, out, batch_size=2, workers=1, progress=False)
    assert loads.paths == ["i6", "i7", "i8", "i9"]  # only what was missing
    assert_same_features(resumed, reference)


def test_a_leftover_part_of_another_catalog_is_not_reused(
    ten_items: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = load_catalog(ten_items)
    out = tmp_path / "features"
    monkeypatch.setattr("offline.features.regions.load_square", CountingLoads(fail_on="i5"))
    with pytest.raises(RuntimeError):
        extract(catalog, out, batch_size=2, workers=1, progress=False)
    catalog.item_ids.reverse()  # same images, another order: another fingerprint
    catalog.images.reverse()
    loads = CountingLoads()
    monkeypatch.setattr("offline.features.regions.load_square", loads)
    features = extract(catalog, out, batch_size=2, workers=1, progress=False)
    assert len(loads.paths) == 10 and features.item_ids[0] == "i9"


def test_an_unreadable_image_is_named(ten_items: Path, tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "broken.png").write_bytes(b"not an image")
    write_catalog(tmp_path, ["x"], ["images/broken.png"])
    with pytest.raises(ValueError, match=r"cannot read image .*broken.png"):
        extract(load_catalog(tmp_path), tmp_path / "features", workers=1, progress=False)


@pytest.mark.parametrize("text", ["3/3", "1", "-1/2", "a/b", "1/0"])
def test_parse_shard_rejects_bad_specs(text: str) -> None:
    with pytest.raises(ValueError, match="shard must be i/n"):
        parse_shard(text)


def test_shard_rows_cover_the_catalog_once() -> None:
    assert parse_shard(" 2/5 ") == (2, 5)
    parts = [shard_rows(10, i, 3) for i in range(3)]
    assert parts == [range(0, 3), range(3, 6), range(6, 10)]
    assert [r for p in (shard_rows(7, i, 7) for i in range(7)) for r in p] == list(range(7))


def test_more_shards_than_items_is_refused(ten_items: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot split 10 items into 11 shards"):
        extract(load_catalog(ten_items), tmp_path, progress=False, shard=(0, 11))
