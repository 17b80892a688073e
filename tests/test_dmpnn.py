"""The dmpnn backbone (chemprop's D-MPNN in the service's Ray Train loop) and the baseline guard.

On a planted set (label: a nitro group attached, among N and O distractors), through the public
entry points: `train` on the session's Ray, the registry, `biomed models promote`, `biomed
predict`, and a real Serve deployment over HTTP.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

from biomed.checkpoint import Predictor
from biomed.families.molecules.planted import planted_nitro_table
from biomed.inputs import InvalidInputs
from jobs.registry import RegistryError, registry_for
from jobs.resolve import resolve_raw
from jobs.spec import SpecError, parse_spec
from tests.conftest import NITRO_EPOCHS, nitro_spec


@pytest.fixture(scope="module")
def weak_run(ray_cluster, nitro_dir, tmp_path_factory) -> dict:
    """One epoch at a tiny learning rate, on 1 worker: it cannot beat the forest."""
    from jobs.train import train

    storage = tmp_path_factory.mktemp("weak-runs")
    spec = nitro_spec(nitro_dir, storage, name="weak", workers=1, epochs=1, learning_rate=1e-7)
    return {"summary": train(parse_spec(spec)), "storage": storage}


def _examples_per_epoch(summary: dict) -> list[int]:
    with open(summary["metrics_csv"]) as f:
        return [int(r["examples"]) for r in csv.DictReader(f) if r["kind"] == "epoch"]


def test_dmpnn_learns_the_planted_substructure_and_beats_its_baseline(nitro_run):
    summary = nitro_run["summary"]
    assert summary["test_metrics"]["auroc"] > 0.95, summary["test_metrics"]
    assert summary["workers"]["world_size"] == 2
    from jobs.scoring import beats

    guard = summary["guard"]
    assert summary["beats_baseline"] is beats(guard["model"], guard["baseline"], "max") and guard["metric"] == "auroc"
    assert summary["beats_baseline"] and summary["registered"]["is_best"]
    assert set(summary["baseline_val_metrics"]) >= {"auroc", "auroc_ci95"}
    entry = registry_for(nitro_run["storage"]).get(f"nitro@{summary['registered']['version']}")
    assert entry["beats_baseline"] == summary["beats_baseline"] and entry["baseline_val_metrics"] == summary["baseline_val_metrics"]
    assert entry["spec"]["training"]["learning_rate"] == 1e-3 and entry["spec"]["model"]["aggregation"] == "norm"  # dmpnn defaults, pinned


def test_two_workers_train_on_as_many_examples_per_epoch_as_one(nitro_run, weak_run):
    rows = nitro_run["summary"]["data"]["rows"]["train"]
    assert weak_run["summary"]["data"]["rows"]["train"] == rows
    assert _examples_per_epoch(nitro_run["summary"]) == [rows] * NITRO_EPOCHS
    assert _examples_per_epoch(weak_run["summary"]) == [rows]


def test_checkpoint_is_safetensors_and_reloads_to_identical_predictions(nitro_run, nitro_dir):
    from transformers import AutoModelForSequenceClassification

    folder = Path(nitro_run["summary"]["registered"]["path"])
    files = {p.name for p in folder.iterdir()}
    assert files == {"model.safetensors", "config.json", "biomed.json", "conformal.json"}  # no pickles, no tokenizer; conformal scores only
    smiles = pq.read_table(nitro_dir / "test.parquet").column("smiles").to_pylist()[:40]
    first, second = Predictor(directory=folder), Predictor(directory=folder)
    np.testing.assert_array_equal(first.predict(smiles), second.predict(smiles))
    # The weights alone, into a model built from config.json, give the same logits.
    model = AutoModelForSequenceClassification.from_config(first.model.config).eval()
    model.load_state_dict(load_file(str(folder / "model.safetensors")), strict=True)
    encoded = first.encoder.encode(first.validate(smiles))
    with torch.inference_mode():
        logits = model(**encoded.batch(np.arange(len(smiles)))).logits.softmax(-1).numpy()
    np.testing.assert_allclose(logits, first.predict(smiles), atol=1e-6)


def test_bad_smiles_named_by_position_without_echo_and_bond_free_molecules_predict(nitro_run):
    predictor = Predictor(directory=nitro_run["summary"]["registered"]["path"])
    with pytest.raises(InvalidInputs) as error:
        predictor.predict(["CCO", "C1CC(", "CC"])
    assert [p[0] for p in error.value.problems] == [1] and "C1CC(" not in str(error.value)
    # A single atom and a salt of ions have atoms but no bonds: they still get a prediction.
    probabilities = predictor.predict(["C", "[Na+].[Cl-]", "CC[N+](=O)[O-]"])
    assert probabilities.shape == (3, 2) and np.allclose(probabilities.sum(1), 1.0)


def test_weak_run_is_registered_but_not_best_until_forced(weak_run, capsys):
    from jobs.cli import _print_train_summary, main

    summary, storage = weak_run["summary"], str(weak_run["storage"])
    assert summary["beats_baseline"] is False and summary["registered"]["is_best"] is False
    _print_train_summary(summary)
    line = next(x for x in capsys.readouterr().out.splitlines() if "NOT made best" in x)
    assert f"{summary['guard']['model']:.4f}" in line and f"{summary['guard']['baseline']:.4f}" in line and "promote weak@1 --force" in line
    with pytest.raises(RegistryError, match="no best version.*promote weak@VERSION --force"):
        registry_for(storage).get("weak")
    assert main(["predict", "weak", "--storage", storage, "--input", "CCO"]) == 2  # names the fix, no traceback
    assert main(["models", "promote", "weak@1", "--storage", storage]) == 2  # refused without --force
    assert main(["models", "promote", "weak@1", "--force", "--storage", storage, "--json"]) == 0
    assert registry_for(storage).get("weak")["version"] == 1
    index = (Path(storage) / "registry" / "weak" / "index.json").read_text()
    assert '"forced": true' in index


def test_serve_refuses_a_model_without_best_version_before_starting_anything(nitro_dir, tmp_path):
    from jobs.registry import Registry
    from serving.deploy import deploy

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    record = {"beats_baseline": False, "guard": {"metric": "auroc", "mode": "max", "model": 0.5, "baseline": 0.9, "baseline_name": "morgan_random_forest"}}
    Registry(root=tmp_path / "registry").register(name="loser", model_dir=folder, record=record, selection={"metric": "val_auroc", "mode": "max", "value": 0.5})
    with pytest.raises(RegistryError, match="biomed models promote loser@VERSION --force"):
        deploy(["loser"], storage_path=tmp_path)


def test_dmpnn_over_real_serve_http(nitro_run, monkeypatch):
    import httpx
    from ray import serve

    from cluster.local_head import free_port
    from serving.deploy import deploy

    summary = nitro_run["summary"]
    ref = f"nitro@{summary['registered']['version']}"
    token = "dmpnn-token-0123456789"
    monkeypatch.setenv("BIOMED_SERVE_TOKEN", token)
    port = free_port()
    deploy([ref], storage_path=nitro_run["storage"], overrides={"port": port, "num_cpus_per_replica": 0.5, "max_replicas": 1})
    try:
        url, headers = f"http://127.0.0.1:{port}/{ref}/predict", {"Authorization": f"Bearer {token}"}
        good = httpx.post(url, json={"inputs": ["CCC([N+](=O)[O-])CC", "CCCCOC", "[Na+].[Cl-]"]}, headers=headers, timeout=60)
        assert good.status_code == 200, good.text
        labels = [p["label"] for p in good.json()["predictions"]]
        assert labels[:2] == ["nitro", "none"] and len(labels) == 3
        expected = Predictor(directory=summary["registered"]["path"]).predict(["CCC([N+](=O)[O-])CC"])[0]
        assert good.json()["predictions"][0]["probabilities"]["nitro"] == pytest.approx(float(expected[0]), abs=1e-5)
        bad = httpx.post(url, json={"inputs": ["CCO", "C1CC("]}, headers=headers, timeout=60)
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "inputs", 1]
        assert "C1CC(" not in bad.text
    finally:
        serve.shutdown()


def test_dmpnn_fields_are_checked_before_compute(nitro_dir, tmp_path):
    spec = nitro_spec(nitro_dir, tmp_path)
    parsed = resolve_raw({**spec, "model": {"backbone": "dmpnn"}}).spec
    assert (parsed.model.depth, parsed.model.hidden_size, parsed.model.ffn_num_layers, parsed.training.group_by_length) == (3, 300, 1, False)
    assert parsed.training.learning_rate == 1e-3  # chemprop's peak rate, unless the spec sets one
    with pytest.raises(SpecError, match="model.depth sets the 'dmpnn' backbone only"):
        parse_spec({**spec, "model": {"backbone": "tiny-bert", "depth": 4}})
    with pytest.raises(SpecError, match="aggregation"):
        parse_spec({**spec, "model": {"backbone": "dmpnn", "aggregation": "max"}})
    tuned = {**spec, "tune": {"search_space": {"model.depth": {"choice": [2, 4]}, "model.molecule_features": {"choice": ["none", "rdkit_2d"]}}}}
    assert parse_spec(tuned).tune.search_space["model.depth"].choice == [2, 4]
    with pytest.raises(SpecError, match="model.depth.*value 40 is invalid"):
        parse_spec({**spec, "tune": {"search_space": {"model.depth": {"choice": [3, 40]}}}})
    with pytest.raises(SpecError, match="'model.backbone' is not a model field that can be searched"):
        parse_spec({**spec, "tune": {"search_space": {"model.backbone": {"choice": ["dmpnn"]}}}})


def test_molecule_features_are_fitted_on_training_and_saved(nitro_dir, tmp_path):
    from biomed.checkpoint import read_metadata, save_model_checkpoint

    model = {"backbone": "dmpnn", "depth": 2, "hidden_size": 16, "aggregation": "mean", "batch_norm": True, "ffn_hidden_size": 8, "ffn_num_layers": 1, "molecule_features": "rdkit_2d"}
    job = resolve_raw({**nitro_spec(nitro_dir, tmp_path), "model": model})
    family = job.family
    train = planted_nitro_table(60, seed=3).column("smiles").to_pylist()
    encoder = family.build_encoder(job, train_inputs=train, statistics=None)
    features = encoder.encode(train).features
    assert features.shape[1] == encoder.num_features > 100
    # Standardised on the training split (a few heavy-tailed descriptors are clipped, so most, not all, columns centre exactly).
    assert np.median(np.abs(features.mean(0))) < 1e-6 and np.abs(features).max() <= 6.0
    model = family.build_model(job, encoder=encoder, labels=["a", "b"], num_outputs=2).eval()
    assert (model.config.depth, model.config.num_features) == (2, encoder.num_features)
    save_model_checkpoint(model, encoder, tmp_path, {"task": "molecule_classification", "labels": ["a", "b"], "max_seq_length": 0, "validator": {"kind": "smiles"}})
    reloaded = family.load_encoder(tmp_path, read_metadata(tmp_path))
    unseen = planted_nitro_table(10, seed=4).column("smiles").to_pylist()
    np.testing.assert_array_equal(reloaded.encode(unseen).features, encoder.encode(unseen).features)


def test_the_guard_counts_ties_as_losses_except_at_a_perfect_score():
    from jobs.scoring import beats

    assert beats(0.91, 0.90, "max") and not beats(0.90, 0.90, "max") and not beats(0.89, 0.90, "max")
    assert beats(0.5, 0.6, "min") and not beats(0.6, 0.6, "min")
    assert beats(1.0, 1.0, "max") and beats(0.0, 0.0, "min")  # nothing beats a perfect score
    assert not beats(float("nan"), 0.5, "max") and beats(0.5, float("nan"), "max")
