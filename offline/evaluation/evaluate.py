"""Evaluation: top-K ranking over the whole catalog and, where the data knows the truth (synthetic
catalogs), explanation quality of the attention maps against the planted parts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from offline.data.indexed import IndexedData
from offline.evaluation.interface import Explainer

KS = (5, 10, 20)


def explanation_metrics(
    model: Explainer, users: np.ndarray, items: np.ndarray, masks: np.ndarray, batch: int = 512
) -> dict[str, float]:
    """masks [P, R] bool: the ground-truth cells of each (user, item) pair.

    attention_mass_in_mask: mean attention weight inside the mask; pointing_game: how often the
    top-attended cell is inside it. Uniform attention gets |mask| / R on both (its top cell is a
    random one), reported beside them as the baseline."""
    if len(users) == 0:
        raise ValueError("no ground-truth pairs to evaluate explanations on")
    alphas = np.concatenate(
        [model.attention(users[s : s + batch], items[s : s + batch]) for s in range(0, len(users), batch)]
    )  # [P, R]
    mass = (alphas * masks).sum(1)
    # Cells tied for the top weight share the "point" (uniform attention scores |mask| / R, not 0).
    top = np.isclose(alphas, alphas.max(1, keepdims=True), rtol=1e-6, atol=0)
    pointing = (top & masks).sum(1) / top.sum(1)
    uniform = masks.mean(1)
    return {
        "attention_mass_in_mask": float(mass.mean()),
        "pointing_game": float(pointing.mean()),
        "attention_mass_in_mask_uniform": float(uniform.mean()),
        "pointing_game_uniform": float(uniform.mean()),
        "pairs": int(len(users)),
    }


# Two readings of "the cells a part covers". TOUCH: any cell the part reaches, the grid analogue of
# the pointing game's tolerance (Zhang et al. count a hit within 15 px of the object); a part whose
# edge just crosses into a cell shows there, and CNN cells at an edge often carry its clearest
# signal. CORE: cells at least 20% covered. Both are reported, each beside its uniform baseline.
MASK_COVERAGE = {"": 1e-6, "_core": 0.2}


def explanation_pairs(
    truth: dict[tuple[str, str], tuple[str, ...]], data: IndexedData
) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """Test pairs whose item carries one of the user's planted (part, attribute) preferences."""
    users, items, pairs = [], [], []
    for u, relevant in sorted(data.test.items()):
        for i in sorted(relevant):
            key = (data.user_ids[u], data.item_ids[i])
            if key in truth:
                users.append(u), items.append(i), pairs.append(key)
    return np.array(users, dtype=np.int32), np.array(items, dtype=np.int32), pairs


def suffixed(metrics: dict, suffix: str) -> dict:
    """Name metrics of one mask variant: pointing_game -> pointing_game_core, x_uniform -> x_core_uniform."""
    out = {}
    for key, value in metrics.items():
        if key == "pairs":
            out[key] = value
        elif key.endswith("_uniform"):
            out[key.removesuffix("_uniform") + suffix + "_uniform"] = value
        else:
            out[key + suffix] = value
    return out


@dataclass(frozen=True)
class ExplanationTruth:
    """The test pairs with planted ground truth and their masks, built once, used for every model."""

    users: np.ndarray  # [P]
    items: np.ndarray  # [P]
    masks: dict[str, np.ndarray]  # metric-name suffix -> [P, R] bool

    @classmethod
    def load(cls, dataset_dir: Path, data: IndexedData, features) -> ExplanationTruth | None:
        """None where the data has no planted ground truth. Each pair's part is rasterised once and
        read at every coverage of MASK_COVERAGE."""
        from offline.data.dataset import GROUND_TRUTH_FILE
        from offline.data.ground_truth import GarmentMasks, grid_mask, load_ground_truth

        if not (Path(dataset_dir) / GROUND_TRUTH_FILE).exists():
            return None
        truth = load_ground_truth(dataset_dir)
        users, items, pairs = explanation_pairs(truth, data)
        garments = GarmentMasks(dataset_dir)
        rows, cols = features.grid
        masks = {suffix: np.zeros((len(pairs), rows * cols), dtype=bool) for suffix in MASK_COVERAGE}
        for p, (user, item) in enumerate(pairs):
            pixel = garments.pixel_mask(item, truth[(user, item)])
            box = tuple(float(v) for v in features.boxes[items[p]])  # items are feature-table rows
            for suffix, coverage in MASK_COVERAGE.items():
                masks[suffix][p] = grid_mask(pixel, box, rows, cols, min_coverage=coverage).reshape(-1)
        return cls(users, items, masks)

    def evaluate(self, model: Explainer) -> dict[str, float]:
        out: dict[str, float] = {}
        for suffix, mask in self.masks.items():
            out |= suffixed(explanation_metrics(model, self.users, self.items, mask), suffix)
        return out
