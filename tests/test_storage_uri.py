"""A fine-tuning run whose storage_path is an object store (S3 over HTTP, served by moto on
127.0.0.1), with the registry in a folder: checkpoints, metrics.csv and the learning curve go to
the bucket, the selected checkpoint comes back for scoring and registration, and a rerun
resumes in place."""

from __future__ import annotations

import pytest

from conftest import tiny_spec
from jobs.spec import SpecError, parse_spec

BUCKET = "biomed-runs"


@pytest.fixture(scope="module")
def s3_options():
    """pyarrow's S3 URI options for a local moto server, with the bucket created."""
    import pyarrow.fs
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    options = f"endpoint_override={host}:{port}&scheme=http&region=us-east-1"
    fs, _ = pyarrow.fs.FileSystem.from_uri(f"s3://{BUCKET}?{options}&allow_bucket_creation=true")
    fs.create_dir(BUCKET)
    yield options
    server.stop()


def _keys(options: str, prefix: str) -> set[str]:
    import pyarrow.fs

    fs, path = pyarrow.fs.FileSystem.from_uri(f"s3://{prefix}?{options}")
    return {info.path.removeprefix(path + "/") for info in fs.get_file_info(pyarrow.fs.FileSelector(path, recursive=True))}


def test_uri_storage_needs_a_registry_folder_and_a_known_scheme(planted_dir, tmp_path):
    with pytest.raises(SpecError, match="set registry_storage_path to a folder every node sees"):
        parse_spec(tiny_spec(planted_dir, tmp_path, storage_path="s3://bucket/runs"))
    with pytest.raises(SpecError, match="storage_path scheme 'ftp'"):
        parse_spec(tiny_spec(planted_dir, tmp_path, storage_path="ftp://host/runs", registry_storage_path=str(tmp_path)))
    with pytest.raises(SpecError, match="registry_storage_path 's3://bucket/reg'"):
        parse_spec(tiny_spec(planted_dir, tmp_path, storage_path="s3://bucket/runs", registry_storage_path="s3://bucket/reg"))
    spec = parse_spec(tiny_spec(planted_dir, tmp_path, storage_path="gs://bucket/runs", registry_storage_path=str(tmp_path / "shared")))
    assert (spec.storage_path, spec.registry_storage) == ("gs://bucket/runs", str(tmp_path / "shared"))


def test_a_search_refuses_uri_storage_before_starting(planted_dir, tmp_path):
    from jobs.tune import tune_search

    raw = tiny_spec(planted_dir, tmp_path, storage_path="s3://bucket/runs", registry_storage_path=str(tmp_path),
                    tune={"num_samples": 2, "search_space": {"learning_rate": {"loguniform": [1e-4, 1e-2]}}})
    spec = parse_spec(raw)
    with pytest.raises(ValueError, match="searches need a folder every node sees"):
        tune_search(spec)


def test_run_on_s3_registers_from_the_bucket_and_resumes_in_place(ray_cluster, s3_options, planted_dir, tmp_path, monkeypatch):
    from biomed.checkpoint import Predictor
    from jobs.train import train

    monkeypatch.chdir(tmp_path)  # nothing of the run may land in a local folder
    base = tiny_spec(planted_dir, tmp_path)
    raw = tiny_spec(
        planted_dir, tmp_path, training={**base["training"], "epochs": 3},
        storage_path=f"s3://{BUCKET}/runs?{s3_options}", registry_storage_path=str(tmp_path / "shared"),
    )
    summary = train(parse_spec(raw))
    name = summary["run_name"]
    assert summary["run_path"] == f"s3://{BUCKET}/runs/{name}"  # no endpoint options in summaries
    assert summary["learning_curve_png"] == f"s3://{BUCKET}/runs/{name}/learning_curve.png"
    keys = _keys(s3_options, f"{BUCKET}/runs/{name}")
    assert {"metrics.csv", "learning_curve.png"} <= keys
    assert any(k.startswith("checkpoint_epoch_") and k.endswith("/model/model.safetensors") for k in keys)
    assert summary["registered"]["path"].startswith(str(tmp_path / "shared" / "registry"))
    assert summary["test_metrics"]["accuracy"] > 0.9
    predictor = Predictor(directory=summary["registered"]["path"])
    assert predictor.describe(predictor.predict(["a clinical note"])[0])["label"] in {"cardiac", "renal", "hepatic"}
    assert not (tmp_path / "runs").exists() and [p.name for p in tmp_path.iterdir()] == ["shared"]

    again = train(parse_spec(raw))  # same spec and data: the same run, finished, found in the bucket
    assert again["run_name"] == name
    assert again["registered"]["version"] == summary["registered"]["version"]  # the same checkpoint, not a new version
