"""TensorFlow Serving backends: the model's signatures (`model.contract`) called on a TF Serving server.

`RemoteBackend` implements `service.backend.ModelBackend` on top of a small `Transport`, one per
protocol: `service.tfserving_rest.RestTransport` (JSON over HTTP) and
`service.tfserving_grpc.GrpcTransport` (PredictionService over gRPC). A transport makes one attempt
and sorts its failures; `RetryPolicy` retries the transient ones inside one deadline.

Failures, as the gateway answers them:
- server down, timeout, HTTP 503 / UNAVAILABLE (after retries) -> `BackendUnavailable`: 503 + Retry-After
- NOT_FOUND (unknown model or version)                          -> `ModelNotFound`, a `BackendUnavailable`
- INVALID_ARGUMENT (HTTP 400)                                   -> `ModelServerError`, 502 `model_invalid_argument`
- anything else TF Serving reports                              -> `ModelServerError`, 502 `model_server_error`

Versions: the catalog and attention grid come from the export folder the gateway mounts, so every
request names one version number, the folder's own unless settings pin another (or a label, which
startup resolves once). Startup reads the served version from the metadata reply's `model_spec`,
checks its signatures against the contract and its status (AVAILABLE), and refuses a mismatch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import anyio
import numpy as np

from model.contract import ADDED_SIGNATURES, SIGNATURES, Signature
from service.backend import ContractCalls
from service.errors import ApiError, BackendUnavailable, ReexportNeeded

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

T = TypeVar("T")
AVAILABLE = "AVAILABLE"
# TensorFlow's DataType enum (tensorflow/core/framework/types.proto): wire values, fixed for good.
# enum -> (contract dtype name, numpy dtype, TensorProto field holding the values)
DTYPES: dict[int, tuple[str, Any, str]] = {
    1: ("float32", np.dtype(np.float32), "float_val"),
    2: ("float64", np.dtype(np.float64), "double_val"),
    3: ("int32", np.dtype(np.int32), "int_val"),
    7: ("string", np.dtype(object), "string_val"),
    9: ("int64", np.dtype(np.int64), "int64_val"),
    10: ("bool", np.dtype(np.bool_), "bool_val"),
}
DTYPE_ENUM = {name: enum for enum, (name, _, _) in DTYPES.items()}
DTYPE_NAMES = {
    "DT_FLOAT": "float32",
    "DT_DOUBLE": "float64",
    "DT_INT32": "int32",
    "DT_STRING": "string",
    "DT_INT64": "int64",
    "DT_BOOL": "bool",
}  # TF Serving's JSON spelling -> contract spelling


class ModelNotFound(BackendUnavailable):
    """TF Serving does not serve the model or version asked for (NOT_FOUND)."""


class ModelServerError(ApiError):
    """TF Serving refused a request (INVALID_ARGUMENT and other non-retryable errors): 502."""

    status_code = 502
    code = "model_server_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class TransientError(Exception):
    """One attempt failed in a way a retry may fix (connection refused or reset, 503, UNAVAILABLE)."""


@dataclass(frozen=True)
class ModelTarget:
    """The served model a request names: a version number, a version label, or neither (latest)."""

    name: str
    version: int | None = None
    label: str | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"model {self.name!r} version {self.version}"
        if self.label is not None:
            return f"model {self.name!r} label {self.label!r}"
        return f"model {self.name!r} (latest version)"


SignatureInfo = tuple[dict[str, str], set[str]]  # input name -> contract dtype name; output names


class Transport(Protocol):
    endpoint: str  # for messages: the URL or host:port

    async def predict(
        self, target: ModelTarget, signature: Signature, inputs: dict[str, np.ndarray], timeout_s: float
    ) -> dict[str, np.ndarray]:
        """One Predict call; outputs by name (strings as str objects). Raises the errors above."""

    async def metadata(self, target: ModelTarget, timeout_s: float) -> tuple[int, dict[str, SignatureInfo]]:
        """The version that answers for `target` and its signatures."""

    async def status(self, target: ModelTarget, timeout_s: float) -> dict[int, str]:
        """version -> state name (AVAILABLE, LOADING, ...)."""

    async def aclose(self) -> None:
        """Close connections; the next call opens new ones (in the event loop it runs in)."""


@dataclass(frozen=True)
class RetryPolicy:
    """Up to `retries` more attempts after a `TransientError`, backing off from `backoff_s` (doubling);
    every attempt and pause fits in `timeout_s` from the first attempt's start."""

    timeout_s: float
    retries: int
    backoff_s: float

    async def run(self, attempt: Callable[[float], Awaitable[T]], what: str) -> T:
        """`attempt(seconds_left)` must give up after `seconds_left` (transports set their deadlines)."""
        deadline = time.monotonic() + self.timeout_s
        for n in range(self.retries + 1):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BackendUnavailable(f"{what}: no answer within {self.timeout_s:g} s")
            try:
                return await attempt(remaining)
            except TransientError as error:
                delay = self.backoff_s * 2**n
                if n == self.retries or time.monotonic() + delay >= deadline:
                    tries = f"{n + 1} attempt{'s' if n else ''}"
                    raise BackendUnavailable(f"{what}: {error} ({tries} in {self.timeout_s:g} s)") from error
                log.info("%s: %s; retrying in %.3f s", what, error, delay)
                await anyio.sleep(delay)
        raise AssertionError("unreachable")


def _array(dtype: str, value: Any) -> np.ndarray:
    return np.array(value, dtype=object) if dtype == "string" else np.asarray(value, dtype=DTYPES[DTYPE_ENUM[dtype]][1])


class RemoteBackend(ContractCalls):
    """`ModelBackend` over a TF Serving transport, every request pinned to `self.version`."""

    def __init__(
        self, transport: Transport, target: ModelTarget, grid: tuple[int, int], retry: RetryPolicy, version: int
    ) -> None:
        self.transport = transport
        self.target = target
        self.grid = grid
        self.retry = retry
        self.version = version
        self.served: set[str] = set()  # signature names of the pinned version, once connected

    async def connect(self) -> int:
        """Resolve `target` to a version, check it against the contract and pin requests to it."""
        what = f"TF Serving at {self.transport.endpoint}, {self.target}"
        version, signatures = await self.retry.run(lambda t: self.transport.metadata(self.target, t), what)
        pinned = replace(self.target, version=version, label=None)
        check_signatures(signatures, pinned)
        self.served = set(signatures)
        states = await self.retry.run(lambda t: self.transport.status(pinned, t), what)
        if states.get(version) != AVAILABLE:
            raise BackendUnavailable(f"TF Serving at {self.transport.endpoint}: {pinned} is {states.get(version)}")
        self.target, self.version = pinned, version
        return version

    async def _call(self, signature: Signature, *values: Any) -> tuple[np.ndarray, ...]:
        if signature.name in ADDED_SIGNATURES and signature.name not in self.served:
            raise ReexportNeeded(self.version, signature.name)
        inputs = {
            name: _array(dtype, value)
            for (name, (dtype, _shape)), value in zip(signature.inputs.items(), values, strict=True)
        }
        what = f"TF Serving at {self.transport.endpoint}, {signature.name} on {self.target}"
        outputs = await self.retry.run(lambda t: self.transport.predict(self.target, signature, inputs, t), what)
        missing = [name for name in signature.required_outputs if name not in outputs]
        if missing:
            raise ModelServerError(f"{what}: the reply lacks outputs {missing}; is the served model this export?")
        return tuple(
            _array(dtype, outputs[name]) if name in outputs else None  # None: an older export's
            for name, (dtype, _shape) in signature.outputs.items()
        )

    async def aclose(self) -> None:
        await self.transport.aclose()


def check_signatures(served: dict[str, SignatureInfo], target: ModelTarget) -> None:
    """ValueError unless every contract signature is served with the contract's inputs and outputs."""
    problems = []
    for sig in SIGNATURES:
        if sig.name not in served and sig.name in ADDED_SIGNATURES:
            continue  # an older export: the calls that need it answer ReexportNeeded
        if sig.name not in served:
            problems.append(f"no signature {sig.name!r}")
            continue
        inputs, outputs = served[sig.name]
        want = {name: dtype for name, (dtype, _shape) in sig.inputs.items()}
        if inputs != want:
            problems.append(f"{sig.name} takes {inputs}, the contract says {want}")
        if not set(sig.required_outputs) <= outputs:  # an older export may lack the added ones
            problems.append(f"{sig.name} lacks outputs {sorted(set(sig.required_outputs) - outputs)}")
    if problems:
        raise ValueError(
            f"TF Serving's {target} does not match model.contract: {'; '.join(problems)}. "
            "Serve an export written by offline.serving.export"
        )
