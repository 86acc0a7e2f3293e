"""Ground truth loading, part masks that agree with the drawn pixels, and grid projection."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from offline.data import garments
from offline.data.dataset import load_catalog, write_catalog
from offline.data.ground_truth import GarmentMasks, grid_mask, load_ground_truth
from offline.data.synth import SynthConfig, generate

T, F = True, False


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gt") / "data"
    generate(SynthConfig(seed=5, users=10, items=24, width=96, height=128, jpeg_quality=95), out)
    return out


def _erode(mask: np.ndarray, steps: int) -> np.ndarray:
    """Shrink a mask by `steps` pixels so JPEG blur at part borders is left out."""
    for _ in range(steps):
        inner = mask.copy()
        inner[1:] &= mask[:-1]
        inner[:-1] &= mask[1:]
        inner[:, 1:] &= mask[:, :-1]
        inner[:, :-1] &= mask[:, 1:]
        mask = inner
    return mask


def test_load_ground_truth_reads_pairs_and_parts(tmp_path):
    (tmp_path / "ground_truth.csv").write_text(
        "user_id,item_id,parts\nu00001,i0000007,collar;hem\nu00002,i0000001,sleeves\n"
    )
    assert load_ground_truth(tmp_path) == {
        ("u00001", "i0000007"): ("collar", "hem"),
        ("u00002", "i0000001"): ("sleeves",),
    }
    (tmp_path / "ground_truth.csv").write_text("user_id,item_id\nu1,i1\n")
    with pytest.raises(ValueError, match="parts"):
        load_ground_truth(tmp_path)


def test_masks_match_pixels_of_an_in_memory_render(dataset):
    masks, catalog = GarmentMasks(dataset), load_catalog(dataset)
    cyan = (0, 255, 255)  # not a garment colour, so any background pixel inside a mask would show
    for k, item in enumerate(catalog.item_ids[:8]):
        kind, tx, ty, scale = masks.geometry[item]
        colors = {p: catalog.attributes[f"{p}_color"][k] for p in garments.PARTS}
        patterns = {p: catalog.attributes[f"{p}_pattern"][k] for p in garments.PARTS}
        image = np.asarray(
            garments.render_garment(garments.KINDS[kind], tx, ty, scale, masks.size, colors, patterns, (cyan, cyan))
        )
        covered = np.zeros(image.shape[:2], bool)
        for part in garments.PARTS:
            mask = masks.pixel_mask(item, [part])
            assert mask.shape == (masks.size[1], masks.size[0]) and mask.any()
            pixels = {tuple(p) for p in image[mask].tolist()}
            base = garments.COLORS[colors[part]]
            assert base in pixels
            if patterns[part] == "solid":
                assert pixels == {base}
            else:  # colour plus the one contrast colour of its pattern marks
                assert len(pixels) == 2
            assert not (covered & mask).any()  # parts never share a pixel
            covered |= mask
        outside = image[~covered]
        is_seam = (outside == garments.SEAM_COLOR).all(axis=1)
        assert ((outside == cyan).all(axis=1) | is_seam).all()


def test_masks_match_the_saved_jpeg_photos(dataset):
    masks, catalog = GarmentMasks(dataset), load_catalog(dataset)
    checked = 0
    for k, item in enumerate(catalog.item_ids):
        photo = np.asarray(Image.open(catalog.image_path(k)), dtype=np.int64)
        for part in garments.PARTS:
            inner = _erode(masks.pixel_mask(item, [part]), 2)
            if catalog.attributes[f"{part}_pattern"][k] != "solid" or inner.sum() < 10:
                continue
            expected = garments.COLORS[catalog.attributes[f"{part}_color"][k]]
            assert np.abs(np.median(photo[inner], axis=0) - expected).max() <= 8, (item, part)
            checked += 1
    assert checked > 20


def test_parts_are_spatially_separated_in_every_kind():
    for kind, template in garments.KINDS.items():
        labels = garments.label_map(template, 0, 0, 1.0, (192, 256))
        centre = {}
        for part in garments.PARTS:
            ys, xs = np.nonzero(labels == garments.part_label(part))
            assert len(ys) > 300, (kind, part)
            centre[part] = (xs.mean(), ys.mean())
        collar, pocket, hem, body = centre["collar"], centre["pocket"], centre["hem"], centre["body"]
        assert abs(collar[0] - 96) < 10 and collar[1] < pocket[1] < body[1] < hem[1], kind
        ys, xs = np.nonzero(labels == garments.part_label("sleeves"))
        assert xs.min() < 0.3 * 192 and xs.max() > 0.7 * 192, kind  # one sleeve on each side


def test_pixel_mask_follows_item_jitter_and_unions_parts(tmp_path):
    size = (96, 128)
    (tmp_path / "garments.json").write_text(json.dumps(garments.garments_spec(size)))
    write_catalog(
        tmp_path,
        ["a", "b", "c"],
        ["a.jpg", "b.jpg", "c.jpg"],
        {
            "kind": ["jacket", "jacket", "jacket"],
            "tx": ["0", "5", "0"],
            "ty": ["0", "-3", "0"],
            "scale": ["1.000", "1.000", "0.900"],
        },
    )
    masks = GarmentMasks(tmp_path)
    a = masks.pixel_mask("a", ["collar"])
    assert np.array_equal(masks.pixel_mask("b", ["collar"]), np.roll(a, (-3, 5), axis=(0, 1)))
    assert masks.pixel_mask("c", ["collar"]).sum() < a.sum()  # scaled down
    both = masks.pixel_mask("a", ["collar", "hem"])
    assert np.array_equal(both, a | masks.pixel_mask("a", ["hem"]))
    assert not masks.pixel_mask("a", []).any()
    with pytest.raises(ValueError, match="unknown parts"):
        masks.pixel_mask("a", ["heel"])
    with pytest.raises(KeyError, match="zzz"):
        masks.pixel_mask("zzz", ["collar"])


def test_ground_truth_parts_have_pixels(dataset):
    masks = GarmentMasks(dataset)
    truth = load_ground_truth(dataset)
    assert truth
    for (_, item), parts in truth.items():
        assert masks.pixel_mask(item, parts).sum() > 20


def test_grid_mask_inside_the_image():
    mask = np.zeros((4, 4), bool)
    mask[:2, :2] = True
    assert grid_mask(mask, (0, 0, 4, 4), 2, 2).tolist() == [[T, F], [F, F]]
    # Cells of 1.5 px: one mask pixel at (row 0, col 1) covers 0.5 / 2.25 = 0.22 of two cells.
    mask = np.zeros((2, 2), bool)
    mask[0, 1] = True
    assert grid_mask(mask, (0, 0, 3, 3), 2, 2).tolist() == [[T, T], [F, F]]
    # Nothing reaches 0.25: the single most covered cell (first of the tie) stands in.
    assert grid_mask(mask, (0, 0, 3, 3), 2, 2, min_coverage=0.25).tolist() == [[T, F], [F, F]]
    assert not grid_mask(np.zeros((4, 4), bool), (0, 0, 4, 4), 2, 2).any()


def test_grid_mask_box_reaching_beyond_the_image():
    # A 4-row x 2-col portrait padded to a 4x4 square: box x from -1 to 3.
    mask = np.array([[1, 0], [1, 1], [0, 0], [0, 0]], bool)
    # cell (0,0): x [-1,1) y [0,2) holds 2 mask pixels of area 4 -> 0.5; cell (0,1): 1 pixel -> 0.25;
    # the padding outside the image counts as uncovered.
    assert grid_mask(mask, (-1, 0, 3, 4), 2, 2).tolist() == [[T, T], [F, F]]
    assert grid_mask(mask, (-1, 0, 3, 4), 2, 2, min_coverage=0.3).tolist() == [[T, F], [F, F]]
    full = np.ones((4, 2), bool)  # every image pixel covered: padded halves still only reach 0.5
    assert grid_mask(full, (-1, 0, 3, 4), 2, 2, min_coverage=0.5).all()
    assert grid_mask(full, (-1, 0, 3, 4), 2, 2, min_coverage=0.51).sum() == 1
    # A box much larger than the image: only the cell over the image is touched.
    assert grid_mask(full, (-6, -4, 6, 8), 3, 3).tolist() == [[F, F, F], [F, T, F], [F, F, F]]


def test_grid_mask_rejects_bad_boxes():
    with pytest.raises(ValueError, match="right > left"):
        grid_mask(np.ones((4, 4), bool), (4, 0, 0, 4), 2, 2)
