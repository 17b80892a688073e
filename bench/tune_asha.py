"""ASHA early stopping vs running every trial to the end, on the same configurations.

Both searches sample the same N configurations (same seed) of a tiny BERT on planted text with
label noise (so learning takes several epochs and the learning rate matters), 1 worker per
trial, 2 trials at a time. Prints total trial-epochs of each, their ratio, each best validation
macro-F1, and the per-trial overhead two ways:
- in-trial: a trial's time from its function's start (Tune's time_total_s at its last report)
  minus its epochs' compute: the Train run's controller, workers, setup and checkpointing;
- per slot: the search's wall time (Tuner.fit) times the trials run at a time, minus every
  epoch's compute, per trial; this also holds each trial's own process start and imports, and
  slots left idle.
The last line is one JSON object with every figure.

    python bench/tune_asha.py [--trials 8] [--epochs 8] [--grace 2] [--reduction-factor 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from results_file import save  # noqa: E402

from biomed.families.text.planted import write_planted_text  # noqa: E402
from jobs.resolve import resolve_raw  # noqa: E402


def spec_for(data: Path, storage: Path, *, name: str, trials: int, epochs: int, scheduler: dict) -> dict:
    return {
        "name": name,
        "task": {"name": "text_classification"},
        "data": {"train_path": str(data / "train.parquet")},
        "model": {"backbone": "tiny-bert"},
        "training": {"epochs": epochs, "batch_size_per_worker": 32, "learning_rate": 1e-3, "max_seq_length": 40},
        "scaling": {"num_workers": 1, "cpus_per_worker": 1},
        "checkpointing": {"num_to_keep": 1},
        "storage_path": str(storage),
        "tune": {
            "search_space": {"learning_rate": {"loguniform": [1e-5, 1e-2]}, "warmup_ratio": {"uniform": [0.0, 0.3]}},
            "num_samples": trials,
            "max_concurrent_trials": 2,
            "include_spec_values": False,
            "scheduler": scheduler,
            "seed": 7,
        },
    }


def run(spec_dict: dict) -> dict:
    from jobs.tune import tune_search

    started = time.perf_counter()
    summary = tune_search(resolve_raw(spec_dict))
    wall = time.perf_counter() - started
    import pyarrow.parquet as pq

    rows = pq.read_table(summary["results_parquet"]).to_pylist()
    compute = {}
    for r in rows:
        compute[r["trial_id"]] = compute.get(r["trial_id"], 0.0) + r["epoch_seconds"]
    totals = {r["trial_id"]: r["time_total_s"] for r in rows}  # last row per trial wins
    overheads = [totals[t] - compute[t] for t in compute]
    slot_seconds = summary["timing_s"]["search"] * summary["concurrency"]
    return {
        "wall_s": round(wall, 1),
        "trial_epochs": summary["trial_epochs"],
        "stopped_early": summary["num_stopped_early"],
        "best_val_macro_f1": round(summary["selection"]["value"], 4),
        "best_config": summary["best_trial"]["config"],
        "per_trial_overhead_s": round(statistics.median(overheads), 2),
        "per_trial_slot_overhead_s": round((slot_seconds - sum(compute.values())) / len(compute), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--grace", type=int, default=2)
    parser.add_argument("--reduction-factor", type=float, default=3.0)
    parser.add_argument("--rows", type=int, default=1500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_planted_text(tmp / "train.parquet", args.rows, seed=0, label_noise=0.3)
        from cluster.connect import connect

        connect()
        full = run(spec_for(tmp, tmp / "runs", name="full", trials=args.trials, epochs=args.epochs, scheduler={"type": "none"}))
        asha = run(spec_for(tmp, tmp / "runs", name="asha", trials=args.trials, epochs=args.epochs,
                            scheduler={"type": "asha", "grace_period": args.grace, "reduction_factor": args.reduction_factor}))
    figures = {
        "trials": args.trials,
        "max_epochs": args.epochs,
        "grace_period": args.grace,
        "reduction_factor": args.reduction_factor,
        "full": full,
        "asha": asha,
        "compute_ratio": round(asha["trial_epochs"] / full["trial_epochs"], 3),
        "best_gap_points": round(100 * (full["best_val_macro_f1"] - asha["best_val_macro_f1"]), 2),
    }
    print(f"no early stopping: {full['trial_epochs']} trial-epochs, best val macro-F1 {full['best_val_macro_f1']:.4f}, wall {full['wall_s']} s")
    print(f"ASHA (grace {args.grace}, reduction factor {args.reduction_factor:g}): {asha['trial_epochs']} trial-epochs ({asha['stopped_early']} stopped early), best {asha['best_val_macro_f1']:.4f}, wall {asha['wall_s']} s")
    print(f"compute ratio {figures['compute_ratio']:.3f}; best gap {figures['best_gap_points']:+.2f} points")
    print(f"per-trial overhead, in-trial (median): {full['per_trial_overhead_s']} s / {asha['per_trial_overhead_s']} s;"
          f" per slot: {full['per_trial_slot_overhead_s']} s / {asha['per_trial_slot_overhead_s']} s")
    save("tune_asha", figures, command=" ".join(["python", *sys.argv]))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
