"""The backend the settings name, built for one export: in-process, or TF Serving over REST or gRPC,
with the batching wrapper in front. The one module that knows every backend, so that the backends
themselves import only what they build on."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from service.backend import InProcessBackend, ModelBackend, intra_op_threads
from service.batching import BATCH_ROWS, BatchingBackend, batch_calls_for
from service.catalog import ServingMeta
from service.errors import BackendUnavailable
from service.settings import Settings, ranking_candidates
from service.tfserving import ModelTarget, RemoteBackend, RetryPolicy, Transport

log = logging.getLogger(__name__)


def create_backend(settings: Settings, version_dir: Path, grid: tuple[int, int]) -> ModelBackend:
    """The backend `settings.model_backend` names, for the export in `version_dir` (blocking: call in a
    thread). `rest` and `grpc` call TF Serving, which serves the same export; see `service.tfserving`.
    Unless `settings.batch_rows` is 0, concurrent /recommend calls share model calls (`service.batching`;
    with BATCH_ROWS unset, `load_version` chooses the batching once the backend answers)."""
    backend: ModelBackend
    if settings.model_backend == "inprocess":
        candidates = ranking_candidates(settings, ServingMeta.read(version_dir).candidates)
        backend = InProcessBackend(version_dir, grid, intra_op_threads(settings, candidates))
    elif settings.model_backend in ("rest", "grpc"):
        backend = create_remote_backend(settings, version_dir, grid)
    else:
        raise ValueError(f"unknown model_backend {settings.model_backend!r}; choose 'inprocess', 'rest' or 'grpc'")
    if settings.batch_rows != 0:
        rows = settings.batch_rows or BATCH_ROWS
        backend = BatchingBackend(backend, rows, settings.batch_calls or batch_calls_for(rows))
    return backend


def create_remote_backend(settings: Settings, version_dir: Path, grid: tuple[int, int]) -> RemoteBackend:
    """The REST or gRPC backend for the export in `version_dir`, checked against the server (blocking).

    A server that does not answer, or does not serve this version yet (NOT_FOUND: TF Serving may not
    have read the new models.config), is logged and left to the caller (`service.reload` asks the
    backend before serving it); only a version label must resolve here. Signatures that differ from
    the contract, or a served version other than the export's, are errors.
    """
    if settings.tfserving_version is not None and settings.tfserving_version_label is not None:
        raise ValueError("set TFSERVING_VERSION or TFSERVING_VERSION_LABEL, not both")
    exported = int(Path(version_dir).name)
    name = settings.tfserving_model_name or ServingMeta.read(version_dir).model_name
    label = settings.tfserving_version_label
    version = settings.tfserving_version or (None if label is not None else exported)
    if version is not None and version != exported:
        raise ValueError(
            f"TFSERVING_VERSION={version}, but the catalog comes from {version_dir} (version "
            f"{exported}): point MODEL_DIR at version folder {version} or unset TFSERVING_VERSION"
        )
    retry = RetryPolicy(settings.tfserving_timeout_s, settings.tfserving_retries, settings.tfserving_backoff_s)
    transport: Transport
    if settings.model_backend == "rest":
        from service.tfserving_rest import RestTransport  # each transport's client library on demand

        transport = RestTransport(settings.tfserving_rest_url, settings.tfserving_pool_size)
    elif settings.model_backend == "grpc":
        from service.tfserving_grpc import GrpcTransport

        transport = GrpcTransport(settings.tfserving_grpc_target)
    else:
        raise ValueError(f"model_backend {settings.model_backend!r} is not a TF Serving backend")
    backend = RemoteBackend(transport, ModelTarget(name, version, label), grid, retry, exported)

    async def connect_once() -> int:
        try:
            return await backend.connect()
        finally:  # its connections belong to this thread's event loop; the app's loop opens its own
            await transport.aclose()

    try:
        served = asyncio.run(connect_once())
    except BackendUnavailable as error:  # ModelNotFound included
        if label is not None:
            raise BackendUnavailable(f"cannot resolve TFSERVING_VERSION_LABEL={label!r}: {error}") from error
        log.warning("%s; serving %s anyway, requests answer 503 until TF Serving does", error, backend.target)
        return backend
    if served != exported:
        raise ValueError(
            f"TF Serving's {ModelTarget(name, label=label)} is version {served}, but the catalog "
            f"comes from {version_dir} (version {exported}): point MODEL_DIR at version {served} "
            "or move the label"
        )
    log.info("TF Serving at %s serves %s", transport.endpoint, backend.target)
    return backend
