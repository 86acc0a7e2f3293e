"""VBPR (He & McAuley 2016): BPR plus a visual term, so items never bought can still be ranked."""

from __future__ import annotations

import numpy as np

from offline.baselines._common import check_users, fit_pairwise, user_item_matrix, visual_matrix
from offline.features import check_vectors
from offline.recommender import IndexedData


class VBPR:
    """x_ui = b_i + gamma_u . gamma_i + theta_u . (E f_i) + beta' . f_i, trained like `BPRMF`: Adam on
    the batch mean of -log sigmoid(x_ui - x_uj) + reg * (the batch rows' squared gamma, theta, b), plus
    reg_visual * (|E|^2 + |beta'|^2) once per batch.

    f_i [C]: the item's visual vector (region features averaged over regions), divided by the
    catalog's mean vector norm so one learning rate fits any backbone. Items without a training
    purchase are scored from f_i alone (b_i = 0, gamma_i = 0): their own parameters were never
    pulled up by a purchase, only down as sampled negatives. Scores [B, N] float32.

    features: RegionFeatures or an [N, C] float32 matrix in catalog order."""

    name = "vbpr"

    def __init__(
        self,
        features,
        factors: int = 32,
        visual_factors: int = 32,
        epochs: int = 30,
        lr: float = 0.01,
        reg: float = 1e-3,
        reg_visual: float = 1e-4,
        batch_size: int = 1024,
        negatives: str = "catalog",
        seed: int = 0,
    ) -> None:
        self.features = visual_matrix(features)  # [N, C]
        self.factors, self.visual_factors, self.epochs, self.lr = factors, visual_factors, epochs, lr
        self.reg, self.reg_visual, self.batch_size = reg, reg_visual, batch_size
        self.negatives, self.seed = negatives, seed

    def fit(self, data: IndexedData) -> VBPR:
        import torch

        check_vectors(self.features, data.num_items)
        positives = user_item_matrix(data, binary=True)  # [U, N]
        g = torch.Generator().manual_seed(self.seed)
        U, N, C = data.num_users, data.num_items, self.features.shape[1]
        F = torch.from_numpy(self.features)  # [N, C]
        gu = (0.1 * torch.randn(U, self.factors, generator=g)).requires_grad_()  # [U, k]
        gi = (0.1 * torch.randn(N, self.factors, generator=g)).requires_grad_()  # [N, k]
        tu = (0.1 * torch.randn(U, self.visual_factors, generator=g)).requires_grad_()  # [U, k2]
        E = (torch.randn(C, self.visual_factors, generator=g) / C**0.5).requires_grad_()  # [C, k2]
        bp = torch.zeros(C, requires_grad=True)  # [C] visual bias beta'
        b = torch.zeros(N, requires_grad=True)  # [N]

        def loss_fn(u, i, j):  # each [b] int64
            fd = F[i] - F[j]  # [b, C]
            x = b[i] - b[j] + (gu[u] * (gi[i] - gi[j])).sum(1) + (tu[u] * (fd @ E)).sum(1) + fd @ bp  # [b]
            reg = sum(t.square().sum(1) for t in (gu[u], gi[i], gi[j], tu[u])) + b[i] ** 2 + b[j] ** 2
            return (
                -torch.nn.functional.logsigmoid(x).mean()
                + self.reg * reg.mean()
                + self.reg_visual * (E.square().sum() + bp.square().sum())
            )

        self.history = fit_pairwise(
            [gu, gi, tu, E, bp, b],
            loss_fn,
            data,
            positives,
            self.epochs,
            self.lr,
            self.batch_size,
            self.negatives,
            self.seed,
        )
        warm = (data.item_counts() > 0).astype(np.float32)  # [N]
        self.gamma_user, self.theta_user = gu.detach().numpy(), tu.detach().numpy()
        self.gamma_item = gi.detach().numpy() * warm[:, None]  # cold rows: 0
        self.bias = b.detach().numpy() * warm
        with torch.no_grad():
            self.theta_item = (F @ E).numpy()  # [N, k2]
            self.visual_bias = (F @ bp).numpy()  # [N]
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        users = check_users(users, len(self.gamma_user))
        return (
            self.gamma_user[users] @ self.gamma_item.T
            + self.theta_user[users] @ self.theta_item.T
            + self.bias
            + self.visual_bias
        ).astype(np.float32)  # [B, N]
