"""The TF Serving backends (REST and gRPC) against TF Serving's protocols served from a real export
(bench/fake_tfserving.py): the same answers as the in-process backend, through the gateway too; TF
Serving's errors mapped onto ours; outages answered 503 within the timeout, and recovered from."""

from __future__ import annotations

import itertools
import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import grpc
import numpy as np
import pytest
import tensorflow as tf
from fastapi.testclient import TestClient

from bench.fake_tfserving import FakeTFServing
from model import explanation
from model.contract import SIGNATURES
from service.app import create_app
from service.backend import InProcessBackend
from service.backends import create_backend
from service.batching import BatchingBackend
from service.errors import BackendUnavailable
from service.settings import Settings
from service.tfserving import ModelNotFound, ModelServerError, ModelTarget, RemoteBackend, check_signatures
from service.tfserving_grpc import numpy_to_tensor, tensor_to_numpy
from tests.fixtures_model import write_export_without_score_parts

REMOTE = ("rest", "grpc")
GRID = (7, 7)
TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def export_base(tiny_work: Path) -> Path:
    return tiny_work / "export"


@pytest.fixture(scope="module")
def fake(export_base: Path) -> Iterator[FakeTFServing]:
    server = FakeTFServing(export_base).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def old_base(export_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same model exported as before the attention signature returned the score's parts."""
    return write_export_without_score_parts(export_base / "1", tmp_path_factory.mktemp("old") / "export").parent


@pytest.fixture
def private_fake(export_base: Path) -> Iterator[FakeTFServing]:
    """A fake this test may stop, hang and restart."""
    server = FakeTFServing(export_base).start()
    yield server
    server.stop()


def settings_for(kind: str, fake: FakeTFServing, export_base: Path, **overrides) -> Settings:
    values = dict(
        model_dir=export_base,
        model_backend=kind,
        redis_url=None,
        tfserving_rest_url=fake.rest.url,
        tfserving_grpc_target=fake.grpc.target,
        tfserving_timeout_s=TIMEOUT_S,
        tfserving_retries=2,
        tfserving_backoff_s=0.02,
    )
    return Settings(**(values | overrides))


def remote(kind: str, fake: FakeTFServing, export_base: Path, **overrides) -> RemoteBackend:
    """The remote backend create_backend makes, taken out of its batching wrapper (BATCH_ROWS > 0)."""
    backend = create_backend(settings_for(kind, fake, export_base, **overrides), export_base / "1", GRID)
    if isinstance(backend, BatchingBackend):
        backend = backend.backend
    assert isinstance(backend, RemoteBackend)
    return backend


async def _answers(backend) -> dict:
    """Every ModelBackend method, on a few users (one unknown) and items (one unknown), k=5."""
    try:
        users = await backend.users(4)
        embeddings, known = await backend.user_embeddings([*users[:3], "nobody"])
        recs = await backend.recommend(embeddings[:3], 5)
        two_stage = await backend.recommend_candidates(embeddings[:3], 5, 12)
        top = [items for items, *_ in recs]
        scores = await backend.score(embeddings[:3], [[*items[:2], "no-such-item"] for items in top])
        attention = await backend.attention(embeddings[:3], [top[0][0], top[1][1], "no-such-item"])
        popular = await backend.popular(5)
        # new shoppers: a history of known items, one of an unknown item only, one with a repeat and an unknown
        histories = [top[0][:3], ["no-such-item"], [top[1][0], "no-such-item", top[1][0]]]
        folded, folded_known = await backend.history_embeddings(histories)
        return {
            "folded": folded,
            "folded_known": folded_known,
            "users": users,
            "embeddings": embeddings,
            "known": known,
            "recs": recs,
            "two_stage": two_stage,
            "scores": scores,
            "attention": attention,
            "popular": popular,
        }
    finally:
        await backend.aclose()


def test_remote_backends_answer_like_the_in_process_backend(fake: FakeTFServing, export_base: Path) -> None:
    want = anyio.run(_answers, InProcessBackend(export_base / "1", GRID))
    assert want["known"].tolist() == [True, True, True, False]
    for kind, batched in itertools.product(REMOTE, (False, True)):
        backend = remote(kind, fake, export_base)
        if batched:  # as the gateway runs it by default
            backend = BatchingBackend(backend, max_rows=16)
        assert backend.version == 1
        got = anyio.run(_answers, backend)
        assert got["users"] == want["users"], kind
        np.testing.assert_array_equal(got["known"], want["known"])
        np.testing.assert_allclose(got["embeddings"], want["embeddings"], rtol=1e-6)
        for key in ("recs", "two_stage"):
            for got_rec, rec in zip(got[key], want[key], strict=True):
                (got_ids, got_scores, got_grids, got_named), (ids, scores, grids, named) = got_rec, rec
                assert got_ids == ids, (kind, key)
                np.testing.assert_allclose(got_scores, scores, rtol=1e-6)
                assert got_grids.shape == (5, *GRID)
                np.testing.assert_allclose(got_grids, grids, rtol=1e-6, atol=1e-7)
                # "because you bought", answered with the ranking, names the same history items everywhere
                assert named is not None and named[0].shape == (5, 3), (kind, key)
                assert got_named[0].tolist() == named[0].tolist(), (kind, key)
                np.testing.assert_allclose(got_named[1], named[1], rtol=1e-5, atol=1e-6)
        assert np.isneginf(got["scores"][:, 2]).all(), kind  # the unknown item: -inf (REST: -Infinity)
        np.testing.assert_allclose(got["scores"], want["scores"], rtol=1e-6)
        for name in ("grids", "contributions", "concentration", "visual_share"):
            np.testing.assert_allclose(
                getattr(got["attention"], name),
                getattr(want["attention"], name),
                rtol=1e-6,
                atol=1e-7,
                err_msg=f"{kind} {name}",
            )
        assert got["popular"][0] == want["popular"][0], kind
        np.testing.assert_allclose(got["popular"][1], want["popular"][1])
        assert got["folded_known"].tolist() == [True, False, True], kind
        np.testing.assert_allclose(got["folded"], want["folded"], rtol=1e-5, atol=1e-6, err_msg=kind)


@pytest.mark.parametrize("candidates", [0, 20])
@pytest.mark.parametrize("kind", REMOTE)
def test_gateway_recommends_and_explains_through_tf_serving(
    kind: str, candidates: int, fake: FakeTFServing, export_base: Path
) -> None:
    with TestClient(create_app(settings_for(kind, fake, export_base, candidates=candidates))) as client:
        user = client.get("/users", params={"limit": 1}).json()["users"][0]
        r = client.get("/recommend", params={"user_id": user, "k": 5})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["personalized"] is True and body["model_version"] == 1 and r.headers["X-Model-Version"] == "1"
        assert len(body["items"]) == 5
        for item in body["items"]:
            assert np.sum(item["attention"]["weights"]) == pytest.approx(1.0, abs=1e-4)
        first = body["items"][0]
        r = client.get("/explain", params={"user_id": user, "item_id": first["item_id"]})
        assert r.status_code == 200, r.text
        assert r.json()["score"] == pytest.approx(first["score"], rel=1e-5)
        np.testing.assert_allclose(r.json()["attention"]["weights"], first["attention"]["weights"], atol=1e-6)
        fallback = client.get("/recommend", params={"user_id": "nobody", "k": 3}).json()
        assert fallback["personalized"] is False and len(fallback["items"]) == 3
        # a shopper the model never saw, from their recent items
        history = [item["item_id"] for item in body["items"][:3]]
        r = client.post("/recommend", json={"history": history, "k": 5})
        assert r.status_code == 200, r.text
        folded = r.json()
        assert folded["personalized"] is True and folded["user_id"] is None and folded["history_known"] == 3
        assert len(folded["items"]) == 5
        top = folded["items"][0]
        r = client.post("/explain", json={"history": history, "item_id": top["item_id"]})
        assert r.status_code == 200, r.text
        assert r.json()["score"] == pytest.approx(top["score"], rel=1e-5)
        r = client.get(top["heatmap_url"])
        assert r.status_code == 200 and r.headers["content-type"] == "image/png", r.text


def _explain(settings: Settings) -> dict:
    """/explain of the most active user's top item."""
    with TestClient(create_app(settings)) as client:
        user = client.get("/users", params={"limit": 1}).json()["users"][0]
        item = client.get("/recommend", params={"user_id": user, "k": 1}).json()["items"][0]["item_id"]
        r = client.get("/explain", params={"user_id": user, "item_id": item})
        assert r.status_code == 200, r.text
        return r.json()


def test_explain_takes_the_score_apart_alike_on_every_backend(fake: FakeTFServing, export_base: Path) -> None:
    bodies = {kind: _explain(settings_for(kind, fake, export_base)) for kind in ("inprocess", *REMOTE)}
    body = bodies["inprocess"]
    weights = np.asarray(body["attention"]["weights"], np.float64).ravel()
    assert body["concentration"] == pytest.approx(explanation.concentration(weights, np), abs=1e-5)
    visual = body["visual_score"]
    collaborative = body["score"] - body["repeat_boost"] - visual
    assert body["visual_share"] == pytest.approx(abs(visual) / (abs(collaborative) + abs(visual)), rel=1e-4)
    regions = body["top_regions"]
    denominators = [r["contribution"] / r["share"] for r in regions]  # one sum of |contributions| for all
    np.testing.assert_allclose(denominators, denominators[0], rtol=1e-4)
    assert abs(denominators[0]) >= abs(visual) - 1e-7  # |sum| <= sum of |.|
    reason = explanation.uninformative_reason(body["concentration"], body["visual_share"])
    assert body["informative"] is (reason is None) and body["reason"] == reason
    for kind in REMOTE:
        for name in ("concentration", "visual_score", "visual_share"):
            assert bodies[kind][name] == pytest.approx(body[name], rel=1e-5, abs=1e-7), (kind, name)
        assert [(r["row"], r["col"]) for r in bodies[kind]["top_regions"]] == [(r["row"], r["col"]) for r in regions]
        np.testing.assert_allclose(
            [r["share"] for r in bodies[kind]["top_regions"]], [r["share"] for r in regions], rtol=1e-5
        )


def test_an_export_without_the_score_parts_still_serves(fake: FakeTFServing, export_base: Path, old_base: Path) -> None:
    old_fake = FakeTFServing(old_base).start()
    try:
        new = _explain(settings_for("inprocess", fake, export_base))
        for kind in ("inprocess", *REMOTE):
            body = _explain(settings_for(kind, old_fake, old_base))
            assert body["item_id"] == new["item_id"], kind
            assert body["visual_score"] is None and body["visual_share"] is None, kind
            assert all(r["contribution"] is None and r["share"] is None for r in body["top_regions"]), kind
            # computed by the gateway from the map, with the formula the export uses
            assert body["concentration"] == pytest.approx(new["concentration"], abs=1e-5), kind
            assert body["informative"] is (body["concentration"] >= explanation.MIN_CONCENTRATION), kind
            # no history signature: a history is refused with the fix named, a user id still served
            with TestClient(create_app(settings_for(kind, old_fake, old_base))) as client:
                r = client.post("/recommend", json={"history": [body["item_id"]]})
                assert r.status_code == 409 and r.json()["error"]["code"] == "reexport_needed", (kind, r.text)
                assert "re-export" in r.json()["error"]["message"]
    finally:
        old_fake.stop()


@pytest.mark.parametrize("kind", REMOTE)
def test_server_down_is_503_with_retry_after_quickly_then_recovers(
    kind: str, private_fake: FakeTFServing, export_base: Path
) -> None:
    settings = settings_for(kind, private_fake, export_base)
    with TestClient(create_app(settings)) as client:
        users = client.get("/users", params={"limit": 3}).json()["users"]
        private_fake.stop()
        t0 = time.monotonic()
        r = client.get("/recommend", params={"user_id": users[1], "k": 5})
        elapsed = time.monotonic() - t0
        assert r.status_code == 503, r.text
        assert r.headers["Retry-After"] == str(settings.retry_after_s)
        assert r.json()["error"]["code"] == "backend_unavailable"
        assert "TF Serving at" in r.json()["error"]["message"]
        assert elapsed < TIMEOUT_S + 0.5, f"{elapsed:.2f} s: not bounded by the {TIMEOUT_S} s timeout"
        ready = client.get("/readyz")  # a load balancer stops sending traffic here
        assert ready.status_code == 503 and ready.headers["Retry-After"] == str(settings.retry_after_s), ready.text
        private_fake.start()  # same ports
        deadline = time.monotonic() + 5
        while (r := client.get("/recommend", params={"user_id": users[1], "k": 5})).status_code != 200:
            assert time.monotonic() < deadline, f"no recovery after the restart: {r.text}"
            time.sleep(0.1)
        assert client.get("/readyz").status_code == 200


@pytest.mark.parametrize("kind", REMOTE)
def test_hung_server_is_503_within_the_timeout(kind: str, private_fake: FakeTFServing, export_base: Path) -> None:
    settings = settings_for(kind, private_fake, export_base, tfserving_timeout_s=0.5)
    with TestClient(create_app(settings)) as client:
        private_fake.core.hang(5.0)
        t0 = time.monotonic()
        r = client.get("/recommend", params={"user_id": "u00001", "k": 5})
        elapsed = time.monotonic() - t0
        private_fake.core.release()
        assert r.status_code == 503 and "Retry-After" in r.headers, r.text
        assert "no answer within" in r.json()["error"]["message"]
        assert elapsed < 1.5, f"{elapsed:.2f} s: not bounded by the 0.5 s timeout"
        assert client.get("/recommend", params={"user_id": "u00001", "k": 5}).status_code == 200


@pytest.mark.parametrize("kind", REMOTE)
def test_tf_serving_errors_map_onto_our_error_shape(kind: str, fake: FakeTFServing, export_base: Path) -> None:
    with TestClient(create_app(settings_for(kind, fake, export_base))) as client:
        user = client.get("/users", params={"limit": 1}).json()["users"][0]
        fake.core.inject(grpc.StatusCode.INVALID_ARGUMENT, "Expects arg[0] to be float but string is provided")
        r = client.get("/recommend", params={"user_id": user, "k": 5})
        assert r.status_code == 502, r.text
        error = r.json()["error"]
        assert error["code"] == "model_invalid_argument"
        assert "INVALID_ARGUMENT" in error["message"] and "Expects arg[0] to be float" in error["message"]
        fake.core.inject(grpc.StatusCode.NOT_FOUND, "Servable not found for request: Specific(vecf, 1)")
        r = client.get("/recommend", params={"user_id": user, "k": 5})
        assert r.status_code == 503 and "Retry-After" in r.headers, r.text
        assert "Servable not found" in r.json()["error"]["message"]
        assert client.get("/recommend", params={"user_id": user, "k": 5}).status_code == 200


@pytest.mark.parametrize("kind", REMOTE)
def test_a_real_invalid_argument_names_it(kind: str, fake: FakeTFServing, export_base: Path) -> None:
    backend = remote(kind, fake, export_base)
    wrong_width = np.ones((1, 3), np.float32)  # the model's embeddings are 8 wide

    async def score() -> None:
        try:
            await backend.score(wrong_width, [["i0000001"]])
        finally:
            await backend.aclose()

    with pytest.raises(ModelServerError, match="INVALID_ARGUMENT") as caught:
        anyio.run(score)
    assert caught.value.code == "model_invalid_argument" and caught.value.status_code == 502


@pytest.mark.parametrize("kind", REMOTE)
def test_unavailable_is_retried_a_bounded_number_of_times(kind: str, fake: FakeTFServing, export_base: Path) -> None:
    backend = remote(kind, fake, export_base)
    calls = fake.core.predict_calls

    async def scenario() -> None:
        try:
            fake.core.inject(grpc.StatusCode.UNAVAILABLE, "overloaded", times=2)
            items, _ = await backend.popular(3)  # two 503 / UNAVAILABLE replies, then an answer
            assert len(items) == 3 and fake.core.predict_calls - calls == 3
            fake.core.inject(grpc.StatusCode.UNAVAILABLE, "overloaded", times=3)
            with pytest.raises(BackendUnavailable, match="overloaded.*3 attempts"):
                await backend.popular(3)
            assert fake.core.predict_calls - calls == 6
        finally:
            await backend.aclose()

    anyio.run(scenario)


@pytest.mark.parametrize("kind", REMOTE)
def test_startup_resolves_labels_and_refuses_what_it_cannot_serve(
    kind: str, fake: FakeTFServing, export_base: Path, caplog
) -> None:
    backend = remote(kind, fake, export_base, tfserving_version_label="stable")
    assert backend.version == 1 and backend.target.version == 1 and backend.target.label is None
    with pytest.raises(ValueError, match="TFSERVING_VERSION=2.*version folder 2"):
        remote(kind, fake, export_base, tfserving_version=2)
    with pytest.raises(ModelServerError, match="Unrecognized servable version label: gold"):
        remote(kind, fake, export_base, tfserving_version_label="gold")
    # Down, or not serving this version yet: logged; the caller (service.reload) decides whether to serve.
    down = dict(tfserving_rest_url="http://127.0.0.1:9", tfserving_grpc_target="127.0.0.1:9", tfserving_timeout_s=0.3)

    async def users_fail(backend: RemoteBackend, error: type[Exception]) -> None:
        try:
            with pytest.raises(error):
                await backend.users(3)
        finally:
            await backend.aclose()

    for overrides, error in [(down, BackendUnavailable), (dict(tfserving_model_name="nope"), ModelNotFound)]:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="service.tfserving"):
            backend = remote(kind, fake, export_base, **overrides)
        assert backend.version == 1 and "requests answer 503" in caplog.text
        anyio.run(users_fail, backend, error)
    assert "NOT_FOUND" in caplog.text and "'nope'" in caplog.text


def test_served_signatures_are_checked_against_the_contract() -> None:
    served = {s.name: ({n: dtype for n, (dtype, _) in s.inputs.items()}, set(s.outputs)) for s in SIGNATURES}
    check_signatures(served, ModelTarget("vecf", 1))
    inputs = served["attention"][0]
    check_signatures(served | {"attention": (inputs, {"attention"})}, ModelTarget("vecf", 1))  # an older export
    with pytest.raises(ValueError, match=r"attention lacks outputs \['attention'\]"):
        check_signatures(served | {"attention": (inputs, {"contributions"})}, ModelTarget("vecf", 1))
    del served["attention"]
    served["score"] = ({"embedding": "float32", "item_ids": "int64"}, {"scores"})
    with pytest.raises(ValueError, match="score takes .*'int64'.*no signature 'attention'.*offline.serving.export"):
        check_signatures(served, ModelTarget("vecf", 1))


@pytest.mark.parametrize(
    "array",
    [
        np.array([[1.5, -np.inf], [0.0, 3.25]], np.float32),
        np.array(7, np.int32),
        np.array([True, False]),
        np.array([["a", "é"], ["", "xyz"]], dtype=object),
        np.zeros((2, 0, 3), np.float32),
    ],
)
def test_tensor_protos_agree_with_tensorflow(array: np.ndarray) -> None:
    from tensorflow.core.framework import tensor_pb2

    proto = tensor_pb2.TensorProto()
    numpy_to_tensor(array, proto)
    theirs = tf.make_ndarray(proto)
    assert theirs.shape == array.shape
    if array.dtype == object:
        assert [b.decode() for b in theirs.ravel()] == list(array.ravel())
    else:
        np.testing.assert_array_equal(theirs, array)
    for made in (tf.make_tensor_proto(array if array.dtype != object else array.astype(str)), proto):
        ours = tensor_to_numpy(made)  # tensor_content (numbers) and string_val
        assert ours.shape == array.shape and ours.dtype == array.dtype
        assert ours.tolist() == array.tolist()


def test_tensor_protos_in_tensorflows_compact_form() -> None:
    compact = tf.make_tensor_proto(2.5, shape=[2, 2])  # float_val [2.5]: the last value repeats
    np.testing.assert_array_equal(tensor_to_numpy(compact), np.full((2, 2), 2.5, np.float32))
    truncated = tf.make_tensor_proto([1, 2], dtype=tf.int32, shape=[3])  # int_val [1, 2] -> [1, 2, 2]
    np.testing.assert_array_equal(tensor_to_numpy(truncated), np.array([1, 2, 2], np.int32))


def test_the_gateway_needs_no_tensorflow_for_rest(fake: FakeTFServing, export_base: Path) -> None:
    """`import service` never loads TensorFlow, and the REST backend runs without it."""
    script = f"""
import sys, anyio
from pathlib import Path
import service.app, service.tfserving, service.tfserving_grpc
from service.backends import create_backend
from service.settings import Settings
backend = create_backend(Settings(model_backend="rest", tfserving_rest_url={fake.rest.url!r}),
                         Path({str(export_base / "1")!r}), (7, 7))
assert len(anyio.run(backend.users, 2)) == 2
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "jax"))
assert not loaded, loaded[:5]
"""
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_rest_replies_parse_fast_and_with_tf_servings_non_finite_tokens() -> None:
    from service.tfserving_rest import parse_json

    assert parse_json(b'{"outputs": {"scores": [[1.5, 0.25]]}}') == {"outputs": {"scores": [[1.5, 0.25]]}}
    reply = parse_json(b'{"outputs": {"scores": [[1.5, -Infinity, NaN, Infinity]]}}')  # orjson rejects these
    scores = np.array(reply["outputs"]["scores"])
    assert scores[0, 0] == 1.5 and np.isneginf(scores[0, 1]) and np.isnan(scores[0, 2]) and np.isposinf(scores[0, 3])
    with pytest.raises(ValueError):
        parse_json(b"<html>bad gateway</html>")


def test_the_fake_writes_replies_as_tf_serving_does_fast_when_finite() -> None:
    from bench.fake_tfserving import encode_json
    from service.tfserving_rest import parse_json

    scores = np.array([[0.1, 2.5e-8, -3.0]], np.float32)
    items = np.array([[7, 1, 2]], np.int32)
    body = encode_json({"outputs": {"scores": scores, "items": items}})
    assert b"NaN" not in body and b"null" not in body
    reply = parse_json(body)["outputs"]
    assert np.array_equal(np.array(reply["scores"], np.float32), scores)  # float32 round-trips exactly
    assert reply["items"] == items.tolist()
    # orjson would write null: infinities and NaN take json's bare tokens, as TF Serving writes them
    body = encode_json({"outputs": np.array([[1.5, -np.inf, np.nan]], np.float32)})
    assert b"-Infinity" in body and b"NaN" in body and b"null" not in body
    bare = np.array(parse_json(body)["outputs"])
    assert bare[0, 0] == 1.5 and np.isneginf(bare[0, 1]) and np.isnan(bare[0, 2])
    assert parse_json(encode_json({"error": "Servable not found"})) == {"error": "Servable not found"}


def test_rest_client_keeps_a_path_prefix_in_the_url_and_reuses_connections() -> None:
    """TFSERVING_REST_URL may point behind a proxy at a path; every call goes below it, on pooled
    keep-alive connections."""
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    from service.tfserving_rest import RestTransport

    seen: list[tuple[str, str]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append((request.path, request.transport.get_extra_info("peername")[1]))
        return web.json_response({"model_version_status": [{"version": "3", "state": "AVAILABLE"}]})

    async def scenario() -> None:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", handler)
        async with TestServer(app, host="127.0.0.1") as server:
            transport = RestTransport(f"http://127.0.0.1:{server.port}/proxy/tfs/", pool_size=2)
            try:
                for _ in range(3):
                    assert await transport.status(ModelTarget("vecf"), timeout_s=5) == {3: "AVAILABLE"}
            finally:
                await transport.aclose()

    anyio.run(scenario)
    assert [path for path, _ in seen] == ["/proxy/tfs/v1/models/vecf"] * 3
    assert len({port for _, port in seen}) == 1  # one keep-alive connection served all three
