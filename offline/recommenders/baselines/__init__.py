"""Baselines for the benchmark, every one a `Recommender`: `fit(data)`, `score(users) -> [B, N]`
float32 over the whole catalog, nothing masked (repeat purchases are allowed).

`BASELINES[name](**kwargs)` builds one (the classes are the factories; their docstrings give the
model and constructor arguments). The names in `VISUAL` also need `features=`: RegionFeatures or an
[N, C] float32 matrix in catalog order. torch and cornac are imported only when a model that needs
them is fitted.
"""

from __future__ import annotations

from collections.abc import Callable

from offline.evaluation.interface import Recommender
from offline.recommenders.baselines.als import ALS
from offline.recommenders.baselines.cornac_models import CornacBPR, CornacItemKNN, CornacVBPR, CornacWMF
from offline.recommenders.baselines.knn import ItemKNN
from offline.recommenders.baselines.popularity import PopularityBuyers, RecentPopularity
from offline.recommenders.baselines.repurchase import Repurchase
from offline.recommenders.baselines.visual import VisualProfile

BASELINES: dict[str, Callable[..., Recommender]] = {
    cls.name: cls
    for cls in (
        PopularityBuyers,
        RecentPopularity,
        Repurchase,
        ALS,
        ItemKNN,
        VisualProfile,
        CornacBPR,
        CornacVBPR,
        CornacItemKNN,
        CornacWMF,
    )
}
VISUAL = frozenset({VisualProfile.name, CornacVBPR.name})


def build_baseline(name: str, **kwargs) -> Recommender:
    """BASELINES[name](**kwargs), with an error that names the choices for an unknown name."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose one of {sorted(BASELINES)}")
    return BASELINES[name](**kwargs)
