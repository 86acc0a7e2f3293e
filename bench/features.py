"""Benchmark of the region-feature extraction on the H&M sample, and the choice of EfficientNet-Lite0 layer.

1. Throughput, images/s, of efficientnet_lite0 on the first `--images` H&M photos:
   - decode only: load_square in the thread pool (what the pipeline overlaps with the model);
   - backbone alone: the model on the same images, pre-decoded in memory, same batches;
   - pipeline: offline.features.regions' streaming part (decode threads + model + float16 memmap + done
     mask), with the network already built; then its merge (statistics, standardisation, the network);
   - end to end: `extract()` as a user calls it (network build, weights from the cache, compile).
   Extrapolated to the whole catalog: one-off costs + N / pipeline rate. Backbone and pipeline
   alternate `--rounds` times; the fastest round counts. CPU seconds per image are reported too.
2. Which layer to store: for `--nn-items` articles that have a product_type_name (seeded sample),
   each candidate layer's regions are mean-pooled and the share of articles whose cosine nearest
   neighbour has the same product type is reported (also excluding neighbours of the same
   product_code, i.e. the same garment in another colour, which make the task easy).

Writes <out>/features.json and <out>/features.md. Skips (exit 0, with a message) without the data.
Run: python -m bench.features [--data ../shared/data/hm] [--out bench/results]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import numpy as np

from bench.docs import is_default_results, provenance
from bench.docs import update as update_docs
from offline.data.dataset import Catalog
from offline.data.photos import load_square
from offline.evaluation.quality import markdown_table
from offline.features.regions import Job, catalog_fingerprint, extract, extract_part, merge, predict, prefetch

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hm"  # ../shared beside the repo
BACKBONE = "efficientnet_lite0"
LAYERS = ("stage5", "block7", "head")  # taps of offline.features.efficientnet_lite
PROJECTED = 320  # the fixed projection of the head is compared at the chosen layer's width


def hm_catalog(root: Path) -> Catalog:
    """H&M's catalog.csv (article_id,image) as a Catalog, article ids kept as strings."""
    with open(root / "catalog.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return Catalog([r["article_id"] for r in rows], [r["image"] for r in rows], {}, root)


def subset(catalog: Catalog, rows: np.ndarray | range) -> Catalog:
    return Catalog([catalog.item_ids[i] for i in rows], [catalog.images[i] for i in rows], {}, catalog.root)


def articles(root: Path) -> dict[str, tuple[str, str]]:
    """article_id -> (product_type_name, product_code) for the articles that have a type."""
    with open(root / "articles.csv", newline="") as f:
        return {
            r["article_id"]: (r["product_type_name"], r["product_code"])
            for r in csv.DictReader(f)
            if r["product_type_name"]
        }


def timed(run: Callable[[], object]) -> tuple[float, float]:
    """-> (wall seconds, CPU seconds of this process, all threads) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def throughput(catalog: Catalog, batch_size: int, workers: int, rounds: int) -> dict:
    """Images/s of each stage; backbone alone and pipeline alternate `rounds` times and the fastest
    round counts (the machine may be shared: the CPU seconds per image are the steadier figure)."""
    from offline.features.backbones import get_backbone

    backbone = get_backbone(BACKBONE)
    n, size = len(catalog), backbone.input_size
    t = time.perf_counter()
    model = backbone.build()
    predict(model, np.zeros((1, size, size, 3), np.float32), batch_size)  # compiles
    one_off = time.perf_counter() - t
    load = lambda i: load_square(catalog.image_path(i), size)  # noqa: E731
    batches = [np.arange(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]
    decoded: list[np.ndarray] = []  # [b, S, S, 3] float32 per batch

    def decode() -> None:
        with closing(prefetch(load, batches, workers)) as stream:
            decoded.extend(np.stack([im for im, _ in loaded]).astype(np.float32) for _, loaded in stream)

    stages: dict[str, list[tuple[float, float]]] = {"decode": [timed(decode)], "backbone": [], "pipeline": []}
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(rounds):
            stages["backbone"].append(timed(lambda: [predict(model, images, batch_size) for images in decoded]))
            job = Job(catalog, Path(tmp) / f"pipeline{k}", backbone, catalog_fingerprint(catalog))
            stages["pipeline"].append(
                timed(lambda job=job: extract_part(job, 0, 1, lambda: model, batch_size, workers, progress=False))
            )
        merge_s, _ = timed(lambda: merge(job, 1, lambda: model))
        end_to_end_s, _ = timed(
            lambda: extract(catalog, Path(tmp) / "end_to_end", BACKBONE, batch_size, workers, progress=False)
        )
    result = {
        "images": n,
        "batch_size": batch_size,
        "workers": workers,
        "rounds": rounds,
        "one_off_s": round(one_off, 2),
        "merge_s": round(merge_s, 2),
        "end_to_end_s": round(end_to_end_s, 2),
        "end_to_end_images_per_s": round(n / end_to_end_s, 1),
    }
    for stage, runs in stages.items():
        wall, cpu = min(runs)
        result[f"{stage}_images_per_s"] = round(n / wall, 1)
        result[f"{stage}_cpu_ms_per_image"] = round(1000 * cpu / n, 1)
    return result


def pooled_layers(catalog: Catalog, batch_size: int, workers: int) -> dict[str, np.ndarray]:
    """-> {layer: [N, C] region-mean-pooled raw features} plus {layer + "_std": stored-style
    standardised pooled features (per-channel statistics over every region, as offline.features.regions does)}."""
    import keras

    from offline.features.efficientnet_lite import TAPS, efficientnet_lite0

    full = efficientnet_lite0("logits")
    model = keras.Model(full.input, [full.get_layer(TAPS[name]).output for name in LAYERS])
    load = lambda i: load_square(catalog.image_path(i), 224)  # noqa: E731
    batches = [np.arange(s, min(s + batch_size, len(catalog))) for s in range(0, len(catalog), batch_size)]
    pooled = {name: [] for name in LAYERS}
    sums = {name: 0.0 for name in LAYERS}
    squares = {name: 0.0 for name in LAYERS}
    regions = {name: 0 for name in LAYERS}
    with closing(prefetch(load, batches, workers)) as stream:
        for rows, loaded in stream:
            images = np.zeros((batch_size, 224, 224, 3), np.float32)
            images[: len(rows)] = np.stack([im for im, _ in loaded])
            for name, out in zip(LAYERS, model.predict_on_batch(images), strict=True):
                out = np.asarray(out[: len(rows)], np.float64)  # [b, g, g, C]
                flat = out.reshape(-1, out.shape[-1])  # [b*R, C]
                pooled[name].append(out.mean((1, 2)))
                sums[name] += flat.sum(0)
                squares[name] += np.square(flat).sum(0)
                regions[name] += len(flat)
    result = {}
    for name in LAYERS:
        x = np.concatenate(pooled[name])  # [N, C]
        mean = sums[name] / regions[name]
        std = np.sqrt(np.maximum(squares[name] / regions[name] - mean**2, 0)) + 1e-6
        result[name], result[f"{name}_std"] = x, (x - mean) / std
    # a fixed (seeded) Gaussian projection of the 1280 head to PROJECTED dims: linear, so projecting
    # the pooled vector equals pooling the projected regions
    rng = np.random.default_rng(0)
    projection = rng.normal(size=(1280, PROJECTED)) / np.sqrt(PROJECTED)
    result[f"head_proj{PROJECTED}"] = result["head"] @ projection
    result[f"head_proj{PROJECTED}_std"] = result["head_std"] @ projection
    return result


def nn_agreement(vectors: np.ndarray, labels: np.ndarray, groups: np.ndarray | None = None) -> float:
    """Share of rows whose cosine nearest neighbour (itself excluded, and rows of its own group
    when `groups` is given) has the same label."""
    x = vectors / (np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-12)
    sim = x @ x.T  # [N, N]
    np.fill_diagonal(sim, -np.inf)
    if groups is not None:
        sim[groups[:, None] == groups[None, :]] = -np.inf
    return float(np.mean(labels[sim.argmax(1)] == labels))


def chance(labels: np.ndarray) -> float:
    """Probability that a random other article has the same label."""
    _, counts = np.unique(labels, return_counts=True)
    return float((counts * (counts - 1)).sum() / (len(labels) * (len(labels) - 1)))


def layer_choice(catalog: Catalog, info: dict[str, tuple[str, str]], items: int, batch_size: int, workers: int) -> dict:
    rows = np.array([i for i, item in enumerate(catalog.item_ids) if item in info])
    rows = np.sort(np.random.default_rng(0).choice(rows, size=min(items, len(rows)), replace=False))
    sample = subset(catalog, rows)
    labels = np.array([info[item][0] for item in sample.item_ids])
    codes = np.array([info[item][1] for item in sample.item_ids])
    t = time.perf_counter()
    vectors = pooled_layers(sample, batch_size, workers)
    seconds = time.perf_counter() - t
    table = {
        name: {
            "dims": int(v.shape[1]),
            "nn_same_type": round(nn_agreement(v, labels), 4),
            "nn_same_type_other_product": round(nn_agreement(v, labels, codes), 4),
        }
        for name, v in vectors.items()
    }
    return {
        "items": len(sample),
        "product_types": int(len(np.unique(labels))),
        "chance": round(chance(labels), 4),
        "seconds": round(seconds, 1),
        "layers": table,
    }


def markdown(result: dict) -> str:
    t, c = result["throughput"], result["layer_choice"]
    n = result["catalog_items"]
    lines = [
        f"# Region-feature extraction, {BACKBONE} ({result['machine']}, "
        f"load average {result['load_average_at_start']} at start)",
        "",
        f"## Throughput ({t['images']} H&M images, batch {t['batch_size']}, {t['workers']} decode threads)",
        "",
        markdown_table(
            [
                {
                    "stage": "decode only (threads)",
                    "rate": str(t["decode_images_per_s"]),
                    "cpu": str(t["decode_cpu_ms_per_image"]),
                },
                {
                    "stage": "backbone alone (pre-decoded, in memory)",
                    "rate": str(t["backbone_images_per_s"]),
                    "cpu": str(t["backbone_cpu_ms_per_image"]),
                },
                {
                    "stage": "pipeline (decode + backbone + write)",
                    "rate": str(t["pipeline_images_per_s"]),
                    "cpu": str(t["pipeline_cpu_ms_per_image"]),
                },
                {"stage": "end to end `extract()` incl. build and merge", "rate": str(t["end_to_end_images_per_s"])},
            ],
            ["stage", "rate", "cpu"],
            headers=["stage", "images/s", "CPU ms per image"],
        ).rstrip("\n"),
        "",
        f"Fastest of {t['rounds']} alternating rounds for backbone and pipeline.",
        f"One-off network build + compile: {t['one_off_s']} s; merge of {t['images']} items: {t['merge_s']} s.",
        f"Whole catalog ({n} images), extrapolated at the pipeline rate: {result['catalog_extrapolated_min']} min.",
        "On a shared machine the rates drop with the load; CPU ms per image (all threads) compare the stages "
        "more steadily.",
        "",
        f"## Layer choice: cosine nearest neighbour shares product_type_name "
        f"({c['items']} articles, {c['product_types']} types, chance {c['chance']:.1%})",
        "",
        markdown_table(
            [
                {
                    "layer": name,
                    "dims": row["dims"],
                    "raw": f"{row['nn_same_type']:.1%}",
                    "std": f"{c['layers'][f'{name}_std']['nn_same_type']:.1%}",
                    "other": f"{c['layers'][f'{name}_std']['nn_same_type_other_product']:.1%}",
                }
                for name, row in c["layers"].items()
                if not name.endswith("_std")
            ],
            ["layer", "dims", "raw", "std", "other"],
            headers=["layer", "dims", "raw pooled", "standardised pooled", "std., other product only"],
        ).rstrip("\n"),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.features", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="H&M sample (catalog.csv, articles.csv, images/)")
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    ap.add_argument("--images", type=int, default=512, help="images for the throughput runs")
    ap.add_argument("--nn-items", type=int, default=3000, help="articles for the layer choice")
    ap.add_argument("--rounds", type=int, default=2, help="alternating backbone/pipeline timing rounds")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=4)
    args = ap.parse_args(argv)
    if not (args.data / "catalog.csv").exists():
        print(f"bench.features: skipped, no H&M sample at {args.data} (pass --data FOLDER with catalog.csv)")
        return 0
    catalog = hm_catalog(args.data)
    speed = throughput(
        subset(catalog, range(min(args.images, len(catalog)))), args.batch_size, args.workers, args.rounds
    )
    # one-off: build + compile, and the merge (its time is mostly saving the network; the table I/O is seconds)
    one_off = speed["one_off_s"] + speed["merge_s"]
    cores = len(os.sched_getaffinity(0))
    result = {
        "backbone": BACKBONE,
        "machine": f"{platform.machine()}, {cores} CPU",
        "load_average_at_start": round(os.getloadavg()[0], 2),  # other work on the machine skews the rates
        "catalog_items": len(catalog),
        "throughput": speed,
        "catalog_extrapolated_min": round((one_off + len(catalog) / speed["pipeline_images_per_s"]) / 60, 1),
        "layer_choice": layer_choice(catalog, articles(args.data), args.nn_items, args.batch_size, args.workers),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    result["provenance"] = provenance()
    (args.out / "features.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "features.md").write_text(markdown(result))
    if is_default_results(args.out):
        update_docs(["features"])
    print(markdown(result))
    print(f"bench.features: wrote {args.out / 'features.json'} and {args.out / 'features.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
