"""BPR matrix factorisation (Rendle et al. 2009) in torch on the CPU, uniform negatives."""

from __future__ import annotations

import numpy as np

from offline.baselines._common import check_users, fit_pairwise, user_item_matrix
from offline.recommender import IndexedData


class BPRMF:
    """x_ui = b_i + p_u . q_i, trained on the distinct (user, item) training pairs with Adam on
    -log sigmoid(x_ui - x_uj) + reg * (|p_u|^2 + |q_i|^2 + |q_j|^2 + b_i^2 + b_j^2), one uniform
    negative j per pair (re-drawn when the user bought it). Scores [B, N] float32.

    negatives="catalog" samples j from every item; "warm" only from items with a training purchase,
    so the others keep their random start: they get q_i = 0 and a bias 1 below the lowest trained
    one instead (near the bottom, as cornac puts the items it does not know)."""

    name = "bpr_mf"

    def __init__(
        self,
        factors: int = 64,
        epochs: int = 30,
        lr: float = 0.01,
        reg: float = 1e-2,
        batch_size: int = 1024,
        use_bias: bool = True,
        negatives: str = "catalog",
        seed: int = 0,
    ) -> None:
        self.factors, self.epochs, self.lr, self.reg = factors, epochs, lr, reg
        self.batch_size, self.use_bias, self.negatives, self.seed = batch_size, use_bias, negatives, seed

    def fit(self, data: IndexedData) -> BPRMF:
        import torch

        g = torch.Generator().manual_seed(self.seed)
        P = (0.1 * torch.randn(data.num_users, self.factors, generator=g)).requires_grad_()  # [U, k]
        Q = (0.1 * torch.randn(data.num_items, self.factors, generator=g)).requires_grad_()  # [N, k]
        b = torch.zeros(data.num_items, requires_grad=self.use_bias)  # [N]

        def loss_fn(u, i, j):  # each [b] int64
            p, qi, qj = P[u], Q[i], Q[j]  # [b, k]
            x = b[i] - b[j] + (p * (qi - qj)).sum(1)  # [b]
            reg = p.square().sum(1) + qi.square().sum(1) + qj.square().sum(1) + b[i] ** 2 + b[j] ** 2
            return -torch.nn.functional.logsigmoid(x).mean() + self.reg * reg.mean()

        params = [P, Q, b] if self.use_bias else [P, Q]
        self.history = fit_pairwise(
            params,
            loss_fn,
            data,
            user_item_matrix(data, binary=True),
            self.epochs,
            self.lr,
            self.batch_size,
            self.negatives,
            self.seed,
        )
        self.P, self.Q, self.b = (t.detach().numpy().copy() for t in (P, Q, b))
        if self.negatives == "warm":
            untrained = data.item_counts() == 0
            self.Q[untrained] = 0.0
            self.b[untrained] = self.b[~untrained].min() - 1.0 if (~untrained).any() else 0.0
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        users = check_users(users, len(self.P))
        return (self.P[users] @ self.Q.T + self.b).astype(np.float32)  # [B, N]
