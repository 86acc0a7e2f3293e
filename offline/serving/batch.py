"""Batch recommendations from an exported model: the whole catalog ranked for each user in a file.

    python -m offline recommend --model EXPORT_DIR --users FILE --k K --out FILE.csv

EXPORT_DIR is a model base folder (its highest numbered version is used) or one version folder.
FILE has one user id per line. The CSV has `user_id,rank,item_id,score`, rank 1 first. Nothing is
filtered out: a user's past purchases may be recommended again. A user the model does not know
gets the popularity ranking (its score is the item's training count) and is counted in the summary.
It runs the SavedModel's own signatures (`model.contract`), exactly what the gateway serves.
"""

from __future__ import annotations

import csv
from pathlib import Path

from tqdm import tqdm

from model import contract


def resolve_version(model_dir: Path) -> Path:
    """A version folder as it is, or the highest numbered version under a base folder."""
    model_dir = Path(model_dir)
    if (model_dir / "saved_model.pb").exists():
        return model_dir
    versions = (
        sorted((int(p.name), p) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())
        if model_dir.is_dir()
        else []
    )
    if not versions:
        raise FileNotFoundError(f"{model_dir}: no saved_model.pb and no numbered version folder inside")
    return versions[-1][1]


def read_user_ids(path: Path) -> list[str]:
    """One id per line; blank lines are skipped, surrounding whitespace stripped, order kept."""
    users = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines()]
    users = [u for u in users if u]
    if not users:
        raise ValueError(f"{path}: no user ids in it")
    return users


def recommend(
    model_dir: Path, user_ids: list[str], k: int, out: Path, batch_size: int = 64, progress: bool = True
) -> dict[str, int]:
    """Write the top-k of every user to `out`; returns counts (users, known, unknown, rows)."""
    import tensorflow as tf  # heavy: only this command needs it

    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    version_dir = resolve_version(model_dir)
    loaded = tf.saved_model.load(str(version_dir))
    embed = loaded.signatures[contract.USER_EMBEDDING.name]
    rank = loaded.signatures[contract.RECOMMEND.name]
    popular = loaded.signatures[contract.POPULAR.name](k=tf.constant(k, tf.int32))
    popular_ids = [b.decode() for b in popular["item_ids"].numpy()]
    popular_scores = popular["scores"].numpy()
    counts = {"users": len(user_ids), "known": 0, "unknown": 0, "rows": 0}
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "rank", "item_id", "score"])
        for s in tqdm(range(0, len(user_ids), batch_size), desc="recommend", unit="batch", disable=not progress):
            batch = user_ids[s : s + batch_size]
            e = embed(user_id=tf.constant(batch))
            known = e["known"].numpy()
            top = rank(embedding=e["embedding"], k=tf.constant(k, tf.int32))
            items, scores = top["item_ids"].numpy(), top["scores"].numpy()  # [B, K]
            for b, user in enumerate(batch):
                if known[b]:
                    ranked = zip((i.decode() for i in items[b]), scores[b].tolist())
                else:
                    ranked = zip(popular_ids, popular_scores.tolist())
                for position, (item, score) in enumerate(ranked, start=1):
                    w.writerow([user, position, item, f"{score:.6g}"])
                    counts["rows"] += 1
            counts["known"] += int(known.sum())
            counts["unknown"] += int((~known).sum())
    return counts
