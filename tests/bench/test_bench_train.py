"""`python -m bench.train` on a tiny shape: both data paths train through the same model and the report
is written. Checks what it writes, never how fast anything was."""

from __future__ import annotations

import json
from pathlib import Path

import keras

from bench.train import main


def test_both_data_paths_train_and_the_report_is_written(tmp_path: Path) -> None:
    assert (
        main(
            [
                "--items",
                "50",
                "--users",
                "20",
                "--channels",
                "8",
                "--regions",
                "4",
                "--batch",
                "16",
                "--steps",
                "3",
                "--epochs",
                "2",
                "--vocab",
                "30",
                "--review-len",
                "6",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    backend = keras.backend.backend()
    result = json.loads((tmp_path / f"train_{backend}.json").read_text())
    assert result["backend"] == backend and set(result["paths"]) == {"table", "host"}
    for row in result["paths"].values():
        assert row["pairs_per_epoch"] == 3 * 16 and len(row["epoch_s"]) == 2
        assert row["pairs_per_s"] > 0 and row["ms_per_step"] > 0
    assert result["table_vs_host"] > 0
    md = (tmp_path / f"train_{backend}.md").read_text()
    assert "| table |" in md and "| host |" in md and "review decoder on (30 words, 6 tokens)" in md
