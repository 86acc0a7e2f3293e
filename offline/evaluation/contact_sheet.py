"""Contact sheets: customers (rows) x items (columns), each tile the item's photo with that customer's
attention drawn over it exactly as the gateway's /explain/heatmap.png draws it (`model.heatmap`).

A map that explains little (`model.explanation`: near uniform, or the photo carrying little of the score)
is drawn as the demo page shows it: the plain photo, with a small label saying why.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

from model import explanation
from model.heatmap import Box, overlay

if TYPE_CHECKING:
    from model.vecf import VECF

TILE = 160  # pixels on a tile's side
ROW_LABEL_WIDTH = 120  # the left margin, for the customers' labels
COL_LABEL_HEIGHT = 20  # the top margin, for the items' labels
PAD = 3  # pixels between a label and its edge
MARGIN = 4  # white pixels around each photo, so neighbouring tiles stay apart


def explained_maps(model: VECF, users: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every customer with every item, taken apart as the export's attention signature does
    (`VECF.explain_candidates` on split tables): users [C] and items [I] int rows ->
    (maps [C, I, R], visual shares [C, I]) float32, ready for `write_contact_sheet`."""
    from keras import ops

    region_proj, value_proj = model.tables(model.regions(ops.convert_to_tensor(items)))  # [I, R, A], [I, R, D+1]
    split_proj = model.attention.split_regions(region_proj)  # [I, R, 2A]

    def every_customer(table):  # [I, ...] -> [C, I, ...]: each customer's candidates are all the items
        return ops.broadcast_to(table[None], (len(users), *table.shape))

    parts = model.explain_candidates(
        ops.take(model.user_embedding, users, axis=0),
        every_customer(ops.take(model.item_embedding, items, axis=0)),
        every_customer(ops.take(model.item_bias, items, axis=0)),
        every_customer(split_proj),
        every_customer(value_proj),
    )
    return np.asarray(parts["alpha"], np.float32), np.asarray(parts["visual_share"], np.float32)


def _check_shapes(
    photos: Sequence,
    boxes: Sequence,
    maps: np.ndarray,
    grid: tuple[int, int],
    row_labels: Sequence,
    col_labels: Sequence,
    visual_shares: np.ndarray | None,
) -> None:
    want = (len(row_labels), len(photos), grid[0] * grid[1])
    if maps.shape != want:
        raise ValueError(
            f"maps must be [customers, items, rows * cols] = {list(want)} for {len(row_labels)} row "
            f"labels, {len(photos)} photos and a {grid[0]}x{grid[1]} grid; got {list(maps.shape)}"
        )
    if len(boxes) != len(photos) or len(col_labels) != len(photos):
        raise ValueError(
            f"{len(photos)} photos need as many boxes and column labels, got {len(boxes)} boxes "
            f"and {len(col_labels)} labels"
        )
    if visual_shares is not None and visual_shares.shape != want[:2]:
        raise ValueError(
            f"visual_shares must be [customers, items] = {list(want[:2])}, got {list(visual_shares.shape)}"
        )


def _fit(draw: ImageDraw.ImageDraw, text: str, width: float, font: ImageFont.ImageFont) -> str:
    """`text`, cut (with an ellipsis) to fit `width` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def _tile(
    photo: Image.Image, grid: np.ndarray, box: Box, reason: str | None, size: int, font: ImageFont.ImageFont
) -> Image.Image:
    """One size x size tile: the overlay (or, when `reason`, the plain photo and the reason's label),
    drawn at the photo's own resolution as the gateway draws it, then scaled to fit."""
    inner = size - 2 * MARGIN
    drawn = ImageOps.contain(
        photo if reason is not None else overlay(photo, grid, box), (inner, inner), Image.Resampling.LANCZOS
    )
    out = Image.new("RGB", (size, size), "white")
    out.paste(drawn, ((size - drawn.width) // 2, (size - drawn.height) // 2))
    if reason is not None:
        draw = ImageDraw.Draw(out)
        text = _fit(draw, explanation.REASON_LABELS[reason], size - 4 * PAD, font)
        left, top, right, bottom = draw.textbbox((2 * PAD, size - 2 * PAD), text, font=font, anchor="ld")
        draw.rectangle((left - PAD, top - PAD, right + PAD, bottom + PAD), fill="white", outline="grey")
        draw.text((2 * PAD, size - 2 * PAD), text, fill="black", font=font, anchor="ld")
    return out


def write_contact_sheet(
    path: Path,
    photos: Sequence[Path],
    boxes: Sequence[Box],
    maps: np.ndarray,
    grid: tuple[int, int],
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    *,
    visual_shares: np.ndarray | None = None,
    min_concentration: float = explanation.MIN_CONCENTRATION,
    min_visual_share: float = explanation.MIN_VISUAL_SHARE,
    tile: int = TILE,
) -> Path:
    """Write the PNG sheet of customers x items and return `path`.

    photos [I]: the items' photo files; boxes [I]: each one's feature box (left, top, right, bottom in the
    photo's pixels, as catalog.csv's box columns); maps [C, I, R]: customer c's attention over item i's
    R = rows * cols regions (row-major, as the export's grids); grid: (rows, cols); row_labels [C] and
    col_labels [I]: the customers' and items' names; visual_shares [C, I]: the photo's share of each score
    (`explained_maps`; None: maps are judged on concentration alone). A map below `min_concentration` or
    `min_visual_share` is drawn as the plain photo with its reason's label. The sheet is
    ROW_LABEL_WIDTH + I * tile pixels wide and COL_LABEL_HEIGHT + C * tile high."""
    maps = np.asarray(maps, np.float64)
    shares = None if visual_shares is None else np.asarray(visual_shares, np.float64)
    _check_shapes(photos, boxes, maps, grid, row_labels, col_labels, shares)
    images = []
    for photo in photos:
        with Image.open(photo) as image:
            images.append(image.convert("RGB"))
    concentration = explanation.concentration(maps, np)  # [C, I]
    sheet = Image.new("RGB", (ROW_LABEL_WIDTH + len(photos) * tile, COL_LABEL_HEIGHT + len(row_labels) * tile), "white")
    draw, font = ImageDraw.Draw(sheet), ImageFont.load_default()
    for i, label in enumerate(col_labels):
        draw.text((ROW_LABEL_WIDTH + i * tile + PAD, PAD), _fit(draw, label, tile - 2 * PAD, font), "black", font)
    for c, label in enumerate(row_labels):
        y = COL_LABEL_HEIGHT + c * tile
        draw.text((PAD, y + PAD), _fit(draw, label, ROW_LABEL_WIDTH - 2 * PAD, font), "black", font)
        for i, (image, box) in enumerate(zip(images, boxes, strict=True)):
            reason = explanation.uninformative_reason(
                float(concentration[c, i]),
                None if shares is None else float(shares[c, i]),
                min_concentration,
                min_visual_share,
            )
            sheet.paste(
                _tile(image, maps[c, i].reshape(grid), box, reason, tile, font), (ROW_LABEL_WIDTH + i * tile, y)
            )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, "PNG")
    return path
