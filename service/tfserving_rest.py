"""TF Serving's REST API (https://www.tensorflow.org/tfx/serving/api_rest) with pooled httpx connections.

    POST /v1/models/NAME[/versions/N | /labels/L]:predict   {"signature_name": ..., "inputs": {...}}
    GET  /v1/models/NAME[/versions/N]                       status
    GET  /v1/models/NAME[/versions/N | /labels/L]/metadata  signatures

Columnar format: `inputs` maps names to (nested) lists; the reply's `outputs` is a dict of them, or the
bare tensor when the signature has one output. Errors are `{"error": msg}` with an HTTP status made
from the gRPC code (400 INVALID_ARGUMENT, 404 NOT_FOUND, 503 UNAVAILABLE, 504 DEADLINE_EXCEEDED, ...).
No TensorFlow here: tensors travel as JSON.
"""

from __future__ import annotations

import json
import socket
from typing import Any
from urllib.parse import quote

import anyio
import httpx
import numpy as np
import orjson

from model.contract import Signature
from service.errors import BackendUnavailable
from service.tfserving import DTYPE_NAMES, ModelNotFound, ModelServerError, ModelTarget, SignatureInfo, TransientError

# HTTP statuses TF Serving makes from gRPC codes, for messages (400 also covers FAILED_PRECONDITION).
_CODES = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 409: "ABORTED", 429: "RESOURCE_EXHAUSTED",
          499: "CANCELLED", 500: "INTERNAL", 501: "UNIMPLEMENTED", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
_BUSY = {429, 499, 504}  # the server is there but cannot answer now: 503 to our caller, no retry
_SOCKET_OPTIONS = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
_JSON_HEADERS = {"content-type": "application/json"}


def _path(target: ModelTarget, *, label_ok: bool = True) -> str:
    path = f"/v1/models/{quote(target.name, safe='')}"
    if target.version is not None:
        return f"{path}/versions/{target.version}"
    if target.label is not None and label_ok:
        return f"{path}/labels/{quote(target.label, safe='')}"
    return path


def parse_json(content: bytes) -> Any:
    """A reply body. orjson reads a /recommend reply (a thousand floats per user) about 6x faster than
    json.loads, which took 14% of the gateway's GIL time on REST; but TF Serving writes non-finite
    floats as bare NaN / Infinity / -Infinity tokens (the score signature's unknown items), which only
    json.loads accepts, so such a reply is read again by it."""
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return json.loads(content)


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    return str(body.get("error", body)) if isinstance(body, dict) else str(body)


class RestTransport:
    """One `httpx.AsyncClient` (created on first use, in the event loop that uses it)."""

    def __init__(self, url: str, pool_size: int) -> None:
        self.endpoint = url.rstrip("/")
        self._limits = httpx.Limits(max_connections=pool_size, max_keepalive_connections=pool_size)
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            # TCP_NODELAY: a request written as headers then body must not wait for the server's delayed ACK.
            transport = httpx.AsyncHTTPTransport(limits=self._limits, socket_options=_SOCKET_OPTIONS)
            self._client = httpx.AsyncClient(base_url=self.endpoint, transport=transport)
        return self._client

    async def _call(self, method: str, path: str, timeout_s: float, what: str, body: Any = None) -> Any:
        # orjson, not httpx's json.dumps: a request is small, but json was 2% of the gateway's CPU.
        content, headers = (None, None) if body is None else (orjson.dumps(body), _JSON_HEADERS)
        try:
            with anyio.fail_after(timeout_s):  # httpx's timeouts are per phase; this bounds the whole call
                response = await self._http().request(method, path, content=content, headers=headers, timeout=timeout_s)
        except TimeoutError as error:
            raise BackendUnavailable(f"{what}: no answer within {timeout_s:.3g} s") from error
        except httpx.TimeoutException as error:  # read/write/pool timeouts: the deadline is spent
            if isinstance(error, httpx.ConnectTimeout):
                raise TransientError(f"cannot connect ({error!r})") from error
            raise BackendUnavailable(f"{what}: no answer within {timeout_s:.3g} s ({error!r})") from error
        except httpx.TransportError as error:  # refused, reset, closed: safe to retry, a Predict changes nothing
            raise TransientError(f"cannot reach it ({error!r})") from error
        if response.status_code == 200:
            try:
                return parse_json(response.content)
            except ValueError as error:
                raise ModelServerError(f"{what}: the reply is not JSON ({error})") from error
        status, message = response.status_code, _error_message(response)
        code = _CODES.get(status, f"HTTP {status}")
        detail = f"{what}: {code} (HTTP {status}): {message}"
        if status == 503:
            raise TransientError(f"{code} (HTTP {status}): {message}")
        if status in _BUSY:
            raise BackendUnavailable(detail)
        if status == 404:
            raise ModelNotFound(f"{detail}; check TFSERVING_MODEL_NAME / TFSERVING_VERSION against models.config")
        if status == 400:
            raise ModelServerError(detail, code="model_invalid_argument")
        raise ModelServerError(detail)

    async def predict(self, target: ModelTarget, signature: Signature, inputs: dict[str, np.ndarray],
                      timeout_s: float) -> dict[str, Any]:
        body = {"signature_name": signature.name, "inputs": {name: a.tolist() for name, a in inputs.items()}}
        what = f"TF Serving at {self.endpoint}, {signature.name} on {target}"
        reply = await self._call("POST", f"{_path(target)}:predict", timeout_s, what, body)
        outputs = reply.get("outputs") if isinstance(reply, dict) else None
        if outputs is None:
            raise ModelServerError(f"{what}: the reply has no 'outputs' (keys {list(reply)[:5]})")
        if len(signature.outputs) == 1 and not isinstance(outputs, dict):  # one output: the bare tensor
            outputs = {next(iter(signature.outputs)): outputs}
        return outputs

    async def metadata(self, target: ModelTarget, timeout_s: float) -> tuple[int, dict[str, SignatureInfo]]:
        what = f"TF Serving at {self.endpoint}, metadata of {target}"
        reply = await self._call("GET", f"{_path(target)}/metadata", timeout_s, what)
        try:
            version = int(reply["model_spec"]["version"])
            defs = reply["metadata"]["signature_def"]["signature_def"]
            signatures = {
                name: ({k: DTYPE_NAMES.get(v["dtype"], v["dtype"]) for k, v in d.get("inputs", {}).items()},
                       set(d.get("outputs", {})))
                for name, d in defs.items()
            }
        except (KeyError, TypeError, ValueError) as error:
            raise ModelServerError(f"{what}: unexpected metadata reply ({error!r})") from error
        return version, signatures

    async def status(self, target: ModelTarget, timeout_s: float) -> dict[int, str]:
        what = f"TF Serving at {self.endpoint}, status of {target}"
        reply = await self._call("GET", _path(target, label_ok=False), timeout_s, what)  # status ignores labels
        try:
            return {int(s["version"]): str(s["state"]) for s in reply["model_version_status"]}
        except (KeyError, TypeError, ValueError) as error:
            raise ModelServerError(f"{what}: unexpected status reply ({error!r})") from error

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()
