"""The export's item catalog and serving metadata (`assets.extra/catalog.csv`, `serving.json`).

Item ids coming from requests are checked against the catalog before any path is built from them.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
from PIL import Image

from model.contract import (
    ASSETS_EXTRA,
    CATALOG_COLUMNS,
    CATALOG_COLUMNS_BEFORE_NEW,
    CATALOG_COLUMNS_BEFORE_TEXT,
    CATALOG_FILE,
    SAVED_MODEL_FILE,
    SERVING_META_DEFAULTS,
    SERVING_META_FILE,
    SERVING_META_KEYS,
    place_source,
    split_user_state,
    version_numbers,
)
from service.errors import UnknownItem

Box = tuple[float, float, float, float]  # left, top, right, bottom in the image's own pixels


def find_version_dir(model_dir: Path) -> Path:
    """`model_dir` itself when it is a version folder, else its highest numbered version folder."""
    model_dir = Path(model_dir)
    if (model_dir / SAVED_MODEL_FILE).is_file():
        if not model_dir.name.isdigit():
            raise ValueError(f"version folder {model_dir} must be named by its version number, e.g. 1/")
        return model_dir
    versions = version_numbers(model_dir)
    if not versions:
        raise FileNotFoundError(
            f"{model_dir} holds no SavedModel: pass an export base folder with numbered version folders "
            f"(<n>/{SAVED_MODEL_FILE}) or one version folder"
        )
    return model_dir / str(versions[-1])


@dataclass(frozen=True)
class ServingMeta:
    """`serving.json`: one field per `model.contract.SERVING_META_KEYS`."""

    model_name: str
    version: int
    grid_rows: int
    grid_cols: int
    embedding_dim: int
    num_items: int
    num_users: int
    image_root: str
    created: str
    repeat_slots: int = 0
    new_item_every: int = 0
    new_item_picks: int = 0
    candidates: int = 0

    @classmethod
    def read(cls, version_dir: Path) -> ServingMeta:
        path = Path(version_dir) / ASSETS_EXTRA / SERVING_META_FILE
        raw = SERVING_META_DEFAULTS | json.loads(path.read_text())
        missing = [key for key in SERVING_META_KEYS if key not in raw]
        if missing:
            raise ValueError(f"{path} lacks keys {missing}: re-export the model with offline.serving.export")
        return cls(**{key: raw[key] for key in SERVING_META_KEYS})


@dataclass(frozen=True)
class CatalogItem:
    image: str  # relative to the image root
    box: Box
    new: bool = False  # no purchase when the model was trained
    title: str = ""
    category: str = ""


@dataclass
class Catalog:
    meta: ServingMeta
    image_root: Path
    items: dict[str, CatalogItem]
    _sizes: dict[str, tuple[int, int]] = field(default_factory=dict, repr=False)
    _paths: dict[str, Path] = field(default_factory=dict, repr=False)  # resolved and checked once per item

    @classmethod
    def load(cls, version_dir: Path, image_root: Path | None = None) -> Catalog:
        meta = ServingMeta.read(version_dir)
        path = Path(version_dir) / ASSETS_EXTRA / CATALOG_FILE
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            if tuple(reader.fieldnames or ()) not in (
                CATALOG_COLUMNS,
                CATALOG_COLUMNS_BEFORE_TEXT,
                CATALOG_COLUMNS_BEFORE_NEW,
            ):
                raise ValueError(f"{path} has columns {reader.fieldnames}, expected {list(CATALOG_COLUMNS)}")
            item_id, image, *box_columns = CATALOG_COLUMNS_BEFORE_NEW
            items = {
                row[item_id]: CatalogItem(
                    row[image],
                    tuple(float(row[c]) for c in box_columns),
                    row.get("new") == "1",
                    row.get("title") or "",
                    row.get("category") or "",
                )
                for row in reader
            }
        root = Path(image_root if image_root is not None else meta.image_root).resolve()
        return cls(meta=meta, image_root=root, items=items)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self.items

    @cached_property
    def ids_by_row(self) -> list[str]:
        """Item ids in the model's row order (catalog.csv lists the items in that order)."""
        return list(self.items)

    def history(self, state: np.ndarray) -> list[str]:
        """The item ids of the history a user state carries (`model.contract`), newest first; empty for
        models whose states carry none."""
        _, rows, _ = split_user_state(np.asarray(state)[None], self.meta.embedding_dim, self.meta.repeat_slots)
        if rows is None:
            return []
        ids = self.ids_by_row
        return [ids[int(r)] for r in rows[0] if 0 <= r < len(ids)]

    def repeat_boosts(self, state: np.ndarray) -> dict[str, float]:
        """Item id -> the score a user's repeat-purchase boost adds to it, read from their user state
        [D + 2H] (`model.contract`); empty for models without the boost."""
        _, rows, boosts = split_user_state(np.asarray(state)[None], self.meta.embedding_dim, self.meta.repeat_slots)
        if rows is None:
            return {}
        ids = self.ids_by_row
        return {ids[int(r)]: float(b) for r, b in zip(rows[0], boosts[0]) if 0 <= r < len(ids)}

    def __len__(self) -> int:
        return len(self.items)

    def text(self, item_id: str) -> dict[str, str | None]:
        """{"title", "category"} of an item for people to read; None where the catalog has none."""
        item = self.items.get(item_id)
        return {"title": (item and item.title) or None, "category": (item and item.category) or None}

    def is_new(self, item_id: str) -> bool:
        """Whether the item had no purchase when the model was trained (False for ids not listed)."""
        item = self.items.get(item_id)
        return item is not None and item.new

    def source(self, item_id: str, personalized: bool, repeat_boost: float, shelf: str = "all") -> str:
        """Where the item's place in a ranking of `shelf` comes from (`model.contract.place_source`)."""
        return place_source(personalized, self.is_new(item_id), repeat_boost, self.meta.new_item_every, shelf)

    def get(self, item_id: str) -> CatalogItem:
        try:
            return self.items[item_id]
        except KeyError:
            raise UnknownItem(item_id) from None

    def image_path(self, item_id: str) -> Path:
        """The photo's path, checked to be a file inside the image root. Unknown ids never get here.
        The resolved path is kept (resolving costs a system call per path component, on every heatmap);
        whether the file is there is asked each time."""
        path = self._paths.get(item_id)
        if path is None:
            item = self.get(item_id)
            path = (self.image_root / item.image).resolve()
            if not path.is_relative_to(self.image_root):
                raise UnknownItem(item_id, "its catalog image path leaves the image root")
            self._paths[item_id] = path
        if not path.is_file():
            raise UnknownItem(item_id, f"its image {self.items[item_id].image!r} is missing under the image root")
        return path

    def image_size(self, item_id: str) -> tuple[int, int]:
        """(width, height) of the photo, read from its header once."""
        if item_id not in self._sizes:
            with Image.open(self.image_path(item_id)) as image:
                self._sizes[item_id] = image.size
        return self._sizes[item_id]
