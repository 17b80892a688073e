"""The image family end to end on the session's Ray: a small CNN learns a planted lesion, beats
its pixel baseline, reloads from safetensors and biomed.json, predicts from the command line, and
serves over real HTTP (base64 JSON and multipart uploads) beside a text model."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from jobs.spec import parse_spec
from tests.conftest import lesion_spec


def test_a_small_cnn_learns_the_planted_lesion_and_beats_the_pixel_baseline(lesion_run):
    summary = lesion_run["summary"]
    assert summary["test_metrics"]["auroc"] > 0.9, summary["test_metrics"]
    assert summary["baseline"] == "pixel_logreg" and summary["beats_baseline"] and summary["registered"]["is_best"]
    assert summary["test_metrics"]["auroc"] > summary["baseline_test_metrics"]["auroc"]
    assert set(summary["test_metrics"]) >= {"auroc", "auprc", "macro_f1", "ece", "auroc_ci95"}
    assert summary["workers"]["world_size"] == 2


def test_the_checkpoint_records_its_transforms_and_predicts_the_same_from_files(lesion_run, lesion_dir):
    from sklearn.metrics import roc_auc_score

    from biomed.checkpoint import Predictor

    summary = lesion_run["summary"]
    folder = Path(summary["registered"]["path"])
    assert json.loads((folder / "config.json").read_text())["model_type"] == "biomed-cnn"
    assert not list(folder.glob("*.bin")) and (folder / "model.safetensors").is_file()
    pipeline = json.loads((folder / "biomed.json").read_text())["encoder"]["pipeline"]
    assert pipeline == {"image_size": 64, "channels": 3, "intensity": "unit", "augment_strength": 0.5}
    test = pq.read_table(lesion_dir / "test" / "test.parquet").to_pylist()
    files = [(lesion_dir / "test" / r["image"]).read_bytes() for r in test]
    predictor = Predictor(directory=folder)
    probabilities = predictor.predict(files)
    np.testing.assert_array_equal(probabilities, Predictor(directory=folder).predict(files))
    auroc = roc_auc_score([r["label"] == "lesion" for r in test], probabilities[:, predictor.labels.index("lesion")])
    # No augmentation at prediction: the run's own test figure comes back from the files.
    assert auroc == pytest.approx(summary["test_metrics"]["auroc"], abs=1e-4)


def test_predict_on_the_command_line_takes_image_files(lesion_run, lesion_dir, capsys):
    from jobs.cli import main

    storage, first = str(lesion_run["storage"]), pq.read_table(lesion_dir / "test" / "test.parquet").to_pylist()[:2]
    paths = [str(lesion_dir / "test" / r["image"]) for r in first]
    assert main(["predict", "lesions", "--storage", storage, "--json", "--image", paths[0], "--image", paths[1]]) == 0
    rows = json.loads(capsys.readouterr().out)["predictions"]
    assert [r["input"] for r in rows] == paths and all(set(r["probabilities"]) == {"clear", "lesion"} for r in rows)
    assert main(["predict", "lesions", "--storage", storage, "--input", "CCO"]) == 2  # an image model wants --image
    assert main(["predict", "lesions", "--storage", storage, "--image", str(lesion_dir / "missing.png")]) == 2


def test_images_over_real_serve_http_beside_a_text_model(lesion_run, lesion_dir, monkeypatch):
    import httpx
    from ray import serve

    from cluster.local_head import free_port
    from serving.deploy import deploy

    image_ref = f"lesions@{lesion_run['summary']['registered']['version']}"
    text_ref = f"planted@{lesion_run['text']['registered']['version']}"
    token = "image-token-0123456789"
    monkeypatch.setenv("BIOMED_SERVE_TOKEN", token)
    port = free_port()
    deploy([image_ref, text_ref], storage_path=lesion_run["storage"], overrides={"port": port, "num_cpus_per_replica": 0.5, "max_replicas": 1, "max_body_bytes": 4_000_000})
    try:
        headers = {"Authorization": f"Bearer {token}"}
        test = pq.read_table(lesion_dir / "test" / "test.parquet").to_pylist()[:3]
        files = [(lesion_dir / "test" / r["image"]).read_bytes() for r in test]
        url = f"http://127.0.0.1:{port}/{image_ref}/predict"
        as_json = httpx.post(url, json={"inputs": [base64.b64encode(f).decode() for f in files]}, headers=headers, timeout=60)
        assert as_json.status_code == 200, as_json.text
        uploaded = httpx.post(url, files=[("images", (f"{i}.png", f, "image/png")) for i, f in enumerate(files)], headers=headers, timeout=60)
        assert uploaded.status_code == 200, uploaded.text
        assert as_json.json()["predictions"] == uploaded.json()["predictions"]
        bad = httpx.post(url, json={"inputs": [base64.b64encode(files[0]).decode(), base64.b64encode(b"not an image").decode()]}, headers=headers, timeout=60)
        assert bad.status_code == 422 and bad.json()["detail"] == [{"loc": ["body", "inputs", 1], "msg": "not a PNG, JPEG or DICOM image", "type": "value_error"}]
        text = "patient reports mild symptoms and the clinician notes heart today"
        beside = httpx.post(f"http://127.0.0.1:{port}/{text_ref}/predict", json={"inputs": [text]}, headers=headers, timeout=60)
        assert beside.status_code == 200 and beside.json()["predictions"][0]["label"] == "cardiac"
    finally:
        serve.shutdown()


def test_tune_searches_the_learning_rate_and_augmentation_strength(ray_cluster, lesion_dir, tmp_path):
    from jobs.tune import tune_search

    raw = lesion_spec(lesion_dir, tmp_path, epochs=2)
    raw["name"], raw["scaling"] = "lesions-search", {"num_workers": 1, "cpus_per_worker": 1}
    raw["tune"] = {
        "num_samples": 2, "max_concurrent_trials": 2, "scheduler": {"type": "none"},
        "search_space": {"learning_rate": {"loguniform": [1e-3, 5e-3]}, "augment_strength": {"uniform": [0.0, 1.0]}},
    }
    summary = tune_search(parse_spec(raw))
    assert summary["num_trials"] == 2
    assert len({t["config"]["augment_strength"] for t in summary["trials"]}) == 2
    best = Path(summary["registered"]["path"]) / "biomed.json"
    recorded = json.loads(best.read_text())["encoder"]["pipeline"]["augment_strength"]
    assert recorded == pytest.approx(summary["best_trial"]["config"]["augment_strength"])


def test_image_regression_learns_the_lesion_size(ray_cluster, lesion_dir, tmp_path):
    from jobs.train import train

    raw = lesion_spec(lesion_dir, tmp_path, epochs=8)
    raw.update(name="lesion-size", task={"name": "image_regression"}, scaling={"num_workers": 1})
    raw["data"]["label_column"] = "lesion_radius"
    summary = train(parse_spec(raw))
    assert summary["baseline"] == "pixel_ridge" and summary["test_metrics"]["spearman"] > 0.6, summary["test_metrics"]
    assert summary["test_metrics"]["rmse"] < summary["baseline_test_metrics"]["rmse"]


def test_a_killed_augmented_run_resumes_with_the_weights_of_an_uninterrupted_one(ray_cluster, lesion_dir, tmp_path):
    import torch
    from safetensors.torch import load_file

    from jobs.resolve import resolve_raw
    from jobs.train import train
    from jobs.worker import MODEL_DIR, STATE_FILE
    from tests.conftest import committed, run_killed_once

    def spec_in(storage: Path):
        raw = lesion_spec(lesion_dir, storage, epochs=3, augment_strength=1.0)
        raw["failure"] = {"max_failures": 2}
        raw["checkpointing"] = {"every_n_steps": 4, "num_to_keep": 2}
        job = resolve_raw(raw)
        return job, Path(job.spec.storage_path) / job.run_name

    spec, whole_dir = spec_in(tmp_path / "whole")
    train(spec)
    killed, killed_dir = spec_in(tmp_path / "killed")
    run_killed_once(lambda: train(killed), ready=committed(killed_dir, "checkpoint_epoch_0001_batch_"))
    starts = torch.load(killed_dir / "checkpoint_epoch_0003" / STATE_FILE, weights_only=True)["attempt_start_positions"]
    assert len(starts) == 2 and starts[1][0] >= 1, starts  # resumed from a checkpoint, not restarted
    # Every image was transformed as in the uninterrupted run (seeded per image and epoch, not by
    # a stream the kill cut short), so the weights agree.
    ours, reference = (load_file(str(d / "checkpoint_epoch_0003" / MODEL_DIR / "model.safetensors")) for d in (killed_dir, whole_dir))
    assert ours.keys() == reference.keys()
    for key in reference:
        assert torch.allclose(ours[key], reference[key], atol=1e-5, rtol=1e-4), key
