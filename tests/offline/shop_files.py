"""A tiny shop in the documented format (offline.data.prepare.shop), with every kind of bad row and photo a
real export has: the pipeline test trains on it, the preparation tests count what it leaves out."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = [(200, 30, 30), (30, 160, 40), (40, 60, 200), (230, 200, 40), (20, 20, 20), (240, 240, 240)]
COLOUR_NAMES = ["red", "green", "blue", "yellow", "black", "white"]
FUTURE = "2999-01-01"


@dataclass(frozen=True)
class TinyShop:
    items: list[str]  # the good catalog items, in file order (ids with a leading zero and one with a space)
    customers: list[str]
    broken_items: dict[str, str]  # item id -> the skip reason its photo (or row) should be counted under
    bad_interactions: dict[str, int]  # skip reason -> rows written with it


def write_tiny_shop(root: Path, seed: int = 3) -> TinyShop:
    """60 good items, 24 customers who buy mostly one colour over 30 weeks, items 50.. never bought (new
    items only the photos can rank); then broken catalog rows and photos, and bad interaction rows."""
    rng = np.random.default_rng(seed)
    items = [f"0{100000000 + 1000 * k + 1:09d}" for k in range(59)] + ["sku 59/a"]
    colour = {a: k % len(COLOURS) for k, a in enumerate(items)}
    photos = root / "photos"
    photos.mkdir(parents=True)
    catalog_rows = []
    for k, a in enumerate(items):
        im = Image.new("RGB", (40, 60), (235, 235, 235))
        im.paste(COLOURS[colour[a]], (8, 10, 32, 52))
        im.save(photos / f"p{k}.jpg")
        catalog_rows.append([a, f"photos/p{k}.jpg", f"Soft top {k}", "Top", COLOUR_NAMES[colour[a]]])
    # Broken photos and rows: each of these items must leave the catalog, counted under its reason.
    whole = (photos / "p0.jpg").read_bytes()
    (photos / "cut.jpg").write_bytes(whole[: len(whole) // 2])
    (photos / "notes.jpg").write_text("not a photo")
    broken = {
        "broken-truncated": ("photos/cut.jpg", "photo is truncated or corrupt"),
        "broken-not-image": ("photos/notes.jpg", "photo is not an image Pillow can read"),
        "broken-missing": ("photos/gone.jpg", "photo file missing"),
        "broken-empty": ("", "empty image"),
    }
    catalog_rows += [[item, image, "Broken", "Top", "red"] for item, (image, _) in broken.items()]
    catalog_rows.append([items[1], "photos/p2.jpg", "A second row for item 1", "Top", "green"])  # duplicate id
    with open(root / "catalog.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["item_id", "image", "title", "category", "colour"])
        w.writerows(catalog_rows)
        f.write("short-row\n")

    customers = [f"c{k:03d}" for k in range(24)]
    start = datetime(2019, 1, 7, tzinfo=UTC)
    rows = []
    for k, c in enumerate(customers):
        liked = [a for a in items[:50] if colour[a] == k % len(COLOURS)]
        for n in range(14):
            a = rng.choice(liked) if rng.random() < 0.8 else rng.choice(items[:50])
            moment = start + timedelta(days=int(rng.integers(0, 30 * 7)), seconds=int(rng.integers(0, 86_400)))
            # dates, date-times with a zone and unix seconds: the format takes all three
            stamp = [moment.date().isoformat(), moment.isoformat(), str(int(moment.timestamp()))][n % 3]
            rows.append([c, a, stamp, f"I like the {COLOUR_NAMES[colour[a]]} colour" if n % 4 == 0 else ""])
    bad = {
        "item not in the catalog (or left out of it)": [["c000", "no-such-item", "2019-03-01", ""]],
        "timestamp in the future": [["c001", items[0], FUTURE, ""]],
        "timestamp in the future (unix milliseconds? give seconds)": [["c002", items[0], "1550000000000", ""]],
        "timestamp does not parse (unix seconds or ISO 8601 expected)": [
            ["c003", items[0], "yesterday", ""],
            ["c003", items[0], "2019-02-30", ""],
        ],
        "empty user_id": [["", items[0], "2019-03-01", ""]],
    }
    rows += [[c, "broken-truncated", "2019-03-01", ""] for c in customers[:3]]  # their item leaves the catalog
    with open(root / "interactions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "item_id", "timestamp", "review"])
        w.writerows(rows)
        for reason_rows in bad.values():
            w.writerows(reason_rows)
        f.write("c004,only-two-fields\n")
    return TinyShop(
        items=items,
        customers=customers,
        broken_items={item: reason for item, (_, reason) in broken.items()},
        bad_interactions={reason: len(r) for reason, r in bad.items()},
    )
