"""Explanation ground truth of a synthetic dataset: which parts a user likes, and where they are drawn.

`ground_truth.csv` says which liked parts an interacted item shows; `GarmentMasks` turns part names into
pixel masks by re-rasterising the polygons of `garments.json` with the item's geometry from
`catalog.csv` (the very code that drew the photo, so masks and pixels agree exactly); `grid_mask`
projects a pixel mask onto the grid of regions a CNN saw.

Marks painted onto real photos (`offline.data.plant`) sit where each photo's own garment outline put them,
which no shared polygon template can say; such a dataset's `garments.json` names a catalog column
instead (`"label_maps": COLUMN`), and that column gives each item a PNG label map of the photo's size:
`1 + index in "parts"` where that part's mark was painted, 0 elsewhere.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from offline.data import garments
from offline.data.dataset import CATALOG_FILE, GARMENTS_FILE, GROUND_TRUTH_FILE

GEOMETRY_COLUMNS = ("kind", "tx", "ty", "scale")
LABEL_MAPS_KEY = "label_maps"  # garments.json key: the catalog column of per-item label-map PNGs


def load_ground_truth(folder: Path | str) -> dict[tuple[str, str], tuple[str, ...]]:
    """(user_id, item_id) -> liked parts the item shows, for every interaction that has any."""
    path = Path(folder) / GROUND_TRUTH_FILE
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"user_id", "item_id", "parts"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}")
        return {(r["user_id"], r["item_id"]): tuple(p for p in r["parts"].split(";") if p) for r in reader}


class GarmentMasks:
    """Pixel masks of garment parts for the items of one synthetic dataset folder."""

    def __init__(self, folder: Path | str):
        folder = Path(folder)
        spec = json.loads((folder / GARMENTS_FILE).read_text(encoding="utf-8"))
        self.parts = tuple(spec["parts"])
        self.label_files: dict[str, Path] | None = None
        if spec.get(LABEL_MAPS_KEY):  # painted marks: stored label maps, no templates to re-rasterise
            self.label_files = self._read_label_files(folder, str(spec[LABEL_MAPS_KEY]))
            return
        self.size = (int(spec["image_size"]["width"]), int(spec["image_size"]["height"]))
        self.templates = {kind: garments.template_from_spec(t) for kind, t in spec["kinds"].items()}
        self.geometry = self._read_geometry(folder / CATALOG_FILE)

    @staticmethod
    def _read_label_files(folder: Path, column: str) -> dict[str, Path]:
        with open(folder / CATALOG_FILE, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if column not in (reader.fieldnames or []):
                raise ValueError(
                    f"{folder / CATALOG_FILE}: missing label-map column {column!r} that {GARMENTS_FILE} names"
                )
            return {r["item_id"]: folder / r[column] for r in reader}

    @staticmethod
    def _read_geometry(path: Path) -> dict[str, tuple[str, float, float, float]]:
        # Only the four geometry columns: a 200k-item catalog's other columns are not needed here.
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = {"item_id", *GEOMETRY_COLUMNS} - set(reader.fieldnames or [])
            if missing:
                raise ValueError(f"{path}: missing columns {sorted(missing)}; is this a synthetic dataset?")
            return {r["item_id"]: (r["kind"], float(r["tx"]), float(r["ty"]), float(r["scale"])) for r in reader}

    def labels(self, item_id: str) -> np.ndarray:
        """uint8 [H, W] label map of the item (see `garments.label_map`, or the stored PNG)."""
        if self.label_files is not None:
            return self._stored_labels(item_id)
        try:
            kind, tx, ty, scale = self.geometry[item_id]
        except KeyError:
            raise KeyError(f"item {item_id!r} is not in this dataset's catalog") from None
        return garments.label_map(self.templates[kind], tx, ty, scale, self.size)

    def _stored_labels(self, item_id: str) -> np.ndarray:
        assert self.label_files is not None
        try:
            path = self.label_files[item_id]
        except KeyError:
            raise KeyError(f"item {item_id!r} is not in this dataset's catalog") from None
        with Image.open(path) as image:
            return np.asarray(image.convert("L"))

    def pixel_mask(self, item_id: str, parts: Sequence[str]) -> np.ndarray:
        """bool [H, W] at the image's pixel size: the union of the parts' visible pixels."""
        unknown = [p for p in parts if p not in self.parts]
        if unknown:
            raise ValueError(f"unknown parts {unknown}; expected some of {list(self.parts)}")
        # Stored maps number the dataset's own parts; templates use the shared garment vocabulary.
        codes = [self.parts.index(p) + 1 if self.label_files is not None else garments.part_label(p) for p in parts]
        return np.isin(self.labels(item_id), codes)


def _overlap(start: float, stop: float, n: int, length: int) -> np.ndarray:
    """[n, length]: overlap of each of n equal cells splitting [start, stop) with pixel [x, x + 1)."""
    edges = start + (stop - start) * np.arange(n + 1) / n  # [n + 1]
    pixel = np.arange(length, dtype=np.float64)  # [length]
    lo = np.maximum(edges[:-1, None], pixel[None, :])
    hi = np.minimum(edges[1:, None], pixel[None, :] + 1)
    return np.clip(hi - lo, 0.0, None)


def grid_mask(
    pixel_mask: np.ndarray, box: tuple[float, float, float, float], rows: int, cols: int, min_coverage: float = 0.2
) -> np.ndarray:
    """bool [rows, cols]: grid cells over `box` whose area is at least `min_coverage` covered by the mask.

    box = (left, top, right, bottom) in pixel coordinates; it may reach beyond the image (a portrait
    padded to a square), and area outside the image counts as uncovered. If no cell reaches
    `min_coverage` but some cell is touched, the single most covered cell is the mask, so a small part
    still has a location.
    """
    left, top, right, bottom = box
    if not (right > left and bottom > top and rows >= 1 and cols >= 1):
        raise ValueError(
            f"need right > left, bottom > top and rows, cols >= 1; got box={box}, rows={rows}, cols={cols}"
        )
    mask = np.asarray(pixel_mask, dtype=np.float64)  # [H, W]
    if mask.ndim != 2:
        raise ValueError(f"pixel_mask must be 2-D [H, W]; got shape {mask.shape}")
    wy = _overlap(top, bottom, rows, mask.shape[0])  # [rows, H]
    wx = _overlap(left, right, cols, mask.shape[1])  # [cols, W]
    cell_area = (right - left) / cols * (bottom - top) / rows
    coverage = wy @ mask @ wx.T / cell_area  # [rows, cols]
    chosen = coverage >= min_coverage - 1e-9  # tolerance: exact fractions computed in floating point
    if not chosen.any() and coverage.max() > 0:
        chosen = np.zeros_like(chosen)
        chosen[np.unravel_index(np.argmax(coverage), coverage.shape)] = True
    return chosen
