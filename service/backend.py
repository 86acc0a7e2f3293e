"""Model backends: the gateway's only way to run the model.

`ModelBackend` is the seam; `InProcessBackend` runs the exported SavedModel's signatures
(`model.contract`) in this process; `service.tfserving.RemoteBackend` calls them on a TF Serving
server over REST or gRPC. `service.backends.create_backend` picks one from `settings.model_backend`.
Backends raise `service.errors.BackendUnavailable` when the model cannot answer right now.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import anyio.to_thread
import numpy as np

from model.contract import (
    ADDED_SIGNATURES,
    ATTENTION,
    BECAUSE,
    HISTORY_EMBEDDING,
    POPULAR,
    RECOMMEND,
    RECOMMEND_CANDIDATES,
    RECOMMEND_SHELF,
    SCORE,
    SHELVES,
    SIGNATURES,
    USER_EMBEDDING,
    USERS,
    Signature,
)
from service.errors import BackendUnavailable, ReexportNeeded

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from service.settings import Settings

# item ids [K], scores [K], attention [K, H, W], and "because you bought": (ids [K, n], similarities [K, n]),
# None from a backend or an export that does not answer it with the ranking
Recommendation = tuple[list[str], np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray] | None]


def rankings(item_ids, scores, attention, because_ids=None, because_similarity=None) -> list[Recommendation]:
    """A ranking signature's outputs ([B, K, ...]) -> one Recommendation per row; "" ids (past a short
    shelf's end) left out."""
    out = []
    for b, row in enumerate(item_ids):
        keep = [j for j, item in enumerate(row) if item]
        named = None if because_ids is None else (because_ids[b][keep], because_similarity[b][keep])
        out.append(([row[j] for j in keep], scores[b][keep], attention[b][keep], named))
    return out


@dataclass(frozen=True)
class AttentionMaps:
    """The attention signature's answer for B (user, item) pairs (`model.contract.ATTENTION`). The score's
    parts are None from an export written before the signature returned them."""

    grids: np.ndarray  # float32 [B, H, W], each sums to 1
    contributions: np.ndarray | None = None  # float32 [B, H, W]: alpha_l * v_l, summing to the visual score
    concentration: np.ndarray | None = None  # float32 [B]: 1 - normalised entropy of the grid
    visual_share: np.ndarray | None = None  # float32 [B]: |visual| / (|collaborative| + |visual|)


class ModelBackend(Protocol):
    version: int
    grid: tuple[int, int]  # attention rows, cols

    async def user_embeddings(self, user_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """float32 [B, D] embeddings and bool [B] known flags (unknown users get an unused vector)."""

    async def history_embeddings(self, histories: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
        """User states folded in from B histories of item ids (oldest first), and bool [B]: the history
        holds a catalog item. ReexportNeeded from an export without the signature."""

    async def recommend(self, embeddings: np.ndarray, k: int) -> list[Recommendation]:
        """For each of B embeddings [B, D]: the top k items, best first."""

    async def recommend_candidates(self, embeddings: np.ndarray, k: int, candidates: int) -> list[Recommendation]:
        """Two-stage `recommend`: the exact top k of `candidates` items retrieved by a matrix product."""

    async def recommend_shelf(
        self, embeddings: np.ndarray, k: int, candidates: int, shelf: str
    ) -> list[Recommendation]:
        """The top k of one shelf (`model.contract.SHELVES`); a shelf shorter than k ends early.
        ReexportNeeded from an export without the signature."""

    async def score(self, embeddings: np.ndarray, item_ids: list[list[str]]) -> np.ndarray:
        """float32 [B, N] scores of item_ids[b] for embedding b; -inf for an unknown item."""

    async def attention(self, embeddings: np.ndarray, item_ids: list[str]) -> AttentionMaps:
        """Attention of embedding b over item_ids[b]'s regions, and the parts of that score."""

    async def because(self, embeddings: np.ndarray, item_ids: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
        """For item_ids[b] and embedding b: the history items each resembles most ([B, K, n] ids, "" where
        none) and their similarities [B, K, n]. ReexportNeeded from an export without the signature."""

    async def popular(self, k: int) -> tuple[list[str], np.ndarray]:
        """The k most interacted items and their training counts."""

    async def users(self, limit: int) -> list[str]:
        """Up to `limit` known user ids, most active first."""

    async def aclose(self) -> None: ...


def _numpy(tensor: Any) -> np.ndarray:
    value = tensor.numpy()
    if value.dtype == object:  # tf.string arrives as bytes
        decoded = [b.decode("utf-8") for b in value.ravel()]
        return np.array(decoded, dtype=object).reshape(value.shape)
    return value


class ContractCalls:
    """The `ModelBackend` methods, each one contract signature; a subclass supplies `_call`
    (signature, *input values in contract order) -> output arrays in contract order (None for an
    `added_outputs` output that the export lacks)."""

    async def _call(self, signature: Signature, *values: Any) -> tuple[Any, ...]:
        raise NotImplementedError

    async def user_embeddings(self, user_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        embeddings, known = await self._call(USER_EMBEDDING, list(user_ids))
        return embeddings.astype(np.float32), known.astype(bool)

    async def history_embeddings(self, histories: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
        width = max(1, max((len(h) for h in histories), default=0))
        padded = np.array([list(h) + [""] * (width - len(h)) for h in histories], dtype=object)  # "": no item
        embeddings, known = await self._call(HISTORY_EMBEDDING, padded)
        return embeddings.astype(np.float32), known.astype(bool)

    async def recommend(self, embeddings: np.ndarray, k: int) -> list[Recommendation]:
        return rankings(*await self._call(RECOMMEND, np.asarray(embeddings, np.float32), k))

    async def recommend_candidates(self, embeddings: np.ndarray, k: int, candidates: int) -> list[Recommendation]:
        return rankings(*await self._call(RECOMMEND_CANDIDATES, np.asarray(embeddings, np.float32), k, candidates))

    async def recommend_shelf(
        self, embeddings: np.ndarray, k: int, candidates: int, shelf: str
    ) -> list[Recommendation]:
        values = np.asarray(embeddings, np.float32), k, candidates, SHELVES.index(shelf)
        return rankings(*await self._call(RECOMMEND_SHELF, *values))

    async def score(self, embeddings: np.ndarray, item_ids: list[list[str]]) -> np.ndarray:
        (scores,) = await self._call(SCORE, np.asarray(embeddings, np.float32), item_ids)
        return scores

    async def attention(self, embeddings: np.ndarray, item_ids: list[str]) -> AttentionMaps:
        grids, contributions, concentration, visual_share = await self._call(
            ATTENTION, np.asarray(embeddings, np.float32), list(item_ids)
        )
        return AttentionMaps(grids, contributions, concentration, visual_share)

    async def because(self, embeddings: np.ndarray, item_ids: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
        named, similarity = await self._call(BECAUSE, np.asarray(embeddings, np.float32), item_ids)
        return named, similarity

    async def popular(self, k: int) -> tuple[list[str], np.ndarray]:
        item_ids, scores = await self._call(POPULAR, k)
        return list(item_ids), scores

    async def users(self, limit: int) -> list[str]:
        (user_ids,) = await self._call(USERS, limit)
        return list(user_ids)


class InProcessBackend(ContractCalls):
    """Loads `version_dir` with `tf.saved_model.load` and calls its signatures on worker threads."""

    def __init__(self, version_dir: Path, grid: tuple[int, int], threads: int | None = None) -> None:
        import tensorflow as tf  # heavy: imported only when this backend is chosen

        self._tf = tf
        if threads is not None:
            set_intra_op_threads(tf, threads)
        self.version = int(Path(version_dir).name)
        self.grid = grid
        loaded = tf.saved_model.load(str(version_dir))
        missing = [s.name for s in SIGNATURES if s.name not in loaded.signatures and s.name not in ADDED_SIGNATURES]
        if missing:
            raise ValueError(f"{version_dir} lacks signatures {missing}: re-export it with offline.serving.export")
        served = [s for s in SIGNATURES if s.name in loaded.signatures]
        lacking = [
            f"{s.name}.{name}"
            for s in served
            for name in s.required_outputs
            if name not in loaded.signatures[s.name].structured_outputs
        ]
        if lacking:
            raise ValueError(f"{version_dir} lacks outputs {lacking}: re-export it with offline.serving.export")
        self._loaded = loaded  # keeps the variables alive
        self._functions = {s.name: loaded.signatures[s.name] for s in served}

    def _call_sync(self, signature: Signature, values: tuple[Any, ...]) -> tuple[Any, ...]:
        tf = self._tf
        if signature.name not in self._functions:  # an added signature an older export lacks
            raise ReexportNeeded(self.version, signature.name)
        inputs = {
            name: tf.constant(value, dtype=tf.as_dtype(dtype))
            for (name, (dtype, _shape)), value in zip(signature.inputs.items(), values, strict=True)
        }
        try:
            outputs = self._functions[signature.name](**inputs)
        except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError) as error:
            raise BackendUnavailable(str(error)) from error
        return tuple(_numpy(outputs[name]) if name in outputs else None for name in signature.outputs)

    async def _call(self, signature: Signature, *values: Any) -> tuple[Any, ...]:
        return await anyio.to_thread.run_sync(self._call_sync, signature, values)

    async def aclose(self) -> None:
        self._functions.clear()


def set_intra_op_threads(tf: Any, threads: int) -> None:
    """TensorFlow's intra-op pool size (threads one operation may use). Only possible before its runtime
    starts (the first model of the process); a later reload keeps what the first load set and says so
    if that differs. The inter-op pool stays TensorFlow's: it is what runs concurrent requests' calls
    side by side (one inter-op thread cut the 200k-item two-stage throughput from 155 to 114 req/s)."""
    current = tf.config.threading.get_intra_op_parallelism_threads()
    if current == threads:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    except RuntimeError:  # the runtime is up: pools are fixed for the life of the process
        log.warning(
            "TensorFlow's intra-op threads stay %d (0 = its choice): asked for %d after the runtime started",
            current,
            threads,
        )


def intra_op_threads(settings: Settings, candidates: int) -> int | None:
    """TF_INTRA_OP_THREADS, or its default: 1 for two-stage ranking (`candidates` > 0, as the gateway will
    rank), None (TensorFlow's choice) for exact."""
    if settings.tf_intra_op_threads is not None:
        return settings.tf_intra_op_threads
    return 1 if candidates > 0 else None
