"""How much an attention map explains a score, so the shopper is told only what is true.

VECF's score splits into a collaborative part and a visual one (model/vecf.py):

    score(u, i) = [p_u . q_i + b_i]  +  sum_l alpha_l(u, i) * v_l(u, i),   v_l = [p_u, 1] . W_v f_i^l

Region l's contribution is alpha_l * v_l; the visual score is their sum. From them:

- concentration: 1 - entropy(alpha) / log R, 0 for a uniform map, 1 for all weight on one region;
- visual share: |visual| / (|collaborative| + |visual|), how much of the score the photo carries;
- region shares: contribution_l / sum_l |contribution_l|, each region's part of the visual score
  (signed: a region can pull the score down; their absolute values sum to 1).

Each function takes the array namespace `xp` it runs in: `keras.ops` inside the model (the export's
attention signature, `VECF.explain_candidates`), `numpy` where TensorFlow is not loaded (the gateway
reading an older export, `offline.evaluation.contact_sheet`), so every number has one formula. Nothing here
imports keras: the gateway imports this module without TensorFlow.
"""

from __future__ import annotations

import math
from typing import Any

# A map is called informative only at or above both; the gateway's EXPLAIN_* settings default to them.
MIN_CONCENTRATION = 0.1  # below: normalised entropy above 0.9, the map is near uniform
MIN_VISUAL_SHARE = 0.05  # below: the photo carries under 5% of the score, whatever the map shows

NEAR_UNIFORM = "near_uniform"
LITTLE_VISUAL_SCORE = "little_visual_score"
REASON_LABELS = {NEAR_UNIFORM: "no clear focus", LITTLE_VISUAL_SCORE: "the photo barely counts"}

_TINY = 1e-12  # keeps log(0) and 0 / 0 out of the formulas


def concentration(alpha: Any, xp: Any) -> Any:
    """alpha [..., R] (each row sums to 1) -> [...] in 0..1: 1 - entropy / log R."""
    regions = alpha.shape[-1]
    if regions is None:
        raise ValueError("concentration needs a static number of regions (the last axis)")
    entropy = -xp.sum(alpha * xp.log(xp.maximum(alpha, _TINY)), axis=-1)  # [...]
    # a uniform map's entropy is log R up to rounding: clip so it reads 0, never slightly negative
    return xp.maximum(1.0 - entropy / math.log(max(regions, 2)), 0.0)


def visual_share(collaborative: Any, visual: Any, xp: Any) -> Any:
    """collaborative [...] and visual [...] parts of scores -> [...] in 0..1 (0 when both are 0)."""
    return xp.abs(visual) / xp.maximum(xp.abs(collaborative) + xp.abs(visual), _TINY)


def region_shares(contributions: Any, xp: Any) -> Any:
    """contributions [..., R] -> [..., R]: each over the sum of their absolute values (all 0 when all are)."""
    return contributions / xp.maximum(xp.sum(xp.abs(contributions), axis=-1, keepdims=True), _TINY)


def uninformative_reason(
    concentration: float,
    visual_share: float | None,
    min_concentration: float = MIN_CONCENTRATION,
    min_visual_share: float = MIN_VISUAL_SHARE,
) -> str | None:
    """Why a map should not be shown as an explanation (NEAR_UNIFORM, LITTLE_VISUAL_SCORE), None when it
    may. `visual_share` None (an export from before it was computed) is judged on concentration alone."""
    if concentration < min_concentration:
        return NEAR_UNIFORM
    if visual_share is not None and visual_share < min_visual_share:
        return LITTLE_VISUAL_SCORE
    return None
