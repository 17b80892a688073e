"""A Ray Train worker killed mid-run: the run restarts from its latest checkpoint and finishes."""

from __future__ import annotations

import csv
from pathlib import Path

import torch

from biomed.synthetic import write_planted_text
from jobs.spec import parse_spec
from jobs.splits import load_splits
from jobs.train import run_name, train
from jobs.worker import STATE_FILE
from biomed.data import fingerprint_files
from tests.conftest import epochs_done, run_killed_once, tiny_spec


def test_killed_worker_resumes_from_checkpoint(ray_cluster, tmp_path):
    write_planted_text(tmp_path / "train.parquet", 2400, seed=5)
    raw = tiny_spec(tmp_path, tmp_path / "runs", failure={"max_failures": 2})
    raw["data"] = {"train_path": str(tmp_path / "train.parquet")}
    # bf16 autocast and 2-step gradient accumulation ride along: the run must still learn, and the
    # optimizer-step count must be the accumulated one.
    raw["training"] = {**raw["training"], "epochs": 6, "precision": "bf16", "gradient_accumulation_steps": 2}
    spec = parse_spec(raw)
    run_dir = Path(spec.storage_path) / run_name(spec, fingerprint_files(spec.data.files()))

    summary = run_killed_once(lambda: train(spec), ready=lambda: epochs_done(run_dir / "metrics.csv") >= 2)
    assert summary["val_metrics"]["val_accuracy"] > 0.9
    final = run_dir / "checkpoint_epoch_0006" / STATE_FILE
    state = torch.load(final, weights_only=True)
    starts = state["attempt_start_epochs"]
    assert len(starts) == 2 and starts[0] == 0 and starts[1] >= 1, starts
    # Optimizer steps continue from the checkpoint: each step number appears exactly once.
    with open(run_dir / "metrics.csv") as f:
        steps = [int(r["step"]) for r in csv.DictReader(f) if r["kind"] == "step"]
    rows_per_rank = -(-len(load_splits(spec).train) // 2)
    micro_steps = -(-rows_per_rank // 16)
    assert steps == list(range(1, 6 * -(-micro_steps // 2) + 1))
    assert state["scheduler"]["last_epoch"] == len(steps)
