"""TF Serving's gRPC API over one `grpc.aio` channel: PredictionService.Predict and GetModelMetadata,
ModelService.GetModelStatus.

Tensors are converted by hand between numpy and TensorProto (dtype enum, tensor_shape, string_val
or little-endian tensor_content; replies may also use the typed *_val fields), so no TensorFlow
function runs here. The message classes of `tensorflow_serving.apis` do import the `tensorflow`
package (their TensorProto is tensorflow.core.framework's), so this transport needs TensorFlow
installed; they are imported when a `GrpcTransport` is created, never by `import service`.
"""

from __future__ import annotations

import importlib
import math
from types import SimpleNamespace
from typing import Any

import grpc
import numpy as np

from model.contract import Signature
from service.errors import BackendUnavailable
from service.tfserving import (
    DTYPE_ENUM,
    DTYPES,
    ModelNotFound,
    ModelServerError,
    ModelTarget,
    SignatureInfo,
    TransientError,
)

_APIS = (
    "predict_pb2",
    "get_model_metadata_pb2",
    "get_model_status_pb2",
    "prediction_service_pb2_grpc",
    "model_service_pb2_grpc",
)
_BUSY = {
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.ABORTED,
}  # the server cannot answer now: 503 to our caller, no retry
_INVALID = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.OUT_OF_RANGE}
# Reconnect soon after TF Serving comes back (gRPC's default backoff grows to 120 s).
_CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.max_receive_message_length", 64 << 20),
]


def numpy_to_tensor(array: np.ndarray, proto: Any) -> None:
    """Fill the TensorProto `proto` with `array` (float32/64, int32/64, bool, or str/bytes objects)."""
    array = np.asarray(array)
    kind = "string" if array.dtype == object or array.dtype.kind in "US" else array.dtype.name
    if kind not in DTYPE_ENUM:
        raise TypeError(f"no TensorProto dtype for numpy {array.dtype}")
    proto.dtype = DTYPE_ENUM[kind]
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    if kind == "string":
        proto.string_val.extend(v if isinstance(v, bytes) else str(v).encode("utf-8") for v in array.ravel())
    else:
        proto.tensor_content = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()


def tensor_to_numpy(proto: Any) -> np.ndarray:
    """The array a TensorProto holds; strings decoded from UTF-8 into str objects."""
    if proto.dtype not in DTYPES:
        raise ModelServerError(f"a reply tensor has dtype enum {proto.dtype}, which the gateway does not read")
    _name, dtype, field = DTYPES[proto.dtype]
    shape = tuple(dim.size for dim in proto.tensor_shape.dim)
    count = math.prod(shape)
    if dtype.kind == "O":  # strings
        values = np.array([v.decode("utf-8") for v in proto.string_val], dtype=object)
    elif proto.tensor_content:
        values = np.frombuffer(proto.tensor_content, dtype=dtype.newbyteorder("<")).astype(dtype)
    else:
        values = np.array(getattr(proto, field), dtype=dtype)
    if 0 < values.size < count:  # TensorFlow's compact form: the last value repeats
        values = np.concatenate([values, np.repeat(values[-1:], count - values.size)])
    if values.size != count:
        raise ModelServerError(f"a reply tensor of shape {list(shape)} holds {values.size} values")
    return values.reshape(shape)


def _raise_for(error: grpc.aio.AioRpcError, what: str, timeout_s: float) -> None:
    code, message = error.code(), error.details()
    detail = f"{what}: {code.name}: {message}"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        raise BackendUnavailable(f"{what}: no answer within {timeout_s:.3g} s ({code.name})") from error
    if code == grpc.StatusCode.UNAVAILABLE:
        raise TransientError(f"{code.name}: {message}") from error
    if code in _BUSY:
        raise BackendUnavailable(detail) from error
    if code == grpc.StatusCode.NOT_FOUND:
        raise ModelNotFound(
            f"{detail}; check TFSERVING_MODEL_NAME / TFSERVING_VERSION against models.config"
        ) from error
    if code in _INVALID:
        raise ModelServerError(detail, code="model_invalid_argument") from error
    raise ModelServerError(detail) from error


class GrpcTransport:
    """One channel (opened on first use, in the event loop that uses it), deadlines on every call."""

    def __init__(self, target: str) -> None:
        self.endpoint = target
        # Heavy: these modules import TensorFlow's protos (and with them the tensorflow package).
        self._apis = SimpleNamespace(**{m: importlib.import_module(f"tensorflow_serving.apis.{m}") for m in _APIS})
        self._channel: grpc.aio.Channel | None = None
        self._prediction: Any = None
        self._models: Any = None

    def _stubs(self) -> tuple[Any, Any]:
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(self.endpoint, options=_CHANNEL_OPTIONS)
            self._prediction = self._apis.prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
            self._models = self._apis.model_service_pb2_grpc.ModelServiceStub(self._channel)
        return self._prediction, self._models

    @staticmethod
    def _spec(target: ModelTarget, spec: Any) -> None:
        spec.name = target.name
        if target.version is not None:
            spec.version.value = target.version
        elif target.label is not None:
            spec.version_label = target.label

    async def _call(self, method: Any, request: Any, timeout_s: float, what: str) -> Any:
        try:
            return await method(request, timeout=timeout_s)
        except grpc.aio.AioRpcError as error:
            _raise_for(error, what, timeout_s)

    async def predict(
        self, target: ModelTarget, signature: Signature, inputs: dict[str, np.ndarray], timeout_s: float
    ) -> dict[str, np.ndarray]:
        request = self._apis.predict_pb2.PredictRequest()
        self._spec(target, request.model_spec)
        request.model_spec.signature_name = signature.name
        for name, array in inputs.items():
            numpy_to_tensor(array, request.inputs[name])
        prediction, _ = self._stubs()
        what = f"TF Serving at {self.endpoint}, {signature.name} on {target}"
        reply = await self._call(prediction.Predict, request, timeout_s, what)
        return {name: tensor_to_numpy(tensor) for name, tensor in reply.outputs.items()}

    async def metadata(self, target: ModelTarget, timeout_s: float) -> tuple[int, dict[str, SignatureInfo]]:
        meta = self._apis.get_model_metadata_pb2
        request = meta.GetModelMetadataRequest(metadata_field=["signature_def"])
        self._spec(target, request.model_spec)
        prediction, _ = self._stubs()
        what = f"TF Serving at {self.endpoint}, metadata of {target}"
        reply = await self._call(prediction.GetModelMetadata, request, timeout_s, what)
        defs = meta.SignatureDefMap()
        if "signature_def" not in reply.metadata or not reply.metadata["signature_def"].Unpack(defs):
            raise ModelServerError(f"{what}: the reply has no SignatureDefMap")
        signatures = {
            name: (
                {k: DTYPES[v.dtype][0] if v.dtype in DTYPES else str(v.dtype) for k, v in d.inputs.items()},
                set(d.outputs),
            )
            for name, d in defs.signature_def.items()
        }
        return reply.model_spec.version.value, signatures

    async def status(self, target: ModelTarget, timeout_s: float) -> dict[int, str]:
        status_pb2 = self._apis.get_model_status_pb2
        request = status_pb2.GetModelStatusRequest()
        self._spec(target, request.model_spec)
        _, models = self._stubs()
        what = f"TF Serving at {self.endpoint}, status of {target}"
        reply = await self._call(models.GetModelStatus, request, timeout_s, what)
        state_name = status_pb2.ModelVersionStatus.State.Name
        return {s.version: state_name(s.state) for s in reply.model_version_status}

    async def aclose(self) -> None:
        if self._channel is not None:
            channel, self._channel = self._channel, None
            await channel.close()
