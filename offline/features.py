"""Region features for every catalog image, stored on disk as a float16 memory-mappable table.

Each image is padded to a square (so the whole garment is seen, nothing cropped), resized to the
backbone's input and turned into a rows x cols grid of C-dim vectors. The padding box, in the
original image's pixel coordinates, is stored per item: it is the area the grid covers, which a
heatmap needs to land on the right pixels.

Folder layout: regions.npy [N, R, C] float16, boxes.npy [N, 4] float32 (left, top, right, bottom),
item_ids.txt (row order = catalog order), meta.json (backbone, grid, channels, feature_scale, ...).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from offline.backbones import get_backbone, save_backbone
from offline.dataset import Catalog, load_catalog

META_FILE = "meta.json"


def square_box(width: int, height: int) -> tuple[float, float, float, float]:
    """The centred square that contains the whole image: (left, top, right, bottom)."""
    side = max(width, height)
    left, top = -((side - width) // 2), -((side - height) // 2)  # whole pixels: the paste offset
    return (float(left), float(top), float(left + side), float(top + side))


def load_square(path: Path, size: int) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """-> (uint8 [size, size, 3], box). Padding takes the mean colour of the image's border, so the
    pad looks like the photo's own background rather than adding an edge the CNN would respond to."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        arr = np.asarray(im)
        border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
        fill = tuple(int(v) for v in border.mean(axis=0))
        box = square_box(w, h)
        side = max(w, h)
        canvas = Image.new("RGB", (side, side), fill)
        canvas.paste(im, (int(-box[0]), int(-box[1])))
        out = np.asarray(canvas.resize((size, size), Image.BILINEAR), dtype=np.uint8)
    return out, box


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


def load_features(folder: Path | str, mmap: bool = True) -> RegionFeatures:
    folder = Path(folder)
    meta = json.loads((folder / META_FILE).read_text())
    if not meta.get("complete"):
        raise ValueError(f"{folder}: feature extraction did not finish; run `python -m offline features` again")
    return RegionFeatures(
        regions=np.load(folder / "regions.npy", mmap_mode="r" if mmap else None),
        boxes=np.load(folder / "boxes.npy"),
        item_ids=(folder / "item_ids.txt").read_text().splitlines(),
        meta=meta,
    )


def extract(catalog: Catalog, out: Path, backbone_name: str = "random_cnn", batch_size: int = 64,
            workers: int = 4, progress: bool = True) -> RegionFeatures:
    """Idempotent: a finished extraction for the same catalog and backbone is reused as it is."""
    out.mkdir(parents=True, exist_ok=True)
    fingerprint = catalog_fingerprint(catalog)
    meta_path = out / META_FILE
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("complete") and meta.get("catalog") == fingerprint and meta.get("backbone") == backbone_name:
            print(f"features: reusing {out} ({meta['num_items']} items, {backbone_name})")
            return load_features(out)
    backbone = get_backbone(backbone_name)
    model = backbone.build()
    n, g, c = len(catalog), backbone.grid, backbone.channels
    regions = np.lib.format.open_memmap(out / "regions.npy", mode="w+", dtype=np.float16, shape=(n, g * g, c))
    boxes = np.zeros((n, 4), dtype=np.float32)
    sums, squares = np.zeros(c), np.zeros(c)
    load = lambda i: load_square(catalog.image_path(i), backbone.input_size)  # noqa: E731
    with ThreadPoolExecutor(workers) as pool, tqdm(total=n, desc="features", unit="img", disable=not progress) as bar:
        for start in range(0, n, batch_size):
            idx = range(start, min(start + batch_size, n))
            loaded = list(pool.map(load, idx))  # decode in parallel threads (PIL releases the GIL)
            images = np.stack([im for im, _ in loaded]).astype(np.float32)  # [b, S, S, 3]
            feats = np.asarray(model(images, training=False)).reshape(len(idx), g * g, c)  # [b, R, C]
            regions[start:start + len(idx)] = feats.astype(np.float16)
            boxes[start:start + len(idx)] = [box for _, box in loaded]
            sums += feats.sum((0, 1))
            squares += np.square(feats, dtype=np.float64).sum((0, 1))
            bar.update(len(idx))
    mean, std = standardize(regions, sums, squares, n * g * g)
    np.save(out / "boxes.npy", boxes)
    (out / "item_ids.txt").write_text("\n".join(catalog.item_ids) + "\n")
    save_backbone(model, out)
    meta = {
        "backbone": backbone_name, "input_size": backbone.input_size, "grid_rows": g, "grid_cols": g,
        "channels": c, "num_items": n, "catalog": fingerprint,
        # Stored features are standardised per channel with these (new items must use the same);
        # this replaces the reference code's hard-coded 0.01, which only fits VGG-19.
        "channel_mean": mean.tolist(), "channel_std": std.tolist(), "feature_scale": 1.0,
        "complete": True,
    }
    meta_path.write_text(json.dumps(meta, indent=2))
    size_mb = regions.nbytes / 2**20
    print(f"features: {n} items x {g}x{g} regions x {c} channels ({size_mb:.1f} MiB float16) -> {out}")
    return load_features(out)


def standardize(regions: np.ndarray, sums: np.ndarray, squares: np.ndarray, count: int,
                chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Standardise the table in place, channel by channel. Raw CNN activations are non-negative and
    largest on the plain background, which would dominate the attention's dot products; centred
    features make "nothing special here" close to zero."""
    mean = sums / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0.0)) + 1e-6
    for s in range(0, len(regions), chunk):
        block = regions[s:s + chunk].astype(np.float32)
        regions[s:s + chunk] = ((block - mean) / std).astype(np.float16)
    regions.flush()
    return mean, std


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m offline features", description=__doc__)
    ap.add_argument("--source", required=True, type=Path, help="dataset folder (holds catalog.csv)")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--backbone", default="random_cnn")
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args(argv)
    extract(load_catalog(args.source), args.out, args.backbone, args.batch_size)
    return 0
