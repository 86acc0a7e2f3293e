"""Amazon review datasets -> the internal format.

amazon2018 (Ni, Li & McAuley, EMNLP 2019): `<Category>_5.json(.gz)` or `.jsonl`, strict JSON lines
(reviewerID, asin, overall, reviewText, summary, unixReviewTime, style, ...), plus the optional
`meta_<Category>.json(.gz)` (JSON lines: asin, title, brand, category, imageURLHighRes/imageURL).
Side files of a sample are read too: item_image_urls.csv (asin,image_url), product_details.json
({"product_details": [{"asin", "productName"}]}).
amazon2014 (McAuley et al., SIGIR 2015): `reviews_<Category>_5.json.gz` (strict JSON lines) plus
`meta_<Category>.json.gz`, whose lines are Python literals (single quotes), read with
`ast.literal_eval`, never `eval`; `categories` is a list of category paths, `imUrl` the photo.

Interactions: user reviewerID, item asin, timestamp unixReviewTime, review = reviewText (HTML entities
decoded, whitespace collapsed; "" when missing).
De-duplication: the 2018 files copy each review onto every colour/size variant of a product (the
AMAZON_FASHION 5-core has 3,176 records but 447 distinct reviews). One interaction is kept per
(reviewerID, unixReviewTime, review text) -- a text-less review counts as the text "" -- namely the
first record in file order, so the first listed variant holds it and the other variants stay in the
catalog with fewer or no interactions. The same rule runs on 2014 data, which has no such copies.
The 5-core filter is not re-applied after de-duplication or --subset: a user may end with fewer
than 5 interactions.

Catalog: every asin with a valid review record (variants that only received copies included), sorted;
attributes title, brand, categories ("a > b | c > d"), image_url. --subset men|women keeps the items
with a category path starting "Clothing, Shoes & Jewelry" > "Men" (or "Women"), as in the VECF paper's
Amazon Men/Women sets, and the interactions with them; items without metadata are outside any subset.

Photos: nothing is downloaded unless --fetch-images (see offline.data.prepare.images; resumable through
images/manifest.csv). A catalog item's image is its fetched photo (also one fetched by an earlier
run), else "" -- counted as "catalog items without a photo". Features need a photo for every item:
fetch first, or prepare with --drop-items-without-image.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from collections.abc import Iterable
from pathlib import Path

from offline.data.prepare import Prepared, make_interactions
from offline.data.prepare.images import FetchConfig, fetch_images, local_photos
from offline.data.prepare.records import (
    BadRecord,
    PrepareError,
    clean_text,
    find_file,
    json_records,
    parse_json,
    parse_literal,
    read_lines,
)
from offline.data.prepare.report import Report, Section

SUBSET_ROOT = "Clothing, Shoes & Jewelry"
SUBSETS = {"men": "Men", "women": "Women"}
ATTRIBUTES = ("title", "brand", "categories", "image_url")
# The asin of a metadata line, found without parsing it: most meta lines are of items outside the
# 5-core, and parsing 1.5M Python literals to drop them would take minutes.
_ASIN = re.compile(r"""['"]asin['"]\s*:\s*['"]([^'"]+)['"]""")

Review = tuple[str, str, int, str]  # user_id, item_id, timestamp, review


def _token(record: dict, key: str) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value.strip():
        raise BadRecord(f"missing {key}")
    return value.strip()


def _unix_time(record: dict) -> int:
    value = record.get("unixReviewTime")
    if isinstance(value, bool):
        raise BadRecord("bad unixReviewTime")
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    # NaN and inf are not integers
    if (isinstance(value, int) or (isinstance(value, float) and value.is_integer())) and value >= 0:
        return int(value)
    raise BadRecord("missing unixReviewTime" if value is None else "bad unixReviewTime")


def read_reviews(path: Path, section: Section, progress: bool = True) -> list[Review]:
    reviews = []
    for record in json_records(path, section, progress):
        try:
            review = (
                _token(record, "reviewerID"),
                _token(record, "asin"),
                _unix_time(record),
                clean_text(record.get("reviewText")),
            )
        except BadRecord as bad:
            section.skip(str(bad))
            continue
        reviews.append(review)
        section.kept += 1
    return reviews


def deduplicate(reviews: list[Review], section: Section) -> list[Review]:
    """One review per (user, time, text): the first record in file order (see the module doc)."""
    seen: set[tuple[str, int, str]] = set()
    kept = []
    for review in reviews:
        section.read += 1
        key = (review[0], review[2], review[3])
        if key in seen:
            section.skip("copy of a kept review (same reviewer, time and text): variant duplicate")
            continue
        seen.add(key)
        kept.append(review)
        section.kept += 1
    return kept


def _category_paths(record: dict) -> list[list[str]]:
    """2014 `categories`: a list of paths; 2018 `category`: one flat path."""
    raw = record.get("categories", record.get("category"))
    if not isinstance(raw, list):
        return []
    if raw and all(isinstance(c, str) for c in raw):
        raw = [raw]
    return [[clean_text(c) for c in path if isinstance(c, str)] for path in raw if isinstance(path, list)]


def _image_url(record: dict) -> str:
    for key in ("imageURLHighRes", "imageURL", "imUrl"):
        value = record.get(key)
        if isinstance(value, list):
            value = next((v for v in value if isinstance(v, str) and v.strip()), "")
        if isinstance(value, str) and value.strip().startswith(("http://", "https://")):
            return value.strip()
    return ""


def read_meta(path: Path, wanted: set[str], section: Section, literal: bool, progress: bool = True) -> dict[str, dict]:
    """asin -> {title, brand, paths, image_url} for the wanted asins. 2014 lines are Python literals;
    2018 lines are JSON (a Python-literal line is accepted there too)."""
    meta: dict[str, dict] = {}
    for line in read_lines(path, section, progress):
        found = _ASIN.search(line)
        if found and found.group(1) not in wanted:
            section.skip("item without a review in the 5-core (not needed)")
            continue
        try:
            record = parse_literal(line) if literal else _json_or_literal(line)
            asin = _token(record, "asin")
        except BadRecord as bad:
            section.skip(str(bad))
            continue
        if asin not in wanted:
            section.skip("item without a review in the 5-core (not needed)")
            continue
        if asin in meta:
            section.skip("duplicate asin (first kept)")
            continue
        meta[asin] = {
            "title": clean_text(record.get("title")),
            "brand": clean_text(record.get("brand")),
            "paths": _category_paths(record),
            "image_url": _image_url(record),
        }
        section.kept += 1
    return meta


def attribute(entry: dict | None, column: str) -> str:
    if entry is None:
        return ""
    if column == "categories":
        return " | ".join(" > ".join(p) for p in entry["paths"])
    return entry[column]


def _json_or_literal(line: str) -> dict:
    try:
        return parse_json(line)
    except BadRecord:
        return parse_literal(line)


def read_side_files(source: Path, wanted: set[str], meta: dict[str, dict], report: Report) -> None:
    """The 2018 sample's item_image_urls.csv and product_details.json fill what meta lacks."""
    urls_path = source / "item_image_urls.csv"
    if urls_path.exists():
        section = report.section(urls_path.name)
        with open(urls_path, newline="", encoding="utf-8", errors="replace") as f:
            for row in csv.DictReader(f):
                section.read += 1
                asin, url = (row.get("asin") or "").strip(), (row.get("image_url") or "").strip()
                if asin not in wanted or not url.startswith(("http://", "https://")):
                    section.skip("unknown asin or no http(s) URL")
                    continue
                entry = meta.setdefault(asin, {"title": "", "brand": "", "paths": [], "image_url": ""})
                entry["image_url"] = entry["image_url"] or url
                section.kept += 1
    details_path = source / "product_details.json"
    if details_path.exists():
        section = report.section(details_path.name)
        try:
            details = json.loads(details_path.read_text(encoding="utf-8")).get("product_details", [])
        except (ValueError, AttributeError):
            section.read += 1
            section.skip("not a JSON object with a product_details list")
            return
        for row in details if isinstance(details, list) else []:
            section.read += 1
            asin = row.get("asin") if isinstance(row, dict) else None
            if asin not in wanted:
                section.skip("unknown asin")
                continue
            entry = meta.setdefault(asin, {"title": "", "brand": "", "paths": [], "image_url": ""})
            entry["title"] = entry["title"] or clean_text(row.get("productName"))
            section.kept += 1


def in_subset(paths: Iterable[list[str]], subset: str) -> bool:
    name = SUBSETS[subset]
    return any(len(p) >= 2 and p[0] == SUBSET_ROOT and p[1] == name for p in paths)


def apply_subset(
    subset: str, items: list[str], reviews: list[Review], meta: dict[str, dict], report: Report
) -> tuple[list[str], list[Review]]:
    section = report.section(f"--subset {subset}: items")
    members = [a for a in items if a in meta and in_subset(meta[a]["paths"], subset)]
    no_meta = sum(1 for a in items if a not in meta)
    section.read, section.kept = len(items), len(members)
    section.skip("item without metadata", no_meta)
    section.skip(f"item outside {SUBSET_ROOT} > {SUBSETS[subset]}", len(items) - len(members) - no_meta)
    member_set = set(members)
    kept = [r for r in reviews if r[1] in member_set]
    section = report.section(f"--subset {subset}: interactions")
    section.read, section.kept = len(reviews), len(kept)
    section.skip("interaction with an item outside the subset", len(reviews) - len(kept))
    return members, kept


def place_photos(
    items: list[str], meta: dict[str, dict], out: Path, fetch: FetchConfig | None, report: Report, progress: bool
) -> list[str]:
    """-> the catalog's image column: photos fetched now (with --fetch-images) or by an earlier run."""
    urls = {a: meta[a]["image_url"] for a in items if a in meta and meta[a]["image_url"]}
    report.output["catalog items with an image URL"] = len(urls)
    if fetch is not None:
        summary = fetch_images(urls, out, fetch, progress)
        section = report.section("images (--fetch-images)")
        section.read, section.kept = len(urls), summary.count("ok")
        for record in summary.records.values():
            if record.status != "ok":
                section.skip(f"{record.status}: {record.detail.split(':')[0]}")
        report.output["photos downloaded by this run"] = summary.downloaded
        report.output["photos kept from an earlier run"] = summary.reused
    photos = local_photos(out) if out.exists() else {}
    images = [photos.get(a, "") for a in items]
    if fetch is None and not any(images):
        report.notes.append("no photos on disk: run again with --fetch-images (needs network access)")
    return images


def build(
    dataset: str,
    source: Path,
    out: Path,
    reviews_path: Path,
    meta_path: Path | None,
    literal_meta: bool,
    subset: str | None,
    fetch: FetchConfig | None,
    progress: bool,
) -> Prepared:
    if subset is not None and meta_path is None:
        raise PrepareError(f"--subset {subset} needs the metadata file (meta_<Category>.json.gz) in {source}")
    report = Report(dataset, str(source))
    reviews = read_reviews(reviews_path, report.section(reviews_path.name), progress)
    if not reviews:
        raise PrepareError(
            f"{reviews_path}: no valid review record (skipped: {dict(report.section(reviews_path.name).skipped)})"
        )
    items = sorted({r[1] for r in reviews})
    wanted = set(items)
    meta: dict[str, dict] = {}
    if meta_path is not None:
        meta = read_meta(meta_path, wanted, report.section(meta_path.name), literal_meta, progress)
    read_side_files(source, wanted, meta, report)
    reviews = deduplicate(reviews, report.section("de-duplication"))
    if subset is not None:
        items, reviews = apply_subset(subset, items, reviews, meta, report)
    images = place_photos(items, meta, out, fetch, report, progress)
    columns = {c: [attribute(meta.get(a), c) for a in items] for c in ATTRIBUTES}
    users, item_ids, times, texts = (list(col) for col in zip(*reviews)) if reviews else ([], [], [], [])
    return Prepared(items, images, columns, make_interactions(users, item_ids, times, texts), report)


def _category_of(path: Path, prefix: str, suffix: str) -> str:
    name = path.name
    for ext in (".gz", ".jsonl", ".json"):
        name = name.removesuffix(ext)
    return name.removeprefix(prefix).removesuffix(suffix)


def prepare_amazon2018(
    source: Path,
    out: Path,
    category: str | None = None,
    subset: str | None = None,
    fetch: FetchConfig | None = None,
    progress: bool = True,
) -> Prepared:
    cat = category or "*"
    reviews = find_file(
        source, tuple(f"{cat}_5.{ext}" for ext in ("json.gz", "json", "jsonl", "jsonl.gz")), "<Category>_5.json review"
    )
    cat = _category_of(reviews, "", "_5")
    meta = find_file(
        source,
        tuple(f"meta_{cat}.{ext}" for ext in ("json.gz", "json", "jsonl", "jsonl.gz")),
        "metadata",
        required=False,
    )
    return build("amazon2018", source, out, reviews, meta, False, subset, fetch, progress)


def prepare_amazon2014(
    source: Path,
    out: Path,
    category: str | None = None,
    subset: str | None = None,
    fetch: FetchConfig | None = None,
    progress: bool = True,
) -> Prepared:
    cat = category or "*"
    reviews = find_file(source, (f"reviews_{cat}_5.json.gz", f"reviews_{cat}_5.json"), "reviews_<Category>_5.json.gz")
    cat = _category_of(reviews, "reviews_", "_5")
    meta = find_file(source, (f"meta_{cat}.json.gz", f"meta_{cat}.json"), "metadata", required=False)
    return build("amazon2014", source, out, reviews, meta, True, subset, fetch, progress)


def add_arguments(parser: argparse.ArgumentParser, dataset: str) -> None:
    parser.add_argument("--category", help="which <Category> when --source holds several (e.g. AMAZON_FASHION)")
    parser.add_argument(
        "--subset", choices=sorted(SUBSETS), help="only items under Clothing, Shoes & Jewelry > Men (or > Women)"
    )
    parser.add_argument("--fetch-images", action="store_true", help="download item photos into OUT/images (resumable)")
    parser.add_argument("--concurrency", type=int, default=FetchConfig.concurrency, help="parallel downloads")
    parser.add_argument("--retries", type=int, default=FetchConfig.retries, help="extra attempts per photo")
    parser.add_argument("--timeout", type=float, default=FetchConfig.timeout_s, help="seconds per request")


def from_args(dataset: str, args: argparse.Namespace) -> Prepared:
    if args.concurrency < 1 or args.retries < 0 or args.timeout <= 0:
        raise PrepareError("--concurrency must be >= 1, --retries >= 0 and --timeout > 0")
    fetch = (
        FetchConfig(concurrency=args.concurrency, retries=args.retries, timeout_s=args.timeout)
        if args.fetch_images
        else None
    )
    prepare = prepare_amazon2018 if dataset == "amazon2018" else prepare_amazon2014
    return prepare(args.source, args.out, args.category, args.subset, fetch, progress=not args.no_progress)
