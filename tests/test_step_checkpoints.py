"""Step checkpoints: a run killed mid-epoch resumes at the next batch and ends with the weights
of the same spec run without interruption; validation every N steps feeds the registry's choice.
bf16 autocast and gradient accumulation ride along: optimizer steps, not batches, count."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import torch
from safetensors.torch import load_file

from biomed.families.text.planted import write_planted_text
from jobs.resolve import resolve_raw
from jobs.splits import load_splits
from jobs.train import train
from jobs.worker import MODEL_DIR, STATE_FILE
from tests.conftest import committed, run_killed_once, tiny_spec

EVERY_N_STEPS = 10


def _spec(data: Path, storage: Path):
    # Mean-pooled: with one marker token among 24 words, [CLS] pooling learns two of the three
    # classes in these 3 epochs (validation accuracy 0.67), mean pooling all of them (1.0).
    raw = tiny_spec(data, storage, failure={"max_failures": 2}, model={"backbone": "tiny-bert", "pooling": "mean"})
    raw["data"] = {"train_path": str(data / "train.parquet")}
    raw["training"] = {**raw["training"], "epochs": 3, "precision": "bf16", "gradient_accumulation_steps": 2}
    raw["checkpointing"] = {"every_n_steps": EVERY_N_STEPS, "eval_every_n_steps": 30, "num_to_keep": 2}
    job = resolve_raw(raw)
    return job, Path(job.spec.storage_path) / job.run_name


def test_killed_mid_epoch_resumes_at_next_batch_with_same_weights(ray_cluster, tmp_path):
    write_planted_text(tmp_path / "train.parquet", 2400, seed=5)
    spec, run_dir = _spec(tmp_path, tmp_path / "uninterrupted")
    whole = train(spec)

    killed_spec, killed_dir = _spec(tmp_path, tmp_path / "killed")
    resumed = run_killed_once(lambda: train(killed_spec), ready=committed(killed_dir, "checkpoint_epoch_0001_batch_"))

    state = torch.load(killed_dir / "checkpoint_epoch_0003" / STATE_FILE, weights_only=True)
    first, second = state["attempt_start_positions"]
    assert first == [0, 0, 0]
    epochs_done, batches_done, step = second
    # Resumed inside epoch 2 from a step checkpoint: the kill cost at most EVERY_N_STEPS steps.
    assert epochs_done == 1 and batches_done > 0 and step % EVERY_N_STEPS == 0, second

    ours = load_file(str(killed_dir / "checkpoint_epoch_0003" / MODEL_DIR / "model.safetensors"))
    reference = load_file(str(run_dir / "checkpoint_epoch_0003" / MODEL_DIR / "model.safetensors"))
    assert ours.keys() == reference.keys()
    for key in reference:
        assert torch.allclose(ours[key], reference[key], atol=1e-5, rtol=1e-4), key

    # Every optimizer step once in the learning curve, as in the uninterrupted run.
    def steps(folder: Path) -> list[int]:
        with open(folder / "metrics.csv") as f:
            return [int(r["step"]) for r in csv.DictReader(f) if r["kind"] == "step"]

    # Two batches a step: ceil(batches per rank / 2) optimizer steps an epoch, the schedule's too.
    batches_per_rank = math.ceil(math.ceil(len(load_splits(spec).train) / 2) / 16)
    assert steps(killed_dir) == steps(run_dir) == list(range(1, 3 * math.ceil(batches_per_rank / 2) + 1))
    assert state["scheduler"]["last_epoch"] == len(steps(run_dir))

    # Selection sees only validated checkpoints (every 30 steps and the last), the same in both.
    for summary in (whole, resumed):
        chosen = Path(summary["registered"]["path"]) / "biomed.json"
        assert json.loads(chosen.read_text())["val_metrics"], "a resume-only checkpoint was registered"
    assert resumed["selection"] == whole["selection"]
    assert whole["val_metrics"]["val_accuracy"] > 0.9
