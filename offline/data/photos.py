"""Product photos as the models and the metrics see them: padded to a square of the photo's own
background, and the garment told apart from that background."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

BACKGROUND_TOLERANCE = 40.0  # RGB distance from the border colour beyond which a pixel is garment

Box = tuple[float, float, float, float]
Loaded = tuple[np.ndarray, Box]


def square_box(width: int, height: int) -> Box:
    """The centred square that contains the whole image: (left, top, right, bottom)."""
    side = max(width, height)
    left, top = -((side - width) // 2), -((side - height) // 2)  # whole pixels: the paste offset
    return (float(left), float(top), float(left + side), float(top + side))


def load_square(path: Path, size: int) -> Loaded:
    """-> (uint8 [size, size, 3], box). Padding takes the mean colour of the image's border, so the
    pad looks like the photo's own background rather than adding an edge the CNN would respond to."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        arr = np.asarray(im)
        border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
        fill = tuple(int(v) for v in border.mean(axis=0))
        box = square_box(w, h)
        side = max(w, h)
        canvas = Image.new("RGB", (side, side), fill)
        canvas.paste(im, (int(-box[0]), int(-box[1])))
        out = np.asarray(canvas.resize((size, size), Image.BILINEAR), dtype=np.uint8)
    return out, box


def border_colour(square: np.ndarray) -> np.ndarray:
    """uint8 [S, S, 3] -> [3] float: the median colour of the image's border, its background (the median:
    a garment that touches the border must not tint it)."""
    border = np.concatenate([square[0], square[-1], square[:, 0], square[:, -1]]).astype(np.float32)
    return np.median(border, axis=0)


def foreground_mask(square: np.ndarray, tolerance: float = BACKGROUND_TOLERANCE) -> np.ndarray:
    """uint8 [S, S, 3] product photo on a plain background -> bool [S, S]: the garment. A pixel is
    foreground when its colour is far from the border's; holes (a white print on a white shirt) are
    filled and specks opened away."""
    distance = np.linalg.norm(square.astype(np.float32) - border_colour(square), axis=-1)
    mask = ndimage.binary_opening(distance > tolerance, iterations=2)
    return ndimage.binary_fill_holes(mask)
