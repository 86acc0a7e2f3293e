"""Explanation metrics that need no labels: how concentrated, how personal and how faithful a model's
attention maps are, and how much of them lies on the garment.

Computed on a fixed sample of (customer, recommended item) pairs (`sample_pairs`: the most active
customers and their top recommendations), for the model's own maps and for reference maps scored
against the same model (`REFERENCES`):

- concentration: normalised entropy (1 = uniform) and the mass of the top `TOP` cells;
- personalisation: the Jensen-Shannon divergence (base 2) between two customers' maps of one item (and
  its square root, the JS distance), and
  the own-map deletion win rate: deleting the `TOP` cells of the customer's own map lowers that
  customer's score more than deleting the `TOP` cells another customer's map ranks highest (ties
  count half; chance is 0.5);
- faithfulness, region level: deletion and insertion curves (cells removed from, or restored into,
  the item's features in the map's order, the score re-computed by the model each step), their areas
  against the same curves in a random order, and the drop from deleting the top `TOP` cells over the
  drop from deleting `TOP` random cells;
- faithfulness, image level (a sample of photos): the same drop with the cells painted in the photo's
  background colour and the features extracted again by the backbone;
- plausibility: attention mass on the garment (a foreground mask of the photo) over the garment's
  share of the grid, beside the centre prior's figure.

Deleting a cell sets its feature vector to 0: the catalog's channel mean, since stored features are
standardised (offline.features.regions.standardize). Scores come from `Scorer`, the model's own forward pass
(model.vecf.VECF.score_pairs), so what is measured is what the model computes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from scipy.special import rel_entr

from offline.data.photos import border_colour, foreground_mask, load_square

TOP = 5  # cells a shopper's eye takes in at once on a 7x7 grid; the figures use 5 too
CURVE_STEPS = 12  # points of a deletion or insertion curve (cells 0 .. R, spaced evenly)
REFERENCES = ("item_mean", "centre_prior")


class Scorer(Protocol):
    """What the metrics need of a model: its maps, its region features and its score of modified ones."""

    def attention(self, users: np.ndarray, items: np.ndarray) -> np.ndarray: ...  # [P, R]

    def item_regions(self, items: np.ndarray) -> np.ndarray: ...  # [P, R, C], as the model sees them

    def score_regions(self, users: np.ndarray, items: np.ndarray, regions: np.ndarray) -> np.ndarray: ...  # [P]


# ---- concentration and personalisation -------------------------------------------------------
def normalised_entropy(maps: np.ndarray) -> np.ndarray:
    """maps [P, R] (rows sum to 1) -> [P] in [0, 1]: entropy over log R; 1 for a uniform map."""
    p = np.clip(maps, 1e-12, None)
    return -(maps * np.log(p)).sum(1) / np.log(maps.shape[1])


def top_mass(maps: np.ndarray, k: int = TOP) -> np.ndarray:
    """[P, R] -> [P]: the mass of each map's k largest cells (k / R for a uniform map)."""
    return -np.sort(-maps, axis=1)[:, :k].sum(1)


def js_divergence(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[P, R] x [P, R] -> [P]: Jensen-Shannon divergence, base 2 (0 identical, 1 disjoint); its square
    root is the JS distance. From scipy's relative entropy rather than its `jensenshannon`, whose square
    root turns round-off below 0 (two near-equal maps) into NaN."""
    middle = (a + b) / 2
    divergence = (rel_entr(a, middle).sum(1) + rel_entr(b, middle).sum(1)) / (2 * np.log(2))
    return np.clip(divergence, 0.0, 1.0)


def top_cells(maps: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """[P, R] -> [P, k] cell indices, largest first; ties (a uniform map) broken at random."""
    jitter = rng.random(maps.shape) * 1e-9 * (maps.max() + 1e-12)
    return np.argsort(-(maps + jitter), axis=1, kind="stable")[:, :k]


def win_rate(own_drop: np.ndarray, other_drop: np.ndarray) -> float:
    """How often the own map's deletion lowers the score more than the other map's (ties: half)."""
    return float(np.mean((own_drop > other_drop) + 0.5 * (own_drop == other_drop)))


# ---- faithfulness -----------------------------------------------------------------------------
def curve_points(regions: int, steps: int = CURVE_STEPS) -> np.ndarray:
    """The cell counts a curve is read at: 0 .. R, `steps` of them (fewer on a small grid)."""
    return np.unique(np.round(np.linspace(0, regions, min(steps, regions + 1))).astype(int))


def masked(regions: np.ndarray, order: np.ndarray, count: int, insertion: bool) -> np.ndarray:
    """regions [P, R, C]: deletion zeroes the first `count` cells of each row's `order` [P, R]; insertion
    keeps only them."""
    keep = np.ones(regions.shape[:2], dtype=bool)
    rows = np.arange(len(order))[:, None]
    keep[rows, order[:, :count]] = False
    if insertion:
        keep = ~keep
    return regions * keep[..., None]


def region_curve(
    model: Scorer,
    users: np.ndarray,
    items: np.ndarray,
    regions: np.ndarray,
    order: np.ndarray,
    insertion: bool,
    points: np.ndarray,
) -> np.ndarray:
    """-> [P, len(points)]: the model's score with the first `points[j]` cells of `order` deleted (or
    inserted into an all-deleted item)."""
    return np.stack(
        [model.score_regions(users, items, masked(regions, order, int(n), insertion)) for n in points], axis=1
    )


def normalised_area(curves: np.ndarray, insertion: bool = False) -> np.ndarray:
    """[P, S] scores along a curve -> [P]: the mean of the curve rescaled so that the full item is 1 and
    the fully deleted one 0 (a deletion curve runs from full to empty, an insertion curve the other way),
    trapezoid rule over the evenly spaced points. Pairs whose two ends tie carry no information: NaN."""
    full, empty = (curves[:, -1:], curves[:, :1]) if insertion else (curves[:, :1], curves[:, -1:])
    span = full - empty
    with np.errstate(invalid="ignore", divide="ignore"):
        scaled = np.where(np.abs(span) > 1e-9, (curves - empty) / span, np.nan)
    return np.trapezoid(scaled, dx=1.0 / (curves.shape[1] - 1), axis=1)


def drop_ratio(top_drop: np.ndarray, random_drop: np.ndarray) -> float:
    """Mean score drop of deleting the top cells over the mean drop of deleting random ones."""
    denominator = float(np.mean(random_drop))
    return float(np.mean(top_drop)) / denominator if abs(denominator) > 1e-12 else float("nan")


# ---- plausibility -----------------------------------------------------------------------------
def cell_shares(mask: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """bool [S, S] -> [rows * cols]: the share of each grid cell that the mask covers."""
    s = mask.shape[0]
    r_edges, c_edges = np.linspace(0, s, rows + 1).astype(int), np.linspace(0, s, cols + 1).astype(int)
    return np.array(
        [
            mask[r_edges[r] : r_edges[r + 1], c_edges[c] : c_edges[c + 1]].mean()
            for r in range(rows)
            for c in range(cols)
        ]
    )


def garment_ratio(maps: np.ndarray, shares: np.ndarray) -> float:
    """maps [P, R], shares [P, R] -> mean attention mass on the garment over the garment's mean area share
    (1.0: attention no likelier on the garment than anywhere)."""
    return float((maps * shares).sum(1).mean() / max(shares.mean(), 1e-12))


def centre_prior(rows: int, cols: int, sigma: float = 0.25) -> np.ndarray:
    """[rows * cols]: an isotropic Gaussian over the grid's centre, sigma in grid widths; sums to 1."""
    r = (np.arange(rows) + 0.5) / rows - 0.5
    c = (np.arange(cols) + 0.5) / cols - 0.5
    weights = np.exp(-(r[:, None] ** 2 + c[None, :] ** 2) / (2 * sigma**2)).reshape(-1)
    return weights / weights.sum()


# ---- the sample and the report ---------------------------------------------------------------
@dataclass(frozen=True)
class PairSample:
    users: np.ndarray  # [P] customer rows
    items: np.ndarray  # [P] item rows
    others: np.ndarray  # [P] another sampled customer, whose map of the same item is compared


def sample_pairs(score: Callable[[np.ndarray], np.ndarray], customers: np.ndarray, k: int, seed: int = 0) -> PairSample:
    """Each customer's top-k items by `score` ([U] -> [U, N]), each paired with another of `customers`."""
    customers = np.asarray(customers, dtype=np.int64)
    if len(customers) < 2:
        raise ValueError("explanation metrics need at least 2 customers (maps are compared between them)")
    ranked = np.argsort(-np.asarray(score(customers)), axis=1, kind="stable")[:, :k]  # [U, k]
    users = np.repeat(customers, ranked.shape[1])
    rng = np.random.default_rng(seed)
    shift = rng.integers(1, len(customers), size=len(users))  # never the customer itself
    position = np.repeat(np.arange(len(customers)), ranked.shape[1])
    return PairSample(users, ranked.reshape(-1), customers[(position + shift) % len(customers)])


def most_active(train_users: np.ndarray, count: int) -> np.ndarray:
    """The `count` customers with the most training interactions (ties: lower row first)."""
    counts = np.bincount(train_users)
    return np.sort(np.argsort(-counts, kind="stable")[:count])


def item_mean_maps(model: Scorer, items: np.ndarray, customers: np.ndarray, batch: int = 4096) -> np.ndarray:
    """[P, R]: each item's map averaged over `customers`: the user-independent reference map."""
    unique, inverse = np.unique(items, return_inverse=True)
    total = np.zeros((len(unique), model.attention(customers[:1], unique[:1]).shape[1]))
    for c in customers:
        for s in range(0, len(unique), batch):
            chunk = unique[s : s + batch]
            total[s : s + len(chunk)] += model.attention(np.full(len(chunk), c), chunk)
    return (total / len(customers))[inverse]


def map_metrics(
    model: Scorer,
    sample: PairSample,
    maps: np.ndarray,
    other_maps: np.ndarray | None,
    shares: np.ndarray | None,
    curve_pairs: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """Every region-level metric of one kind of map [P, R] on `sample`, scored by `model`. `other_maps`:
    the other customer's map of each pair (None for a user-independent map: JS distance 0, no win
    rate). `shares` [P, R]: each item's garment cell shares, or None (no plausibility)."""
    rng = np.random.default_rng(seed)
    out = {"normalised_entropy": float(normalised_entropy(maps).mean()), "top5_mass": float(top_mass(maps).mean())}
    n = min(curve_pairs, len(maps))
    pick = np.sort(rng.choice(len(maps), n, replace=False))
    users, items = sample.users[pick], sample.items[pick]
    regions = model.item_regions(items)
    base = model.score_regions(users, items, regions)
    own = top_cells(maps[pick], maps.shape[1], rng)
    random_order = np.argsort(rng.random(own.shape), axis=1)
    top_drop = base - model.score_regions(users, items, masked(regions, own, TOP, insertion=False))
    random_drop = base - model.score_regions(users, items, masked(regions, random_order, TOP, insertion=False))
    out["deletion_top5_over_random"] = drop_ratio(top_drop, random_drop)
    points = curve_points(maps.shape[1])
    for name, insertion in (("deletion", False), ("insertion", True)):
        out[f"{name}_area"] = float(
            np.nanmean(normalised_area(region_curve(model, users, items, regions, own, insertion, points), insertion))
        )
        out[f"{name}_area_random"] = float(
            np.nanmean(
                normalised_area(region_curve(model, users, items, regions, random_order, insertion, points), insertion)
            )
        )
    if other_maps is not None:
        divergence = js_divergence(maps, other_maps)
        out["js_between_customers"] = float(divergence.mean())
        out["js_distance_between_customers"] = float(np.sqrt(divergence).mean())
        other = top_cells(other_maps[pick], TOP, rng)
        other_drop = base - model.score_regions(users, items, masked(regions, other, TOP, insertion=False))
        out["own_deletion_win_rate"] = win_rate(top_drop, other_drop)
    else:
        out["js_between_customers"] = out["js_distance_between_customers"] = 0.0
    if shares is not None:
        out["garment_ratio"] = garment_ratio(maps, shares)
    return out


class Photos:
    """The sample's photos as the backbone sees them, and their features extracted again after painting."""

    def __init__(self, image_path: Callable[[int], Path], features_dir: Path, meta: dict):
        self.image_path, self.features_dir, self.meta = image_path, Path(features_dir), meta
        self._net = None

    def square(self, item: int) -> np.ndarray:

        return load_square(self.image_path(item), self.meta["input_size"])[0]

    def features(self, squares: np.ndarray) -> np.ndarray:
        """uint8 [B, S, S, 3] -> standardised, scaled region features [B, R, C] float32."""
        import keras

        from offline.features.regions import standardize

        if self._net is None:
            self._net = keras.saving.load_model(self.features_dir / "backbone.keras", compile=False)
        raw = np.asarray(self._net.predict_on_batch(squares.astype(np.float32)))
        raw = raw.reshape(len(squares), -1, raw.shape[-1])
        mean, std = np.asarray(self.meta["channel_mean"]), np.asarray(self.meta["channel_std"])
        return standardize(raw, mean, std).astype(np.float32) * self.meta["feature_scale"]


def paint(square: np.ndarray, cells: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """A copy of `square` with grid `cells` painted in its background (border) colour."""
    out = square.copy()
    s = square.shape[0]
    r_edges, c_edges = np.linspace(0, s, rows + 1).astype(int), np.linspace(0, s, cols + 1).astype(int)
    colour = border_colour(square).round().astype(np.uint8)
    for cell in np.asarray(cells).tolist():
        r, c = divmod(cell, cols)
        out[r_edges[r] : r_edges[r + 1], c_edges[c] : c_edges[c + 1]] = colour
    return out


def image_metrics(
    model: Scorer,
    photos: Photos,
    users: np.ndarray,
    items: np.ndarray,
    maps: np.ndarray,
    rows: int,
    cols: int,
    seed: int = 0,
) -> dict[str, float]:
    """Image-level faithfulness on the pairs given: the score drop from painting the map's top cells
    over the drop from painting random cells, and the deletion curves' areas for both orders."""
    rng = np.random.default_rng(seed)
    squares = np.stack([photos.square(int(i)) for i in items])
    own = top_cells(maps, maps.shape[1], rng)
    random_order = np.argsort(rng.random(own.shape), axis=1)
    points = curve_points(maps.shape[1], steps=6)
    curves = {}
    for name, order in (("own", own), ("random", random_order)):
        scores = []
        for n in points:
            painted = np.stack([paint(sq, order[p, :n], rows, cols) for p, sq in enumerate(squares)])
            scores.append(model.score_regions(users, items, photos.features(painted)))
        curves[name] = np.stack(scores, axis=1)  # [P, S]
    top = np.stack([paint(sq, own[p, :TOP], rows, cols) for p, sq in enumerate(squares)])
    rand = np.stack([paint(sq, random_order[p, :TOP], rows, cols) for p, sq in enumerate(squares)])
    base = curves["own"][:, 0]
    top_drop = base - model.score_regions(users, items, photos.features(top))
    random_drop = base - model.score_regions(users, items, photos.features(rand))
    return {
        "image_deletion_top5_over_random": drop_ratio(top_drop, random_drop),
        "image_deletion_area": float(np.nanmean(normalised_area(curves["own"]))),
        "image_deletion_area_random": float(np.nanmean(normalised_area(curves["random"]))),
        "image_pairs": int(len(items)),
    }


def subset(sample: PairSample, keep: np.ndarray) -> PairSample:
    """The pairs of `sample` where `keep` [P] is true."""
    return PairSample(sample.users[keep], sample.items[keep], sample.others[keep])


NEW_ROWS = {" (new items)": True, " (bought items)": False}  # suffix of the first model's row -> new or not


def explanation_report(
    models: dict[str, Scorer],
    sample: PairSample,
    grid: tuple[int, int],
    photos: Photos | None = None,
    image_pairs: int = 48,
    seed: int = 0,
    mean_customers: int = 32,
    new: np.ndarray | None = None,
) -> dict[str, dict[str, float]]:
    """Rows for each model's own maps, and for the reference maps scored by the first model (VECF):
    its item-mean map over `mean_customers` of the sample's customers, and the centre prior.
    `new` [N] bool (items without a training purchase): the first model's maps are also measured on the
    sample's pairs of new items and of bought ones apart, where the sample holds at least 2 of each (a
    new item is scored from its photo alone, so its map may say more or less than a bought one's)."""
    rows, cols = grid
    first = next(iter(models.values()))
    shares = None
    if photos is not None:
        unique, inverse = np.unique(sample.items, return_inverse=True)
        shares = np.stack([cell_shares(foreground_mask(photos.square(int(i))), rows, cols) for i in unique])[inverse]
    rng = np.random.default_rng(seed)
    image_pick = np.sort(rng.choice(len(sample.users), min(image_pairs, len(sample.users)), replace=False))
    report: dict[str, dict[str, float]] = {}
    customers = np.unique(sample.users)
    mean_from = np.sort(rng.choice(customers, min(mean_customers, len(customers)), replace=False))
    references = {
        "item_mean": item_mean_maps(first, sample.items, mean_from),
        "centre_prior": np.tile(centre_prior(rows, cols), (len(sample.users), 1)),
    }
    kinds = [
        (name, m, m.attention(sample.users, sample.items), m.attention(sample.others, sample.items))
        for name, m in models.items()
    ]
    kinds += [(name, first, maps, None) for name, maps in references.items()]
    for name, model, maps, other_maps in kinds:
        row = map_metrics(model, sample, maps, other_maps, shares, seed=seed)
        if photos is not None:
            row |= image_metrics(
                model,
                photos,
                sample.users[image_pick],
                sample.items[image_pick],
                maps[image_pick],
                rows,
                cols,
                seed=seed,
            )
        report[name] = row | {"pairs": int(len(sample.users))}
    fresh = np.zeros(len(sample.users), bool) if new is None else np.asarray(new)[sample.items]
    if min(fresh.sum(), (~fresh).sum()) >= 2:  # one kind alone would repeat the model's own row
        name, model, maps, other_maps = kinds[0]
        picked = np.zeros(len(sample.users), bool)
        picked[image_pick] = True
        for suffix, is_new in NEW_ROWS.items():
            keep = fresh == is_new
            row = map_metrics(
                model,
                subset(sample, keep),
                maps[keep],
                other_maps[keep],
                None if shares is None else shares[keep],
                seed=seed,
            )
            image = keep & picked
            if photos is not None and image.sum() >= 2:
                row |= image_metrics(
                    model, photos, sample.users[image], sample.items[image], maps[image], rows, cols, seed=seed
                )
            report[name + suffix] = row | {"pairs": int(keep.sum())}
    if shares is not None:
        report["garment_area_share"] = {"mean": float(shares.mean())}
    return report


EXPLANATION_COLUMNS = (
    "normalised_entropy",
    "top5_mass",
    "js_between_customers",
    "js_distance_between_customers",
    "own_deletion_win_rate",
    "deletion_top5_over_random",
    "deletion_area",
    "deletion_area_random",
    "insertion_area",
    "insertion_area_random",
    "image_deletion_top5_over_random",
    "image_deletion_area",
    "image_deletion_area_random",
    "garment_ratio",
)


def explanation_markdown(report: dict[str, dict[str, float]]) -> str:
    """The report as a Markdown table, one row per kind of map, with a line on how to read it."""
    from offline.evaluation.quality import markdown_table

    rows = [{"map": name, **values} for name, values in report.items() if name != "garment_area_share"]
    columns = ["map", *[c for c in EXPLANATION_COLUMNS if any(c in r for r in rows)]]
    share = report.get("garment_area_share", {}).get("mean")
    lines = [
        markdown_table(rows, columns),
        "",
        "Entropy: 1 is uniform. JS: base-2 Jensen-Shannon divergence between two customers' maps of one "
        "item (its square root, the JS distance, beside). "
        "Win rate: deleting the own map's top 5 cells lowers the score more than another customer's top 5 "
        "(chance 0.5). Deletion area: lower is more faithful; insertion area: higher. Reference maps are "
        "scored with VECF.",
    ]
    if any(name.endswith(tuple(NEW_ROWS)) for name in report):
        lines.append(
            "Rows marked (new items) and (bought items): the first model's maps on the sample's pairs whose "
            "item had no purchase before the window, scored from its photo alone, and on the others."
        )
    if share is not None:
        lines.append(f"Garment ratio: attention mass on the garment over its area share ({share:.3f} of the grid).")
    return "\n".join(lines)


SAMPLE_CUSTOMERS = 200  # the most active customers of the training data ...
SAMPLE_TOP = 20  # ... and each one's top recommendations: the pairs every map is measured on


SHEET = 6  # the contact sheet: this many customers x this many items


def evaluate_explanations(
    models: dict,
    train_users: np.ndarray,
    image_path: Callable[[int], Path],
    features_dir: Path,
    features,
    customers: int = SAMPLE_CUSTOMERS,
    k: int = SAMPLE_TOP,
    seed: int = 0,
    sheet: Path | None = None,
    names: Sequence[str] | None = None,
    new: np.ndarray | None = None,
) -> dict[str, dict[str, float]]:
    """The report for fitted recommenders (`models`, VECF first: it ranks the sample and scores the
    reference maps) on the `customers` most active of `train_users` and their top `k` by VECF's ranking.
    `image_path(row)`: the photo of feature-table row `row`; the features' own backbone re-extracts.
    `sheet`: where to write the contact sheet of VECF's maps (`write_sheet`); `names`: the user ids;
    `new` [N] bool: the items without a training purchase (`explanation_report`)."""
    first = next(iter(models.values()))
    sample = sample_pairs(first.score, most_active(train_users, customers), k, seed)
    photos = Photos(image_path, features_dir, features.meta)
    if sheet is not None:
        write_sheet(first, sample, image_path, features, sheet, names)
    return explanation_report(models, sample, features.grid, photos=photos, seed=seed, new=new)


def write_sheet(
    model,
    sample: PairSample,
    image_path: Callable[[int], Path],
    features,
    path: Path,
    names: Sequence[str] | None = None,
) -> Path:
    """explanations.png: the sample's SHEET most active customers (rows) x the SHEET items recommended to
    most of them (columns), each map drawn as the gateway draws it (offline.evaluation.contact_sheet)."""
    from offline.evaluation.contact_sheet import explained_maps, write_contact_sheet

    customers = np.unique(sample.users)[:SHEET]
    items, counts = np.unique(sample.items, return_counts=True)
    items = items[np.argsort(-counts, kind="stable")[:SHEET]]
    maps, shares = explained_maps(model.model, customers, items)
    labels = [names[u] if names is not None else str(u) for u in customers]
    return write_contact_sheet(
        path,
        [image_path(int(i)) for i in items],
        [tuple(features.boxes[i]) for i in items],
        maps,
        features.grid,
        labels,
        [features.item_ids[i] for i in items],
        visual_shares=shares,
    )


def explanation_section(report: dict | None) -> list[str]:
    """metrics.md's lines for these metrics, or none where they were not measured."""
    if not report:
        return []
    return [
        "",
        f"## Explanations: the {SAMPLE_CUSTOMERS} most active customers' top {SAMPLE_TOP}",
        "",
        explanation_markdown(report),
    ]
