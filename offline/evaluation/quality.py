"""Benchmark evaluation: per-user metrics from one top-K ranking per user, so the table's means,
their bootstrap intervals, the item-group splits and the recall curve all come from the same lists.

Nothing is masked by default: repeat purchases are allowed, so a user's own past items may be
recommended again (and count as hits when bought again). Single-list metrics are `offline.evaluation.ranking_metrics`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from offline.data.indexed import IndexedData
from offline.evaluation.interface import Recommender
from offline.evaluation.rank_eval import top_k
from offline.evaluation.ranking_metrics import user_metrics

Relevant = Mapping[int, set[int]] | Sequence[set[int]]


def relevant_rows(relevant: Relevant) -> list[set[int]]:
    """A dict user -> items gives one row per user in sorted user order (the order of
    `evaluate_users`); a sequence of sets is already one set per row."""
    if isinstance(relevant, Mapping):
        return [set(relevant[u]) for u in sorted(relevant)]
    return [set(r) for r in relevant]


def as_ranking(scores_or_topk: np.ndarray, depth: int) -> np.ndarray:
    """Integer arrays [U, K] are rankings (item indices, best first) and are cut to `depth`;
    float arrays [U, N] are scores, ranked with `offline.evaluation.rank_eval.top_k`."""
    arr = np.asarray(scores_or_topk)
    if np.issubdtype(arr.dtype, np.integer):
        if arr.shape[1] < depth:
            raise ValueError(
                f"the ranking holds {arr.shape[1]} items per user, K up to {depth} asked; rank deeper or lower the ks"
            )
        return arr[:, :depth]
    return top_k(arr, depth)


def _hits(ranking: np.ndarray, rows: list[set[int]]) -> np.ndarray:
    """ranking [U, K], rows: U relevant sets -> [U, K] bool, item at that rank is relevant."""
    if len(rows) != len(ranking):
        raise ValueError(f"{len(ranking)} ranked rows but {len(rows)} relevant sets")
    return np.array([[i in rel for i in ranked] for ranked, rel in zip(ranking.tolist(), rows)], dtype=bool)


def recall_curve(scores_or_topk: np.ndarray, relevant: Relevant, ks: Iterable[int] = range(1, 101)) -> np.ndarray:
    """Mean over users of Recall@K = hits in the top K / |relevant|, for every K in ks (one ranking
    per user, cut at each K). -> [len(ks)] float64."""
    ks = list(ks)
    rows = relevant_rows(relevant)
    if any(not r for r in rows):
        raise ValueError("recall is undefined for a user with no relevant items; drop such users")
    cumulative = np.cumsum(_hits(as_ranking(scores_or_topk, max(ks)), rows), axis=1)  # [U, K]
    sizes = np.array([len(r) for r in rows], dtype=np.float64)[:, None]  # [U, 1]
    return (cumulative[:, np.array(ks) - 1] / sizes).mean(0)


def group_recall(scores_or_topk: np.ndarray, relevant: Relevant, in_group: np.ndarray, k: int) -> np.ndarray:
    """Recall@k restricted to the relevant items of one item group (e.g. cold = no training purchase):
    a user's value = hits among their relevant items in the group / number of their relevant items
    in the group. The ranking itself is over the whole catalog. -> [U] float64, NaN for users with
    no relevant item in the group: the group's mean is over users with at least one (np.nanmean)."""
    rows = relevant_rows(relevant)
    in_group = np.asarray(in_group, dtype=bool)
    group_rows = [{i for i in r if in_group[i]} for r in rows]
    hits = _hits(as_ranking(scores_or_topk, k), group_rows).sum(1)  # [U]
    sizes = np.array([len(r) for r in group_rows], dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sizes > 0, hits / sizes, np.nan)


def cold_items(data: IndexedData) -> np.ndarray:
    """[N] bool: items without a training purchase (only content-based models can rank them)."""
    return data.item_counts() == 0


def bootstrap_interval(values: np.ndarray, n: int = 1000, seed: int = 0, alpha: float = 0.05) -> tuple[float, float]:
    """Percentile interval of the mean under a user-level bootstrap: resample users with
    replacement n times, take each resample's mean. NaN entries (users a metric is undefined for)
    are dropped first. -> (low, high) at coverage 1 - alpha."""
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    if len(values) == 0:
        raise ValueError("no defined values to bootstrap (every entry is NaN or the array is empty)")
    if not 0 < alpha < 1 or n < 1:
        raise ValueError(f"need alpha in (0, 1) and n >= 1, got alpha={alpha}, n={n}")
    rng = np.random.default_rng(seed)
    means = np.concatenate(
        [values[rng.integers(0, len(values), (m, len(values)))].mean(1) for m in np.diff(np.r_[0:n:100, n])]
    )  # [n], 100 resamples at a time
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def paired_difference(
    a: np.ndarray, b: np.ndarray, n: int = 2000, seed: int = 0, alpha: float = 0.05
) -> dict[str, float]:
    """Model A minus model B on the same users: a, b [U] per-user values (NaN where undefined for
    either: dropped). -> mean difference, its user-level bootstrap percentile interval, and a two-sided
    sign-flip permutation p-value (under "no difference" each user's difference is as likely negated)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired values need one entry per user on both sides, got {a.shape} and {b.shape}")
    diff = (a - b)[~(np.isnan(a) | np.isnan(b))]
    low, high = bootstrap_interval(diff, n, seed, alpha)
    rng = np.random.default_rng(seed + 1)
    signs = rng.choice((-1.0, 1.0), size=(n, len(diff)))
    flipped = np.abs((signs * diff).mean(1))
    p_value = (1 + np.sum(flipped >= abs(diff.mean()) - 1e-15)) / (n + 1)
    return {
        "difference": float(diff.mean()),
        "low": low,
        "high": high,
        "p_value": float(p_value),
        "users": int(len(diff)),
    }


PAIRED_METRICS = ("recall@50", "ndcg@10")  # the per-user values a test row keeps for paired comparisons


def paired_against(
    reference: Mapping[str, object], rows: Mapping[str, Mapping[str, object]], metrics: Sequence[str] = PAIRED_METRICS
) -> dict[str, dict[str, dict[str, float]]]:
    """`reference` minus every row of `rows` that kept per-user values (`UserEvaluation.per_user`) for the
    same users: {model: {metric: paired_difference}}. Rows scored on other users are an error: their
    difference would not be paired."""
    mine = reference["per_user"]
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name, row in rows.items():
        theirs = row.get("per_user")
        if row is reference or not theirs:
            continue
        if list(theirs["users"]) != list(mine["users"]):
            raise ValueError(f"{name} was scored on other users than the reference: no paired difference")
        out[name] = {m: paired_difference(np.asarray(mine[m]), np.asarray(theirs[m])) for m in metrics}
    return out


@dataclass(frozen=True)
class UserEvaluation:
    """One model on one split: the users (sorted), their rankings and every per-user metric."""

    users: np.ndarray  # [U] int
    ranked: np.ndarray  # [U, depth] item indices, best first
    values: dict[str, np.ndarray]  # metric name -> [U] float64 (NaN where undefined)

    def means(self) -> dict[str, float]:
        return {key: float(np.nanmean(v)) if np.any(~np.isnan(v)) else math.nan for key, v in self.values.items()}

    def summary(self, n: int = 1000, seed: int = 0, alpha: float = 0.05) -> dict[str, float]:
        """{metric: mean, metric_low: ..., metric_high: ..., metric_users: users it is defined for}."""
        out: dict[str, float] = {}
        for key, v in self.values.items():
            defined = int(np.sum(~np.isnan(v)))
            out[key] = float(np.nanmean(v)) if defined else math.nan
            interval = bootstrap_interval(v, n, seed, alpha) if defined else (math.nan, math.nan)
            out[f"{key}_low"], out[f"{key}_high"] = interval
            out[f"{key}_users"] = defined
        return out

    def per_user(self, metrics: Sequence[str] = PAIRED_METRICS) -> dict[str, list]:
        """The users and their values of `metrics`, as plain lists (JSON), for `paired_against`."""
        return {"users": self.users.tolist(), **{m: self.values[m].tolist() for m in metrics}}


def evaluate_users(
    model: Recommender,
    relevant: Mapping[int, set[int]],
    ks: Sequence[int] = (10, 50),
    groups: Mapping[str, np.ndarray] | None = None,
    mask: Mapping[int, set[int]] | None = None,
    depth: int = 100,
    batch: int = 256,
) -> UserEvaluation:
    """Rank the whole catalog for every user in `relevant` and score each ranking: hr, precision,
    recall, f1, ndcg at every k (`offline.evaluation.ranking_metrics`), and `recall_<group>@k` for each item group
    (see `group_recall`). `mask` (optional, off by default: repeat purchases are allowed) removes
    those items from that user's ranking. The rankings kept are `depth` long, for `recall_curve`."""
    users = np.array(sorted(relevant), dtype=np.int64)
    if len(users) == 0:
        raise ValueError("no users to evaluate: the evaluated split is empty")
    depth = max(depth, *ks)
    ranked = []
    for s in range(0, len(users), batch):
        chunk = users[s : s + batch]
        scores = np.array(model.score(chunk), dtype=np.float32, copy=True)  # [b, N]
        for row, u in enumerate(chunk.tolist()):
            scores[row, list((mask or {}).get(u, ()))] = -np.inf
        ranked.append(top_k(scores, depth))
    ranking = np.concatenate(ranked)  # [U, depth]
    rows = relevant_rows(relevant)
    per_user = [user_metrics(r, rel, ks) for r, rel in zip(ranking.tolist(), rows)]
    values = {key: np.array([m[key] for m in per_user], dtype=np.float64) for key in per_user[0]}
    for name, in_group in (groups or {}).items():
        for k in ks:
            values[f"recall_{name}@{k}"] = group_recall(ranking, rows, in_group, k)
    return UserEvaluation(users, ranking, values)


def plot_recall_curves(
    curves: Mapping[str, np.ndarray], path: Path | str, ks: Sequence[int] | None = None, title: str = "Recall@K"
) -> Path:
    """One line per model, Recall@K against K (ks defaults to 1..len(curve)); written as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.8))
    colours = plt.get_cmap("tab20").colors  # the default cycle repeats after 10 lines
    for n, (name, curve) in enumerate(curves.items()):
        curve = np.asarray(curve)
        ax.plot(
            np.arange(1, len(curve) + 1) if ks is None else ks,
            curve,
            label=name,
            color=colours[n % len(colours)],
            linestyle=("-", "--", ":")[n // len(colours) % 3],
            linewidth=2.4 if name == "vecf" else 1.4,
        )  # our model stands out
    ax.set(xlabel="K", ylabel="Recall@K", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight", format="png")
    plt.close(fig)
    return path


def markdown_table(
    rows: Sequence[Mapping[str, object]],
    columns: Sequence[str] | None = None,
    digits: int = 4,
    intervals: bool = False,
    headers: Sequence[str] | None = None,
) -> str:
    """A GitHub markdown table, one row per dict; columns default to the first row's keys, and head the
    table unless `headers` names them otherwise. Floats get `digits` decimals; with intervals, a column
    `m` shows "mean [m_low, m_high]" where those keys exist. The one writer of markdown tables."""
    columns = list(columns or rows[0].keys())
    headers = list(headers or columns)
    if len(headers) != len(columns):
        raise ValueError(f"{len(headers)} headers for {len(columns)} columns")

    def cell(row: Mapping[str, object], col: str) -> str:
        value = row.get(col, "")
        if not isinstance(value, float):
            return str(value)
        text = f"{value:.{digits}f}"
        if intervals and f"{col}_low" in row and f"{col}_high" in row:
            text += f" [{row[f'{col}_low']:.{digits}f}, {row[f'{col}_high']:.{digits}f}]"
        return text

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(row, col) for col in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def paired_table(paired: Mapping[str, Mapping[str, Mapping[str, float]]], digits: int = 4) -> str:
    """{comparison: {metric: paired_difference}} -> a markdown table, one row per comparison: each metric's
    mean difference, its 95% paired bootstrap interval and the permutation p-value."""
    metrics = list(dict.fromkeys(m for by_metric in paired.values() for m in by_metric))

    def cell(d: Mapping[str, float] | None) -> str:
        if not d:
            return ""
        return f"{d['difference']:+.{digits}f} [{d['low']:+.{digits}f}, {d['high']:+.{digits}f}], p {d['p_value']:.3f}"

    rows = [
        {
            "comparison": name,
            **{m: cell(by_metric.get(m)) for m in metrics},
            "users": next(iter(by_metric.values()))["users"] if by_metric else 0,
        }
        for name, by_metric in paired.items()
    ]
    return markdown_table(rows, ["comparison", *metrics, "users"])
