"""TF Serving's files from offline.serving.export: `models.config` and `batching_parameters.txt` in the export
base folder (rewritten by every export) and each version's `assets.extra/tf_serving_warmup_requests`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format, wrappers_pb2
from tensorflow_serving.apis import prediction_log_pb2
from tensorflow_serving.config import model_server_config_pb2

from model import contract
from offline.serving.export import (
    BATCHING,
    BATCHING_FILE,
    MODELS_CONFIG_FILE,
    WARMUP_FILE,
    WARMUP_K,
    export,
    models_config,
)


@pytest.fixture(scope="module")
def workdir(tiny_work: Path) -> Path:
    return tiny_work


def parse_models_config(text: str) -> model_server_config_pb2.ModelConfig:
    config = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    (model,) = config.model_config_list.config
    return model


def batching_parameters_message():
    """tensorflow_serving.BatchingParameters (session_bundle_config.proto, which the pip package lacks),
    rebuilt with its field names and types so text_format checks the file as the server parses it."""
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    proto = descriptor_pb2.FileDescriptorProto(
        name="batching.proto", package="tensorflow.serving", dependency=["google/protobuf/wrappers.proto"]
    )
    message = proto.message_type.add(name="BatchingParameters")
    F = descriptor_pb2.FieldDescriptorProto
    wrapped = [
        ("max_batch_size", "Int64Value"),
        ("batch_timeout_micros", "Int64Value"),
        ("max_enqueued_batches", "Int64Value"),
        ("num_batch_threads", "Int64Value"),
        ("thread_pool_name", "StringValue"),
    ]
    for number, (name, kind) in enumerate(wrapped, start=1):
        message.field.add(
            name=name, number=number, type=F.TYPE_MESSAGE, type_name=f".google.protobuf.{kind}", label=F.LABEL_OPTIONAL
        )
    message.field.add(name="allowed_batch_sizes", number=6, type=F.TYPE_INT64, label=F.LABEL_REPEATED)
    message.field.add(name="pad_variable_length_inputs", number=7, type=F.TYPE_BOOL, label=F.LABEL_OPTIONAL)
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters"))()


def test_models_config_serves_the_export_under_its_mount_path(workdir: Path) -> None:
    base = workdir / "export"
    model = parse_models_config((base / MODELS_CONFIG_FILE).read_text())
    meta = json.loads((base / "1" / contract.ASSETS_EXTRA / contract.SERVING_META_FILE).read_text())
    assert model.name == meta["model_name"] == "vecf"
    assert model.base_path == "/models/vecf" and model.model_platform == "tensorflow"
    assert list(model.model_version_policy.specific.versions) == [1]
    assert dict(model.version_labels) == {"stable": 1, "canary": 1}


def test_models_config_keeps_the_newest_versions_and_a_pinned_stable() -> None:
    model = parse_models_config(models_config("vecf", "/models/vecf", [1, 2, 3, 4], stable=2))
    assert list(model.model_version_policy.specific.versions) == [2, 3, 4]
    assert dict(model.version_labels) == {"stable": 2, "canary": 4}
    model = parse_models_config(models_config("vecf", "/m", [1, 2, 3], stable=1))
    assert list(model.model_version_policy.specific.versions) == [1, 2, 3]
    model = parse_models_config(models_config("vecf", "/m", [4, 9]))
    assert dict(model.version_labels) == {"stable": 9, "canary": 9}
    with pytest.raises(ValueError, match="stable version 7 is not among the exported versions"):
        models_config("vecf", "/m", [1, 2], stable=7)


def test_batching_parameters_parse_as_tf_serving_reads_them(workdir: Path) -> None:
    params = text_format.Parse((workdir / "export" / BATCHING_FILE).read_text(), batching_parameters_message())
    assert {name: getattr(params, name).value for name in BATCHING} == BATCHING
    assert params.num_batch_threads.value >= 1 and params.max_batch_size.value >= 1


def test_warmup_requests_run_against_the_saved_model(workdir: Path) -> None:
    version_dir = workdir / "export" / "1"
    records = tf.data.TFRecordDataset(str(version_dir / contract.ASSETS_EXTRA / WARMUP_FILE))
    logs = [prediction_log_pb2.PredictionLog.FromString(record.numpy()) for record in records]
    assert [log.predict_log.request.model_spec.signature_name for log in logs] == [s.name for s in contract.SIGNATURES]
    loaded = tf.saved_model.load(str(version_dir))
    known_user = (workdir / "runs" / "vecf" / "users.txt").read_text().split()
    outputs = {}
    for log in logs:
        request = log.predict_log.request
        sig = next(s for s in contract.SIGNATURES if s.name == request.model_spec.signature_name)
        assert request.model_spec.name == "vecf"
        assert {name: tf.dtypes.as_dtype(t.dtype).name for name, t in request.inputs.items()} == {
            name: dtype for name, (dtype, _shape) in sig.inputs.items()
        }, sig.name
        result = loaded.signatures[sig.name](**{n: tf.constant(tf.make_ndarray(t)) for n, t in request.inputs.items()})
        assert set(result) == set(sig.outputs), sig.name
        outputs[sig.name] = {name: tensor.numpy() for name, tensor in result.items()}
    user = logs[0].predict_log.request.inputs["user_id"].string_val[0].decode()
    assert user in known_user and outputs["user_embedding"]["known"].tolist() == [True]  # a real, known user
    assert outputs["recommend"]["item_ids"].shape == (1, WARMUP_K)
    assert np.isfinite(outputs["score"]["scores"]).all()  # recommended items: all known to the model
    assert outputs["attention"]["attention"].sum() == pytest.approx(1.0, abs=1e-4)


def test_a_new_export_rewrites_the_base_files(workdir: Path, tmp_path: Path) -> None:
    base = tmp_path / "export"
    shutil.copytree(workdir / "export", base)
    final = export(workdir / "runs" / "vecf", base, serving_base_path="/srv/models/vecf")
    assert final == base / "2" and (final / contract.ASSETS_EXTRA / WARMUP_FILE).is_file()
    assert final.stat().st_mode & 0o777 == 0o755  # readable by a server running as another user
    model = parse_models_config((base / MODELS_CONFIG_FILE).read_text())
    assert model.base_path == "/srv/models/vecf"
    assert list(model.model_version_policy.specific.versions) == [1, 2]
    assert dict(model.version_labels) == {"stable": 2, "canary": 2}
    assert not list(base.glob(".*")), "no staging folder or temporary file left behind"
