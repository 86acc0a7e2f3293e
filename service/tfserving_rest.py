"""TF Serving's REST API (https://www.tensorflow.org/tfx/serving/api_rest) with pooled aiohttp connections.

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
from typing import Any
from urllib.parse import quote

import aiohttp
import anyio
import numpy as np
import orjson

from model.contract import Signature
from service.errors import BackendUnavailable
from service.tfserving import DTYPE_NAMES, ModelNotFound, ModelServerError, ModelTarget, SignatureInfo, TransientError

# HTTP statuses TF Serving makes from gRPC codes, for messages (400 also covers FAILED_PRECONDITION).
_CODES = {
    400: "INVALID_ARGUMENT",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_BUSY = {429, 499, 504}  # the server is there but cannot answer now: 503 to our caller, no retry
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


def _error_message(content: bytes, reason: str) -> str:
    try:
        body = json.loads(content)
    except ValueError:
        return content.decode("utf-8", "replace")[:300] or reason
    return str(body.get("error", body)) if isinstance(body, dict) else str(body)


class RestTransport:
    """One `aiohttp.ClientSession` (created on first use, in the event loop that uses it).

    aiohttp, not httpx: measured on 8 concurrent keep-alive calls to a local server, httpx's client
    cost 0.85-0.92 ms of CPU a call and aiohttp's 0.15 (the gateway's whole REST cost was ~1.4 ms)."""

    def __init__(self, url: str, pool_size: int) -> None:
        self.endpoint = url.rstrip("/")
        self.pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            # The connector pools keep-alive connections (TCP_NODELAY is aiohttp's default: a request
            # written as headers then body must not wait for the server's delayed ACK).
            connector = aiohttp.TCPConnector(limit=self.pool_size, limit_per_host=self.pool_size)
            self._session = aiohttp.ClientSession(connector=connector)  # full URLs: keeps a path prefix
        return self._session

    async def _call(self, method: str, path: str, timeout_s: float, what: str, body: Any = None) -> Any:
        # orjson, not json.dumps: a request is small, but json was 2% of the gateway's CPU.
        content, headers = (None, None) if body is None else (orjson.dumps(body), _JSON_HEADERS)
        try:
            with anyio.fail_after(timeout_s):  # bounds the whole call, connecting and reading included
                async with self._http().request(
                    method, self.endpoint + path, data=content, headers=headers
                ) as response:
                    status, reason = response.status, response.reason or ""
                    payload = await response.read()
        except aiohttp.ConnectionTimeoutError as error:  # (a ServerTimeoutError) nothing was sent yet
            raise TransientError(f"cannot connect ({error!r})") from error
        except TimeoutError as error:  # our deadline, or aiohttp's read timeout: the time is spent
            raise BackendUnavailable(f"{what}: no answer within {timeout_s:.3g} s") from error
        except aiohttp.ClientError as error:  # refused, reset, closed: safe to retry, a Predict changes nothing
            raise TransientError(f"cannot reach it ({error!r})") from error
        if status == 200:
            try:
                return parse_json(payload)
            except ValueError as error:
                raise ModelServerError(f"{what}: the reply is not JSON ({error})") from error
        message = _error_message(payload, reason)
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

    async def predict(
        self, target: ModelTarget, signature: Signature, inputs: dict[str, np.ndarray], timeout_s: float
    ) -> dict[str, Any]:
        body = {"signature_name": signature.name, "inputs": {name: a.tolist() for name, a in inputs.items()}}
        what = f"TF Serving at {self.endpoint}, {signature.name} on {target}"
        reply = await self._call("POST", f"{_path(target)}:predict", timeout_s, what, body)
        outputs = reply.get("outputs") if isinstance(reply, dict) else None
        if outputs is None:
            raise ModelServerError(f"{what}: the reply has no 'outputs' (keys {list(reply)[:5]})")
        # A signature served with one output replies with the bare tensor, the contract's first output (an
        # older export's attention signature has only that one: it lacks the `added_outputs`).
        if not isinstance(outputs, dict):
            outputs = {next(iter(signature.outputs)): outputs}
        return outputs

    async def metadata(self, target: ModelTarget, timeout_s: float) -> tuple[int, dict[str, SignatureInfo]]:
        what = f"TF Serving at {self.endpoint}, metadata of {target}"
        reply = await self._call("GET", f"{_path(target)}/metadata", timeout_s, what)
        try:
            version = int(reply["model_spec"]["version"])
            defs = reply["metadata"]["signature_def"]["signature_def"]
            signatures = {
                name: (
                    {k: DTYPE_NAMES.get(v["dtype"], v["dtype"]) for k, v in d.get("inputs", {}).items()},
                    set(d.get("outputs", {})),
                )
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
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
