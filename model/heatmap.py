"""Attention drawn over product photos: the one drawing of a map that the gateway's heatmaps
(`service.heatmap`) and the offline contact sheets (`offline.evaluation.contact_sheet`) share. numpy and Pillow
only. A change to the pixels drawn for the same inputs must bump `service.heatmap.RENDER_REVISION`
(browsers cache the gateway's heatmaps by it).

The CNN saw the crop `box` (left, top, right, bottom, in the photo's own pixels; it may reach past
the photo where the image was padded to a square) as an H x W grid of regions. The grid is
upsampled bilinearly over that box, cropped back to the photo, coloured with a perceptual
colormap and alpha-blended over the photo.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image

Box = tuple[float, float, float, float]

# matplotlib's "inferno" at 10 evenly spaced stops: perceptually uniform, dark (cold) to bright (hot).
INFERNO_STOPS = np.array(
    [
        [0x00, 0x00, 0x04],
        [0x1B, 0x0C, 0x41],
        [0x4A, 0x0C, 0x6B],
        [0x78, 0x1C, 0x6D],
        [0xA5, 0x2C, 0x60],
        [0xCF, 0x44, 0x46],
        [0xED, 0x69, 0x25],
        [0xFB, 0x9B, 0x06],
        [0xF7, 0xD1, 0x3D],
        [0xFC, 0xFF, 0xA4],
    ],
    dtype=np.float64,
)


def colormap_lut(stops: np.ndarray = INFERNO_STOPS, size: int = 256) -> np.ndarray:
    """uint8 [size, 3]: the stops linearly interpolated; entry 0 is the coldest colour."""
    at = np.linspace(0.0, 1.0, len(stops))
    x = np.linspace(0.0, 1.0, size)
    return np.stack([np.interp(x, at, stops[:, c]) for c in range(3)], axis=1).round().astype(np.uint8)


LUT = colormap_lut()


@lru_cache(maxsize=1024)
def _axis(pixels: int, start: float, end: float, cells: int) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear weights [pixels, cells] of each pixel centre along one axis (all zero outside the box)
    and the inside-the-box mask [pixels]. Cached, read-only: a catalog has few photo sizes and boxes."""
    centres = np.arange(pixels, dtype=np.float64) + 0.5
    u = np.clip((centres - start) / (end - start) * cells - 0.5, 0.0, cells - 1)  # in cell-centre coordinates
    lo = np.floor(u).astype(np.int64)
    hi = np.minimum(lo + 1, cells - 1)
    weights = np.zeros((pixels, cells), np.float64)
    np.add.at(weights, (np.arange(pixels), lo), 1 - (u - lo))  # add: lo == hi at the last cell
    np.add.at(weights, (np.arange(pixels), hi), u - lo)
    inside = (centres >= start) & (centres < end)
    weights[~inside] = 0.0
    out = (weights.astype(np.float32), inside)
    for a in out:
        a.flags.writeable = False
    return out


def attention_on_image(grid: np.ndarray, size: tuple[int, int], box: Box) -> tuple[np.ndarray, np.ndarray]:
    """The grid [H, W] upsampled bilinearly over `box` and sampled at every pixel of a `size` = (width,
    height) photo: float32 [height, width] attention (0 outside the box) and bool [height, width]
    "inside the box". Bilinear interpolation is separable: two small matrix products."""
    grid = np.asarray(grid, dtype=np.float32)
    rows, cols = grid.shape
    width, height = size
    left, top, right, bottom = map(float, box)
    if right <= left or bottom <= top:
        raise ValueError(f"empty crop box {box}: need left < right and top < bottom")
    along_y, in_y = _axis(int(height), top, bottom, rows)
    along_x, in_x = _axis(int(width), left, right, cols)
    return along_y @ grid @ along_x.T, in_y[:, None] & in_x[None, :]


def upsample_bilinear(grid: np.ndarray, height: int, width: int) -> np.ndarray:
    """float32 [height, width]: the grid stretched over the whole frame."""
    return attention_on_image(grid, (width, height), (0, 0, width, height))[0]


BLEND_BITS = 8  # fixed-point blend: opacity in 1/256 steps, uint16 arithmetic


@lru_cache(maxsize=8)
def _blend_tables(max_alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Per colormap index i (and one more, len(LUT), for pixels outside the box): `keep` uint16 [257],
    the photo's share (1 - opacity_i), and `add` uint16 [257, 3], the colour's share opacity_i * LUT[i],
    both scaled by 2**BLEND_BITS; `add` carries the final rounding's half. Opacity rises with heat so
    cold regions stay almost untinted and the garment itself remains readable."""
    one = 1 << BLEND_BITS
    alpha = max_alpha * (0.1 + 0.9 * np.linspace(0.0, 1.0, len(LUT)))
    keep = np.append(np.rint((1 - alpha) * one), one).astype(np.uint16)
    add = np.vstack([np.rint(alpha[:, None] * LUT * one), np.zeros((1, 3))]).astype(np.uint16) + one // 2
    # photo * keep + add must fit uint16: exactly it is at most 255 * one + one // 2, and rounding adds little
    worst = (255 * keep.astype(np.int64)[:, None] + add).max()
    if worst > np.iinfo(np.uint16).max:
        raise ValueError(f"max_alpha {max_alpha}: blend overflows uint16 ({worst})")
    for a in (keep, add):
        a.flags.writeable = False
    return keep, add


def overlay(photo: Image.Image, grid: np.ndarray, box: Box, max_alpha: float = 0.65) -> Image.Image:
    """The photo with the attention blended over it: hotter regions brighter and more opaque."""
    return Image.fromarray(overlay_pixels(photo, grid, box, max_alpha), "RGB")


def overlay_pixels(photo: Image.Image, grid: np.ndarray, box: Box, max_alpha: float = 0.65) -> np.ndarray:
    """`overlay` as uint8 [height, width, 3] pixels (what `png_bytes` encodes, without a PIL copy).

    Each pixel gets one colormap index (attention scaled to the photo's peak), and its colour and
    opacity are looked up from it; the blend runs in 8-bit fixed point, within one grey level of the
    float blend and about 3x faster (uint16 instead of float32 arrays, one table lookup per term)."""
    rgb = np.asarray(photo.convert("RGB"))  # uint8 [h, w, 3]
    attention, inside = attention_on_image(grid, photo.size, box)
    peak = float(attention.max())
    scale = (len(LUT) - 1) / peak if peak > 0 else 0.0
    index = np.rint(attention * scale).astype(np.intp)  # [h, w] in 0..255
    index[~inside] = len(LUT)  # outside the box: keep the photo as it is
    keep, add = _blend_tables(float(max_alpha))
    out = np.take(add, index, axis=0)  # [h, w, 3] uint16
    out += rgb * np.take(keep, index)[..., None]
    out >>= BLEND_BITS
    return out.astype(np.uint8)
