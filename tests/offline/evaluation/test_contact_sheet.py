"""offline.evaluation.contact_sheet: a 6 x 6 sheet whose tiles are the gateway's heatmaps, plain photos where a map
explains little, and the maps it is fed computed as the export computes them."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from keras import ops
from PIL import Image, ImageOps

from model.vecf import VECF
from offline.evaluation.contact_sheet import (
    COL_LABEL_HEIGHT,
    MARGIN,
    ROW_LABEL_WIDTH,
    TILE,
    explained_maps,
    write_contact_sheet,
)
from service.heatmap import render_file

GRID = (2, 3)
CUSTOMERS, ITEMS = 6, 6


def photos(root: Path) -> tuple[list[Path], list[tuple[float, float, float, float]]]:
    """Six striped photos, wide and tall, each with the box of a square padded around it."""
    paths, boxes = [], []
    for i in range(ITEMS):
        width, height = (90, 60) if i % 2 else (50, 80)
        pixels = np.zeros((height, width, 3), np.uint8)
        pixels[..., 0] = (np.arange(width) * 5 + 40 * i) % 256
        pixels[::4, :, 1] = 200
        paths.append(root / f"item{i}.png")
        Image.fromarray(pixels, "RGB").save(paths[-1])
        side = max(width, height)
        boxes.append(((width - side) / 2, (height - side) / 2, (width + side) / 2, (height + side) / 2))
    return paths, boxes


def maps() -> np.ndarray:
    """[6, 6, 6]: customer c looks mostly at region (c + i) % 6 of item i; customer 5's maps are uniform."""
    out = np.full((CUSTOMERS, ITEMS, 6), 0.04)
    for c in range(CUSTOMERS):
        for i in range(ITEMS):
            out[c, i, (c + i) % 6] = 0.8
    out[5] = 1 / 6
    return out


def tile_at(sheet: Image.Image, c: int, i: int) -> np.ndarray:
    left, top = ROW_LABEL_WIDTH + i * TILE, COL_LABEL_HEIGHT + c * TILE
    return np.asarray(sheet.crop((left, top, left + TILE, top + TILE)))


def fitted(image: Image.Image) -> np.ndarray:
    """The image scaled into a tile as the sheet does: kept whole, centred on white with a margin."""
    image = ImageOps.contain(image, (TILE - 2 * MARGIN, TILE - 2 * MARGIN), Image.Resampling.LANCZOS)
    out = Image.new("RGB", (TILE, TILE), "white")
    out.paste(image, ((TILE - image.width) // 2, (TILE - image.height) // 2))
    return np.asarray(out)


def test_a_six_by_six_sheet_draws_the_gateways_heatmaps_and_plain_photos(tmp_path: Path) -> None:
    paths, boxes = photos(tmp_path)
    shares = np.full((CUSTOMERS, ITEMS), 0.5)
    shares[0, 1] = 0.01  # the photo carries 1% of that score
    out = write_contact_sheet(
        tmp_path / "sheets" / "sheet.png",
        paths,
        boxes,
        maps(),
        GRID,
        [f"customer {c}" for c in range(CUSTOMERS)],
        [f"item {i}" for i in range(ITEMS)],
        visual_shares=shares,
    )
    assert out == tmp_path / "sheets" / "sheet.png"
    with Image.open(out) as sheet:
        assert sheet.format == "PNG"
        assert sheet.size == (ROW_LABEL_WIDTH + ITEMS * TILE, COL_LABEL_HEIGHT + CUSTOMERS * TILE)
        sheet = sheet.convert("RGB")
    gateway = Image.open(io.BytesIO(render_file(str(paths[2]), maps()[1, 2].reshape(GRID), boxes[2])))
    np.testing.assert_array_equal(tile_at(sheet, 1, 2), fitted(gateway.convert("RGB")))
    for c, i in [(5, 3), (0, 1)]:  # near uniform; little of the score
        with Image.open(paths[i]) as photo:
            plain = fitted(photo.convert("RGB"))
        drawn = tile_at(sheet, c, i)
        np.testing.assert_array_equal(drawn[: TILE // 2], plain[: TILE // 2])  # the photo, no overlay
        assert (drawn[-20:] != plain[-20:]).any()  # and its label at the bottom
    assert not np.array_equal(tile_at(sheet, 0, 1), tile_at(sheet, 5, 1))  # the two labels differ


def test_without_visual_shares_maps_are_judged_on_concentration(tmp_path: Path) -> None:
    paths, boxes = photos(tmp_path)
    labels = [str(n) for n in range(6)]
    out = write_contact_sheet(tmp_path / "sheet.png", paths, boxes, maps(), GRID, labels, labels, tile=40)
    with Image.open(out) as sheet:
        assert sheet.size == (ROW_LABEL_WIDTH + 6 * 40, COL_LABEL_HEIGHT + 6 * 40)


def test_mismatched_inputs_are_refused(tmp_path: Path) -> None:
    paths, boxes = photos(tmp_path)
    labels = [str(n) for n in range(6)]
    with pytest.raises(ValueError, match=r"maps must be \[customers, items, rows \* cols\] = \[6, 6, 6\]"):
        write_contact_sheet(tmp_path / "x.png", paths, boxes, maps()[:, :, :4], GRID, labels, labels)
    with pytest.raises(ValueError, match="6 photos need as many boxes"):
        write_contact_sheet(tmp_path / "x.png", paths, boxes[:5], maps(), GRID, labels, labels)
    with pytest.raises(ValueError, match=r"visual_shares must be \[customers, items\]"):
        write_contact_sheet(tmp_path / "x.png", paths, boxes, maps(), GRID, labels, labels, visual_shares=np.ones(6))
    assert not (tmp_path / "x.png").exists()


def test_explained_maps_are_the_models_attention_for_every_pair() -> None:
    model = VECF(num_users=3, num_items=5, num_regions=4, channels=6, dim=4, attention_dim=3, affinity=1.0)
    rng = np.random.default_rng(0)
    for weight in model.trainable_weights:
        weight.assign(rng.normal(scale=0.5, size=weight.shape).astype(np.float32))
    model.region_features.assign(rng.normal(size=(5, 4, 6)).astype(np.float16))
    users, items = np.array([0, 2], np.int32), np.array([1, 3, 4], np.int32)
    alpha, shares = explained_maps(model, users, items)
    assert alpha.shape == (2, 3, 4) and shares.shape == (2, 3)
    for row, u in enumerate(users):
        _, want, _ = model.score_pairs(ops.take(model.user_embedding, np.full(3, u, np.int32), axis=0), items)
        np.testing.assert_allclose(alpha[row], np.asarray(want), rtol=1e-5, atol=1e-6)
    assert ((shares > 0) & (shares < 1)).all()
