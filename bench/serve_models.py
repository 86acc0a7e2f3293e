"""The models the serving benchmark serves, and the two-stage recall it reports.

- `synthetic_export`: a VECF of a given shape with random region features and random weights, exported
  with offline.serving.export's `build_module`/`write_version` (the same signatures as a trained model; speed
  does not depend on the weights). Its items share a handful of photos (`write_images`). Idempotent: a
  finished export of the same shape is reused.
- `usable_export`: the newest version of a real export if it has every signature of `model.contract`,
  else an export of the run folder beside it (the H&M export may predate the two-stage signature, or
  not be written yet).
- `two_stage_recall`: recall@k of two-stage top-k against exact top-k, straight from the SavedModel.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from model import contract, ranking

SHARED_HM = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hm"  # ../shared beside the repo
IMAGES = 16  # distinct photos in a synthetic catalog
IMAGE_SIZE = (200, 300)  # H&M's photos: width, height
BOX = (-50.0, 0.0, 250.0, 300.0)  # the square crop the grid covers: 200x300 padded to 300x300


@dataclass(frozen=True)
class Shape:
    """A synthetic model: catalog and layer sizes, and the spread of its random weights.

    Region features are standard normal (the pipeline standardises them). The scales give a score
    where the collaborative term p.q + b and the attended visual term weigh about the same, and
    attention that is user-dependent without being one-hot (`attention_stats` reports how peaked)."""

    items: int
    users: int
    channels: int
    dim: int = 32
    attention_dim: int = 8
    grid: tuple[int, int] = (7, 7)
    seed: int = 0
    item_std: float = 0.3  # q_i
    bias_std: float = 0.3  # b_i
    value_std: float = 1.0  # each output of W_v f_i^l
    position_std: float = 0.5  # e_l, the attention's region-position embedding
    logit_std: float = 2.0  # w, the attention's logit kernel

    @property
    def regions(self) -> int:
        return self.grid[0] * self.grid[1]


HM_SHAPE = Shape(items=24_717, users=20_000, channels=320)  # H&M's catalog, EfficientNet-Lite0 block7 features
LARGE_SHAPE = Shape(items=200_000, users=20_000, channels=16)  # serving cost does not depend on the channels
TINY_SHAPE = Shape(items=300, users=50, channels=8, dim=8, attention_dim=4)  # --quick


def write_images(folder: Path, hm_root: Path = SHARED_HM) -> list[str]:
    """IMAGES product photos for a synthetic catalog: the first H&M photos when ../shared/data/hm holds
    them (heatmap cost depends on the photo's size and content), else smooth generated ones of H&M's size."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    catalog = hm_root / "catalog.csv"
    if catalog.exists():
        rows = catalog.read_text().splitlines()[1 : IMAGES + 1]
        names = [row.split(",")[1] for row in rows]
        for name in names:
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            if not (folder / name).exists():
                shutil.copyfile(hm_root / name, folder / name)
        return names
    rng = np.random.default_rng(0)
    names = []
    width, height = IMAGE_SIZE
    for n in range(IMAGES):
        name = f"photo{n:02d}.jpg"
        if not (folder / name).exists():
            y, x = np.mgrid[0:height, 0:width]
            base = np.stack([x * 255 / width, y * 255 / height, np.full_like(x, 40 * (n % 6))], -1)
            pixels = np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(pixels, "RGB").save(folder / name, quality=90)
        names.append(name)
    return names


def random_model(shape: Shape):
    """A VECF of `shape` with every weight (and the region-feature table) drawn at random."""
    from model.vecf import VECF

    model = VECF(
        num_users=shape.users,
        num_items=shape.items,
        num_regions=shape.regions,
        channels=shape.channels,
        dim=shape.dim,
        attention_dim=shape.attention_dim,
        seed=shape.seed,
    )
    rng = np.random.default_rng(shape.seed)
    features = np.empty((shape.items, shape.regions, shape.channels), np.float16)
    for s in range(0, shape.items, 4096):  # chunked: float32 noise for the whole table would not fit
        chunk = features[s : s + 4096]
        chunk[...] = rng.standard_normal(chunk.shape, dtype=np.float32)
    model.region_features.assign(features)
    del features
    normal = lambda std, *size: rng.normal(0, std, size).astype(np.float32)  # noqa: E731
    for kernel in (model.attention.region_kernel, model.attention.user_kernel):  # Glorot uniform, seeded
        limit = np.sqrt(6 / sum(kernel.shape))
        kernel.assign(rng.uniform(-limit, limit, kernel.shape).astype(np.float32))
    model.item_embedding.assign(normal(shape.item_std, shape.items, shape.dim))
    model.item_bias.assign(normal(shape.bias_std, shape.items))
    model.value.kernel.assign(normal(shape.value_std / np.sqrt(shape.channels), shape.channels, shape.dim + 1))
    model.attention.position.assign(normal(shape.position_std, shape.regions, shape.attention_dim))
    model.attention.logit_kernel.assign(normal(shape.logit_std, shape.attention_dim, 1))
    return model


def synthetic_export(shape: Shape, base: Path, images: Path) -> Path:
    """Version 1 of a random model of `shape` under `base` (reused when `base/shape.json` matches)."""
    from model import attention, vecf
    from offline.serving import candidates, export, retrieval, topk

    stamp = base / "shape.json"  # the shape and the code that wrote the export: either changed, rebuild
    code = hashlib.sha256(
        b"".join(Path(m.__file__).read_bytes() for m in (export, vecf, attention, retrieval, topk, candidates))
    ).hexdigest()
    wanted = json.dumps({**asdict(shape), "code": code}, sort_keys=True)
    if (base / "1" / "saved_model.pb").exists() and stamp.exists() and stamp.read_text() == wanted:
        print(f"serve bench: reusing the synthetic export {base / '1'} ({shape.items} items)")
        return base / "1"
    if base.exists():
        shutil.rmtree(base)
    t0 = time.perf_counter()
    photos = write_images(images)
    model = random_model(shape)
    rng = np.random.default_rng(shape.seed + 1)
    user_ids = [f"u{n:07d}" for n in range(shape.users)]
    item_ids = [f"i{n:07d}" for n in range(shape.items)]
    item_counts = rng.zipf(1.5, shape.items).clip(max=10**6).astype(np.float64)
    user_counts = rng.zipf(1.8, shape.users).clip(max=10**6).astype(np.float64)
    module = export.build_module(model, user_ids, item_ids, item_counts, user_counts, shape.grid)
    chosen, tried = candidates.choose_candidates(module, user_ids, module.new_item_every)
    print(f"serve bench: two-stage recall of the synthetic model {tried}: serving with {chosen} candidates")
    final = export.write_version(
        module,
        base,
        1,
        model_name="vecf",
        item_ids=item_ids,
        images=[photos[n % len(photos)] for n in range(shape.items)],
        boxes=[BOX] * shape.items,
        grid=shape.grid,
        embedding_dim=shape.dim,
        num_users=shape.users,
        image_root=images,
        candidates=chosen,
    )
    export.write_serving_files(base, "vecf")
    stamp.write_text(wanted)
    print(f"serve bench: synthetic export of {shape.items} items in {time.perf_counter() - t0:.0f} s -> {final}")
    return final


def has_every_signature(version_dir: Path) -> bool:
    from tensorflow.core.protobuf import saved_model_pb2

    if not (version_dir / "saved_model.pb").is_file():
        return False
    saved = saved_model_pb2.SavedModel.FromString((version_dir / "saved_model.pb").read_bytes())
    served = set(saved.meta_graphs[0].signature_def)
    return all(sig.name in served for sig in contract.SIGNATURES)


def usable_export(export_base: Path, work: Path) -> Path | None:
    """The newest version under a real export base when it has every contract signature; else the run
    folder beside it (`runs/final` or `runs/vecf`, as offline.pipeline leaves them) exported under
    `work` (reused while the run's weights are unchanged); None if neither exists."""
    from offline.serving.export import export

    versions = contract.version_numbers(export_base)
    newest = export_base / str(versions[-1]) if versions else None
    if newest is not None and has_every_signature(newest):
        return newest
    for run in ("final", "vecf"):
        weights = export_base.parent / "runs" / run / "model.weights.h5"
        if not weights.exists():
            continue
        stamp, source = work / "source.txt", f"{weights.resolve()} {weights.stat().st_mtime_ns}"
        if stamp.exists() and stamp.read_text() == source and has_every_signature(work / "1"):
            return work / "1"
        if work.exists():
            shutil.rmtree(work)
        why = "has no version" if newest is None else f"predates signature {contract.RECOMMEND_CANDIDATES.name!r}"
        print(f"serve bench: {export_base} {why}; exporting {weights.parent} into {work}")
        final = export(weights.parent, work, version=1)
        stamp.write_text(source)
        return final
    if newest is not None:
        print(
            f"serve bench: {newest} lacks signature {contract.RECOMMEND_CANDIDATES.name!r} and no run folder "
            "is beside it to re-export"
        )
    return None


def attention_stats(grids: np.ndarray) -> dict:
    """How peaked attention grids [..., H, W] are: mean largest weight, mean entropy / log(cells)."""
    flat = grids.reshape(-1, grids.shape[-2] * grids.shape[-1]).astype(np.float64)
    entropy = -(flat * np.log(np.clip(flat, 1e-12, None))).sum(-1) / np.log(flat.shape[1])
    return {
        "max_weight": round(float(flat.max(-1).mean()), 4),
        "normalized_entropy": round(float(entropy.mean()), 4),
        "uniform_weight": round(1 / flat.shape[1], 4),
    }


def _timed_ms(call, repeats: int) -> float:
    call()  # warm
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return round(float(np.median(times)) * 1000, 2)


def two_stage_recall(
    version_dir: Path, users: int, candidates: list[int], k: int = 50, timing_repeats: int = 10
) -> dict:
    """recall@k of two-stage top-k (the `recommend_candidates` signature) against exact top-k
    (`recommend`; with new-item slots, over the places ranked by score), averaged over the `users` most
    active users, for each candidate count; also what uniform region weights in the retrieval vectors
    would give (simulated from the exact scores), how peaked the exact top-k's attention is, and the
    median in-process time of one k=20 call of each."""
    import tensorflow as tf

    from service.catalog import ServingMeta

    loaded = tf.saved_model.load(str(version_dir))
    sig = loaded.signatures
    user_ids = sig["users"](limit=tf.constant(users))["user_ids"]
    states = sig["user_embedding"](user_id=user_ids)["embedding"].numpy()  # [U, D + 2H] (model.contract)
    meta = ServingMeta.read(version_dir)  # the gateway's reader: older exports get their defaults
    embeddings, repeat_rows, boosts = contract.split_user_state(states, meta.embedding_dim, meta.repeat_slots)
    item_ids = loaded.item_ids.numpy()
    n = len(item_ids)
    index = {item: i for i, item in enumerate(item_ids)}
    exact_scores = np.empty((len(embeddings), n), np.float32)  # [U, N], catalog order
    grids = []
    for u, e in enumerate(states):
        out = sig["recommend"](embedding=tf.constant(e[None]), k=tf.constant(n))
        order = np.array([index[i] for i in out["item_ids"].numpy()[0]])
        exact_scores[u, order] = out["scores"].numpy()[0]
        grids.append(out["attention"].numpy()[0, :k])
    # With new-item slots (model.contract), the slots are filled the same way by both rankings; stage 1
    # only feeds the other places, so recall is measured there: the best-scored items that are not new.
    every = meta.new_item_every
    new = loaded.tables["is_new"].numpy() if every else np.zeros(n, bool)
    scored = [p for p in range(k) if not every or (p + 1) % every]  # places ranked by score
    exact_scores[:, new] = -np.inf
    exact_top = np.argsort(-exact_scores, axis=1, kind="stable")[:, : len(scored)]  # [U, k - slots]

    uniform = np.concatenate(
        [loaded.item_vectors.numpy(), loaded.item_bias.numpy()[:, None]], 1
    ) + loaded.value_proj.numpy().mean(axis=1)  # [N, D+1]: the retrieval vectors with weights 1/R
    approx_uniform = np.concatenate([embeddings, np.ones((len(embeddings), 1), np.float32)], 1) @ uniform.T
    if repeat_rows is not None:  # stage 1 adds the repeat boosts too
        approx_uniform += np.asarray(ranking.dense_boosts(np.round(repeat_rows).astype(np.int32), boosts, n))
    approx_uniform[:, new] = -np.inf

    rows = []
    for c in candidates:
        got = sig["recommend_candidates"](embedding=tf.constant(states), k=tf.constant(k), candidates=tf.constant(c))[
            "item_ids"
        ].numpy()[:, scored]
        hits = [len({index[i] for i in got[u]} & set(exact_top[u])) for u in range(len(embeddings))]
        pool = np.argpartition(-approx_uniform, min(c, n) - 1, axis=1)[:, : min(c, n)]  # uniform top-C
        simulated = []
        for u in range(len(embeddings)):
            best = pool[u][np.argsort(-exact_scores[u, pool[u]], kind="stable")[: len(scored)]]
            simulated.append(len(set(best) & set(exact_top[u])))
        rows.append(
            {
                "candidates": c,
                f"recall@{k}": round(float(np.mean(hits)) / len(scored), 4),
                f"recall@{k}_uniform_weights": round(float(np.mean(simulated)) / len(scored), 4),
            }
        )
    one = tf.constant(states[:1])
    timings = {
        "exact_recommend_k20_ms": _timed_ms(lambda: sig["recommend"](embedding=one, k=tf.constant(20)), timing_repeats),
        **{
            f"two_stage_c{c}_k20_ms": _timed_ms(
                lambda c=c: sig["recommend_candidates"](embedding=one, k=tf.constant(20), candidates=tf.constant(c)),
                timing_repeats,
            )
            for c in candidates
        },
    }
    return {
        "items": n,
        "users": len(embeddings),
        "k": k,
        "rows": rows,
        "attention_of_exact_top": attention_stats(np.stack(grids)),
        "model_call_median": timings,
    }
