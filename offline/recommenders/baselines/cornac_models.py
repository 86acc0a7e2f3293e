"""cornac 3.0.1's BPR, VBPR, ItemKNN and WMF behind our interface, trained on the same data and image features.

The cornac Dataset is built from the distinct training (user, item) pairs (cornac drops repeat
purchases itself) with its id maps filled in our order first: cornac user u is our user u, cornac
item k is our k-th item with a training purchase. cornac knows no other item; `rank` gives such
items the lowest known score, and so does `CornacBPR`. `CornacVBPR` scores them from the learnt
visual term, theta_u . (E f_i) + beta' . f_i (cornac stores no b_i or gamma_i for them; in the
VBPR paper's cold-start reading both are 0). cornac VBPR trains with torch on the CPU, offline.
"""

from __future__ import annotations

import contextlib
import io
from collections import OrderedDict
from typing import Self

import numpy as np

from offline.data.indexed import IndexedData
from offline.features.regions import check_vectors
from offline.recommenders.baselines._common import check_users, visual_matrix


def cornac_dataset(data: IndexedData, seed: int):
    """-> (cornac Dataset, warm [K] our index of cornac item k)."""
    from cornac.data import Dataset

    pairs = np.unique(np.stack([data.train_users, data.train_items], 1), axis=0)  # [P, 2] sorted
    warm = np.unique(pairs[:, 1])  # [K]
    uid_map = OrderedDict((user, u) for u, user in enumerate(data.user_ids))
    iid_map = OrderedDict((data.item_ids[i], k) for k, i in enumerate(warm.tolist()))
    triples = [(data.user_ids[u], data.item_ids[i], 1.0) for u, i in pairs.tolist()]
    return Dataset.build(triples, fmt="UIR", global_uid_map=uid_map, global_iid_map=iid_map, seed=seed), warm


class _CornacOnWarmItems:
    """A cornac model class named `cornac_class`, fitted with `self.params` on `cornac_dataset`; scores
    [B, N] float32: cornac's own score for warm items, the row's minimum for items cornac never saw."""

    cornac_class: str
    params: dict

    def fit(self, data: IndexedData) -> Self:
        import cornac.models

        train, self.warm = cornac_dataset(data, self.params["seed"])
        self.model = getattr(cornac.models, self.cornac_class)(verbose=False, **self.params).fit(train)
        self.num_users, self.num_items = data.num_users, data.num_items
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        users = check_users(users, self.num_users)
        known = np.stack([self.model.score(int(u)) for u in users]).astype(np.float32)  # [B, K]
        out = np.repeat(known.min(1, keepdims=True), self.num_items, axis=1)  # [B, N]
        out[:, self.warm] = known
        return out


class CornacBPR(_CornacOnWarmItems):
    """cornac.models.BPR (Cython SGD, uniform negatives over cornac's items = our warm items).
    Scores [B, N] float32: cornac's own score for warm items, the row's minimum for the rest."""

    name = "cornac_bpr"
    cornac_class = "BPR"

    def __init__(
        self,
        k: int = 64,
        max_iter: int = 100,
        learning_rate: float = 0.01,
        lambda_reg: float = 0.01,
        use_bias: bool = True,
        seed: int = 0,
    ) -> None:
        self.params = dict(
            k=k, max_iter=max_iter, learning_rate=learning_rate, lambda_reg=lambda_reg, use_bias=use_bias, seed=seed
        )


class CornacVBPR:
    """cornac.models.VBPR with our item vectors (region features averaged over regions, divided by
    their mean norm) passed as cornac's ImageModality. Scores [B, N] float32.

    features: RegionFeatures or an [N, C] float32 matrix in catalog order."""

    name = "cornac_vbpr"

    def __init__(
        self,
        features,
        k: int = 32,
        k2: int = 32,
        n_epochs: int = 30,
        batch_size: int = 100,
        learning_rate: float = 0.005,
        lambda_w: float = 0.01,
        lambda_b: float = 0.01,
        lambda_e: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.features = visual_matrix(features)  # [N, C]
        self.params = dict(
            k=k,
            k2=k2,
            n_epochs=n_epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            lambda_w=lambda_w,
            lambda_b=lambda_b,
            lambda_e=lambda_e,
            seed=seed,
        )

    def fit(self, data: IndexedData) -> CornacVBPR:
        from cornac.data import ImageModality
        from cornac.models import VBPR

        check_vectors(self.features, data.num_items)
        train, self.warm = cornac_dataset(data, self.params["seed"])
        image = ImageModality(features=self.features[self.warm], ids=[data.item_ids[i] for i in self.warm])
        train.add_modalities(item_image=image.build(id_map=train.iid_map))
        with contextlib.redirect_stdout(io.StringIO()):  # cornac prints "Optimization finished!"
            self.model = VBPR(use_gpu=False, verbose=False, **self.params).fit(train)
        m = self.model
        self.theta_item = self.features @ m.emb_matrix  # [N, k2] visual factors, every item
        self.visual_bias = (self.features @ m.beta_prime).ravel()  # [N]
        self.num_users = data.num_users
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        users = check_users(users, self.num_users)
        out = self.model.theta_user[users] @ self.theta_item.T + self.visual_bias  # [B, N] visual term
        known = np.stack([self.model.score(int(u)) for u in users])  # [B, K] cornac's full score
        out[:, self.warm] = known
        return out.astype(np.float32)


class CornacItemKNN(_CornacOnWarmItems):
    """cornac.models.ItemKNN: item-item cosine similarity over the distinct training purchases, a
    user's score of an item the sum of its similarities to the k nearest items the user bought (cornac's
    implicit-feedback reading). Scores [B, N] float32 as `CornacBPR`'s. The counterpart of our
    `item_knn`, run beside it in the benchmark to say which to keep."""

    name = "cornac_item_knn"
    cornac_class = "ItemKNN"

    def __init__(self, k: int = 50, similarity: str = "cosine", seed: int = 0) -> None:
        self.params = dict(k=k, similarity=similarity, seed=seed)


class CornacWMF(_CornacOnWarmItems):
    """cornac.models.WMF (Hu et al.'s weighted matrix factorisation, trained by cornac with TensorFlow's
    Adam on minibatches of users rather than by alternating least squares): confidence `a` on a
    purchase, `b` on everything else. Scores [B, N] float32 as `CornacBPR`'s. The counterpart of our
    `als`, run beside it in the benchmark to say which to keep."""

    name = "cornac_wmf"
    cornac_class = "WMF"

    def __init__(
        self,
        k: int = 64,
        lambda_u: float = 0.01,
        lambda_v: float = 0.01,
        a: float = 1.0,
        b: float = 0.01,
        learning_rate: float = 0.001,
        batch_size: int = 128,
        max_iter: int = 100,
        seed: int = 0,
    ) -> None:
        self.params = dict(
            k=k,
            lambda_u=lambda_u,
            lambda_v=lambda_v,
            a=a,
            b=b,
            learning_rate=learning_rate,
            batch_size=batch_size,
            max_iter=max_iter,
            seed=seed,
        )
