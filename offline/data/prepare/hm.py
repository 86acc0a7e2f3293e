"""H&M Personalized Fashion Recommendations (Kaggle, 2022) -> the internal format.

Two source layouts are accepted:
  the Kaggle original  transactions_train.csv, articles.csv, images/0NN/ARTICLE.jpg (no catalog.csv)
  a sample with a shop catalog  transactions.csv, articles.csv, catalog.csv (article_id,image; image
                       relative to the source folder), images/...

Catalog: every article of catalog.csv, in its order (articles nobody bought included: cold-start
items); without catalog.csv, every article of articles.csv. Attributes come from articles.csv where it
has the article (title = prod_name, product_type, product_group, colour, pattern, department, index_group,
garment_group, description = detail_desc with whitespace collapsed, case kept), else they are empty.

Photos (--images): `link` (default) hard-links each photo into OUT/images/NNN/ARTICLE.jpg (a copy where
the out folder is on another file system), so the out folder is self-contained and the gateway's
"inside the image root" check holds; `absolute` writes the source photo's absolute path instead and
no files (the gateway then needs its image root set to the source folder). A catalog article without
a photo file gets an empty image.

Interactions: one per transaction row, repeat purchases kept; timestamp = t_dat at 00:00 UTC in unix
seconds; review "" (H&M has no reviews). Transactions of articles outside the catalog are skipped and
counted. Article ids are strings: read as text, never as numbers (they have leading zeros); digit-only
ids shorter than 10 (a file re-saved by a tool that dropped the zeros) are padded back to 10.
"""

from __future__ import annotations

import argparse
import os
from datetime import date
from pathlib import Path

from tqdm import tqdm

from offline.data.prepare import Prepared, make_interactions
from offline.data.prepare.photo_files import link_or_copy
from offline.data.prepare.records import PrepareError, clean_text, csv_rows, find_file
from offline.data.prepare.report import Report

ATTRIBUTES = {  # catalog column -> articles.csv column
    "title": "prod_name",
    "product_type": "product_type_name",
    "product_group": "product_group_name",
    "colour": "colour_group_name",
    "pattern": "graphical_appearance_name",
    "department": "department_name",
    "index_group": "index_group_name",
    "garment_group": "garment_group_name",
    "description": "detail_desc",
}
ID_DIGITS = 10
EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
IMAGE_MODES = ("link", "absolute")


def article_id(value: str) -> str:
    value = value.strip()
    return value.zfill(ID_DIGITS) if value.isdigit() and len(value) < ID_DIGITS else value


def day_seconds(t_dat: str) -> int:
    """'2020-09-22' -> unix seconds at 00:00 UTC that day."""
    return (date.fromisoformat(t_dat.strip()).toordinal() - EPOCH_ORDINAL) * 86400


def read_catalog(source: Path, report: Report, progress: bool) -> tuple[list[str], list[str | None]]:
    """-> article ids in catalog order and the source photo of each (None: no file). Paths are plain
    strings here: pathlib costs seconds over the Kaggle catalog's 105k photos."""
    catalog = source / "catalog.csv"
    if catalog.exists():
        section = report.section("catalog.csv")
        ids, photos, seen = [], [], set()
        for row in csv_rows(catalog, section, ("article_id", "image"), progress):
            item = article_id(row["article_id"])
            if item in seen:
                section.skip("duplicate article_id")
                continue
            seen.add(item)
            photos.append(os.path.join(source, row["image"].strip()))  # an absolute image stays as it is
            ids.append(item)
            section.kept += 1
    else:  # the Kaggle original: the catalog is articles.csv, photos at images/0NN/ARTICLE.jpg
        section = report.section("articles.csv (as the catalog)")
        ids, seen = [], set()
        for row in csv_rows(source / "articles.csv", section, ("article_id",), progress):
            item = article_id(row["article_id"])
            if item in seen:
                section.skip("duplicate article_id")
                continue
            seen.add(item)
            ids.append(item)
            section.kept += 1
        photos = [os.path.join(source, "images", item[:3], f"{item}.jpg") for item in ids]
        report.notes.append("no catalog.csv: the catalog is every article of articles.csv")
    return ids, [p if os.path.isfile(p) else None for p in photos]


def read_attributes(source: Path, catalog: set[str], report: Report, progress: bool) -> dict[str, dict[str, str]]:
    path = source / "articles.csv"
    if not path.exists():
        report.notes.append("no articles.csv: catalog attributes are empty")
        return {}
    section = report.section("articles.csv")
    out: dict[str, dict[str, str]] = {}
    for row in csv_rows(path, section, ("article_id",), progress):
        item = article_id(row["article_id"])
        if item not in catalog:
            section.skip("article not in the catalog")
            continue
        out[item] = {col: clean_text(row.get(src) or "") for col, src in ATTRIBUTES.items()}
        section.kept += 1
    return out


def place_photos(ids: list[str], photos: list[str | None], out: Path, mode: str, progress: bool) -> list[str]:
    """-> the catalog's image column. Idempotent: a photo already linked or copied is left alone."""
    images = []
    for item, photo in tqdm(list(zip(ids, photos)), desc="photos", unit=" img", disable=not progress, mininterval=1.0):
        if photo is None:
            images.append("")
        elif mode == "absolute":
            images.append(os.path.realpath(photo))
        else:
            relative = f"images/{item[:3]}/{item}{os.path.splitext(photo)[1].lower() or '.jpg'}"
            link_or_copy(photo, os.path.join(out, relative))
            images.append(relative)
    return images


def prepare_hm(
    source: Path, out: Path, images: str = "link", since: str | None = None, progress: bool = True
) -> Prepared:
    if images not in IMAGE_MODES:
        raise ValueError(f"images must be one of {IMAGE_MODES}, not {images!r}")
    report = Report("hm", str(source))
    ids, photos = read_catalog(source, report, progress)
    catalog = set(ids)
    attributes = read_attributes(source, catalog, report, progress)
    image_column = place_photos(ids, photos, out, images, progress)
    if images == "absolute":
        report.notes.append("catalog image paths are absolute paths into the source folder")

    path = find_file(source, ("transactions.csv", "transactions_train.csv"), "transactions")
    section = report.section(path.name)
    start = day_seconds(since) if since else None
    days: dict[str, int] = {}
    strings: dict[str, str] = {}  # one shared str per distinct id: the Kaggle file has 31M rows
    users, items, times = [], [], []
    for row in csv_rows(path, section, ("t_dat", "customer_id", "article_id"), progress):
        item = article_id(row["article_id"])
        if item not in catalog:
            section.skip("article not in the catalog")
            continue
        t_dat = row["t_dat"]
        if t_dat not in days:
            try:
                days[t_dat] = day_seconds(t_dat)
            except ValueError:
                section.skip("t_dat is not a YYYY-MM-DD date")
                continue
        if start is not None and days[t_dat] < start:
            section.skip("before --since")
            continue
        user = row["customer_id"].strip()
        users.append(strings.setdefault(user, user))
        items.append(strings.setdefault(item, item))
        times.append(days[t_dat])
        section.kept += 1
    if not users:
        raise PrepareError(f"{path}: no transaction was kept (see the skip reasons above: {dict(section.skipped)})")
    columns = {col: [attributes.get(item, {}).get(col, "") for item in ids] for col in ATTRIBUTES}
    report.output["catalog items with attributes"] = sum(1 for item in ids if item in attributes)
    return Prepared(ids, image_column, columns, make_interactions(users, items, times, [""] * len(users)), report)


def add_arguments(parser: argparse.ArgumentParser, dataset: str) -> None:
    parser.add_argument(
        "--images",
        choices=IMAGE_MODES,
        default="link",
        help="link: hard-link (or copy) photos into OUT/images; absolute: point at the source",
    )
    parser.add_argument("--since", help="keep transactions from this day on (YYYY-MM-DD)")


def from_args(dataset: str, args: argparse.Namespace) -> Prepared:
    if args.since:
        try:
            day_seconds(args.since)
        except ValueError:
            raise PrepareError(f"--since {args.since!r} is not a YYYY-MM-DD date") from None
    return prepare_hm(args.source, args.out, args.images, args.since, progress=not args.no_progress)
