"""Your own shop's files -> the internal format, every row checked.

The source folder holds two CSV files (UTF-8, a header row, any column order, extra columns allowed):

    interactions.csv  user_id,item_id,timestamp[,review]
    catalog.csv       item_id,image[,title][,category][,description][,any other attribute columns]

timestamp: unix seconds, or an ISO 8601 date or date-time (2024-03-01, 2024-03-01T14:05:00Z,
2024-03-01 14:05:00+01:00; no zone means UTC). review: optional text the shopper wrote (or leave the
column out). image: the photo's path, relative to the source folder or absolute. title, category,
description and the other columns are kept as the item's attributes: the gateway shows title and
category, new items are placed by category among others, and description stands in for a review where
an interaction has none.

Bad rows are counted by reason, reported (printed, and in prepare.json beside the output) and left out;
the run goes on:
  a short or overlong row, or an empty id, image or timestamp;
  a catalog item_id seen before (the first row is kept);
  an item whose photo is missing, is not an image or is truncated (the item leaves the catalog, and
  its interactions are counted as left out with it);
  an interaction whose item is not in the catalog;
  a timestamp that does not parse, or lies in the future (after the moment prepare runs).
A file or a required column that is missing stops the run with one line naming it.

Photos are hard-linked (copied across file systems) into OUT/images/, so the out folder is what the
gateway serves from.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import re
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from offline.data.prepare import Prepared, make_interactions
from offline.data.prepare.photo_files import MISSING, link_or_copy
from offline.data.prepare.records import PrepareError, clean_text, csv_rows
from offline.data.prepare.report import Report

INTERACTIONS = "interactions.csv"
CATALOG = "catalog.csv"
INTERACTION_COLUMNS = ("user_id", "item_id", "timestamp")
CATALOG_COLUMNS = ("item_id", "image")
# Unix seconds past this are more likely milliseconds than the year 5138: the skip reason says so.
MILLISECONDS_FROM = 10**11
_SAFE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,80}")
FUTURE = "timestamp in the future"


def parse_timestamp(value: str) -> int:
    """Unix seconds from unix seconds (an integer or a decimal) or an ISO 8601 date / date-time; raises
    ValueError on anything else."""
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        moment = datetime.fromisoformat(text)  # 3.11 reads dates, "T" or " ", "Z" and offsets
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return int(moment.timestamp())
    if not math.isfinite(number):
        raise ValueError(f"not a time: {text!r}")
    return int(number)


def photo_name(item: str, suffix: str) -> str:
    """Where an item's photo goes under OUT: the id itself when it is a safe file name, else its hash (an
    id may hold slashes or spaces); a two-character folder keeps folders small."""
    digest = hashlib.sha1(item.encode("utf-8")).hexdigest()
    name = item if _SAFE_NAME.fullmatch(item) and item not in (".", "..") else digest
    return f"images/{digest[:2]}/{name}{suffix}"


def read_catalog(source: Path, out: Path, report: Report, progress: bool) -> tuple[list[str], list[str], dict]:
    """-> item ids in file order, their photos (relative to `out`) and attribute columns; items without a
    usable photo are left out here, each counted by reason."""
    path = source / CATALOG
    if not path.is_file():
        raise PrepareError(f"{path}: no such file; the catalog is {CATALOG} with columns {','.join(CATALOG_COLUMNS)}")
    section = report.section(CATALOG)
    ids: list[str] = []
    images: list[str] = []
    rows: list[dict[str, str]] = []
    seen: set[str] = set()
    for row in csv_rows(path, section, CATALOG_COLUMNS, progress):
        item = row["item_id"].strip()
        if item in seen:
            section.skip("duplicate item_id (the first row is kept)")
            continue
        seen.add(item)
        photo = os.path.join(source, row["image"].strip())  # an absolute image stays as it is
        if not os.path.isfile(photo):  # one that does not decode is left out after linking, as for every dataset
            section.skip(MISSING)
            continue
        relative = photo_name(item, os.path.splitext(photo)[1].lower() or ".jpg")
        link_or_copy(photo, os.path.join(out, relative))
        ids.append(item)
        images.append(relative)
        rows.append(row)
        section.kept += 1
    if not ids:
        raise PrepareError(f"{path}: no item was kept (skip reasons: {dict(section.skipped)})")
    columns = [c for c in rows[0] if c not in CATALOG_COLUMNS and c is not None]
    for optional in ("title", "category"):
        if optional not in columns:
            report.notes.append(f"{CATALOG} has no {optional} column: the gateway shows item ids instead")
    attributes = {c: [clean_text(r.get(c) or "") for r in rows] for c in columns}
    return ids, images, attributes


def read_interactions(source: Path, catalog: set[str], report: Report, now: float, progress: bool):
    path = source / INTERACTIONS
    if not path.is_file():
        raise PrepareError(
            f"{path}: no such file; interactions are {INTERACTIONS} with columns "
            f"{','.join(INTERACTION_COLUMNS)}[,review]"
        )
    section = report.section(INTERACTIONS)
    users, items, times, reviews = [], [], [], []
    strings: dict[str, str] = {}  # one shared str per distinct id
    parsed: dict[str, int | None] = {}  # timestamps repeat (dates above all): parse each text once
    has_review = None
    for row in csv_rows(path, section, INTERACTION_COLUMNS, progress):
        if has_review is None:
            has_review = "review" in row
        item = row["item_id"].strip()
        if item not in catalog:
            section.skip("item not in the catalog (or left out of it)")
            continue
        text = row["timestamp"]
        if text not in parsed:
            try:
                parsed[text] = parse_timestamp(text)
            except (ValueError, OverflowError):
                parsed[text] = None
        moment = parsed[text]
        if moment is None:
            section.skip("timestamp does not parse (unix seconds or ISO 8601 expected)")
            continue
        if moment > now:
            section.skip(FUTURE + (" (unix milliseconds? give seconds)" if moment >= MILLISECONDS_FROM else ""))
            continue
        user = row["user_id"].strip()
        users.append(strings.setdefault(user, user))
        items.append(strings.setdefault(item, item))
        times.append(moment)
        reviews.append(clean_text(row.get("review") or ""))
        section.kept += 1
    if not users:
        raise PrepareError(f"{path}: no interaction was kept (skip reasons: {dict(section.skipped)})")
    if not has_review:
        report.notes.append(f"{INTERACTIONS} has no review column: VECF trains without review text")
    repeated = sum(n - 1 for n in Counter(zip(users, items, times, reviews)).values() if n > 1)
    if repeated:
        report.notes.append(f"{repeated:,} interactions repeat an earlier row exactly; kept (each counts once more)")
    return make_interactions(users, items, times, reviews)


def prepare_shop(source: Path, out: Path, now: float | None = None, progress: bool = True) -> Prepared:
    report = Report("shop", str(source))
    ids, images, attributes = read_catalog(source, out, report, progress)
    now = time.time() if now is None else now
    interactions = read_interactions(source, set(ids), report, now, progress)
    return Prepared(ids, images, attributes, interactions, report)


def add_arguments(parser: argparse.ArgumentParser, dataset: str) -> None:
    """No options beyond --source and --out: the format is the contract."""


def from_args(dataset: str, args: argparse.Namespace) -> Prepared:
    return prepare_shop(args.source, args.out, progress=not args.no_progress)
