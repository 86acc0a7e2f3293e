"""`python -m offline export`: a trained run as a numbered SavedModel version (offline.serving.export)."""

from __future__ import annotations

import argparse
from pathlib import Path

from offline.serving import export as export_module
from offline.serving.export import export


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m offline export", description=export_module.__doc__)
    ap.add_argument("--run", required=True, type=Path, help="run folder written by `offline train`")
    ap.add_argument("--out", required=True, type=Path, help="model base folder (version folders go inside)")
    ap.add_argument("--version", type=int)
    ap.add_argument("--name", default="vecf")
    ap.add_argument("--serving-base-path", help="where TF Serving sees --out (default /models/NAME)")
    ap.add_argument("--stable-version", type=int, help="version of the 'stable' label (default: the newest)")
    args = ap.parse_args(argv)
    export(args.run, args.out, args.version, args.name, args.serving_base_path, args.stable_version)
    return 0
