"""Every family end to end on its planted signal: train on the session's Ray → registry →
predict from the registered folder, plus Tune on the survival c-index."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from biomed.checkpoint import Predictor
from jobs.resolve import resolve_raw
from jobs.spec import parse_spec
from jobs.splits import load_splits
from tests.conftest import FAMILY_SPECS, family_spec

# What each planted signal allows (chance in brackets), checked on the held-out test file.
LEARNED = {
    "dna": ("auroc", 0.8),  # (0.5) motif TATAAT present or not
    "protein": ("auroc", 0.9),  # (0.5) motif WCHW present or not
    "smiles": ("r2", 0.5),  # (0.0) value = #Cl + 0.5 #O + noise
    "tabular": ("auroc", 0.9),  # (0.5) x1 - x2 + 1.5 [site = b] > 0.3
    "survival": ("c_index", 0.7),  # (0.5) log-hazard 1.2 x1 - 0.8 x2 + 0.7 [stage = iii]
}


@pytest.mark.parametrize("family", list(FAMILY_SPECS))
def test_family_learns_its_planted_signal_and_round_trips(family_models, family_dir, tmp_path, family):
    summary = family_models[family]
    metric, floor = LEARNED[family]
    assert summary["test_metrics"][metric] > floor, summary["test_metrics"]
    main = summary["selection"]["metric"].removeprefix("val_")
    low, high = summary["test_metrics"][f"{main}_ci95"]
    assert low <= summary["test_metrics"][main] <= high
    assert summary["baseline_test_metrics"][main] == summary["baseline_test_metrics"][main]  # ran, not NaN
    if family in ("dna", "protein", "tabular"):
        assert 0.0 <= summary["test_metrics"]["ece"] <= 0.5  # calibration reported for classifiers

    # The registered folder: safetensors weights, its encoder, no pickles.
    model_dir = Path(summary["registered"]["path"])
    files = {p.name for p in model_dir.iterdir()}
    assert {"model.safetensors", "config.json", "biomed.json"} <= files
    assert ("tokenizer.json" in files) == (family in ("dna", "protein", "smiles"))
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pkl", ".pickle"))]

    # A fresh Predictor on the registered folder reproduces the job's test metrics from the
    # raw test file: the same validation, encoding and target scaling as in training.
    job = resolve_raw(family_spec(family, family_dir, tmp_path))
    test = load_splits(job).test
    predictor = Predictor(directory=model_dir)
    scores = job.task.compute_metrics(test.targets, predictor.predict(test.inputs))
    assert scores[metric] == pytest.approx(summary["test_metrics"][metric], abs=1e-6)


def test_predict_cli_answers_each_family_and_rejects_bad_input(family_models, tmp_path):
    storage = Path(family_models["dna"]["run_path"]).parent

    def predict(name: str, *inputs: str) -> subprocess.CompletedProcess:
        # Pinned versions: a planted model that does not beat its baseline (the forest on the
        # chlorine counts, say) is registered but not best, so NAME alone has no version to use.
        ref = f"{name}@{family_models[name.removeprefix('planted-')]['registered']['version']}"
        args = [sys.executable, "-m", "jobs.cli", "predict", ref, "--storage", str(storage), "--json"]
        for i in inputs:
            args += ["--input", i]
        return subprocess.run(args, capture_output=True, text=True, timeout=120)

    ok = predict("planted-dna", "ggccTATAATggcc" * 2, "GGCCGGCCGGCCGGCC")
    assert ok.returncode == 0, ok.stderr[-2000:]
    rows = json.loads(ok.stdout.strip().splitlines()[-1])["predictions"]
    assert [r["label"] for r in rows] == ["motif", "background"]
    bad = predict("planted-dna", "ACGTACGT", "ACGTZCGT")
    assert bad.returncode == 2 and "row 1: character 'Z' at position 4" in bad.stderr
    smiles = predict("planted-smiles", "CC(Cl)C(Cl)C(Cl)C", "CCCCCC")
    values = [r["value"] for r in json.loads(smiles.stdout.strip().splitlines()[-1])["predictions"]]
    assert values[0] > values[1] + 1.0  # three chlorines against none
    assert predict("planted-smiles", "C1CC").returncode == 2
    survival = predict("planted-survival", '{"x1": 2, "x2": -2, "x3": 0, "stage": "iii"}', '{"x1": -2, "x2": 2, "x3": 0, "stage": "i"}')
    risks = [r["risk_score"] for r in json.loads(survival.stdout.strip().splitlines()[-1])["predictions"]]
    assert risks[0] > risks[1]
    missing = predict("planted-tabular", '{"x1": 1.0}')
    assert missing.returncode == 2 and "missing features ['site', 'x2', 'x3', 'x4']" in missing.stderr


def test_tune_searches_a_survival_model_on_its_c_index(ray_cluster, family_dir, tmp_path):
    from jobs.registry import Registry
    from jobs.train import train
    from jobs.tune import tune_search

    # `train` first runs the settings of the search's first trial to the end, in the same storage.
    # That trial's Train run must not "resume" this finished run: it would report nothing and
    # fail the search.
    storage = tmp_path / "runs"
    raw = family_spec("survival", family_dir, storage, checkpointing={"metric": "c_index", "mode": "max"})
    raw["training"] = {**raw["training"], "epochs": 3}
    trained = train(parse_spec(raw))
    raw["tune"] = {
        "metric": "c_index",
        "search_space": {"learning_rate": {"choice": [1e-4, 3e-3]}},
        "search_algorithm": "random",
        "num_samples": 2,
        "max_concurrent_trials": 2,
        "scheduler": {"type": "none"},
    }
    summary = tune_search(parse_spec(raw))
    assert summary["num_trials"] == 2
    assert summary["selection"]["metric"] == "val_c_index" and summary["selection"]["mode"] == "max"
    assert summary["registered"]["version"] == 2  # after the version `train` registered
    entry = Registry(root=storage / "registry").get("planted-survival@2")
    assert entry["task"] == "survival" and entry["test_metrics"]["c_index"] > 0.6
    assert entry["run_path"] != trained["run_path"]
    rows = pq.read_table(summary["results_parquet"]).to_pylist()
    assert summary["selection"]["value"] == pytest.approx(max(r["val_c_index"] for r in rows))
    assert np.isfinite(summary["selection"]["value"]) and summary["best_trial"]["val_c_index"] == summary["selection"]["value"]
    assert len({r["trial_id"] for r in rows}) == 2


def test_serve_answers_per_family_and_rejects_bad_inputs_with_422(family_models, monkeypatch):
    import httpx
    from ray import serve

    from cluster.local_head import free_port
    from serving.deploy import deploy

    token = "family-token-0123456789"
    monkeypatch.setenv("BIOMED_SERVE_TOKEN", token)
    storage = Path(family_models["dna"]["run_path"]).parent
    port = free_port()
    # Pinned versions (see the predict test): served by NAME@V, routed at /NAME@V/predict.
    refs = {f: f"planted-{f}@{family_models[f]['registered']['version']}" for f in ("smiles", "survival", "dna")}
    deploy(list(refs.values()), storage_path=storage, overrides={"port": port, "num_cpus_per_replica": 0.5, "max_replicas": 1})
    headers = {"Authorization": f"Bearer {token}"}
    url = f"http://127.0.0.1:{port}"
    try:
        def post(model: str, inputs) -> httpx.Response:
            return httpx.post(f"{url}/{refs[model.removeprefix('planted-')]}/predict", json={"inputs": inputs}, headers=headers, timeout=60)

        molecules = post("planted-smiles", ["CC(Cl)C(Cl)CCl", "CCCC"])
        assert molecules.status_code == 200, molecules.text
        values = [p["value"] for p in molecules.json()["predictions"]]
        assert values[0] > values[1] + 1.0
        bad_smiles = post("planted-smiles", ["CCO", "C1CC"])
        assert bad_smiles.status_code == 422
        assert bad_smiles.json()["detail"][0]["loc"] == ["body", "inputs", 1] and "does not parse" in bad_smiles.json()["detail"][0]["msg"]
        assert "C1CC" not in bad_smiles.text  # the position is named, the input never echoed

        record = {"x1": 1.5, "x2": -1.0, "x3": 0.0, "stage": "iii"}
        risks = post("planted-survival", [record, {**record, "x1": -1.5, "x2": 1.0, "stage": "i"}])
        assert risks.status_code == 200, risks.text
        scores = [p["risk_score"] for p in risks.json()["predictions"]]
        assert scores[0] > scores[1]
        for bad, expected in (
            ({"x1": 1.0, "x2": 0.0, "stage": "i"}, "missing features ['x3']"),
            ({**record, "x1": "high"}, "feature 'x1' must be a finite number"),
            ({**record, "weight": 70}, "unknown features ['weight']"),
        ):
            response = post("planted-survival", [record, bad])
            assert response.status_code == 422, (bad, response.text)
            detail = response.json()["detail"][0]
            assert detail["loc"] == ["body", "inputs", 1] and expected in detail["msg"], detail
        assert post("planted-survival", ["not a record"]).status_code == 422

        dna = post("planted-dna", ["ACGTTATAATACGTAC", "acgtacgtacgtacgt"])
        assert dna.status_code == 200 and [p["label"] for p in dna.json()["predictions"]] == ["motif", "background"]
        assert set(dna.json()["predictions"][0]["probabilities"]) == {"background", "motif"}
        bad_dna = post("planted-dna", "ACGTRACG")
        assert bad_dna.status_code == 422 and "'R' at position 4" in bad_dna.json()["detail"][0]["msg"]
    finally:
        serve.shutdown()


def test_human_summaries_print_metrics_and_intervals(family_models, capsys):
    from jobs.cli import _print_train_summary

    _print_train_summary(family_models["survival"])
    out = capsys.readouterr().out
    assert "test model: c_index=0." in out and "c_index_ci95=[0." in out
    assert "test baseline cox_ph: c_index=0." in out


@pytest.mark.parametrize("family", ["dna", "smiles", "tabular"])
def test_conformal_sets_cover_the_test_rows_at_their_level(family_models, family):
    """Split conformal, calibrated on validation at registration: the test coverage recorded for
    alpha 0.1 and 0.2 is within a binomial tolerance of 1 - alpha, and the registered folder
    holds the scores only (no input, no target)."""
    summary = family_models[family]
    conformal = summary["conformal"]
    assert conformal["supported"] and conformal["calibration_rows"] > 30
    for row in conformal["test_coverage"]:
        alpha, n = row["alpha"], row["rows"]
        tolerance = 3 * np.sqrt(alpha * (1 - alpha) / n) + 1 / (conformal["calibration_rows"] + 1)
        assert abs(row["coverage"] - (1 - alpha)) <= tolerance, row
    folder = Path(summary["registered"]["path"])
    stored = json.loads((folder / "conformal.json").read_text())
    assert set(stored) == {"method", "calibration_rows", "scores"} and len(stored["scores"]) == conformal["calibration_rows"]
    assert all(isinstance(s, float) for s in stored["scores"]) and stored["scores"] == sorted(stored["scores"])
    predictor = Predictor(directory=folder)
    first = predictor.predict(predictor.validate([_example(family)]))[0]
    wide, narrow = predictor.describe(first, alpha=0.05), predictor.describe(first, alpha=0.5)
    if "prediction_set" in wide:
        assert set(narrow["prediction_set"]) <= set(wide["prediction_set"])
    else:
        assert wide["interval"][0] <= narrow["interval"][0] <= first <= narrow["interval"][1] <= wide["interval"][1]


def test_survival_gives_no_conformal_set_and_says_why(family_models):
    conformal = family_models["survival"]["conformal"]
    assert conformal == {"supported": False, "reason": "survival risk scores have no conformal set"}
    assert not (Path(family_models["survival"]["registered"]["path"]) / "conformal.json").exists()


def _example(family: str):
    return {
        "dna": "GGCCTATAATGGCCGGCCGGCCGGCCGGCCGGCCGGCCGGCCGGCCGG",
        "smiles": "CC(Cl)C(=O)O",
        "tabular": {"x1": 1.0, "x2": -0.5, "x3": 0.0, "x4": None, "site": "b"},
    }[family]
