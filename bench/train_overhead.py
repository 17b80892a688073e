"""Service overhead vs a plain PyTorch loop: same model, same data, same batches, one worker.

Prints steady-state samples/s of each and their ratio, and the fixed costs apart: cluster start
(`ray.init`), and per-job start on an already running cluster (everything in `fit()` that is not
an epoch: controller and worker processes, imports, data and model set-up, teardown). The last
line is one JSON object with every figure.

    python bench/train_overhead.py [--rows 3000] [--epochs 4] [--jobs 2]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from results_file import save  # noqa: E402

from biomed.families.sequence.backbones import build_bert_classifier  # noqa: E402
from biomed.families.text import BACKBONES  # noqa: E402
from biomed.families.text.planted import write_planted_text  # noqa: E402
from biomed.padding import collate, encode_texts  # noqa: E402
from jobs.resolve import resolve_raw  # noqa: E402
from jobs.splits import load_splits  # noqa: E402
from biomed.batching import epoch_batches  # noqa: E402
from jobs.worker import optimizer_for  # noqa: E402


def spec_for(data_dir: Path, storage: Path, *, epochs: int, seed: int) -> dict:
    return {
        "name": f"bench-{seed}",
        "task": {"name": "text_classification"},
        "data": {"train_path": str(data_dir / "train.parquet")},
        "model": {"backbone": "tiny-bert"},
        "training": {"epochs": epochs, "batch_size_per_worker": 32, "learning_rate": 1e-3, "max_seq_length": 64, "seed": seed},
        "scaling": {"num_workers": 1, "cpus_per_worker": 1},
        "checkpointing": {"num_to_keep": 1},
        "storage_path": str(storage),
    }


def plain_loop(spec) -> list[float]:
    """The same training steps with nothing around them: samples/s per epoch, 1 torch thread
    (what Ray gives a 1-CPU worker)."""
    from transformers import get_linear_schedule_with_warmup

    torch.set_num_threads(1)
    job, spec = spec, spec.spec
    t = spec.training
    torch.manual_seed(t.seed)
    splits = load_splits(job)
    preset = BACKBONES[spec.model.backbone]
    tokenizer = preset.tokenizer()
    ids = encode_texts(tokenizer, splits.train.inputs, max_length=t.max_seq_length)
    targets = torch.from_numpy(splits.train.targets)
    labels = spec.task.labels
    model = build_bert_classifier(preset, path=None, labels=labels, num_outputs=len(labels), dropout=None, vocab_size=len(tokenizer))
    optimizer = optimizer_for(model, spec)
    steps = len(epoch_batches(len(ids), epoch=0, seed=t.seed, rank=0, world=1, batch_size=t.batch_size_per_worker))
    scheduler = get_linear_schedule_with_warmup(optimizer, int(t.warmup_ratio * steps * t.epochs), steps * t.epochs)
    rates = []
    for epoch in range(t.epochs):
        model.train()
        started = time.perf_counter()
        for rows in epoch_batches(len(ids), epoch=epoch, seed=t.seed, rank=0, world=1, batch_size=t.batch_size_per_worker):
            logits = model(**collate([ids[r] for r in rows], pad_id=tokenizer.pad_token_id)).logits
            loss = torch.nn.functional.cross_entropy(logits, targets[rows])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), t.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        rates.append(len(ids) / (time.perf_counter() - started))
    return rates


def service_job(spec, *, env: dict) -> dict:
    from jobs.train import train

    with mock.patch.dict(os.environ, env):
        started_at = time.time()
        summary = train(spec)
    with open(Path(summary["run_path"]) / "metrics.csv") as f:
        epochs = [r for r in csv.DictReader(f) if r["kind"] == "epoch"]
    epoch_s = sum(float(r["epoch_seconds"]) for r in epochs)
    checkpoint_s = sum(float(r["checkpoint_seconds"]) for r in epochs)
    fit_s = summary["timing_s"]["fit"]
    first = summary["last_attempt"]
    # Up to the train function: controller actor, placement group, worker processes, torch
    # process group. Set-up: the job's imports, data, tokenizer and model inside the function.
    to_train_fn_s = first["train_fn_started_at"] - started_at - summary["timing_s"]["validate_data"] - summary["timing_s"]["connect"]
    return {
        "to_train_fn_s": round(to_train_fn_s, 3),
        "setup_s": round(first["setup_seconds"], 3),
        "samples_per_s": [float(r["samples_per_s"]) for r in epochs],
        "fit_s": fit_s,
        "epochs_s": round(epoch_s, 3),
        "checkpoint_s": round(checkpoint_s, 3),
        "fixed_s": round(fit_s - epoch_s - checkpoint_s, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=2, help="service jobs run back to back on one cluster")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_planted_text(tmp / "train.parquet", args.rows, seed=0)
        plain_rates = plain_loop(resolve_raw(spec_for(tmp, tmp / "runs", epochs=args.epochs, seed=0)))

        from cluster.connect import connect

        started = time.perf_counter()
        connect()
        cluster_start_s = time.perf_counter() - started
        # Distinct seeds make distinct run names: every job starts from scratch. One job, run between
        # the others (so it meets no colder caches than they do), keeps Ray Train's stock 2 s
        # controller poll interval; the others run with the service's settings.
        from cluster.ray_compat import TRAIN_HEALTH_CHECK_INTERVAL_ENV

        jobs = [service_job(resolve_raw(spec_for(tmp, tmp / "runs", epochs=args.epochs, seed=1)), env={})]
        stock = service_job(resolve_raw(spec_for(tmp, tmp / "runs", epochs=args.epochs, seed=100)), env={TRAIN_HEALTH_CHECK_INTERVAL_ENV: "2.0"})
        jobs += [service_job(resolve_raw(spec_for(tmp, tmp / "runs", epochs=args.epochs, seed=2 + i)), env={}) for i in range(args.jobs - 1)]

    plain = statistics.median(plain_rates[1:])
    service = statistics.median([r for job in jobs for r in job["samples_per_s"][1:]])
    figures = {
        "rows": args.rows,
        "epochs": args.epochs,
        "plain_samples_per_s": round(plain, 1),
        "service_samples_per_s": round(service, 1),
        "steady_state_ratio": round(service / plain, 3),
        "cluster_start_s": round(cluster_start_s, 2),
        "per_job_fixed_s": [job["fixed_s"] for job in jobs],
        "per_job_fixed_s_stock_poll_interval": stock["fixed_s"],
        "per_job_checkpoint_s": [job["checkpoint_s"] for job in jobs],
        "per_job_to_train_fn_s": [job["to_train_fn_s"] for job in jobs],
        "per_job_setup_s": [job["setup_s"] for job in jobs],
        "per_job_teardown_and_rest_s": [round(job["fixed_s"] - job["to_train_fn_s"] - job["setup_s"], 3) for job in jobs],
        "per_job_fit_s": [job["fit_s"] for job in jobs],
    }
    print(f"plain PyTorch loop      {plain:8.1f} samples/s (median of epochs 2..{args.epochs})")
    print(f"service, 1 Ray worker   {service:8.1f} samples/s  ratio {service / plain:.3f}")
    print(f"cluster start (ray.init)      {cluster_start_s:6.2f} s")
    print(f"stock 2 s poll job: fit {stock['fit_s']:.2f} s = epochs {stock['epochs_s']:.2f} s + checkpoints {stock['checkpoint_s']:.2f} s + fixed {stock['fixed_s']:.2f} s")
    for i, job in enumerate(jobs, 1):
        print(f"job {i}: fit {job['fit_s']:.2f} s = epochs {job['epochs_s']:.2f} s + checkpoints {job['checkpoint_s']:.2f} s + fixed {job['fixed_s']:.2f} s")
        print(f"       fixed = {job['to_train_fn_s']:.2f} s to the train function (controller, placement group, worker processes, process group)"
              f" + {job['setup_s']:.2f} s set-up in it (imports, data, tokenizer, model) + {job['fixed_s'] - job['to_train_fn_s'] - job['setup_s']:.2f} s after (teardown, result)")
    save("train_overhead", figures, command=" ".join(["python", *sys.argv]))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
