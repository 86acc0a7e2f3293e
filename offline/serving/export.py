"""Export a trained run as a SavedModel that TensorFlow Serving (and the gateway's in-process
backend) loads: a numbered version folder, the signatures named in `model.contract`, string ids in
and out (the id lookups travel inside the model), and the catalog side file for images/heatmaps.

TF Serving's files, rewritten on every export:

    EXPORT_DIR/<version>/assets.extra/tf_serving_warmup_requests  PredictionLog TFRecord, one per signature
    EXPORT_DIR/models.config           --model_config_file: name, base_path, versions served, labels
    EXPORT_DIR/batching_parameters.txt --batching_parameters_file (only read with --enable_batching)

Two-stage ranking (`recommend_candidates`): exact ranking costs N*R*(A+D+1) multiply-adds per user, too
much for large catalogs, so stage 1 retrieves candidates with one matrix product against item vectors
whose attention is fixed per cluster of users (`offline.serving.retrieval`), and stage 2 scores them exactly.

`base_path` is where TF Serving sees EXPORT_DIR (docker-compose mounts it at /models/vecf), not
where it is written. Labels: `canary` is the newest version, `stable` too unless pinned to an older
one; the newest KEEP_VERSIONS versions (and stable) stay loaded, so a gateway still pinned to the
previous version keeps working while it is replaced.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from model import contract, foldin
from offline.data.dataset import load_catalog
from offline.features.regions import load_features
from offline.recommenders.newitems import NEW_ITEM_PICKS, NewItemScorer
from offline.recommenders.ranking_tables import serving_tables
from offline.recommenders.repeats import RepeatTable
from offline.recommenders.vecf import VECFRecommender
from offline.serving.candidates import USERS, K, choose_candidates
from offline.serving.retrieval import RETRIEVAL_CLUSTERS, retrieval_index

NEW_ITEM_RETRIEVAL_BIAS = -1e9  # stage-1 bias of new items under new-item slots (a mask that costs nothing)


def build_module(
    model,
    user_ids: list[str],
    item_ids: list[str],
    item_counts: np.ndarray,
    user_counts: np.ndarray,
    grid: tuple[int, int],
    retrieval_clusters: int = RETRIEVAL_CLUSTERS,
    repeats: RepeatTable | None = None,
    repeat_unit: float = 0.0,
    new_items: NewItemScorer | None = None,
    new_item_every: int = 0,
    new_item_picks: int = NEW_ITEM_PICKS,
):
    """The `offline.serving.module.Serving` of a trained model: its tables and layout from
    `offline.recommenders.ranking_tables` (what offline evaluation ranks with too), the catalog's item tables in
    serving form and the stage-1 retrieval index. `retrieval_clusters`: see `retrieval_index`
    (0: one uniform table)."""
    from offline.serving.module import Serving

    region_proj, value_proj = (np.asarray(t) for t in model.catalog_tables())
    tables, layout = serving_tables(
        np.asarray(model.user_embedding),
        len(item_ids),
        repeats,
        repeat_unit,
        new_items,
        new_item_every,
        new_item_picks,
        fold_vectors=np.asarray(foldin.item_vectors(model.item_embedding, model.item_bias, value_proj)),
    )
    # [N, R, 2A]: the attention table in the form serving multiplies fastest (RegionAttention.split_regions)
    split_proj = np.asarray(model.attention.split_regions(region_proj))
    centroids, retrieval = retrieval_index(
        model, region_proj, value_proj, split_proj=split_proj, clusters=retrieval_clusters
    )
    if layout.every:  # stage 1 never retrieves a new item while old ones remain: they enter through their slots
        retrieval = np.array(retrieval)  # writable
        retrieval[:, tables["is_new"], -1] = NEW_ITEM_RETRIEVAL_BIAS
    # `users(limit)` lists the most active users first: people with a history worth looking at.
    active_users = np.array(user_ids, dtype=object)[np.lexsort((np.arange(len(user_ids)), -user_counts))]
    return Serving(
        model,
        tables,
        layout,
        user_ids=user_ids,
        item_ids=item_ids,
        active_users=active_users,
        popular_order=np.lexsort((np.arange(len(item_ids)), -item_counts)),
        item_counts=item_counts,
        split_proj=split_proj,
        value_proj=value_proj,
        centroids=centroids,
        retrieval=retrieval,
        grid=grid,
        repeat_unit=repeat_unit,
    )


WARMUP_FILE = "tf_serving_warmup_requests"
MODELS_CONFIG_FILE = "models.config"
BATCHING_FILE = "batching_parameters.txt"
SERVING_BASE_PATH = "/models/{name}"  # where docker-compose mounts the export for TF Serving
KEEP_VERSIONS = 2
# BatchingParameters (tensorflow_serving/servables/tensorflow/session_bundle_config.proto), for CPU serving.
BATCHING = {"max_batch_size": 32, "batch_timeout_micros": 2000, "num_batch_threads": 4, "max_enqueued_batches": 64}
WARMUP_K = 10
WARMUP_CANDIDATES = 100


def next_version(base: Path) -> int:
    return max(contract.version_numbers(base), default=0) + 1


def warmup_requests(module, model_name: str, k: int = WARMUP_K) -> list:
    """PredictionLog protos: one real request per contract signature, for the most active user."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    user = module.active_users.numpy()[:1]  # [1] bytes
    embedding = module.user_embedding(tf.constant(user))["embedding"].numpy()  # [1, D]
    top = module.recommend(tf.constant(embedding), tf.constant(k, tf.int32))["item_ids"].numpy()  # [1, K]
    values = {
        contract.USER_EMBEDDING.name: (user,),
        contract.HISTORY_EMBEDDING.name: (top[:, :3],),
        contract.RECOMMEND.name: (embedding, k),
        contract.RECOMMEND_CANDIDATES.name: (embedding, k, WARMUP_CANDIDATES),
        contract.RECOMMEND_SHELF.name: (embedding, k, WARMUP_CANDIDATES, contract.SHELVES.index("for_you")),
        contract.SCORE.name: (embedding, top),
        contract.ATTENTION.name: (embedding, top[:, 0]),
        contract.BECAUSE.name: (embedding, top),
        contract.POPULAR.name: (k,),
        contract.USERS.name: (k,),
    }
    logs = []
    for sig in contract.SIGNATURES:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model_name
        request.model_spec.signature_name = sig.name
        for (name, (dtype, _shape)), value in zip(sig.inputs.items(), values[sig.name], strict=True):
            request.inputs[name].CopyFrom(tf.make_tensor_proto(value, dtype=getattr(tf, dtype)))
        logs.append(prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request)))
    return logs


def write_warmup_requests(module, path: Path, model_name: str) -> int:
    import tensorflow as tf

    logs = warmup_requests(module, model_name)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for log in logs:
            writer.write(log.SerializeToString())
    return len(logs)


def _write_atomic(path: Path, text: str) -> None:
    """Write beside `path` and rename: TF Serving polling its config file never reads half of it."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def models_config(
    model_name: str, base_path: str, versions: list[int], stable: int | None = None, keep: int = KEEP_VERSIONS
) -> str:
    """ModelServerConfig text proto serving `versions`' newest `keep` (and `stable`), labelled."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    if not versions:
        raise ValueError("no version folders to serve: export one first")
    canary = versions[-1]
    stable = canary if stable is None else stable
    if stable not in versions:
        raise ValueError(f"stable version {stable} is not among the exported versions {versions}")
    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add(name=model_name, base_path=base_path, model_platform="tensorflow")
    model.model_version_policy.specific.versions.extend(sorted(set(versions[-keep:]) | {stable}))
    model.version_labels["stable"] = stable
    model.version_labels["canary"] = canary
    return text_format.MessageToString(config)


def batching_parameters() -> str:
    lines = [
        "# BatchingParameters for tensorflow_model_server --enable_batching --batching_parameters_file=...",
        "# Batching concatenates requests on dimension 0: signatures with scalar inputs (k, limit) fail under it.",
    ]
    lines += [f"{name} {{ value: {value} }}" for name, value in BATCHING.items()]
    return "\n".join(lines) + "\n"


def write_serving_files(
    base: Path, model_name: str, base_path: str | None = None, stable: int | None = None
) -> list[Path]:
    """(Re)write `models.config` and `batching_parameters.txt` in the export base folder."""
    base_path = base_path or SERVING_BASE_PATH.format(name=model_name)
    config = models_config(model_name, base_path, contract.version_numbers(base), stable)
    _write_atomic(base / MODELS_CONFIG_FILE, config)
    _write_atomic(base / BATCHING_FILE, batching_parameters())
    return [base / MODELS_CONFIG_FILE, base / BATCHING_FILE]


def write_version(
    module,
    base: Path,
    version: int,
    *,
    model_name: str,
    item_ids: list[str],
    images: list[str],
    boxes: list,
    grid: tuple[int, int],
    embedding_dim: int,
    num_users: int,
    image_root: Path,
    new: np.ndarray | None = None,
    candidates: int = 0,
    titles: list[str] | None = None,
    categories: list[str] | None = None,
) -> Path:
    """Save `module` as version folder `base/version` with its assets.extra (catalog, serving.json,
    warmup requests): written beside the final folder and renamed, so a server polling `base` never
    sees half a version. `new` [N] bool: items without training purchases (catalog.csv's `new`; none
    when None); `candidates`: the gateway's two-stage default (`offline.serving.candidates`; 0: exact);
    `titles`, `categories`: catalog.csv's text columns (empty when None). The user state's layout in
    serving.json is the module's own."""
    import tensorflow as tf

    base.mkdir(parents=True, exist_ok=True)
    final = base / str(version)
    if final.exists():
        raise FileExistsError(f"{final} exists; versions are immutable, pick another --version")
    staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=base))
    staging.chmod(0o755)  # mkdtemp makes it 0700: servers running as another user could not read the version
    signatures = {sig.name: getattr(module, sig.name) for sig in contract.SIGNATURES}
    signatures[contract.DEFAULT_SIGNATURE] = module.recommend
    tf.saved_model.save(module, str(staging), signatures=signatures)
    extra = staging / contract.ASSETS_EXTRA
    extra.mkdir()
    with open(extra / contract.CATALOG_FILE, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(contract.CATALOG_COLUMNS)
        new = np.zeros(len(item_ids), bool) if new is None else np.asarray(new, bool)
        titles, categories = titles or [""] * len(item_ids), categories or [""] * len(item_ids)
        for item, image, box, fresh, title, category in zip(
            item_ids, images, boxes, new.tolist(), titles, categories, strict=True
        ):
            w.writerow([item, image, *box, int(fresh), title, category])
    meta = {
        "model_name": model_name,
        "version": version,
        "grid_rows": grid[0],
        "grid_cols": grid[1],
        "embedding_dim": embedding_dim,
        "repeat_slots": module.repeat_slots,
        "new_item_every": module.new_item_every,
        "new_item_picks": module.new_item_picks,
        "candidates": candidates,
        "num_items": len(item_ids),
        "num_users": num_users,
        "image_root": str(Path(image_root).resolve()),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    (extra / contract.SERVING_META_FILE).write_text(json.dumps(meta, indent=2))
    warmups = write_warmup_requests(module, extra / WARMUP_FILE, model_name)
    staging.rename(final)
    print(
        f"export: {model_name} version {version} ({len(item_ids)} items, {num_users} users, "
        f"{warmups} warmup requests) -> {final}"
    )
    return final


def export(
    run_dir: Path,
    base: Path,
    version: int | None = None,
    model_name: str = "vecf",
    serving_base_path: str | None = None,
    stable_version: int | None = None,
) -> Path:
    run = json.loads((run_dir / "run.json").read_text())
    features = load_features(run["features"])
    catalog = load_catalog(run["dataset"])
    item_ids = (run_dir / "items.txt").read_text().splitlines()
    if item_ids != features.item_ids or item_ids != catalog.item_ids:
        raise ValueError(f"{run_dir}: items.txt, the feature table and the catalog disagree on item order")
    user_ids = (run_dir / "users.txt").read_text().splitlines()
    rec = VECFRecommender.load(run_dir, features)  # the model, its repeat table and the boost's unit
    model = rec.model
    item_counts = np.load(run_dir / "item_counts.npy")
    module = build_module(
        model,
        user_ids,
        item_ids,
        item_counts,
        np.load(run_dir / "user_counts.npy"),
        features.grid,
        repeats=rec.repeats,
        repeat_unit=rec.repeat_boost_unit(),
        new_items=rec.new_items,
        new_item_every=rec.config.new_item_every,
    )

    candidates, tried = choose_candidates(module, user_ids, module.new_item_every)
    print(
        f"export: two-stage recall@{K} of the exact top {K} on {min(USERS, len(user_ids))} users: "
        + (", ".join(f"{t[f'recall@{K}']:.4f} at {t['candidates']}" for t in tried) or "no count below the catalog")
        + (f"; serving with {candidates} candidates" if candidates else "; serving exact rankings")
    )
    version = version or next_version(base)
    if stable_version is not None and stable_version not in [*contract.version_numbers(base), version]:
        raise ValueError(f"--stable-version {stable_version} is neither exported under {base} nor this export")
    final = write_version(
        module,
        base,
        version,
        model_name=model_name,
        item_ids=item_ids,
        images=catalog.images,
        boxes=features.boxes.tolist(),
        grid=features.grid,
        embedding_dim=model.dim,
        num_users=len(user_ids),
        image_root=Path(run["dataset"]),
        new=item_counts == 0,
        candidates=candidates,
        titles=catalog.attributes.get("title"),
        categories=next((catalog.attributes[a] for a in contract.CATEGORY_ATTRIBUTES if a in catalog.attributes), None),
    )
    written = write_serving_files(base, model_name, serving_base_path, stable_version)
    print(f"export: TF Serving config for versions {contract.version_numbers(base)} -> {', '.join(map(str, written))}")
    return final
