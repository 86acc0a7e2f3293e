"""Implicit-feedback ALS (Hu, Koren & Volinsky 2008), each half-step a batched conjugate-gradient
solve warm-started from the previous factors (as Takacs et al. 2011 / the `implicit` library do)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from offline.data.indexed import IndexedData
from offline.recommenders.baselines._common import check_users, user_item_matrix


def _cg_half_step(X: np.ndarray, Y: np.ndarray, C: sp.csr_matrix, reg: float, steps: int) -> np.ndarray:
    """Solve (Y'Y + Y'(C_u - I)Y + reg I) x_u = Y' C_u p_u for every row u of C at once.
    X [M, k] start, Y [N, k] fixed, C [M, N] confidences c_ui of the observed pairs (p_ui = 1)."""
    G = Y.T @ Y + reg * np.eye(Y.shape[1], dtype=Y.dtype)  # [k, k]
    rows = np.repeat(np.arange(C.shape[0]), np.diff(C.indptr))  # [nnz] row of each stored value
    extra = C.data - 1.0  # [nnz] c_ui - 1

    def A(V: np.ndarray) -> np.ndarray:  # [M, k] -> [M, k]
        dots = np.einsum("nk,nk->n", V[rows], Y[C.indices])  # [nnz]
        S = sp.csr_matrix((extra * dots, C.indices, C.indptr), shape=C.shape)
        return V @ G + S @ Y

    X = X.copy()
    r = C @ Y - A(X)  # residual [M, k]; the right-hand side is sum_i c_ui y_i
    p, rs = r.copy(), np.einsum("mk,mk->m", r, r)  # [M, k], [M]
    for _ in range(steps):
        Ap = A(p)
        alpha = rs / np.maximum(np.einsum("mk,mk->m", p, Ap), 1e-20)  # [M]
        X += alpha[:, None] * p
        r -= alpha[:, None] * Ap
        rs_new = np.einsum("mk,mk->m", r, r)
        p = r + (rs_new / np.maximum(rs, 1e-20))[:, None] * p
        rs = rs_new
    X[np.diff(C.indptr) == 0] = 0.0  # the exact solution for a row with no observations
    return X


class ALS:
    """Weighted matrix factorisation: confidence c_ui = 1 + alpha * r_ui on every purchased pair
    (r_ui = purchase count, or log(1 + count / epsilon) with log_confidence), 1 elsewhere, preference
    p_ui = 1 on purchased pairs. Score = x_u . y_i, [B, N] float32; never-bought items get y_i = 0."""

    name = "als"

    def __init__(
        self,
        factors: int = 64,
        iterations: int = 15,
        reg: float = 0.1,
        alpha: float = 40.0,
        log_confidence: bool = False,
        epsilon: float = 1.0,
        cg_steps: int = 3,
        seed: int = 0,
    ) -> None:
        self.factors, self.iterations, self.reg, self.alpha = factors, iterations, reg, alpha
        self.log_confidence, self.epsilon, self.cg_steps, self.seed = log_confidence, epsilon, cg_steps, seed

    def fit(self, data: IndexedData) -> ALS:
        R = user_item_matrix(data)  # [U, N] purchase counts
        C = R.copy()
        C.data = 1.0 + self.alpha * (np.log1p(R.data / self.epsilon) if self.log_confidence else R.data)
        C = C.astype(np.float64)
        Ct = C.T.tocsr()  # [N, U]
        rng = np.random.default_rng(self.seed)
        X = 0.01 * rng.standard_normal((data.num_users, self.factors))  # [U, k]
        Y = 0.01 * rng.standard_normal((data.num_items, self.factors))  # [N, k]
        for _ in range(self.iterations):
            X = _cg_half_step(X, Y, C, self.reg, self.cg_steps)
            Y = _cg_half_step(Y, X, Ct, self.reg, self.cg_steps)
        self.X, self.Y = X.astype(np.float32), Y.astype(np.float32)
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        users = check_users(users, len(self.X))
        return self.X[users] @ self.Y.T  # [B, N]
