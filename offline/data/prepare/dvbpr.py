"""DVBPR's Amazon files (Kang et al., "Visually-aware fashion recommendation and design with generative
image models", ICDM 2017) -> the internal format, photos included.

AmazonFashion6ImgPartitioned.npy, AmazonWomenWithImgPartitioned.npy, AmazonMenWithImgPartitioned.npy
each hold one pickled (Python 2) list [user_train, user_validation, user_test, Item, usernum, itemnum]:
  user_*[u]  the entries of user u (an int index): dicts with b'productid' (an index into Item) and,
             where the file has them, b'reviewerID', b'asin', b'reviewText', b'unixReviewTime'
  Item[i]    a dict with b'imgs' (the photo's JPEG bytes), b'asin' and, in some files, b'title',
             b'categories', b'c' (a category index)
(the keys are bytes because the files come from Python 2; text keys are accepted too).

Loading pickles can run code, and np.load(allow_pickle=True) would run whatever the file says. So
only files you downloaded yourself from the authors (./dataset.sh verifies their size and sha256) are
meant to be loaded, and even then the pickle is read by an unpickler that builds only plain
containers, numbers, strings and numpy arrays and refuses any other class.

Ids: item = its asin (else the Item index as a string), user = reviewerID (else the user index).
Timestamps: the entries' unixReviewTime when every entry has one; otherwise (the published files
carry none) the entry's position in the user's train + validation + test lists, 0, 1, 2, ..., so a
per-user time split holds out what DVBPR held out (its last entries). The report says which.
Photos: written as they are to OUT/images/<item>.<jpg|png|gif>; bytes that Pillow cannot read give an
empty image (counted). Existing photos of the same size are not rewritten.
"""

from __future__ import annotations

import argparse
import io
import pickle
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from offline.data.prepare import Prepared, make_interactions
from offline.data.prepare.images import image_name
from offline.data.prepare.records import PrepareError, clean_text
from offline.data.prepare.report import Report

VARIANTS = {
    "fashion": "AmazonFashion6ImgPartitioned.npy",
    "women": "AmazonWomenWithImgPartitioned.npy",
    "men": "AmazonMenWithImgPartitioned.npy",
}
PARTITIONS = ("user_train", "user_validation", "user_test")
TIME_KEYS = ("unixReviewTime", "time", "timestamp")
SUFFIX_BY_MAGIC = ((b"\xff\xd8\xff", ".jpg"), (b"\x89PNG", ".png"), (b"GIF8", ".gif"))


def _numpy_globals() -> dict[tuple[str, str], object]:
    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray  # type: ignore[no-redef]
    import _codecs
    import builtins
    import collections

    allowed: dict[tuple[str, str], object] = {}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):  # as written by numpy 1.x / 2.x
        allowed[(module, "_reconstruct")] = multiarray._reconstruct
        allowed[(module, "scalar")] = multiarray.scalar
    allowed.update(
        {
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
            ("collections", "defaultdict"): collections.defaultdict,
            ("collections", "OrderedDict"): collections.OrderedDict,
            ("_codecs", "encode"): _codecs.encode,  # how protocol-2 pickles spell bytes
        }
    )
    for name in ("list", "dict", "tuple", "set", "frozenset", "int", "float", "str", "bytes", "bytearray"):
        allowed[("builtins", name)] = getattr(builtins, name)
    return allowed


class _DataUnpickler(pickle.Unpickler):
    """Builds data only: a class or function outside the allow-list is refused, never imported."""

    allowed = _numpy_globals()

    def find_class(self, module: str, name: str) -> object:
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: a DVBPR file holds only containers, strings, numbers "
                f"and numpy arrays; is this the file from the authors?"
            ) from None


def load_npy(path: Path) -> list:
    """The pickled object array of an .npy file, read as np.load(allow_pickle=True, encoding='bytes')
    would, without letting the pickle name arbitrary code."""
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            fmt = np.lib.format
            _, _, dtype = (fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0)(f)
        except ValueError as e:
            raise PrepareError(f"{path} is not an .npy file ({e})") from None
        if not dtype.hasobject:
            raise PrepareError(f"{path} holds a plain {dtype} array, not DVBPR's pickled lists")
        try:
            data = _DataUnpickler(f, encoding="bytes").load()
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
            raise PrepareError(
                f"{path}: cannot read the pickled data ({e}); a truncated download? "
                f"run ./dataset.sh again to resume and verify it"
            ) from None
    data = list(np.asarray(data, dtype=object).ravel()) if isinstance(data, np.ndarray) else list(data)
    if len(data) < 4:
        raise PrepareError(
            f"{path}: expected [user_train, user_validation, user_test, Item, ...], found {len(data)} parts"
        )
    return data


def _get(entry: Mapping, key: str) -> object:
    """entry[b'key'] or entry['key']: Python 2 str keys arrive as bytes."""
    if key.encode() in entry:
        return entry[key.encode()]
    return entry.get(key)


def _text(value: object) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        value = value.item()
    return str(value).strip() if isinstance(value, (str, int)) and not isinstance(value, bool) else ""


def _int(value: object) -> int | None:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():  # NaN and inf are not
        return int(value)
    return None


def _indexed(container: object) -> Iterator[tuple[int, object]]:
    """user_* and Item are dicts keyed by index in some files and lists in others."""
    if isinstance(container, Mapping):
        for key, value in sorted(container.items(), key=lambda kv: (_int(kv[0]) is None, _int(kv[0]) or 0)):
            index = _int(key)
            if index is not None:
                yield index, value
    elif isinstance(container, (list, tuple, np.ndarray)):
        yield from enumerate(container)


def _categories(value: object) -> str:
    if not isinstance(value, (list, tuple)):
        return _text(value)
    paths = [p if isinstance(p, (list, tuple)) else [p] for p in value]
    return " | ".join(" > ".join(_text(c) for c in path) for path in paths)


def write_photo(data: object, item: str, out: Path) -> str:
    """-> the image path relative to `out`, or "" when the bytes are not a readable photo."""
    if not isinstance(data, (bytes, bytearray)) or not data:
        return ""
    suffix = next((s for magic, s in SUFFIX_BY_MAGIC if data.startswith(magic)), None)
    if suffix is None:
        return ""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return ""
    relative = f"images/{image_name(item, 'x' + suffix)}"
    path = out / relative
    if not (path.exists() and path.stat().st_size == len(data)):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        tmp.write_bytes(bytes(data))
        tmp.replace(path)
    return relative


def read_items(
    items: object, out: Path, report: Report, progress: bool
) -> tuple[dict[int, str], list[str], list[str], dict[str, list[str]]]:
    """-> (Item index -> item id, item ids, images, attribute columns); writes the photos."""
    section = report.section("Item")
    index_to_id: dict[int, str] = {}
    seen: set[str] = set()
    ids, images = [], []
    columns: dict[str, list[str]] = {"title": [], "categories": [], "category_index": []}
    entries = list(_indexed(items))
    for index, entry in tqdm(entries, desc="items", unit=" item", disable=not progress, mininterval=1.0):
        section.read += 1
        if not isinstance(entry, Mapping):
            section.skip("not a dict")
            continue
        item = _text(_get(entry, "asin")) or str(index)
        if item in seen:
            index_to_id[index] = item  # the same product under two indexes: one catalog item
            section.skip("duplicate asin (mapped to the first)")
            continue
        index_to_id[index] = item
        seen.add(item)
        ids.append(item)
        image = write_photo(_get(entry, "imgs"), item, out)
        images.append(image)
        columns["title"].append(clean_text(_text(_get(entry, "title"))))
        columns["categories"].append(_categories(_get(entry, "categories")))
        category = _int(_get(entry, "c"))
        columns["category_index"].append("" if category is None else str(category))
        section.kept += 1
    report.section("photos").read = len(ids)
    report.section("photos").kept = sum(1 for i in images if i)
    report.section("photos").skip("missing or unreadable image bytes", sum(1 for i in images if not i))
    return index_to_id, ids, images, {c: v for c, v in columns.items() if any(v)}


def read_interactions(parts: list, index_to_id: dict[int, str], report: Report) -> tuple[list, list, list, list]:
    """-> users, items, timestamps, reviews, in partition order (train, validation, test)."""
    users, items, times, positions, reviews = [], [], [], [], []
    next_position: dict[int, int] = {}
    for name, part in zip(PARTITIONS, parts):
        section = report.section(name)
        for u, entries in _indexed(part):
            if not isinstance(entries, (list, tuple)):
                section.read += 1
                section.skip("a user's entries are not a list")
                continue
            for entry in entries:
                section.read += 1
                if not isinstance(entry, Mapping):
                    section.skip("entry is not a dict")
                    continue
                product = _int(_get(entry, "productid"))
                if product is None:
                    section.skip("missing productid")
                    continue
                if product not in index_to_id:
                    section.skip("productid not in Item")
                    continue
                users.append(_text(_get(entry, "reviewerID")) or str(u))
                items.append(index_to_id[product])
                times.append(next((t for t in (_int(_get(entry, k)) for k in TIME_KEYS) if t is not None), None))
                positions.append(next_position.get(u, 0))
                next_position[u] = positions[-1] + 1
                reviews.append(clean_text(_text(_get(entry, "reviewText"))))
                section.kept += 1
    if times and all(t is not None for t in times):
        report.notes.append("timestamps: the entries' unixReviewTime")
    else:
        times = positions
        report.notes.append(
            "timestamps: the file has no review times; each is the entry's position in the user's "
            "train + validation + test lists (0, 1, 2, ...), so a per-user time split keeps "
            "DVBPR's own held-out entries last"
        )
    return users, items, times, reviews


def find_npy(source: Path, variant: str | None) -> Path:
    if source.is_file():
        return source
    names = [VARIANTS[variant]] if variant else list(VARIANTS.values())
    found = [source / n for n in names if (source / n).is_file()]
    if len(found) == 1:
        return found[0]
    if not found:
        raise PrepareError(
            f"{source}: none of {', '.join(names)}; download with ./dataset.sh AmazonFashion "
            f"(or AmazonWomen, AmazonMen), or pass the .npy file as --source"
        )
    raise PrepareError(
        f"{source} holds several DVBPR files ({', '.join(p.name for p in found)}); "
        f"pick one with --variant {'|'.join(VARIANTS)}"
    )


def prepare_dvbpr(source: Path, out: Path, variant: str | None = None, progress: bool = True) -> Prepared:
    path = find_npy(source, variant)
    report = Report("dvbpr", str(path))
    data = load_npy(path)
    out.mkdir(parents=True, exist_ok=True)
    index_to_id, ids, images, columns = read_items(data[3], out, report, progress)
    users, items, times, reviews = read_interactions(data[:3], index_to_id, report)
    if not users:
        skipped = {n: dict(report.section(n).skipped) for n in PARTITIONS}
        raise PrepareError(f"{path}: no interaction was kept (skipped: {skipped})")
    for name, value in zip(("usernum", "itemnum"), data[4:6]):
        report.output[f"file's {name}"] = _int(value) if _int(value) is not None else str(value)
    return Prepared(ids, images, columns, make_interactions(users, items, times, reviews), report)


def add_arguments(parser: argparse.ArgumentParser, dataset: str) -> None:
    parser.add_argument(
        "--variant", choices=sorted(VARIANTS), help="which file when --source is a folder holding several"
    )


def from_args(dataset: str, args: argparse.Namespace) -> Prepared:
    return prepare_dvbpr(args.source, args.out, args.variant, progress=not args.no_progress)
