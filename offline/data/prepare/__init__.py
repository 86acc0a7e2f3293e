"""`python -m offline prepare DATASET --source DIR --out DIR`: turn a real dataset into the internal format.

    python -m offline prepare hm --source data/raw/hm --out data/hm
    python -m offline prepare amazon2018 --source data/raw/amazon2018-AMAZON_FASHION --out data/fashion18
    python -m offline prepare amazon2014 --source data/raw/amazon2014-clothing --subset men --out data/men14
    python -m offline prepare dvbpr --source data/raw/AmazonMen --out data/dvbpr-men

The out folder gets what `offline.data.dataset` reads (catalog.csv, interactions.csv), prepare.json (what was
read, kept and skipped by reason; the same summary is printed) and, where the dataset brings photos,
images/. Ids stay strings. Reviews have HTML entities decoded and whitespace collapsed.

Catalog images: a path relative to the out folder (the format's convention), except with
`prepare hm --images absolute`, which writes absolute paths (`Catalog.image_path` is root / image, so
those work too). An empty image means no photo is on disk for that item (Amazon photos that were not
or could not be fetched): `python -m offline features` needs a photo for every catalog row, so fetch
them (`--fetch-images`) or drop those items (`--drop-items-without-image`) before extracting features.
Running prepare again over the same out folder rewrites the same files (photos already there are kept).
"""

from __future__ import annotations

import argparse
import importlib
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from offline.data.dataset import Interactions, write_catalog, write_interactions
from offline.data.prepare.photo_files import check_photos
from offline.data.prepare.records import PrepareError
from offline.data.prepare.report import Report

# name -> (module with add_arguments(parser, name) and from_args(name, args) -> Prepared, help)
DATASETS = {
    "shop": ("offline.data.prepare.shop", "your own shop: interactions.csv + catalog.csv (the documented format)"),
    "hm": ("offline.data.prepare.hm", "H&M Personalized Fashion Recommendations (Kaggle), with product photos"),
    "amazon2018": ("offline.data.prepare.amazon", "Amazon Review Data 2018: <Category>_5.json(.gz) + meta"),
    "amazon2014": ("offline.data.prepare.amazon", "Amazon product data 2014: reviews_<Category>_5.json.gz + meta"),
    "dvbpr": ("offline.data.prepare.dvbpr", "DVBPR's Amazon Fashion/Women/Men .npy files, photos included"),
}


@dataclass(frozen=True)
class Prepared:
    """One dataset in the internal format, before it is written."""

    item_ids: list[str]
    images: list[str]  # relative to the out folder (or absolute); "" where no photo is on disk
    attributes: dict[str, list[str]]  # column -> values aligned with item_ids
    interactions: Interactions
    report: Report

    def drop_items_without_image(self) -> Prepared:
        reasons = ["catalog item without a photo" if not image else None for image in self.images]
        return self.drop_items(reasons, "--drop-items-without-image")

    def drop_unreadable_photos(self, out: Path, progress: bool = True) -> Prepared:
        """Leave out the items whose photo is missing, not an image or cut short (an empty image, no photo
        on disk yet, is kept: Amazon's photos may be fetched later). Each is counted by reason."""
        named = [i for i, image in enumerate(self.images) if image]
        problems = check_photos([os.path.join(out, self.images[i]) for i in named], progress)
        reasons: list[str | None] = [None] * len(self.item_ids)
        for i, problem in zip(named, problems):
            reasons[i] = problem
        return self.drop_items(reasons, "photos")

    def drop_items(self, reasons: list[str | None], stage: str) -> Prepared:
        """Without the items whose reason is not None, nor their interactions; counted under `stage`."""
        keep = [i for i, reason in enumerate(reasons) if reason is None]
        section = self.report.section(stage)
        section.read, section.kept = len(self.item_ids), len(keep)
        for reason in reasons:
            if reason is not None:
                section.skip(reason)
        if len(keep) == len(self.item_ids):
            return self
        kept_ids = {self.item_ids[i] for i in keep}
        rows = np.array([item in kept_ids for item in self.interactions.item_ids], dtype=bool)
        interactions = self.report.section(f"{stage}: interactions")
        interactions.read, interactions.kept = len(rows), int(rows.sum())
        interactions.skip("interaction with an item left out", int((~rows).sum()))
        return replace(
            self,
            item_ids=[self.item_ids[i] for i in keep],
            images=[self.images[i] for i in keep],
            attributes={c: [v[i] for i in keep] for c, v in self.attributes.items()},
            interactions=self.interactions.take(np.flatnonzero(rows)),
        )


def make_interactions(users: list[str], items: list[str], times: list[int], reviews: list[str]) -> Interactions:
    return Interactions(
        np.array(users, dtype=object),
        np.array(items, dtype=object),
        np.array(times, dtype=np.int64),
        np.array(reviews, dtype=object),
    )


def write_prepared(prepared: Prepared, out: Path) -> dict[str, object]:
    """Write catalog.csv, interactions.csv and prepare.json; -> the output counts (also in the report)."""
    known = set(prepared.item_ids)
    if len(known) != len(prepared.item_ids):
        raise ValueError("prepared catalog has duplicate item ids")  # a parser bug, not bad data
    if not known.issuperset(prepared.interactions.item_ids.tolist()):
        raise ValueError("prepared interactions name items outside the catalog")  # likewise
    out.mkdir(parents=True, exist_ok=True)
    write_catalog(out, prepared.item_ids, prepared.images, prepared.attributes)
    write_interactions(out, prepared.interactions)
    data = prepared.interactions
    used = set(data.item_ids.tolist())
    without_image = sum(1 for image in prepared.images if not image)
    prepared.report.output.update(
        {
            "catalog items": len(prepared.item_ids),
            "catalog items with a photo": len(prepared.item_ids) - without_image,
            "catalog items without a photo": without_image,
            "catalog items never interacted with": len(known - used),
            "interactions": len(data),
            "users": len(set(data.user_ids.tolist())),
            "interactions with a review": int(sum(1 for r in data.reviews if r)),
            "written to": str(out),
        }
    )
    prepared.report.write(out)
    return prepared.report.output


def build_parser() -> argparse.ArgumentParser:
    """`prepare DATASET --source DIR --out DIR [options]`: each dataset's module adds its own options."""
    ap = argparse.ArgumentParser(
        prog="python -m offline prepare", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    for name, (module_name, help_text) in DATASETS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(
            name, help=help_text, description=module.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        p.add_argument("--source", required=True, type=Path, help="folder holding the downloaded files")
        p.add_argument("--out", required=True, type=Path, help="folder to write the prepared dataset to")
        p.add_argument(
            "--drop-items-without-image",
            action="store_true",
            help="leave out catalog items with no photo on disk, and their interactions",
        )
        p.add_argument("--no-progress", action="store_true", help="no progress bars")
        module.add_arguments(p, name)
    return ap


def prepare(args: argparse.Namespace) -> Prepared:
    """Read `args.source` as `args.dataset` and write it to `args.out`; raises PrepareError on a source
    it cannot read at all (a bad record is only counted in the report)."""
    if not args.source.exists():
        raise PrepareError(f"--source {args.source} does not exist; download it first (./dataset.sh --list)")
    module = importlib.import_module(DATASETS[args.dataset][0])
    try:
        prepared = module.from_args(args.dataset, args)
    except PrepareError as e:  # the report says so too, where a later step or a person looks
        args.out.mkdir(parents=True, exist_ok=True)
        failed = Report(args.dataset, str(args.source))
        failed.notes.append(f"error: {e}")
        failed.write(args.out)
        raise
    if args.drop_items_without_image:
        prepared = prepared.drop_items_without_image()
    prepared = prepared.drop_unreadable_photos(args.out, progress=not args.no_progress)
    write_prepared(prepared, args.out)
    return prepared
