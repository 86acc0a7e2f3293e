"""Garment kinds, their part polygons, and how a garment is drawn with Pillow.

Every kind shares one part vocabulary (`PARTS`). A kind's template gives each part's polygons in
normalised image coordinates (u = x / width, v = y / height) and lists the parts in drawing order:
a later part covers an earlier one. A drawn item is its template moved by a per-item jitter
(`transform_polygons`); `label_map` rasterises that into one label per pixel, and both the photo
(`render_garment`) and the ground-truth masks (`offline.data.ground_truth`) are read off the same label
map, so a part's mask is exactly the pixels that show it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

PARTS = ("collar", "sleeves", "body", "hem", "pocket")
PATTERNS = ("solid", "stripes", "dots", "checks")
# Chosen far apart in RGB so a CNN (and a test with JPEG noise) can tell them apart.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 40),
    "blue": (30, 70, 200),
    "green": (30, 150, 60),
    "yellow": (245, 210, 30),
    "black": (25, 25, 25),
    "white": (245, 245, 245),
    "pink": (245, 130, 190),
    "orange": (245, 130, 20),
}
BACKGROUND_LABEL = 0
SEAM_LABEL = 255  # polygon outlines: belong to no part, so masks never include them
SEAM_COLOR = (70, 70, 70)

Point = tuple[float, float]
Polygon = list[Point]
Template = dict[str, list[Polygon]]  # part -> polygons, keys in drawing order
RGB = tuple[int, int, int]


def _mirror(polygon: Polygon) -> Polygon:
    """The same polygon reflected about the vertical centre line (right sleeve from left sleeve)."""
    return [(round(1.0 - u, 4), v) for u, v in reversed(polygon)]


def _rect(u0: float, v0: float, u1: float, v1: float) -> Polygon:
    return [(u0, v0), (u1, v0), (u1, v1), (u0, v1)]


def _template(body: Polygon, hem: Polygon, pocket: Polygon, collar: Polygon, left_sleeve: Polygon) -> Template:
    # Drawing order: body first, small parts on top; sleeves last so their seam with the body shows.
    return {
        "body": [body],
        "hem": [hem],
        "pocket": [pocket],
        "collar": [collar],
        "sleeves": [left_sleeve, _mirror(left_sleeve)],
    }


# Layout shared by every kind so parts are spatially separated: collar top centre, sleeves at the
# sides, pocket on the chest (viewer's right), hem a band at the bottom, body the rest. Every part
# is about one cell of the 7x7 explanation grid or larger: a part much smaller than a cell cannot
# be told apart from what surrounds it at that granularity, by any model.
# The pocket sits at the same place on every kind, inside one cell of the 7x7 grid over the padded
# square (column 3, row 2) up to the per-item jitter: centred on a cell corner it was diluted into
# four cells, and attention could not single it out.
POCKET = _rect(0.42, 0.29, 0.58, 0.42)

KINDS: dict[str, Template] = {
    "tshirt": _template(
        body=[(0.30, 0.17), (0.42, 0.14), (0.58, 0.14), (0.70, 0.17), (0.70, 0.80), (0.30, 0.80)],
        hem=_rect(0.30, 0.80, 0.70, 0.87),
        pocket=POCKET,
        collar=[(0.40, 0.12), (0.60, 0.12), (0.62, 0.16), (0.56, 0.24), (0.50, 0.27), (0.44, 0.24), (0.38, 0.16)],
        left_sleeve=[(0.30, 0.17), (0.14, 0.26), (0.08, 0.40), (0.20, 0.45), (0.30, 0.36)],
    ),
    "longsleeve": _template(
        body=[(0.31, 0.17), (0.42, 0.14), (0.58, 0.14), (0.69, 0.17), (0.69, 0.80), (0.31, 0.80)],
        hem=_rect(0.31, 0.80, 0.69, 0.86),
        pocket=POCKET,
        collar=[(0.40, 0.11), (0.60, 0.11), (0.63, 0.17), (0.55, 0.23), (0.50, 0.18), (0.45, 0.23), (0.37, 0.17)],
        left_sleeve=[(0.31, 0.17), (0.18, 0.22), (0.08, 0.70), (0.18, 0.72), (0.31, 0.40)],
    ),
    "dress": _template(
        body=[(0.38, 0.15), (0.62, 0.15), (0.64, 0.40), (0.80, 0.84), (0.20, 0.84), (0.36, 0.40)],
        hem=[(0.20, 0.84), (0.80, 0.84), (0.82, 0.90), (0.18, 0.90)],
        pocket=POCKET,
        collar=[(0.42, 0.12), (0.58, 0.12), (0.60, 0.15), (0.55, 0.21), (0.50, 0.22), (0.45, 0.21), (0.40, 0.15)],
        left_sleeve=[(0.38, 0.15), (0.27, 0.19), (0.24, 0.30), (0.36, 0.30)],
    ),
    "jacket": _template(
        body=[(0.28, 0.16), (0.40, 0.13), (0.60, 0.13), (0.72, 0.16), (0.73, 0.82), (0.27, 0.82)],
        hem=_rect(0.27, 0.82, 0.73, 0.89),
        pocket=POCKET,
        collar=[(0.38, 0.11), (0.62, 0.11), (0.65, 0.16), (0.56, 0.31), (0.50, 0.26), (0.44, 0.31), (0.35, 0.16)],
        left_sleeve=[(0.28, 0.16), (0.16, 0.21), (0.07, 0.72), (0.18, 0.74), (0.27, 0.40)],
    ),
}


def part_label(part: str) -> int:
    """The label-map value of a part (1-based so 0 stays background)."""
    if part not in PARTS:
        raise ValueError(f"unknown part {part!r}; expected one of {list(PARTS)}")
    return PARTS.index(part) + 1


def transform_polygons(
    template: Template, tx: float, ty: float, scale: float, size: tuple[int, int]
) -> dict[str, list[Polygon]]:
    """Template polygons in pixel coordinates: scaled about the image centre, then shifted by (tx, ty) px."""
    width, height = size
    return {
        part: [
            [((0.5 + (u - 0.5) * scale) * width + tx, (0.5 + (v - 0.5) * scale) * height + ty) for u, v in polygon]
            for polygon in polygons
        ]
        for part, polygons in template.items()
    }


def label_map(template: Template, tx: float, ty: float, scale: float, size: tuple[int, int]) -> np.ndarray:
    """uint8 [H, W]: `part_label(part)` where that part is visible, SEAM_LABEL on outlines, 0 elsewhere."""
    canvas = Image.new("L", size, BACKGROUND_LABEL)
    draw = ImageDraw.Draw(canvas)
    for part, polygons in transform_polygons(template, tx, ty, scale, size).items():
        label = part_label(part)
        for polygon in polygons:
            draw.polygon(polygon, fill=label, outline=SEAM_LABEL)
    return np.asarray(canvas)


@lru_cache(maxsize=8)
def _pattern_marks(width: int, height: int) -> np.ndarray:
    """bool [len(PATTERNS), H, W]: where each pattern paints its contrast colour (image-anchored)."""
    period = max(4, round(width / 16))
    y, x = np.mgrid[0:height, 0:width]
    half = period / 2
    dy, dx = (y % period) - half + 0.5, (x % period) - half + 0.5
    marks = np.stack(
        [
            np.zeros((height, width), dtype=bool),  # solid
            (y % period) < max(1, round(period * 0.4)),  # horizontal stripes
            dx * dx + dy * dy <= (period * 0.28) ** 2,  # dots
            ((x // max(1, round(half))) + (y // max(1, round(half)))) % 2 == 1,  # checks
        ]
    )
    marks.setflags(write=False)
    return marks


def _contrast(color: RGB) -> RGB:
    """Pattern marks in dark grey on light colours and light grey on dark ones."""
    luminance = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
    return (50, 50, 50) if luminance > 140 else (215, 215, 215)


def _background(size: tuple[int, int], top: RGB, bottom: RGB) -> Image.Image:
    """RGB vertical gradient: a light studio backdrop that differs a little per photo."""
    width, height = size
    t = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]  # [H, 1]
    column = np.rint((1 - t) * np.asarray(top, np.float32) + t * np.asarray(bottom, np.float32))  # [H, 3]
    # One pixel wide, widened by Pillow: much cheaper than building the [H, W, 3] array in numpy.
    return Image.fromarray(column.astype(np.uint8)[:, None, :], "RGB").resize(size, Image.Resampling.NEAREST)


def render_garment(
    template: Template,
    tx: float,
    ty: float,
    scale: float,
    size: tuple[int, int],
    colors: Mapping[str, str],
    patterns: Mapping[str, str],
    background: tuple[RGB, RGB],
) -> Image.Image:
    """RGB photo of one garment: each part filled with its colour and pattern over a light backdrop."""
    labels = label_map(template, tx, ty, scale, size)  # [H, W]
    marks = _pattern_marks(*size)  # [len(PATTERNS), H, W]
    # Palette image: entry 2k is slot k's colour, 2k + 1 its pattern marks (slot 0 is the backdrop,
    # slot 1 the seams); Pillow then expands the palette in C, far faster than numpy colour lookups.
    index = np.zeros(labels.shape, np.uint8)  # [H, W]
    index[labels == SEAM_LABEL] = 2
    palette: list[RGB] = [(0, 0, 0), (0, 0, 0), SEAM_COLOR, SEAM_COLOR]
    for slot, part in enumerate(PARTS, start=2):
        visible = labels == part_label(part)
        index[visible] = 2 * slot + marks[PATTERNS.index(patterns[part])][visible]
        rgb = COLORS[colors[part]]
        palette += [rgb, _contrast(rgb)]
    garment = Image.fromarray(index, "P")
    garment.putpalette([v for rgb in palette for v in rgb])
    is_backdrop = Image.fromarray((labels == BACKGROUND_LABEL).view(np.uint8) * np.uint8(255), "L")
    return Image.composite(_background(size, *background), garment.convert("RGB"), is_backdrop)


def garments_spec(size: tuple[int, int], kinds: Mapping[str, Template] | None = None) -> dict:
    """JSON-ready description that lets anyone re-rasterise a part mask from catalog geometry."""
    kinds = KINDS if kinds is None else kinds
    return {
        "image_size": {"width": size[0], "height": size[1]},
        "parts": list(PARTS),
        "colors": {name: list(rgb) for name, rgb in COLORS.items()},
        "patterns": list(PATTERNS),
        "transform": "x = (0.5 + (u - 0.5) * scale) * width + tx; y = (0.5 + (v - 0.5) * scale) * height + ty",
        "drawing": "parts of a kind are listed in drawing order (later covers earlier); "
        "PIL ImageDraw.polygon(fill=part, outline=seam) per polygon; seams belong to no part",
        "kinds": {
            kind: {part: [[list(p) for p in poly] for poly in polys] for part, polys in template.items()}
            for kind, template in kinds.items()
        },
    }


def template_from_spec(spec_kind: Mapping[str, Sequence[Sequence[Sequence[float]]]]) -> Template:
    """Inverse of the `kinds` entries in `garments_spec` (keeps the drawing order)."""
    return {part: [[(float(u), float(v)) for u, v in poly] for poly in polys] for part, polys in spec_kind.items()}
