"""`make bench-train`: VECF training throughput (pairs/s) on whatever accelerator the Keras backend sees.

    python -m bench.train [--items 24717 --users 20000 --channels 320 --batch 4096] [--out bench/results]
    KERAS_BACKEND=jax python -m bench.train ...   (the GPU path: JAX sees the GPU, TensorFlow here does not)

Two data paths through the same model and the same compiled training step, in one run:
- table (ours): the catalog's region features are a non-trainable [N, R, C] float16 table inside the
  model (on the accelerator when there is one); batches carry item ids and the model gathers;
- host: the features are gathered from a host-side numpy table for every batch and sent with it
  (a keras.utils.PyDataset), the design the id-only batches replace.

Shapes default to the H&M sample with EfficientNet-Lite0 block7 features (24,717 items, 7x7x320) and
the real-data settings (dim 16, attention 8, the review decoder on, 24-token texts, 3,000 words).
Features, ids and tokens are random: speed does not depend on their values. The first epoch (compile)
is not timed; the rest are. Writes <out>/train_<backend>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from bench.docs import is_default_results, provenance
from bench.docs import update as update_docs


def device_name() -> str:
    import keras

    if keras.backend.backend() == "jax":
        import jax

        d = jax.devices()[0]
        return f"{d.platform}: {getattr(d, 'device_kind', d)}"
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        return f"gpu: {gpus[0].name}" if gpus else f"cpu: {len(os.sched_getaffinity(0))} cores"
    return keras.backend.backend()


def build(args: argparse.Namespace, host_fed: bool):
    import keras
    from keras import ops

    from model.vecf import VECF

    class HostFedVECF(VECF):
        """The region features arrive with the batch (`pos_regions`, `neg_regions`)."""

        def batch_regions(self, inputs, side: str):
            return ops.cast(inputs[f"{side}_regions"], "float32") * self.feature_scale

    cls = HostFedVECF if host_fed else VECF
    keras.utils.set_random_seed(0)
    # The host-fed model still allocates (and never reads) the region table: the constructor is shared.
    model = cls(
        num_users=args.users,
        num_items=args.items,
        num_regions=args.regions,
        channels=args.channels,
        dim=args.dim,
        attention_dim=args.attention_dim,
        beta=1.0 if args.vocab else 0.0,
        vocab_size=args.vocab,
        l2=0.1,
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    return model


def run_path(args: argparse.Namespace, table: np.ndarray, batches: dict[str, np.ndarray], host_fed: bool) -> dict:
    import keras

    model = build(args, host_fed)
    if not host_fed:
        model.region_features.assign(table)

    class HostBatches(keras.utils.PyDataset):
        def __len__(self) -> int:
            return args.steps

        def __getitem__(self, k: int) -> dict[str, np.ndarray]:
            rows = slice(k * args.batch, (k + 1) * args.batch)
            x = {key: value[rows] for key, value in batches.items()}
            x["pos_regions"], x["neg_regions"] = table[x["pos"]], table[x["neg"]]  # the host-side gather
            return x

    def epoch() -> float:
        t0 = time.perf_counter()
        if host_fed:
            model.fit(HostBatches(), epochs=1, verbose=0)
        else:
            model.fit(batches, batch_size=args.batch, epochs=1, shuffle=False, verbose=0)
        return time.perf_counter() - t0

    first = epoch()  # compiles
    timed = [epoch() for _ in range(args.epochs)]
    pairs = args.steps * args.batch  # batches hold exactly this many
    best = min(timed)
    return {
        "first_epoch_s": round(first, 2),
        "epoch_s": [round(t, 3) for t in timed],
        "pairs_per_epoch": pairs,
        "pairs_per_s": round(pairs / best),
        "ms_per_step": round(1e3 * best / args.steps, 2),
    }


def markdown(result: dict) -> str:
    s = result["shape"]
    lines = [
        f"# VECF training throughput ({result['backend']} backend, {result['device']})",
        "",
        f"{s['items']:,} items x {s['regions']} regions x {s['channels']} channels (float16 table), "
        f"{s['users']:,} users, dim {s['dim']}, attention {s['attention_dim']}, review decoder "
        f"{'on (' + str(s['vocab']) + ' words, ' + str(s['review_len']) + ' tokens)' if s['vocab'] else 'off'}, "
        f"batch {s['batch']}; fastest of {result['epochs']} timed epochs after a compiling one.",
        "",
        "| data path | pairs/s | ms/step | first epoch (compile) s |",
        "|---|---|---|---|",
    ]
    for name, row in result["paths"].items():
        lines.append(f"| {name} | {row['pairs_per_s']:,} | {row['ms_per_step']} | {row['first_epoch_s']} |")
    if "table_vs_host" in result:
        lines += ["", f"table / host: {result['table_vs_host']}x"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--items", type=int, default=24_717)
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--regions", type=int, default=49)
    ap.add_argument("--channels", type=int, default=320)
    ap.add_argument("--dim", type=int, default=16)
    ap.add_argument("--attention-dim", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=3000, help="0 turns the review decoder off")
    ap.add_argument("--review-len", type=int, default=24)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--steps", type=int, default=32, help="training steps per epoch")
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs (after one untimed)")
    ap.add_argument("--paths", default="table,host")
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    args = ap.parse_args(argv)
    import keras

    rng = np.random.default_rng(0)
    n = args.steps * args.batch
    table = rng.standard_normal((args.items, args.regions, args.channels), dtype=np.float32).astype(np.float16)
    batches = {
        "user": rng.integers(0, args.users, n, dtype=np.int32),
        "pos": rng.integers(0, args.items, n, dtype=np.int32),
        "neg": rng.integers(0, args.items, n, dtype=np.int32),
    }
    if args.vocab:  # BOS words EOS, then padding: what offline.features.text.Vocabulary.encode produces
        tokens = rng.integers(4, args.vocab, (n, args.review_len + 2), dtype=np.int32)
        tokens[:, 0] = 1
        tokens[np.arange(n), rng.integers(6, args.review_len + 2, n)] = 2
        tokens[np.arange(args.review_len + 2)[None, :] > np.argmax(tokens == 2, axis=1)[:, None]] = 0
        batches["tokens"] = tokens
    result = {
        "backend": keras.backend.backend(),
        "device": device_name(),
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} CPU",
        "epochs": args.epochs,
        "shape": {
            "items": args.items,
            "users": args.users,
            "regions": args.regions,
            "channels": args.channels,
            "dim": args.dim,
            "attention_dim": args.attention_dim,
            "vocab": args.vocab,
            "review_len": args.review_len,
            "batch": args.batch,
            "steps": args.steps,
        },
        "paths": {},
    }
    for path in args.paths.split(","):
        result["paths"][path] = run_path(args, table, batches, host_fed=path == "host")
        print(f"bench.train {path}: {result['paths'][path]}", flush=True)
    if {"table", "host"} <= set(result["paths"]):
        result["table_vs_host"] = round(
            result["paths"]["table"]["pairs_per_s"] / result["paths"]["host"]["pairs_per_s"], 2
        )
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"train_{result['backend']}"
    result["provenance"] = provenance()
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / f"{stem}.md").write_text(markdown(result))
    if is_default_results(args.out):
        update_docs([stem])
    print(markdown(result))
    print(f"bench.train: wrote {args.out / (stem + '.json')} and {args.out / (stem + '.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
