"""`python -m offline COMMAND ...`: each command lives in its own module and is imported on demand."""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "synth": ("offline.commands.synth", "generate a synthetic catalog with planted preferences"),
    "plant": ("offline.commands.plant", "paint marks on real product photos and plant customers who like one"),
    "prepare": (
        "offline.commands.prepare",
        "turn a real dataset (H&M, Amazon 2014/2018, DVBPR) into the internal format",
    ),
    "split": ("offline.commands.split", "split interactions per user by time"),
    "features": ("offline.commands.features", "extract region features for every catalog image"),
    "train": ("offline.commands.train", "train VECF"),
    "evaluate": ("offline.commands.evaluate", "rank the test split and write metrics"),
    "export": ("offline.commands.export", "write a SavedModel for TensorFlow Serving"),
    "pipeline": ("offline.commands.pipeline", "run every step above"),
    "recommend": ("offline.commands.recommend", "write top-k recommendations for a list of users from an export"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print("usage: python -m offline COMMAND [options]\n\ncommands:")
        for name, (_, help_text) in COMMANDS.items():
            print(f"  {name:10s} {help_text}")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
