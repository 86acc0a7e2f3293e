"""`python -m offline prepare DATASET --source DIR --out DIR`: a real dataset in the internal format
(offline.data.prepare)."""

from __future__ import annotations

import sys
import time

from offline.data.prepare import PrepareError, build_parser, prepare


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    t0 = time.perf_counter()
    try:
        prepared = prepare(args)
    except PrepareError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(prepared.report.summary())
    print(f"prepare {args.dataset}: done in {time.perf_counter() - t0:.1f} s")
    return 0
