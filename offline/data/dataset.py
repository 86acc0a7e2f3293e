"""The internal dataset format every source is turned into; one source of truth for its files.

A dataset folder holds::

    catalog.csv       item_id,image[,attribute columns...]   image: path relative to the folder
    interactions.csv  user_id,item_id,timestamp,review       timestamp: int unix seconds; review may be ""

Synthetic datasets add the explanation ground truth (see `offline.data.ground_truth`)::

    ground_truth.csv  user_id,item_id,parts                  parts: ";"-joined liked part names present
    garments.json     part polygon templates per garment kind (catalog.csv has kind,tx,ty,scale)

Ids are strings everywhere (H&M article ids have leading zeros).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CATALOG_FILE = "catalog.csv"
INTERACTIONS_FILE = "interactions.csv"
GROUND_TRUTH_FILE = "ground_truth.csv"
GARMENTS_FILE = "garments.json"
INTERACTION_COLUMNS = ("user_id", "item_id", "timestamp", "review")


@dataclass(frozen=True)
class Catalog:
    """Items in a fixed order: that order is the row order of the region-feature table."""

    item_ids: list[str]
    images: list[str]  # relative to `root`
    attributes: dict[str, list[str]]  # extra columns, one list per column, aligned with item_ids
    root: Path

    def __len__(self) -> int:
        return len(self.item_ids)

    def image_path(self, index: int) -> Path:
        return self.root / self.images[index]


@dataclass(frozen=True)
class Interactions:
    """Parallel arrays, one row per interaction, in file order."""

    user_ids: np.ndarray  # [n] object (str)
    item_ids: np.ndarray  # [n] object (str)
    timestamps: np.ndarray  # [n] int64 unix seconds
    reviews: np.ndarray  # [n] object (str), "" where there is none

    def __len__(self) -> int:
        return len(self.user_ids)

    def take(self, index: np.ndarray) -> Interactions:
        return Interactions(self.user_ids[index], self.item_ids[index], self.timestamps[index], self.reviews[index])


def load_catalog(folder: Path | str) -> Catalog:
    folder = Path(folder)
    with open(folder / CATALOG_FILE, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        columns = reader.fieldnames or []
    missing = {"item_id", "image"} - set(columns)
    if missing:
        raise ValueError(f"{folder / CATALOG_FILE}: missing columns {sorted(missing)}")
    extra = [c for c in columns if c not in ("item_id", "image")]
    ids = [r["item_id"] for r in rows]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{folder / CATALOG_FILE}: duplicate item ids")
    return Catalog(
        item_ids=ids,
        images=[r["image"] for r in rows],
        attributes={c: [r[c] for r in rows] for c in extra},
        root=folder,
    )


def write_catalog(
    folder: Path | str, item_ids: list[str], images: list[str], attributes: dict[str, list[str]] | None = None
) -> Path:
    path = Path(folder) / CATALOG_FILE
    attributes = attributes or {}
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["item_id", "image", *attributes])
        cols = list(attributes.values())
        for i, (item, image) in enumerate(zip(item_ids, images)):
            w.writerow([item, image, *(c[i] for c in cols)])
    return path


def load_interactions(folder: Path | str) -> Interactions:
    return read_interactions(Path(folder) / INTERACTIONS_FILE)


def read_interactions(path: Path | str) -> Interactions:
    users, items, times, reviews = [], [], [], []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = set(INTERACTION_COLUMNS[:3]) - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}")
        for r in reader:
            users.append(r["user_id"])
            items.append(r["item_id"])
            times.append(int(r["timestamp"]))
            reviews.append(r.get("review") or "")
    return Interactions(
        np.array(users, dtype=object),
        np.array(items, dtype=object),
        np.array(times, dtype=np.int64),
        np.array(reviews, dtype=object),
    )


def write_interactions(folder: Path | str, data: Interactions) -> Path:
    return write_interactions_file(Path(folder) / INTERACTIONS_FILE, data)


def write_interactions_file(path: Path | str, data: Interactions) -> Path:
    path = Path(path)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(INTERACTION_COLUMNS)
        w.writerows(zip(data.user_ids, data.item_ids, data.timestamps.tolist(), data.reviews))
    return path
