"""`biomed train` end to end as a user runs it: embedded local Ray, 2 DDP workers, tiny BERT.

Runs in its own process (the CLI starts its own Ray), before the session cluster starts.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import torch

from biomed.checkpoint import Predictor
from tests.conftest import tiny_spec, write_spec


def _biomed(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jobs.cli", *args], capture_output=True, text=True, timeout=900, cwd=cwd)


def _last_json(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_train_registers_checkpoint_that_plain_transformers_loads(planted_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    spec_path = write_spec(tmp_path / "spec.yaml", tiny_spec(planted_dir, tmp_path / "runs"))
    proc = _biomed("train", str(spec_path), "--json", cwd=tmp_path)
    summary = _last_json(proc)

    # Planted signal: chance is 1/3.
    assert summary["test_metrics"]["accuracy"] > 0.9, summary["test_metrics"]
    assert summary["baseline_test_metrics"]["accuracy"] > 0.9
    assert proc.stderr.count("[biomed] epoch ") == 6
    # By default: one line per epoch, none of Ray's per-report or start-up chatter.
    for chatter in ("Reporting training result", "Checkpoint successfully created", "Started a local Ray instance", "Loading weights"):
        assert chatter not in proc.stderr, chatter

    model_dir = Path(summary["registered"]["path"])
    files = {p.name for p in model_dir.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "biomed.json"} <= files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pkl"))]

    texts = pq.read_table(planted_dir / "test.parquet").column("text").to_pylist()[:48]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.inference_mode():
        logits = model(**tokenizer(texts, truncation=True, max_length=40, padding=True, return_tensors="pt")).logits
    plain = [model.config.id2label[int(i)] for i in logits.argmax(-1)]
    predictor = Predictor(directory=model_dir)
    assert plain == [predictor.labels[i] for i in predictor.predict(texts).argmax(axis=1)]

    run_dir = Path(summary["run_path"])
    with open(run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows if r["kind"] == "epoch"] == [1, 2, 3, 4, 5, 6]
    assert (run_dir / "learning_curve.png").stat().st_size > 10_000

    shown = _last_json(_biomed("models", "show", "planted", "--storage", "runs", "--json", cwd=tmp_path))
    for key in ("spec_hash", "data_fingerprint", "run_path", "registered_at", "val_metrics", "test_metrics", "source_checkpoint"):
        assert shown[key], key
    assert shown["version"] == 1 and shown["run_path"] == str(run_dir)
    listed = _last_json(_biomed("models", "list", "--storage", "runs", "--json", cwd=tmp_path))
    assert listed["models"][0]["best_version"] == 1

    # The same spec again resumes its finished run in place: no epoch is retrained, no new version.
    # Under --verbose, Ray's own logs show too.
    again = _biomed("train", str(spec_path), "--json", "--verbose", cwd=tmp_path)
    rerun = _last_json(again)
    assert rerun["run_name"] == summary["run_name"]
    assert rerun["registered"]["version"] == 1
    assert "resuming" in again.stderr and "[biomed] epoch " not in again.stderr
    assert "Started a local Ray instance" in again.stderr
