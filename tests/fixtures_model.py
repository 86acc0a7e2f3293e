"""One tiny trained and exported model, for the tests that need a real SavedModel: synthetic catalog
(40 users, 100 items) -> pipeline (VECF only, 1 epoch) -> export. About 10 s on two cores.
The repeat-purchase boost is on, so every test of the gateway and its backends passes the full user
state (`model.contract`) around, not the bare embedding."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from offline.data.synth import SynthConfig, generate
from offline.pipeline import run
from offline.recommenders.vecf import TrainConfig


def build_tiny_export(root: Path) -> Path:
    """The pipeline's work folder under `root`: runs/vecf/ (the trained run) and export/1/."""
    generate(SynthConfig(seed=3, users=40, items=100, mean_interactions=10), root / "data", workers=1)
    config = TrainConfig(
        dim=8, attention_dim=4, epochs=1, batch_size=128, max_review_len=8, vocab_size=200, repeat_weight=1.0
    )
    run("synthetic", root / "data", root / "work", config, models=("vecf",), progress=False)
    return root / "work"


def write_export_without_score_parts(version_dir: Path, base: Path) -> Path:
    """`version_dir` saved again as `base`/<same version>, its attention signature returning only `attention`
    and without the history signature, as exports did before `model.contract.ATTENTION`'s added outputs and
    `ADDED_SIGNATURES`; with TF Serving's models.config."""
    import tensorflow as tf

    from model.contract import ADDED_SIGNATURES, ASSETS_EXTRA, ATTENTION, SERVING_META_FILE
    from offline.serving.export import WARMUP_FILE, write_serving_files

    loaded = tf.saved_model.load(str(version_dir))
    full = loaded.signatures[ATTENTION.name]

    class WithoutParts(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.loaded = loaded  # tracks the variables and lookup tables the other signatures use

        @tf.function(
            input_signature=[
                tf.TensorSpec((None, None), tf.float32, name="embedding"),
                tf.TensorSpec((None,), tf.string, name="item_ids"),
            ]
        )
        def attention(self, embedding, item_ids):
            return {"attention": full(embedding=embedding, item_ids=item_ids)["attention"]}

    module = WithoutParts()
    signatures = {
        name: fn for name, fn in loaded.signatures.items() if name != ATTENTION.name and name not in ADDED_SIGNATURES
    }
    signatures[ATTENTION.name] = module.attention
    out = base / version_dir.name
    tf.saved_model.save(module, str(out), signatures=signatures)
    shutil.copytree(version_dir / ASSETS_EXTRA, out / ASSETS_EXTRA)
    _keep_warmups(out / ASSETS_EXTRA / WARMUP_FILE, set(signatures))
    write_serving_files(base, json.loads((out / ASSETS_EXTRA / SERVING_META_FILE).read_text())["model_name"])
    return out


def _keep_warmups(path: Path, signatures: set[str]) -> None:
    """Rewrite a warmup file with only the requests of `signatures` (TF Serving fails a version whose
    warmup asks for a signature it lacks)."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    records = [r.numpy() for r in tf.data.TFRecordDataset(str(path))]
    kept = [
        r
        for r in records
        if prediction_log_pb2.PredictionLog.FromString(r).predict_log.request.model_spec.signature_name in signatures
    ]
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in kept:
            writer.write(record)
