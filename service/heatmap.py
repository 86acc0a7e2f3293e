"""Attention heatmaps over product photos.

The CNN saw the crop `box` (left, top, right, bottom, in the photo's own pixels; it may reach past
the photo where the image was padded to a square) as an H x W grid of regions. The grid is
upsampled bilinearly over that box, cropped back to the photo, coloured with a perceptual
colormap and alpha-blended over the photo.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

try:  # ISA-L's deflate: the same zlib stream as zlib.compress, about 4x faster at level 1
    from isal import isal_zlib as deflate
except ImportError:  # a platform without its wheels: the standard library's, slower
    deflate = zlib

Box = tuple[float, float, float, float]

RENDER_REVISION = 2  # part of the heatmap's ETag: bump it whenever the pixels for the same inputs change

# matplotlib's "inferno" at 10 evenly spaced stops: perceptually uniform, dark (cold) to bright (hot).
INFERNO_STOPS = np.array(
    [
        [0x00, 0x00, 0x04], [0x1B, 0x0C, 0x41], [0x4A, 0x0C, 0x6B], [0x78, 0x1C, 0x6D], [0xA5, 0x2C, 0x60],
        [0xCF, 0x44, 0x46], [0xED, 0x69, 0x25], [0xFB, 0x9B, 0x06], [0xF7, 0xD1, 0x3D], [0xFC, 0xFF, 0xA4],
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


def render_file(path: str, grid: np.ndarray, box: Box, max_alpha: float = 0.65) -> bytes:
    """PNG bytes of the photo at `path` with the grid blended over `box` (what `service.render`'s
    worker processes run)."""
    with Image.open(path) as image:
        photo = image.convert("RGB")
    return png_bytes(overlay_pixels(photo, grid, box, max_alpha))


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def png_bytes(image: Image.Image | np.ndarray) -> bytes:
    """An 8-bit RGB PNG of the image. Written here rather than by Pillow: every scanline takes PNG's
    "Up" filter (photo rows change little from one to the next) and deflate level 1 compresses
    (ISA-L's where installed). For a 200x300 overlay that measured about 1.9 ms with zlib and under
    0.5 ms with ISA-L, against 4-5 ms for Pillow's adaptive filtering, for files of about the same
    size; on a serving path the CPU matters more than the bytes."""
    rows = image if isinstance(image, np.ndarray) else np.asarray(image.convert("RGB"))
    if rows.dtype != np.uint8 or rows.ndim != 3 or rows.shape[2] != 3:
        raise ValueError(f"need RGB pixels uint8 [height, width, 3], got {rows.dtype} {rows.shape}")
    height, width = rows.shape[:2]
    flat = rows.reshape(height, width * 3)
    filtered = np.empty((height, width * 3 + 1), dtype=np.uint8)
    filtered[:, 0] = 2  # filter type Up: each byte minus the byte above it (the first row: minus 0)
    filtered[0, 1:] = flat[0]
    np.subtract(flat[1:], flat[:-1], out=filtered[1:, 1:])  # uint8 arithmetic wraps mod 256, as PNG's does
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", deflate.compress(filtered.tobytes(), 1)) + _png_chunk(b"IEND", b""))


@dataclass(frozen=True)
class Region:
    row: int
    col: int
    weight: float
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in the photo's pixels, clipped to it


def top_regions(grid: np.ndarray, size: tuple[int, int], box: Box, n: int = 3) -> list[Region]:
    """The n heaviest grid cells, heaviest first, with the photo pixels each covers."""
    grid = np.asarray(grid, dtype=np.float64)
    rows, cols = grid.shape
    width, height = size
    left, top, right, bottom = box
    cell_w, cell_h = (right - left) / cols, (bottom - top) / rows
    order = np.argsort(-grid, axis=None, kind="stable")[:n]
    regions = []
    for flat in order:
        row, col = divmod(int(flat), cols)
        x0, x1 = np.clip([left + col * cell_w, left + (col + 1) * cell_w], 0, width).round()
        y0, y1 = np.clip([top + row * cell_h, top + (row + 1) * cell_h], 0, height).round()
        regions.append(Region(row, col, float(grid[row, col]), (int(x0), int(y0), int(x1), int(y1))))
    return regions
