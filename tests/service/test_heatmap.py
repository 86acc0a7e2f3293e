"""Heatmap geometry and drawing (model.heatmap), PNG encoding and top regions (service.heatmap), with
hand-checkable grids and boxes."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from model import heatmap as drawing
from service import heatmap


def one_hot(rows: int, cols: int, row: int, col: int) -> np.ndarray:
    grid = np.zeros((rows, cols), np.float32)
    grid[row, col] = 1.0
    return grid


def test_colormap_lut_is_perceptually_ordered() -> None:
    lut = drawing.colormap_lut()
    assert lut.shape == (256, 3) and lut.dtype == np.uint8
    assert tuple(lut[0]) == tuple(drawing.INFERNO_STOPS[0]) and tuple(lut[-1]) == tuple(drawing.INFERNO_STOPS[-1])
    luminance = lut.astype(float) @ [0.2126, 0.7152, 0.0722]
    assert np.all(np.diff(luminance) >= -0.5)  # cold to hot is dark to bright, never backwards
    assert luminance[-1] - luminance[0] > 200


def test_upsample_bilinear_by_hand() -> None:
    grid = np.array([[0.0, 1.0], [2.0, 3.0]])
    up = drawing.upsample_bilinear(grid, 4, 4)
    # pixel centres 0.5..3.5 map to cell coordinates -0.25, 0.25, 0.75, 1.25 -> clamped 0, .25, .75, 1
    np.testing.assert_allclose(up[0], [0.0, 0.25, 0.75, 1.0])
    np.testing.assert_allclose(up[:, 0], [0.0, 0.5, 1.5, 2.0])
    np.testing.assert_allclose(up[3, 3], 3.0)
    np.testing.assert_allclose(drawing.upsample_bilinear(np.full((3, 5), 0.2), 7, 11), 0.2, rtol=1e-6)


@pytest.mark.parametrize(
    ("size", "box", "cell", "expected_pixels"),
    [
        # 100x60 photo padded top and bottom to a 100x100 square: box top -20. A 4x4 grid has 25 px cells;
        # cell (1, 3) covers x 75..100, y -20+25..-20+50 = 5..30, centre (87.5, 17.5).
        ((100, 60), (0, -20, 100, 80), (1, 3), (slice(5, 30), slice(75, 100))),
        # 60x100 photo padded left and right: box left -20; cell (2, 0) covers x -20..5 (in the photo: 0..5),
        # y 50..75.
        ((60, 100), (-20, 0, 80, 100), (2, 0), (slice(50, 75), slice(0, 5))),
    ],
)
def test_one_hot_cell_lands_on_its_pixels(size, box, cell, expected_pixels) -> None:
    width, height = size
    attention, inside = drawing.attention_on_image(one_hot(4, 4, *cell), size, box)
    assert attention.shape == (height, width) and inside.all()
    hottest = np.unravel_index(np.argmax(attention), attention.shape)
    rows, cols = expected_pixels
    assert rows.start <= hottest[0] < rows.stop and cols.start <= hottest[1] < cols.stop
    # the cell's own pixels carry most of the mass; far cells get nothing
    assert attention[expected_pixels].mean() > 4 * attention.mean()
    assert attention[expected_pixels].min() > 0


def test_pixels_outside_the_box_are_untouched() -> None:
    photo = Image.new("RGB", (60, 60), (90, 120, 30))
    out = np.asarray(drawing.overlay(photo, np.ones((2, 2)) / 4, box=(20, 20, 60, 60)))
    assert (out[:20, :] == (90, 120, 30)).all() and (out[:, :20] == (90, 120, 30)).all()
    assert (out[20:, 20:] != (90, 120, 30)).any(axis=-1).all()


def test_overlay_png_has_the_photo_size_and_hot_colour_on_the_hot_cell() -> None:
    photo = Image.new("RGB", (100, 60), (128, 128, 128))
    grid = np.full((4, 4), 0.02, np.float32)
    grid[1, 3] = 0.7
    png = heatmap.png_bytes(drawing.overlay(photo, grid, box=(0, -20, 100, 80)))
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size == (100, 60) and image.mode == "RGB"
    pixels = np.asarray(image, dtype=float)
    hot = drawing.LUT[-1].astype(float)
    distance = np.linalg.norm(pixels - hot, axis=-1)  # closest to the hottest colour
    y, x = np.unravel_index(np.argmin(distance), distance.shape)
    assert 5 <= y < 30 and 75 <= x < 100
    cold = np.linalg.norm(pixels[55, 5] - hot)
    assert cold > distance.min() + 100


def test_top_regions_boxes_are_clipped_to_the_photo() -> None:
    grid = np.array([[0.5, 0.1], [0.3, 0.1]])
    regions = heatmap.top_regions(grid, (100, 60), box=(0, -20, 100, 80), n=3)
    assert [(r.row, r.col) for r in regions] == [(0, 0), (1, 0), (0, 1)]
    assert [r.weight for r in regions] == [0.5, 0.3, 0.1]
    assert regions[0].box == (0, 0, 50, 30)  # y -20..30 clipped to 0..30
    assert regions[1].box == (0, 30, 50, 60)  # y 30..80 clipped to 30..60


def test_empty_box_is_rejected() -> None:
    with pytest.raises(ValueError, match="empty crop box"):
        drawing.attention_on_image(np.ones((2, 2)), (10, 10), (5, 0, 5, 10))


@pytest.mark.parametrize("size, mode", [((1, 1), "RGB"), ((1, 7), "RGB"), ((37, 5), "L"), ((200, 300), "RGBA")])
def test_png_bytes_decode_to_the_same_pixels(size, mode) -> None:
    # Our own encoder (Up filter, wrapping uint8 differences): Pillow must read back every pixel.
    rng = np.random.default_rng(sum(size))
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8).squeeze(-1 if channels == 1 else ())
    image = Image.fromarray(pixels, mode)
    decoded = Image.open(io.BytesIO(heatmap.png_bytes(image)))
    decoded.load()
    assert decoded.format == "PNG" and decoded.mode == "RGB" and decoded.size == size
    assert np.array_equal(np.asarray(decoded), np.asarray(image.convert("RGB")))


def test_overlay_blends_the_colormap_at_the_documented_opacity() -> None:
    # A uniform grid: every pixel inside the box is the hottest colour at opacity max_alpha.
    photo = Image.new("RGB", (8, 8), (0, 100, 200))
    out = np.asarray(drawing.overlay(photo, np.ones((2, 2)), box=(0, 0, 8, 8), max_alpha=0.5), dtype=float)
    expected = np.array([0, 100, 200]) * 0.5 + drawing.LUT[-1] * 0.5
    assert np.abs(out - expected).max() <= 0.5 + 1e-9


def test_png_bytes_takes_pixel_arrays_and_rejects_other_shapes() -> None:
    pixels = np.asarray(drawing.overlay(Image.new("RGB", (9, 4), (10, 20, 30)), np.ones((2, 2)), (0, 0, 9, 4)))
    assert heatmap.png_bytes(pixels) == heatmap.png_bytes(Image.fromarray(pixels, "RGB"))
    with pytest.raises(ValueError, match="uint8"):
        heatmap.png_bytes(pixels.astype(np.float32))
    with pytest.raises(ValueError, match="uint8"):
        heatmap.png_bytes(pixels[..., 0])


def test_fixed_point_blend_is_within_one_grey_level_of_the_float_blend() -> None:
    # The blend runs in 8-bit fixed point; compare with the float formula on noisy pixels, a peaked
    # grid and a box that reaches past the photo (outside pixels must come back unchanged).
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 256, (45, 30, 3), dtype=np.uint8)
    grid = rng.random((7, 7)) ** 4
    box = (5.0, -10.0, 25.0, 40.0)  # x 5..25 of 30, y up to 40 of 45: some pixels outside
    for max_alpha in (0.3, 0.65, 1.0):
        out = drawing.overlay_pixels(Image.fromarray(pixels, "RGB"), grid, box, max_alpha).astype(float)
        attention, inside = drawing.attention_on_image(grid, (30, 45), box)
        index = np.rint(attention * 255 / attention.max()).astype(int)
        alpha = np.where(inside, max_alpha * (0.1 + 0.9 * index / 255), 0.0)[..., None]
        expected = pixels + (drawing.LUT[index] - pixels.astype(float)) * alpha
        assert np.abs(out - expected).max() <= 1.0
        assert (~inside).sum() > 200 and (out[~inside] == pixels[~inside]).all()
        assert np.abs(out - expected).mean() < 0.3  # rounding, not a bias
