"""Region features for every catalog image, stored on disk as a float16 memory-mappable table.

Each image is padded to a square (so the whole garment is seen, nothing cropped), resized to the
backbone's input and turned into a rows x cols grid of C-dim vectors. The padding box, in the
original image's pixel coordinates, is stored per item: it is the area the grid covers, which a
heatmap needs to land on the right pixels.

Folder layout: regions.npy [N, R, C] float16, boxes.npy [N, 4] float32 (left, top, right, bottom),
item_ids.txt (row order = catalog order), meta.json (backbone, grid, channels, feature_scale, ...),
backbone.keras.

How the work runs: the catalog's rows are split into `n` contiguous parts (n = 1 unless `--shard i/n`
is given); a part streams its images through threads that decode the next batches while the model
runs the current one, and writes raw features into parts/<i>-of-<n>/ with a per-row done mask saved
every few batches, so a rerun after an interruption continues where it stopped. `--shard i/n` runs
one part only (e.g. one per machine); the call without `--shard` runs whatever parts are missing,
then merges them: channel statistics over the whole catalog, standardised table, meta. Across
machines: copy each machine's parts/<i>-of-<n>/ into one `--out` folder and run without `--shard`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from offline.data.dataset import Catalog
from offline.data.photos import Loaded, load_square

if TYPE_CHECKING:  # keras (and its backend) load only when a network is built
    import keras

    from offline.features.backbones import Backbone

META_FILE = "meta.json"
PARTS_DIR = "parts"
PART_FILE = "part.json"
PREFETCH_BATCHES = 2  # batches decoded ahead of the model
CHECKPOINT_EVERY = 8  # batches between saves of the done mask


def catalog_fingerprint(catalog: Catalog) -> str:
    h = hashlib.sha256()
    for item, image in zip(catalog.item_ids, catalog.images):
        h.update(f"{item}\t{image}\n".encode())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class RegionFeatures:
    regions: np.ndarray  # [N, R, C] float16 (memory-mapped)
    boxes: np.ndarray  # [N, 4] float32
    item_ids: list[str]
    meta: dict

    @property
    def grid(self) -> tuple[int, int]:
        return self.meta["grid_rows"], self.meta["grid_cols"]


def item_vectors(features) -> np.ndarray:
    """RegionFeatures (regions [N, R, C], mean over R) or an [N, C] matrix -> [N, C] float32."""
    regions = getattr(features, "regions", None)
    if regions is not None:
        out = np.empty((regions.shape[0], regions.shape[2]), dtype=np.float32)
        for s in range(0, len(out), 4096):  # chunks: the memmap is read once, never held as float32
            out[s : s + 4096] = regions[s : s + 4096].astype(np.float32).mean(1)
        return out
    vectors = np.asarray(features, dtype=np.float32)
    if vectors.ndim != 2:
        raise ValueError(f"item vectors must be [N, C], got shape {vectors.shape}; pass RegionFeatures or a matrix")
    return vectors


def check_vectors(vectors: np.ndarray, num_items: int) -> None:
    """Item vectors must come from the same catalog, row for row."""
    if len(vectors) != num_items:
        raise ValueError(
            f"{len(vectors)} item vectors for a catalog of {num_items} items; "
            "build the features from the same catalog (same item order)"
        )


def load_features(folder: Path | str, mmap: bool = True) -> RegionFeatures:
    folder = Path(folder)
    meta = json.loads((folder / META_FILE).read_text()) if (folder / META_FILE).exists() else {}
    if not meta.get("complete"):
        raise ValueError(f"{folder}: feature extraction did not finish; run `python -m offline features` again")
    return RegionFeatures(
        regions=np.load(folder / "regions.npy", mmap_mode="r" if mmap else None),
        boxes=np.load(folder / "boxes.npy"),
        item_ids=(folder / "item_ids.txt").read_text().splitlines(),
        meta=meta,
    )


def parse_shard(text: str) -> tuple[int, int]:
    """ "i/n" (0 <= i < n) -> (i, n)."""
    match = re.fullmatch(r"(\d+)/(\d+)", text.strip())
    if not match or not int(match[1]) < int(match[2]):
        raise ValueError(f"shard must be i/n with 0 <= i < n (e.g. 0/4), got {text!r}")
    return int(match[1]), int(match[2])


def shard_rows(num_items: int, index: int, count: int) -> range:
    """The contiguous catalog rows of part `index` of `count` (sizes differ by at most one)."""
    return range(index * num_items // count, (index + 1) * num_items // count)


@dataclass(frozen=True)
class Job:
    """What one extraction computes; a part on disk belongs to it only if its part.json matches."""

    catalog: Catalog
    out: Path
    backbone: Backbone
    fingerprint: str

    def part_folder(self, index: int, count: int) -> Path:
        return self.out / PARTS_DIR / f"{index}-of-{count}"

    def part_header(self, index: int, count: int) -> dict:
        rows = shard_rows(len(self.catalog), index, count)
        b = self.backbone
        return {
            "catalog": self.fingerprint,
            "backbone": b.name,
            "regions": b.grid * b.grid,
            "channels": b.channels,
            "start": rows.start,
            "stop": rows.stop,
        }


def extract(
    catalog: Catalog,
    out: Path,
    backbone_name: str = "random_cnn",
    batch_size: int = 64,
    workers: int = 4,
    progress: bool = True,
    shard: tuple[int, int] | None = None,
) -> RegionFeatures | None:
    """Idempotent: a finished extraction for the same catalog and backbone is reused as it is.

    shard=None: extract (or finish) every part and merge them -> the features. shard=(i, n): only
    part i of n -> None (unless the whole extraction had already finished)."""
    from offline.features.backbones import get_backbone

    out.mkdir(parents=True, exist_ok=True)
    fingerprint = catalog_fingerprint(catalog)
    meta_path = out / META_FILE
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("complete") and meta.get("catalog") == fingerprint and meta.get("backbone") == backbone_name:
            print(f"features: reusing {out} ({meta['num_items']} items, {backbone_name})")
            return load_features(out)
    if not len(catalog):
        raise ValueError(f"{catalog.root}: the catalog has no items; nothing to extract")
    backbone = get_backbone(backbone_name)
    job = Job(catalog, out, backbone, fingerprint)
    count = shard[1] if shard else _resumable_count(job)
    if count > len(catalog):
        raise ValueError(f"cannot split {len(catalog)} items into {count} shards; use at most {len(catalog)}")
    build = functools.cache(backbone.build)  # on first need only: finished parts never load the network
    for index in [shard[0]] if shard else range(count):
        extract_part(job, index, count, build, batch_size, workers, progress)
    if shard:
        done = sum(_part_complete(job, i, count) for i in range(count))
        print(
            f"features: shard {shard[0]}/{count} done ({done} of {count} parts complete) in {out}; "
            f"run again without --shard to {'merge them' if done == count else 'finish the rest and merge'}"
        )
        return None
    return merge(job, count, build)


def extract_part(
    job: Job,
    index: int,
    count: int,
    build: Callable[[], keras.Model],
    batch_size: int = 64,
    workers: int = 4,
    progress: bool = True,
) -> None:
    """Raw (unstandardised) features of one part's rows into parts/<index>-of-<count>/; resumable."""
    folder = job.part_folder(index, count)
    header = job.part_header(index, count)
    if (folder / PART_FILE).exists() and json.loads((folder / PART_FILE).read_text()) != header:
        shutil.rmtree(folder)  # from another catalog, backbone or split: start it over
    folder.mkdir(parents=True, exist_ok=True)
    (folder / PART_FILE).write_text(json.dumps(header))
    rows = range(header["start"], header["stop"])
    done = np.load(folder / "done.npy") if (folder / "done.npy").exists() else np.zeros(len(rows), bool)
    if done.all():
        return
    model, backbone = build(), job.backbone
    r, c = header["regions"], header["channels"]
    regions = _open_table(folder / "regions.npy", (len(rows), r, c), np.float16)  # raw, [n, R, C]
    boxes = _open_table(folder / "boxes.npy", (len(rows), 4), np.float32)
    todo = np.flatnonzero(~done)  # part-local row numbers still to extract
    load = lambda k: _load(job.catalog.image_path(rows[k]), backbone.input_size)  # noqa: E731
    batches = (todo[s : s + batch_size] for s in range(0, len(todo), batch_size))
    desc = "features" if count == 1 else f"features {index}/{count}"
    bar = tqdm(total=len(rows), initial=len(rows) - len(todo), desc=desc, unit="img", disable=not progress)
    try:
        with closing(prefetch(load, batches, workers)) as stream:
            for step, (local, loaded) in enumerate(stream):
                images = np.stack([im for im, _ in loaded]).astype(np.float32)  # [b, S, S, 3]
                feats = predict(model, images, batch_size)  # [b, grid, grid, C]
                regions[local] = feats.reshape(len(local), r, c).astype(np.float16)
                boxes[local] = [box for _, box in loaded]
                done[local] = True
                bar.update(len(local))
                if (step + 1) % CHECKPOINT_EVERY == 0:
                    _checkpoint(folder, regions, boxes, done)
    finally:  # an interruption keeps what was finished
        bar.close()
        _checkpoint(folder, regions, boxes, done)


def prefetch(
    load: Callable[[int], Loaded], batches: Iterable[np.ndarray], workers: int, ahead: int = PREFETCH_BATCHES
) -> Iterator[tuple[np.ndarray, list[Loaded]]]:
    """Yields (batch, its loaded images) in order while threads already decode the next `ahead`
    batches (PIL releases the GIL while decoding and resizing)."""
    pool = ThreadPoolExecutor(workers)
    batches = iter(batches)
    queue: deque[tuple[np.ndarray, list[Future]]] = deque()

    def submit() -> None:
        for batch in islice(batches, 1):
            queue.append((batch, [pool.submit(load, k) for k in batch]))

    try:
        for _ in range(ahead):
            submit()
        while True:
            submit()  # keeps `ahead` batches decoding behind the one handed out next
            if not queue:
                return
            batch, futures = queue.popleft()
            yield batch, [f.result() for f in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def predict(model, images: np.ndarray, batch_size: int) -> np.ndarray:
    """The model on one batch, padded to `batch_size` rows so every call has one shape (compiled
    once, and each image's features do not depend on how full its batch was)."""
    n = len(images)
    if n < batch_size:
        images = np.concatenate([images, np.zeros((batch_size - n, *images.shape[1:]), images.dtype)])
    return np.asarray(model.predict_on_batch(images))[:n]


def merge(job: Job, count: int, build: Callable[[], keras.Model]) -> RegionFeatures:
    """Complete parts -> the final folder: channel statistics over the whole catalog, the standardised
    float16 table, boxes, ids, the network (`build()`, as backbone.keras) and meta, written last.
    Tables are replaced atomically and the parts removed at the end: an interrupted merge just runs again."""
    from offline.features.backbones import save_backbone

    out, backbone = job.out, job.backbone
    parts = [job.part_folder(i, count) for i in range(count)]
    missing = [p.name for i, p in enumerate(parts) if not _part_complete(job, i, count)]
    if missing:
        raise ValueError(f"{out / PARTS_DIR}: parts {missing} are not complete; extract them before merging")
    meta_path = out / META_FILE
    if meta_path.exists():  # the old table is about to be replaced: no longer a finished extraction
        _write_json(meta_path, {**json.loads(meta_path.read_text()), "complete": False})
    tables = [np.load(p / "regions.npy", mmap_mode="r") for p in parts]  # raw, [n_k, R, C] each
    mean, std = channel_stats(tables)
    _write_standardized(tables, mean, std, out / "regions.npy")
    np.save(out / ".boxes.tmp.npy", np.concatenate([np.load(p / "boxes.npy") for p in parts]))
    os.replace(out / ".boxes.tmp.npy", out / "boxes.npy")
    (out / "item_ids.txt").write_text("\n".join(job.catalog.item_ids) + "\n")
    save_backbone(build(), out)
    g, c, n = backbone.grid, backbone.channels, len(job.catalog)
    _write_json(
        meta_path,
        {
            "backbone": backbone.name,
            "input_size": backbone.input_size,
            "grid_rows": g,
            "grid_cols": g,
            "channels": c,
            "where_channels": backbone.where_channels,
            "num_items": n,
            "catalog": job.fingerprint,
            # Stored features are standardised per channel with these (new items must use the same);
            # this replaces the reference code's hard-coded 0.01, which only fits VGG-19.
            "channel_mean": mean.tolist(),
            "channel_std": std.tolist(),
            "feature_scale": 1.0,
            "complete": True,
        },
    )
    shutil.rmtree(out / PARTS_DIR)
    size_mb = n * g * g * c * 2 / 2**20
    print(f"features: {n} items x {g}x{g} regions x {c} channels ({size_mb:.1f} MiB float16) -> {out}")
    return load_features(out)


def channel_stats(tables: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std over every item and region of all tables ([n_k, R, C] each)."""
    channels = tables[0].shape[-1]
    sums, squares, count = np.zeros(channels), np.zeros(channels), 0
    for table in tables:
        for block in _chunks(table):
            block = block.astype(np.float64).reshape(-1, channels)  # [b*R, C]
            sums += block.sum(0)
            squares += np.square(block).sum(0)
            count += len(block)
    mean = sums / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0.0)) + 1e-6
    return mean, std


def standardize(block: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(block - mean) / std per channel, as float16. Raw CNN activations are non-negative and largest
    on the plain background, which would dominate the attention's dot products; centred features
    make "nothing special here" close to zero."""
    return ((block.astype(np.float32) - mean) / std).astype(np.float16)


def _write_standardized(tables: list[np.ndarray], mean: np.ndarray, std: np.ndarray, path: Path) -> None:
    """The tables, one after the other and standardised, as one float16 .npy at `path` (atomically)."""
    tmp = path.with_name(f".{path.stem}.tmp.npy")
    shape = (sum(len(t) for t in tables), *tables[0].shape[1:])
    regions = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=shape)
    start = 0
    for table in tables:
        for block in _chunks(table):
            regions[start : start + len(block)] = standardize(block, mean, std)
            start += len(block)
    regions.flush()
    del regions
    os.replace(tmp, path)


def _chunks(table: np.ndarray, elements: int = 1 << 22) -> Iterator[np.ndarray]:
    """Consecutive row blocks of about `elements` numbers each (bounded memory for any R x C)."""
    rows = max(1, elements // max(1, int(np.prod(table.shape[1:]))))
    for s in range(0, len(table), rows):
        yield np.asarray(table[s : s + rows])


def _load(path: Path, size: int) -> Loaded:
    try:
        return load_square(path, size)
    except OSError as e:  # PIL's UnidentifiedImageError is an OSError
        raise ValueError(f"cannot read image {path}: {e}; fix the file or drop its row from catalog.csv") from e


def _open_table(path: Path, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """A writable .npy memmap: the existing one (resuming) or a new, zero-filled one."""
    if not path.exists():
        return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    table = np.lib.format.open_memmap(path, mode="r+")
    if table.shape != shape or table.dtype != dtype:
        raise ValueError(
            f"{path}: holds {table.dtype} {table.shape}, expected {np.dtype(dtype)} {shape}; "
            f"delete {path.parent} to extract that part again"
        )
    return table


def _checkpoint(folder: Path, regions: np.ndarray, boxes: np.ndarray, done: np.ndarray) -> None:
    """Data first, then the mask that vouches for it (atomic rename: never half a mask)."""
    regions.flush()
    boxes.flush()
    np.save(folder / ".done.tmp.npy", done)
    os.replace(folder / ".done.tmp.npy", folder / "done.npy")


def _part_complete(job: Job, index: int, count: int) -> bool:
    folder = job.part_folder(index, count)
    try:
        header = json.loads((folder / PART_FILE).read_text())
        return header == job.part_header(index, count) and bool(np.load(folder / "done.npy").all())
    except FileNotFoundError:
        return False


def _resumable_count(job: Job) -> int:
    """The split whose parts on disk (same catalog and backbone) hold the most finished rows; 1 if none."""
    best, best_done = 1, 0
    for folder in sorted((job.out / PARTS_DIR).glob("*-of-*")):
        try:
            index, count = (int(v) for v in folder.name.split("-of-"))
            header = json.loads((folder / PART_FILE).read_text())
            finished = int(np.load(folder / "done.npy").sum()) if header == job.part_header(index, count) else 0
        except (FileNotFoundError, ValueError):  # not a part folder, or one without progress yet
            finished = 0
        if finished > best_done:
            best, best_done = count, finished
    return best


def _write_json(path: Path, value: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=2))
    os.replace(tmp, path)
