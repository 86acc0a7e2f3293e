"""Train VECF: BPR or pointwise loss, negatives resampled every epoch, shuffled batches, the review
decoder weighted by beta, early stopping on validation Recall@K. The run folder holds everything
export needs to rebuild the model: config.json, model.json, model.weights.h5, users.txt, items.txt,
vocab.json, history.json, repeats.npz, run.json."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from model.ranking import check_every
from offline.data.indexed import IndexedData, recency_weights
from offline.features.regions import RegionFeatures
from offline.features.text import Vocabulary
from offline.recommenders.newitems import NewItemScorer
from offline.recommenders.ranking_tables import serving_tables
from offline.recommenders.repeats import RepeatTable

NEGATIVE_SAMPLERS = ("uniform", "popularity")


def where_channels(meta: dict) -> int:
    """The local channels of a features folder (`Backbone.where_channels`); folders written before the
    meta recorded them take the figure from their backbone's registration."""
    if "where_channels" in meta:
        return int(meta["where_channels"])
    from offline.features.backbones import BACKBONES

    backbone = BACKBONES.get(meta.get("backbone", ""))
    return backbone.where_channels if backbone else 0


@dataclass
class TrainConfig:
    # Defaults picked while developing on synthetic catalogs of other seeds than the demo's, so the
    # demo's test split never informed them.
    dim: int = 16
    attention_dim: int = 32
    attention_scale: float = 1.0  # multiplies the attention logits (see model.attention)
    affinity: float = 0.0  # weight of the user's value of each region in the attention logits (model.vecf)
    use_attention: bool = True
    # Features from a two-part backbone (meta "where_channels" > 0): True keys the attention on the local
    # part alone; False lets it see every channel, as with a one-part backbone.
    where: bool = True
    loss: str = "bpr"  # or "pointwise"
    beta: float = 3.0  # review-decoder weight (its loss is a mean per token); 0 gives VECF(-rev)
    l2: float = 0.1
    lr: float = 0.01
    batch_size: int = 256
    epochs: int = 40
    patience: int = 10
    negatives: str = "uniform"  # or "popularity" (count^0.75)
    max_review_len: int = 20
    vocab_size: int = 2000
    decoder_hidden: int = 64
    eval_k: int = 10
    max_validation_users: int = 500  # early stopping ranks the catalog for at most this many users
    # Early stopping compares the mean validation recall of the last `stop_window` epochs (1: each
    # epoch alone). Recall of a few hundred users moves by ~10% from epoch to epoch, so a lucky early
    # epoch can win before the attention has formed; a window compares trends instead.
    stop_window: int = 3
    # False where repeat purchases count (shops): validation ranks a user's own past items too.
    exclude_seen: bool = True
    # > 0: each epoch draws its positives with probability halving every `half_life_days` of age
    # (fashion demand moves; purchases from two seasons ago say less about next season).
    half_life_days: float = 0.0
    # Items without training interactions never enter a BPR pair, so their bias stays at its start.
    # None keeps 0; q in [0, 1] sets it to the q-quantile of the trained warm items' biases, the
    # prior of a new item, chosen on validation like any other setting.
    cold_bias_quantile: float | None = None
    # Repeat purchases (offline.recommenders.repeats): score += repeat_weight * spread * log1p(times u bought i).
    # 0 keeps VECF's own score; like the cold-item bias it is chosen on validation without retraining.
    repeat_weight: float = 0.0
    # New-item slots (offline.recommenders.newitems): every `new_item_every`-th place of a ranking holds an item
    # without purchases, chosen from the photo and the customer's history; 0: none. Chosen on
    # validation without retraining, like the two settings above.
    new_item_every: int = 0
    # > 0: the weights are an exponential moving average of the optimizer's steps with this momentum
    # (Keras' optimizer EMA), and each epoch ends on the average. BPR steps on a few thousand pairs are
    # noisy: on H&M's validation window, 0.99 cut the spread of Recall@50 over seeds 0-3 to a third.
    ema: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.negatives not in NEGATIVE_SAMPLERS:
            raise ValueError(f"negatives must be one of {NEGATIVE_SAMPLERS}, got {self.negatives!r}")
        if self.half_life_days < 0:
            raise ValueError(f"half_life_days must be >= 0, got {self.half_life_days}")
        if self.stop_window < 1:
            raise ValueError(f"stop_window must be >= 1, got {self.stop_window}")
        if self.cold_bias_quantile is not None and not 0 <= self.cold_bias_quantile <= 1:
            raise ValueError(f"cold_bias_quantile must be in [0, 1] or null, got {self.cold_bias_quantile}")
        if self.repeat_weight < 0:
            raise ValueError(f"repeat_weight must be >= 0, got {self.repeat_weight}")
        check_every(self.new_item_every)
        if not 0 <= self.ema < 1:
            raise ValueError(f"ema must be in [0, 1), got {self.ema}")

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}")
        return cls(**d)

    @classmethod
    def from_cli(cls, path: Path | None, overrides: list[str], defaults: dict | None = None) -> TrainConfig:
        """`defaults`, then `--config FILE` (JSON of fields), then `--set KEY=VALUE ...` on top."""
        return cls.from_dict(
            {**(defaults or {}), **(json.loads(path.read_text()) if path else {}), **parse_overrides(overrides)}
        )


class NegativeSampler:
    """Fresh negatives every epoch, drawn from items with training interactions (items nobody
    interacted with are never pushed down, so they stay scorable from their image alone), never an
    item the user interacted with."""

    def __init__(self, data: IndexedData, mode: str, seed: int):
        counts = data.item_counts().astype(np.float64)
        self.candidates = np.flatnonzero(counts > 0)
        weights = counts[self.candidates] ** (0.75 if mode == "popularity" else 0.0)
        self.p = weights / weights.sum()
        self.num_items = data.num_items
        self.positive_codes = np.unique(data.train_users.astype(np.int64) * data.num_items + data.train_items)
        self.rng = np.random.default_rng(seed)

    def sample(self, users: np.ndarray) -> np.ndarray:
        neg = self.rng.choice(self.candidates, size=len(users), p=self.p)
        for _ in range(10):  # resample the few collisions with positives
            clash = self._clashes(users, neg)
            if not clash.any():
                return neg.astype(np.int32)
            neg[clash] = self.rng.choice(self.candidates, size=int(clash.sum()), p=self.p)
        # Users who bought most of the catalog: draw from exactly what they have not bought.
        for row in np.flatnonzero(self._clashes(users, neg)):
            own = self.positive_codes[(self.positive_codes // self.num_items) == users[row]] % self.num_items
            free = np.setdiff1d(self.candidates, own)
            if len(free) == 0:
                raise ValueError(f"user index {users[row]} interacted with every candidate item: no negative exists")
            neg[row] = self.rng.choice(free)
        return neg.astype(np.int32)

    def _clashes(self, users: np.ndarray, neg: np.ndarray) -> np.ndarray:
        return np.isin(users.astype(np.int64) * self.num_items + neg, self.positive_codes)


class VECFRecommender:
    """VECF behind the common Recommender interface (fit / score / attention)."""

    def __init__(
        self,
        config: TrainConfig,
        features: RegionFeatures,
        name: str = "vecf",
        progress: bool = True,
        item_attributes: dict[str, list[str]] | None = None,
    ):
        """`item_attributes`: the catalog's attribute columns (catalog order), read by the new-item slots."""
        self.config, self.features, self.name, self.progress = config, features, name, progress
        self.item_attributes = item_attributes
        self.new_items: NewItemScorer | None = None  # set once fitted (or loaded): the new-item slots' scorer
        self.history: list[dict] = []
        self._tables = None  # catalog item tables, cached until the weights change
        self._scorer = None  # the compiled catalog scorer
        self.repeats: RepeatTable | None = None  # set once fitted (or loaded): the repeat-purchase boost's table
        self.score_spread = 0.0  # its unit, see `_spread`

    # -- building -----------------------------------------------------------------------------
    def _build(self, num_users: int, vocab_size: int, item_counts: np.ndarray):
        import keras

        from model.vecf import VECF

        c = self.config
        keras.utils.set_random_seed(c.seed)
        regions = self.features.regions
        self.model = VECF(
            num_users=num_users,
            num_items=regions.shape[0],
            num_regions=regions.shape[1],
            channels=regions.shape[2],
            dim=c.dim,
            attention_dim=c.attention_dim,
            attention_scale=c.attention_scale,
            use_attention=c.use_attention,
            affinity=c.affinity,
            where_channels=where_channels(self.features.meta) if c.where else 0,
            feature_scale=self.features.meta["feature_scale"],
            loss=c.loss,
            beta=c.beta,
            l2=c.l2,
            vocab_size=vocab_size,
            decoder_hidden=c.decoder_hidden,
            seed=c.seed,
        )
        self.model.region_features.assign(np.asarray(regions, dtype=np.float16))
        # Item biases start at the popularity prior log(1 + purchases): the personal terms then only
        # have to explain departures from it (items nobody bought keep 0 and rank on their image).
        self.model.item_bias.assign(np.log1p(item_counts).astype(np.float32))
        optimizer = keras.optimizers.Adam(c.lr, use_ema=c.ema > 0, ema_momentum=c.ema or 0.99)
        self.model.compile(optimizer=optimizer)

    # -- training -----------------------------------------------------------------------------
    def fit(self, data: IndexedData) -> VECFRecommender:
        from offline.evaluation.rank_eval import rank_metrics

        c = self.config
        use_text = c.beta > 0 and any(data.train_reviews)
        self.vocab = Vocabulary.build(data.train_reviews, max_size=c.vocab_size) if use_text else None
        weights = recency_weights(data.train_times, c.half_life_days)  # [n], 1.0 without decay
        counts = np.bincount(data.train_items, weights=weights, minlength=data.num_items)
        self._build(data.num_users, len(self.vocab) if self.vocab else 0, counts)
        everything = {"user": data.train_users, "pos": data.train_items}
        if self.vocab:
            everything["tokens"] = self.vocab.encode(data.train_reviews, c.max_review_len)
        sampler = NegativeSampler(data, c.negatives, c.seed)
        draw = np.random.default_rng(c.seed + 1)
        seen = data.seen() if c.exclude_seen else {}
        val_users = sorted(data.validation)
        if len(val_users) > c.max_validation_users:  # a fixed sample: epochs stay comparable
            keep = np.random.default_rng(c.seed).choice(len(val_users), c.max_validation_users, replace=False)
            val_users = [val_users[k] for k in sorted(keep)]
        validation = {u: data.validation[u] for u in val_users}
        best, best_weights, waited, best_epoch = -1.0, None, 0, 0
        bar = tqdm(range(c.epochs), desc=f"train {self.name}", unit="epoch", disable=not self.progress)
        for epoch in bar:
            t0 = time.perf_counter()
            rows = np.arange(len(weights))
            if c.half_life_days > 0:  # this epoch's positives, drawn by recency
                rows = np.sort(draw.choice(len(weights), size=len(weights), p=weights / weights.sum()))
            x = {key: value[rows] for key, value in everything.items()}
            x["neg"] = sampler.sample(x["user"])
            hist = self.model.fit(x, batch_size=c.batch_size, epochs=1, shuffle=True, verbose=0)
            self._tables = None
            row = {"epoch": epoch + 1, "loss": float(hist.history["loss"][-1]), "seconds": time.perf_counter() - t0}
            self.history.append(row)
            if not validation:  # no validation split (a final fit with a fixed epoch count)
                bar.set_postfix(loss=f"{row['loss']:.4f}")
                continue
            val = rank_metrics(self, validation, seen, ks=(c.eval_k,))[f"recall@{c.eval_k}"]
            row[f"val_recall@{c.eval_k}"] = val
            recent = [r[f"val_recall@{c.eval_k}"] for r in self.history[-c.stop_window :]]
            row["val_criterion"] = criterion = float(np.mean(recent))
            bar.set_postfix(loss=f"{row['loss']:.4f}", val=f"{val:.4f}")
            if criterion > best:
                best, waited, best_epoch = criterion, 0, epoch + 1
                best_weights = [v.numpy() for v in self.model.trainable_variables]
            else:
                waited += 1
                if waited >= c.patience:
                    break
        if best_weights is not None:  # early stopping: keep the best validation epoch
            for v, w in zip(self.model.trainable_variables, best_weights):
                v.assign(w)
        self.warm = counts > 0
        self.trained_bias = np.asarray(self.model.item_bias).copy()
        self.repeats = RepeatTable.build(data.train_users, data.train_items, data.train_times, data.num_users)
        self.score_spread = self._spread()
        self.new_items = NewItemScorer.build(data, self.features, self.item_attributes, seed=c.seed)
        self.set_cold_bias(c.cold_bias_quantile)
        self.best_validation = best  # the stopping criterion at the kept epoch
        self.best_epoch = best_epoch if validation else len(self.history)
        return self

    def set_cold_bias(self, quantile: float | None) -> None:
        """Bias of the items without training interactions: 0 (None) or the `quantile` of the warm
        items' trained biases. Cheap: lets validation choose it without retraining."""
        bias = self.trained_bias.copy()
        if quantile is not None and self.warm.any() and not self.warm.all():
            bias[~self.warm] = np.quantile(bias[self.warm], quantile)
        self.model.item_bias.assign(bias.astype(np.float32))
        self.config = replace(self.config, cold_bias_quantile=quantile)
        self._tables = None

    def set_repeat_weight(self, weight: float) -> None:
        """The repeat-purchase boost's weight (in score spreads); cheap, like `set_cold_bias`."""
        self.config = replace(self.config, repeat_weight=weight)

    def set_new_item_every(self, every: int) -> None:
        """New-item slots every `every`-th place (0: none); cheap, like `set_cold_bias`."""
        check_every(every)
        self.config = replace(self.config, new_item_every=every)

    def _spread(self) -> float:
        """Standard deviation of the trained model's scores (trained item biases) over the catalog, for a
        fixed sample of users: the unit of `repeat_weight`."""
        c, n = self.config, self.model.num_users
        sample = np.sort(np.random.default_rng(c.seed).choice(n, min(n, c.max_validation_users), replace=False))
        return float(np.std(self.raw_score(sample)))

    # -- scoring ------------------------------------------------------------------------------
    def _item_tables(self):
        """(split_proj [N, R, 2A], value_proj [N, R, D+1]): the catalog tables in the form the export serves."""
        if self._tables is None:
            region_proj, value_proj = self.model.catalog_tables()
            self._tables = self.model.attention.split_regions(region_proj), value_proj
        return self._tables

    def _chunk_size(self) -> int:
        # Catalog scoring builds [B, N, R, A]; compiled it is fused, eager it is materialised:
        # keep it under ~1 GiB either way.
        m = self.model
        return max(1, int(2**28 // max(1, m.num_items * m.num_regions * max(m.attention_dim, m.dim + 1))))

    def score(self, users: np.ndarray) -> np.ndarray:
        """[U, N]: the ranking the export serves these users (once fitted or loaded), as scores whose
        descending order is that ranking: VECF's score plus the repeat-purchase boost, and with new-item
        slots on, minus each item's place (`model.ranking`)."""
        scores = self.raw_score(users)
        if self.repeats is None:  # None while training: VECF's own score
            return scores
        return self.ranked_scores(scores, users)

    def serving_tables(self, fold: bool = False):
        """(tables, layout) of `model.ranking` for the current settings, as the export builds them; `fold`:
        with the vectors new shoppers are folded in against (`model.foldin`), which only they need."""
        fold_vectors = None
        if fold:
            from model.foldin import item_vectors

            fold_vectors = np.asarray(
                item_vectors(self.model.item_embedding, self.model.item_bias, self._item_tables()[1])
            )
        return serving_tables(
            np.asarray(self.model.user_embedding),
            self.model.num_items,
            self.repeats,
            self.repeat_boost_unit(),
            self.new_items,
            self.config.new_item_every,
            fold_vectors=fold_vectors,
        )

    def ranked_scores(self, scores: np.ndarray, users: np.ndarray, batch: int = 512) -> np.ndarray:
        """VECF's scores [U, N] of `users` -> the served ranking as scores (see `score`): the user states,
        boosts and new-item slots of `model.ranking`, with the tables the export serves."""
        from model import ranking

        tables, layout = self.serving_tables()
        if not layout.slots and not layout.every:
            return np.asarray(scores, np.float32)
        out = np.empty(np.shape(scores), np.float32)
        for s in range(0, len(users), batch):
            state, _ = ranking.user_state(tables, layout, np.asarray(users[s : s + batch]))
            out[s : s + batch] = self._served(scores[s : s + batch], state, tables, layout)
        return out

    def _served(self, scores: np.ndarray, state, tables, layout) -> np.ndarray:
        """VECF's scores [b, N] and the user states -> scores whose descending order is the served ranking."""
        from model import ranking

        boosted = np.asarray(ranking.boosted_scores(np.asarray(scores, np.float32), state, layout))
        if not layout.every:
            return boosted
        n = boosted.shape[1]
        order = np.asarray(ranking.rank(tables, layout, state, boosted, n))  # [b, N] rows, best first
        place = np.empty(order.shape, np.float32)
        np.put_along_axis(place, order, -np.arange(n, dtype=np.float32)[None], axis=1)
        return place

    def shelf_rows(self, users: np.ndarray, shelf: str, k: int, batch: int = 256) -> np.ndarray:
        """[U, k] catalog rows of each user's `shelf` (`model.contract.SHELVES`), best first, as the export
        serves it with exact ranking; -1 past a short shelf's end."""
        from keras import ops

        from model import ranking

        tables, layout = self.serving_tables()
        out = []
        for s in range(0, len(users), batch):
            part = np.asarray(users[s : s + batch])
            raw = ops.convert_to_tensor(self.raw_score(part))  # [b, N]
            state, _ = ranking.user_state(tables, layout, part)

            def score(rows, raw=raw):
                return ops.take_along_axis(raw, rows, 1), ops.zeros(ops.shape(rows) + (1,))

            def ranked(for_you: bool, raw=raw, state=state):
                if for_you:
                    scores = ranking.for_you_scores(raw, state, layout)
                else:
                    scores = ranking.boosted_scores(raw, state, layout)
                rows = ranking.rank(tables, layout, state, scores, k)
                return rows, ops.take_along_axis(scores, rows, 1), None

            rows, _, _ = ranking.rank_shelf(tables, layout, state, shelf, k, score, ranked)
            out.append(np.asarray(rows, np.int64))
        return np.concatenate(out)

    def history_states(self, histories: np.ndarray, batch: int = 8, serving=None) -> np.ndarray:
        """histories [U, L] catalog rows, oldest first (-1: padding) -> user states [U, S] as the export's
        history signature folds them in (`model.foldin`), for shoppers the model was not trained on.
        `serving`: this model's `serving_tables(fold=True)`, where the caller holds them already."""
        from model.foldin import history_state

        tables, layout = serving or self.serving_tables(fold=True)
        negatives = self.warm.astype(np.float32)
        unit = self.repeat_boost_unit()
        return np.concatenate(
            [
                np.asarray(history_state(tables, layout, histories[s : s + batch], negatives, unit)[0])
                for s in range(0, len(histories), batch)
            ]
        )

    def history_score(self, histories: np.ndarray, batch: int = 16) -> np.ndarray:
        """histories [U, L] (see `history_states`) -> [U, N]: the served ranking of each history, as scores."""
        from keras import ops

        m = self.model
        serving = tables, layout = self.serving_tables(fold=True)  # built once, not once per batch
        split_proj, value_proj = self._item_tables()
        out = []
        for s in range(0, len(histories), batch):
            state = self.history_states(histories[s : s + batch], serving=serving)
            raw = m.score_catalog(
                ops.convert_to_tensor(state[:, : m.dim]), m.item_embedding, m.item_bias, split_proj, value_proj
            )[0]
            out.append(self._served(np.asarray(raw), state, tables, layout))
        return np.concatenate(out, 0)

    def repeat_boost_unit(self) -> float:
        """Score added per unit of log1p(purchase count): repeat_weight * spread."""
        return self.config.repeat_weight * self.score_spread

    def raw_score(self, users: np.ndarray) -> np.ndarray:
        """[U, N]: VECF's own score of every catalog item, without the repeat-purchase boost."""
        from keras import ops

        from model.jit import jit

        m = self.model
        split_proj, value_proj = self._item_tables()
        if self._scorer is None:  # once per model (the tables are arguments, not constants)

            def scorer(u, q, b, sp, vp):  # the export's catalog score
                return m.score_catalog(u, q, b, sp, vp)[0]

            # Compiling takes seconds: worth it only where ranking the catalog is the slow part.
            self._scorer = jit(scorer) if m.num_items * m.num_regions >= 200_000 else scorer
        users = np.asarray(users)
        step = min(self._chunk_size(), max(1, len(users)))
        out = []
        for s in range(0, len(users), step):
            chunk = users[s : s + step]
            padded = np.pad(chunk, (0, step - len(chunk)))  # one shape: the compiled function is reused
            scores = self._scorer(
                ops.take(m.user_embedding, padded, axis=0), m.item_embedding, m.item_bias, split_proj, value_proj
            )
            out.append(np.asarray(scores)[: len(chunk)])
        return np.concatenate(out, 0)

    def attention(self, users: np.ndarray, items: np.ndarray, batch: int = 4096) -> np.ndarray:
        """users [P], items [P] -> each pair's attention map [P, R]."""
        from keras import ops

        out = [
            self.model.score_pairs(
                ops.take(self.model.user_embedding, users[s : s + batch], axis=0), items[s : s + batch]
            )[1]
            for s in range(0, len(users), batch)
        ]
        return np.concatenate([np.asarray(a) for a in out]) if out else np.zeros((0, self.model.num_regions))

    def item_regions(self, items: np.ndarray) -> np.ndarray:
        """items [P] -> their region features [P, R, C] as the model reads them (scaled)."""
        return np.asarray(self.model.regions(np.asarray(items)))

    def score_regions(self, users: np.ndarray, items: np.ndarray, regions: np.ndarray, batch: int = 4096) -> np.ndarray:
        """VECF's own score [P] of each (user, item) pair with the item's features replaced by `regions`
        [P, R, C] (offline.evaluation.explanations deletes and repaints cells through it)."""
        from keras import ops

        m = self.model
        return np.concatenate(
            [
                np.asarray(
                    m.score_pairs(
                        ops.take(m.user_embedding, users[s : s + batch], axis=0),
                        items[s : s + batch],
                        ops.convert_to_tensor(regions[s : s + batch], dtype="float32"),
                    )[0]
                )
                for s in range(0, len(users), batch)
            ]
        )

    # -- run folder ---------------------------------------------------------------------------
    @classmethod
    def load(cls, run_dir: Path, features: RegionFeatures) -> VECFRecommender:
        """A trained recommender from its run folder (the features must be the run's own)."""
        run = json.loads((run_dir / "run.json").read_text())
        rec = cls(
            TrainConfig.from_dict(json.loads((run_dir / "config.json").read_text())),
            features,
            name=run["name"],
            progress=False,
        )
        rec.model = load_model(run_dir)
        if (run_dir / "repeats.npz").exists():  # runs from before the repeat-purchase boost have none
            rec.repeats = RepeatTable.load(run_dir / "repeats.npz")
            rec.score_spread = run["score_spread"]
        if (run_dir / "newitems.npz").exists():  # runs from before the new-item slots have none
            rec.new_items = NewItemScorer.load(run_dir / "newitems.npz")
        rec.warm = np.load(run_dir / "item_counts.npy") > 0  # the items negatives were drawn from
        return rec

    def save(self, run_dir: Path, data: IndexedData, features_dir: Path, dataset_dir: Path) -> Path:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(asdict(self.config), indent=2))
        (run_dir / "model.json").write_text(json.dumps(self.model.get_config(), indent=2))
        self.model.save_weights(run_dir / "model.weights.h5")
        (run_dir / "users.txt").write_text("\n".join(data.user_ids) + "\n")
        (run_dir / "items.txt").write_text("\n".join(data.item_ids) + "\n")
        np.save(run_dir / "item_counts.npy", data.item_counts())
        np.save(run_dir / "user_counts.npy", np.bincount(data.train_users, minlength=data.num_users))
        if self.vocab:
            self.vocab.save(run_dir / "vocab.json")
        (run_dir / "history.json").write_text(json.dumps(self.history, indent=2))
        self.repeats.save(run_dir / "repeats.npz")
        if self.new_items is not None:
            self.new_items.save(run_dir / "newitems.npz")
        (run_dir / "run.json").write_text(
            json.dumps(
                {
                    "name": self.name,
                    "features": str(features_dir.resolve()),
                    "dataset": str(dataset_dir.resolve()),
                    "best_validation": self.best_validation,
                    "best_epoch": getattr(self, "best_epoch", None),
                    "score_spread": self.score_spread,
                    "keras_backend": os.environ.get("KERAS_BACKEND", "tensorflow"),
                },
                indent=2,
            )
        )
        return run_dir


def load_model(run_dir: Path):
    """Rebuild the trained Keras model from the run folder alone."""
    from model.vecf import VECF

    model = VECF.from_config(json.loads((run_dir / "model.json").read_text()))
    model.load_weights(run_dir / "model.weights.h5")
    return model


def parse_overrides(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"--set expects KEY=VALUE, got {pair!r}")
        if value.lower() in ("true", "false"):  # Python-style True/False as well as JSON
            out[key] = value.lower() == "true"
            continue
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:  # a bare word such as loss=bpr
            out[key] = value
    return out
