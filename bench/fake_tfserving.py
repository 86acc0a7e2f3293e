"""TF Serving's REST and gRPC protocols, served from a real exported SavedModel, for tests.

The tensorflow_model_server binary cannot be installed here, so `FakeTFServing` loads the export's
version folders with `tf.saved_model.load` and answers as TF Serving 2.x does
(https://www.tensorflow.org/tfx/serving/api_rest and tensorflow_serving/model_servers/):

- it reads the export's `models.config` (versions served, labels) as --model_config_file would, and
  replays each version's assets.extra/tf_serving_warmup_requests when it loads it;
- a signature's outputs are the SavedModel's own: an older export's attention signature, without the
  outputs `model.contract` added later, answers with its one output (REST: the bare tensor);
- REST: POST /v1/models/NAME[/versions/N|/labels/L]:predict in the columnar format (`outputs` is the
  bare tensor when the signature has one output; floats may be -Infinity), GET status and /metadata,
  errors as {"error": msg} with TF Serving's HTTP status for the gRPC code;
- gRPC: PredictionService.Predict / GetModelMetadata and ModelService.GetModelStatus on a threaded
  `grpc.server`, reply tensors in the typed *_val fields as TF Serving's AsProtoField writes them.

Both listen on free 127.0.0.1 ports and can be stopped and started again on the same ports.
`inject` makes the next Predict calls fail with a given code; `hang` makes Predict hang.

In a process of its own, for the serving benchmark:

    python -m bench.fake_tfserving EXPORT_BASE REST_PORT GRPC_PORT

prints `ok` once both ports listen, then reads commands from stdin, one a line, answering `ok`:
`stop` closes both ports (clients see connections refused), `start` opens them again. End of input exits.
"""

from __future__ import annotations

import json
import re
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio.to_thread
import grpc
import numpy as np
import orjson
import tensorflow as tf
import uvicorn
from google.protobuf import json_format, text_format
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from tensorflow.core.framework import tensor_pb2
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_log_pb2,
    prediction_service_pb2_grpc,
)
from tensorflow_serving.config import model_server_config_pb2

Code = grpc.StatusCode
DEFAULT_SIGNATURE = "serving_default"
# tensorflow_serving/model_servers/http_server.cc ToHTTPStatusCode
HTTP_STATUS = {
    Code.CANCELLED: 499,
    Code.UNKNOWN: 500,
    Code.INVALID_ARGUMENT: 400,
    Code.DEADLINE_EXCEEDED: 504,
    Code.NOT_FOUND: 404,
    Code.ALREADY_EXISTS: 409,
    Code.PERMISSION_DENIED: 403,
    Code.RESOURCE_EXHAUSTED: 429,
    Code.FAILED_PRECONDITION: 400,
    Code.ABORTED: 409,
    Code.OUT_OF_RANGE: 400,
    Code.UNIMPLEMENTED: 501,
    Code.INTERNAL: 500,
    Code.UNAVAILABLE: 503,
    Code.DATA_LOSS: 500,
    Code.UNAUTHENTICATED: 401,
}
PREDICT_PATH = re.compile(r"/v1/models/([^/:]+)(?:/versions/(\d+)|/labels/([^/:]+))?:(classify|regress|predict)")
MODEL_PATH = re.compile(r"/v1/models(?:/([^/:]+))?(?:/versions/(\d+)|/labels/([^/:]+))?(?:/(metadata))?")


class ServingError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _free_socket(port: int = 0) -> socket.socket:
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and with
    # Nagle on, a response written as headers then body waits for the client's delayed ACK (~40 ms).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


class ModelServer:
    """The servables: what TF Serving's ServerCore resolves and runs, shared by both protocols."""

    def __init__(self, base: Path) -> None:
        config = model_server_config_pb2.ModelServerConfig()
        text_format.Parse((base / "models.config").read_text(), config)
        (model,) = config.model_config_list.config
        self.name = model.name
        versions = list(model.model_version_policy.specific.versions) or [
            max(int(p.name) for p in base.iterdir() if p.name.isdigit())
        ]
        self.labels = dict(model.version_labels)
        self.loaded = {v: tf.saved_model.load(str(base / str(v))) for v in versions}
        self.signature_defs = {v: self._signature_defs(base / str(v)) for v in versions}
        self.delay_s = 0.0
        self.predict_calls = 0
        self._wake = threading.Event()
        self._errors: list[tuple[grpc.StatusCode, str]] = []
        self._lock = threading.Lock()
        for version in versions:
            self._warm_up(version, base / str(version))
        self.predict_calls = 0  # clients' calls only

    def _warm_up(self, version: int, version_dir: Path) -> None:
        """Run the version's warmup requests, as TF Serving does before it reports the version AVAILABLE:
        a signature's first call optimises its graph, which takes seconds on a busy machine."""
        path = version_dir / "assets.extra" / "tf_serving_warmup_requests"
        if not path.exists():
            return
        for record in tf.data.TFRecordDataset(str(path)):
            request = prediction_log_pb2.PredictionLog.FromString(record.numpy()).predict_log.request
            inputs = {name: tf.make_ndarray(tensor) for name, tensor in request.inputs.items()}
            self.predict(version, request.model_spec.signature_name, inputs)

    @staticmethod
    def _signature_defs(version_dir: Path) -> get_model_metadata_pb2.SignatureDefMap:
        saved = saved_model_pb2.SavedModel.FromString((version_dir / "saved_model.pb").read_bytes())
        defs = get_model_metadata_pb2.SignatureDefMap()
        for name, signature in saved.meta_graphs[0].signature_def.items():
            defs.signature_def[name].CopyFrom(signature)
        return defs

    def inject(self, code: grpc.StatusCode, message: str, times: int = 1) -> None:
        """The next `times` Predict calls fail with `code` (as TF Serving would report it)."""
        with self._lock:
            self._errors.extend([(code, message)] * times)

    def hang(self, seconds: float) -> None:
        """Predict calls wait `seconds` (or until `release`) before answering: a stuck server."""
        self._wake.clear()
        self.delay_s = seconds

    def release(self) -> None:
        self.delay_s = 0.0
        self._wake.set()

    def resolve(self, name: str, version: int | None, label: str | None) -> int:
        """ServerCore::GetServableHandle: a label must exist; the model and version must be loaded."""
        if label is not None:
            if name != self.name or label not in self.labels:
                raise ServingError(Code.INVALID_ARGUMENT, f"Unrecognized servable version label: {label}")
            version = self.labels[label]
        if name != self.name or (version is not None and version not in self.loaded):
            request = f"Specific({name}, {version})" if version is not None else f"Latest({name})"
            raise ServingError(Code.NOT_FOUND, f"Servable not found for request: {request}")
        return version if version is not None else max(self.loaded)

    def status(self, name: str, version: int | None) -> get_model_status_pb2.GetModelStatusResponse:
        """GetModelStatusImpl: labels are ignored; no version means every version."""
        if name != self.name:
            raise ServingError(Code.NOT_FOUND, f"Could not find any versions of model {name}")
        if version is not None and version not in self.loaded:
            raise ServingError(Code.NOT_FOUND, f"Could not find version {version} of model {name}")
        response = get_model_status_pb2.GetModelStatusResponse()
        for v in [version] if version is not None else sorted(self.loaded):
            response.model_version_status.add(version=v, state=get_model_status_pb2.ModelVersionStatus.AVAILABLE)
        return response

    def predict(self, version: int, signature_name: str, inputs: dict[str, Any]) -> dict[str, np.ndarray]:
        """Run one signature on numpy/JSON inputs; INVALID_ARGUMENT for what TF Serving rejects."""
        with self._lock:
            self.predict_calls += 1
            error = self._errors.pop(0) if self._errors else None
        if self.delay_s:
            self._wake.wait(self.delay_s)
        if error is not None:
            raise ServingError(*error)
        signature_name = signature_name or DEFAULT_SIGNATURE
        loaded = self.loaded[version]
        if signature_name not in loaded.signatures:
            raise ServingError(
                Code.INVALID_ARGUMENT, f'Serving signature name: "{signature_name}" not found in signature def'
            )
        function = loaded.signatures[signature_name]
        specs = function.structured_input_signature[1]
        missing, extra = set(specs) - set(inputs), set(inputs) - set(specs)
        if missing or extra:
            raise ServingError(
                Code.INVALID_ARGUMENT,
                f"input size does not match signature: "
                f"Sent extra: {sorted(extra)}. Missing but required: {sorted(missing)}.",
            )
        try:
            tensors = {name: tf.constant(inputs[name], dtype=spec.dtype) for name, spec in specs.items()}
            outputs = function(**tensors)
        except (tf.errors.InvalidArgumentError, TypeError, ValueError) as error:
            raise ServingError(Code.INVALID_ARGUMENT, str(error).splitlines()[0]) from error
        return {name: tensor.numpy() for name, tensor in outputs.items()}


def _json_value(array: np.ndarray) -> Any:
    """A reply tensor as orjson writes it: numeric arrays stay numpy (orjson writes them directly)."""
    if array.dtype == object:
        return np.vectorize(lambda b: b.decode("utf-8"), otypes=[object])(array).tolist() if array.size else []
    return np.ascontiguousarray(array) if array.ndim else array.tolist()


def encode_json(body: Any) -> bytes:
    """TF Serving writes a reply with C++; Python's json spent 30% of this fake's CPU under load, which
    the benchmark would otherwise charge to the REST protocol. orjson writes numeric arrays ~10x faster
    but writes NaN and infinities as null, while TF Serving writes bare NaN / Infinity / -Infinity tokens
    (json_tensor.cc WriteDecimal; the score signature's unknown items): such a reply goes through json."""
    values = body.get("outputs") if isinstance(body, dict) else None
    arrays = list(values.values()) if isinstance(values, dict) else [values]
    if all(np.isfinite(a).all() for a in arrays if isinstance(a, np.ndarray) and a.dtype.kind == "f"):
        return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    return json.dumps(body, allow_nan=True, default=np.ndarray.tolist).encode()


def as_proto_field(array: np.ndarray) -> tensor_pb2.TensorProto:
    """Tensor::AsProtoField: dtype, shape and the typed *_val field (what TF Serving's Predict returns)."""
    proto = tensor_pb2.TensorProto(
        dtype=tf.as_dtype(tf.string if array.dtype == object else array.dtype).as_datatype_enum
    )
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    field = {"O": "string_val", "f": "float_val", "i": "int_val", "b": "bool_val"}[array.dtype.kind]
    if array.dtype == np.int64:
        field = "int64_val"
    getattr(proto, field).extend(array.ravel().tolist())
    return proto


class RestServer:
    """The REST API on uvicorn in a thread."""

    def __init__(self, core: ModelServer) -> None:
        self.core = core
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.app = Starlette(routes=[Route("/{path:path}", self._handle, methods=["GET", "POST"])])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, request: Request) -> Response:
        try:
            body, status = await self._dispatch(request), 200
        except ServingError as error:  # MakeJsonFromStatus
            body, status = {"error": error.message}, HTTP_STATUS[error.code]
        return Response(encode_json(body), status_code=status, media_type="application/json")

    async def _dispatch(self, request: Request) -> Any:
        path, method = request.url.path, request.method
        malformed = ServingError(Code.INVALID_ARGUMENT, f"Malformed request: {method} {path}")
        if method == "POST":
            match = PREDICT_PATH.fullmatch(path)
            if match is None or match[4] != "predict":
                raise malformed
            name, version, label = match[1], match[2] and int(match[2]), match[3]
            try:
                body = json.loads(await request.body())
            except ValueError as error:
                raise ServingError(Code.INVALID_ARGUMENT, f"JSON Parse error: {error}") from error
            if not isinstance(body, dict) or not isinstance(body.get("inputs"), dict):
                raise ServingError(Code.INVALID_ARGUMENT, "Missing 'inputs' or 'instances' key")
            resolved = self.core.resolve(name, version, label)
            outputs = await anyio.to_thread.run_sync(
                self.core.predict, resolved, body.get("signature_name", ""), body["inputs"]
            )
            values = {key: _json_value(value) for key, value in outputs.items()}
            return {"outputs": next(iter(values.values())) if len(values) == 1 else values}
        match = MODEL_PATH.fullmatch(path)
        if match is None or not match[1]:
            raise malformed if match is None else ServingError(Code.INVALID_ARGUMENT, "Missing model name in request.")
        name, version, label, metadata = match[1], match[2] and int(match[2]), match[3], match[4]
        if metadata:
            resolved = self.core.resolve(name, version, label)
            spec = predict_pb2.PredictRequest().model_spec  # a ModelSpec
            spec.name, spec.version.value = name, resolved
            options = {"preserving_proto_field_name": True, "always_print_fields_with_no_presence": True}
            return {
                "model_spec": json_format.MessageToDict(spec, **options),
                "metadata": {"signature_def": json_format.MessageToDict(self.core.signature_defs[resolved], **options)},
            }
        return json_format.MessageToDict(self.core.status(name, version), always_print_fields_with_no_presence=True)

    def start(self) -> None:
        sock = _free_socket(self.port)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the fake TF Serving REST server did not start on port {self.port}")
            time.sleep(0.01)

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = self._thread = None


class _PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, core: ModelServer) -> None:
        self.core = core

    def Predict(self, request, context):
        try:
            spec = request.model_spec
            version = self.core.resolve(
                spec.name, spec.version.value if spec.HasField("version") else None, spec.version_label or None
            )
            specs = self.core.loaded[version].signatures.get(spec.signature_name or DEFAULT_SIGNATURE)
            for name, tensor in request.inputs.items():
                want = specs.structured_input_signature[1].get(name) if specs is not None else None
                if want is not None and tensor.dtype != want.dtype.as_datatype_enum:
                    raise ServingError(
                        Code.INVALID_ARGUMENT,
                        f"Expects arg {name} to be {want.dtype.name} but "
                        f"{tf.dtypes.as_dtype(tensor.dtype).name} is provided",
                    )
            inputs = {name: tf.make_ndarray(tensor) for name, tensor in request.inputs.items()}
            outputs = self.core.predict(version, spec.signature_name, inputs)
        except ServingError as error:
            context.abort(error.code, error.message)
        response = predict_pb2.PredictResponse()
        response.model_spec.name, response.model_spec.version.value = spec.name, version
        response.model_spec.signature_name = spec.signature_name or DEFAULT_SIGNATURE
        for name, array in outputs.items():
            response.outputs[name].CopyFrom(as_proto_field(array))
        return response

    def GetModelMetadata(self, request, context):
        spec = request.model_spec
        try:
            if list(request.metadata_field) != ["signature_def"]:
                raise ServingError(Code.INVALID_ARGUMENT, "Metadata field signature_def is the only one supported")
            version = self.core.resolve(
                spec.name, spec.version.value if spec.HasField("version") else None, spec.version_label or None
            )
        except ServingError as error:
            context.abort(error.code, error.message)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name, response.model_spec.version.value = spec.name, version
        response.metadata["signature_def"].Pack(self.core.signature_defs[version])
        return response


class _ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, core: ModelServer) -> None:
        self.core = core

    def GetModelStatus(self, request, context):
        spec = request.model_spec
        try:
            return self.core.status(spec.name, spec.version.value if spec.HasField("version") else None)
        except ServingError as error:
            context.abort(error.code, error.message)


class GrpcServer:
    """PredictionService and ModelService on a threaded grpc.server."""

    def __init__(self, core: ModelServer) -> None:
        self.core = core
        self.port = 0
        self._server: grpc.Server | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        server = grpc.server(ThreadPoolExecutor(max_workers=4))
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(_PredictionService(self.core), server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(_ModelService(self.core), server)
        port = server.add_insecure_port(f"127.0.0.1:{self.port}")
        if port == 0:
            raise RuntimeError(f"the fake TF Serving gRPC server cannot listen on port {self.port}")
        self.port = port
        server.start()
        self._server = server

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait()
        self._server = None


class FakeTFServing:
    """Both protocols over one set of loaded servables, like one tensorflow_model_server process."""

    def __init__(self, base: Path) -> None:
        self.core = ModelServer(base)
        self.rest = RestServer(self.core)
        self.grpc = GrpcServer(self.core)

    def start(self) -> FakeTFServing:
        self.rest.start()
        self.grpc.start()
        return self

    def stop(self) -> None:
        self.rest.stop()
        self.grpc.stop()


def main(argv: list[str] | None = None) -> int:
    base, rest_port, grpc_port = argv if argv is not None else sys.argv[1:]
    server = FakeTFServing(Path(base))
    server.rest.port, server.grpc.port = int(rest_port), int(grpc_port)
    server.start()
    print("ok", flush=True)
    try:
        for line in sys.stdin:
            command = line.strip()
            if command == "stop":
                server.stop()
            elif command == "start":
                server.start()
            else:
                print(f"unknown command {command!r}", file=sys.stderr, flush=True)
                continue
            print("ok", flush=True)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
