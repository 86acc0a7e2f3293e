"""One tiny trained and exported model, for the tests that need a real SavedModel: synthetic catalog
(40 users, 100 items) -> pipeline (VECF only, 1 epoch) -> export. About 10 s on two cores.
The repeat-purchase boost is on, so every test of the gateway and its backends passes the full user
state (`model.contract`) around, not the bare embedding."""

from __future__ import annotations

from pathlib import Path

from offline.pipeline import run
from offline.synth import SynthConfig, generate
from offline.train import TrainConfig


def build_tiny_export(root: Path) -> Path:
    """The pipeline's work folder under `root`: runs/vecf/ (the trained run) and export/1/."""
    generate(SynthConfig(seed=3, users=40, items=100, mean_interactions=10), root / "data", workers=1)
    config = TrainConfig(dim=8, attention_dim=4, epochs=1, batch_size=128, max_review_len=8, vocab_size=200,
                         repeat_weight=1.0)
    run("synthetic", root / "data", root / "work", config, models=("vecf",), progress=False)
    return root / "work"
