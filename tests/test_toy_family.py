"""A family defined outside the service (tests/toy_family.py) is one registration away from
training on Ray, predicting from the registry and serving over HTTP, through the public entry
points and with no other module edited; and outside biomed/families/, no code names a family."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest

from biomed.families import register_family
from tests.run_hooks import Broken, Recorder
from tests.toy_family import BITS

TOKEN = "toy-token-0123456789"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained(ray_cluster, tmp_path_factory):
    from jobs.spec import parse_spec
    from jobs.train import train

    assert register_family(BITS) is BITS  # the one call
    data = tmp_path_factory.mktemp("bits")
    pq.write_table(BITS.planted(600, seed=1)[0], data / "train.parquet")
    pq.write_table(BITS.planted(200, seed=2)[0], data / "test.parquet")
    storage = data / "runs"
    raw = {
        "name": "toy-bits", "task": {"name": "bits_classification"},
        "data": {"train_path": str(data / "train.parquet"), "test_path": str(data / "test.parquet")},
        "model": {"backbone": "bits-mlp", "hidden": 32},
        "training": {"epochs": 30, "batch_size_per_worker": 32, "learning_rate": 3e-2, "warmup_ratio": 0.0},
        "scaling": {"num_workers": 2}, "storage_path": str(storage),
    }
    events = data / "events.jsonl"
    summary = train(parse_spec(raw), hooks=[Broken(), Recorder(events)])
    return {"summary": summary, "storage": storage, "data": data, "events": [json.loads(line) for line in events.read_text().splitlines()]}


def test_the_toy_family_trains_on_ray_and_beats_its_baseline(trained):
    summary = trained["summary"]
    # The XOR of two bits: the MLP reads it, a linear model on the bits cannot.
    assert summary["test_metrics"]["accuracy"] > 0.95, summary["test_metrics"]
    assert summary["baseline"] == "bits_logreg" and summary["baseline_test_metrics"]["accuracy"] < 0.7
    assert summary["registered"]["is_best"] and summary["workers"]["world_size"] == 2
    folder = Path(summary["registered"]["path"])
    meta = json.loads((folder / "biomed.json").read_text())
    assert meta["encoder"] == {"input_kind": "bits", "width": 8} and meta["validator"]["kind"] == "bits"
    assert json.loads((folder / "config.json").read_text())["model_type"] == "toy-bits-mlp"


def test_the_run_lifecycle_calls_its_hooks_once_each_and_a_failing_hook_fails_nothing(trained):
    events, summary = trained["events"], trained["summary"]
    assert [e["event"] for e in events if e["event"] != "report"] == ["start", "register", "end"]
    assert all(e["run_name"] == summary["run_name"] and e["kind"] == "train" for e in events)
    reports = [e for e in events if e["event"] == "report"]
    # One report per epoch, from the controller, each with the validation metrics.
    assert [r["epoch"] for r in reports] == list(range(1, 31)) and all(r["accuracy"] is not None for r in reports)
    assert events[-1] == {"event": "end", "kind": "train", "run_name": summary["run_name"], "failed": False, "version": summary["registered"]["version"]}


def test_the_registered_toy_model_predicts_and_checks_its_inputs(trained):
    from biomed.checkpoint import Predictor
    from biomed.inputs import InvalidInputs

    predictor = Predictor(directory=trained["summary"]["registered"]["path"])
    rows = [predictor.describe(p) for p in predictor.predict(["10110011", "11010011", "01000000", "00111111"])]
    assert [r["label"] for r in rows] == ["odd", "even", "odd", "even"]
    with pytest.raises(InvalidInputs, match="row 1: character at position 2 is not 0 or 1"):
        predictor.predict(["0101", "01x1"])


def test_the_toy_family_is_served_over_http(trained):
    from ray import serve

    from cluster.local_head import free_port
    from serving.deploy import deploy

    port = free_port()
    import os

    os.environ["BIOMED_SERVE_TOKEN"] = TOKEN
    try:
        deploy(["toy-bits"], storage_path=trained["storage"], overrides={"port": port, "num_cpus_per_replica": 0.5, "max_replicas": 1})
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            ok = client.post("/toy-bits/predict", json={"inputs": ["10110011", "00111111"]}, headers=headers)
            assert ok.status_code == 200, ok.text
            assert [p["label"] for p in ok.json()["predictions"]] == ["odd", "even"]
            bad = client.post("/toy-bits/predict", json={"inputs": ["0120"]}, headers=headers)
            assert bad.status_code == 422 and "position 2" in bad.text
            assert client.get("/toy-bits/info", headers=headers).json()["task"] == "bits_classification"
            # Its own explain method answers the shared route: one entry per bit of the input.
            why = client.post("/toy-bits/explain", json={"inputs": ["10110011"], "target": "even"}, headers=headers)
            assert why.status_code == 200, why.text
            (row,) = why.json()["explanations"]
            assert row["target"] == "even" and [a["span"] for a in row["attributions"]] == [[i, i + 1] for i in range(8)]
            assert row["convergence_delta"] < 0.05
    finally:
        serve.shutdown()
        os.environ.pop("BIOMED_SERVE_TOKEN", None)


def test_the_spec_schema_has_an_arm_for_the_registered_family(trained):
    from jobs.spec import SpecError, parse_spec, spec_schema

    titles = {arm.get("$ref", "").rsplit("/", 1)[-1] for arm in spec_schema()["oneOf"]}
    assert "BitsJobSpec" in titles and "TextJobSpec" in titles
    raw = {"name": "x", "task": {"name": "bits_classification"}, "data": {"train_path": "t.parquet", "text_column": "bits"}, "model": {"backbone": "bits-mlp"}}
    with pytest.raises(SpecError, match="data.text_column: unknown key"):
        parse_spec(raw)


def test_outside_the_family_folders_no_code_compares_a_family_task_or_backbone_name():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "count_name_comparisons.py")], capture_output=True, text=True, check=True)
    counts = json.loads(out.stdout.strip().splitlines()[-1])
    assert counts["outside_families"] <= 10, out.stdout  # 79 before the family folders
