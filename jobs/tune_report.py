"""A search's progress and results: one log line per finished trial while it runs, then a table
(Parquet + CSV) and a plot of the metric per epoch per trial."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from ray import tune

from biomed.log import get_logger
from jobs.spec import JobSpec

log = get_logger(__name__)

# Besides every validation metric of the task (val_*), whatever the family.
REPORTED = ("epoch", "train_loss", "train_seconds", "epoch_seconds", "time_total_s", "checkpoint_path", "world_size", "worker_node_ids")


class TrialLines(tune.Callback):
    """One `biomed` log line per trial as it ends (Tune's own status tables show only under
    --verbose): how far it got, its last value of the search metric, and its configuration."""

    def __init__(self, *, metric: str, num_trials: int, epochs: int, max_epochs: int | None):
        self._metric, self._num_trials, self._done = metric, num_trials, 0
        self._epochs, self._max_epochs = epochs, max_epochs

    def _line(self, trial, outcome: str) -> None:
        self._done += 1
        result = trial.last_result or {}
        value = result.get(self._metric)
        shown = f"{self._metric}={value:.4f}" if isinstance(value, (int, float)) else f"no {self._metric} reported"
        config = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in (trial.config or {}).items()}
        log.info("trial %d/%d %s %s after %s epochs: %s %s", self._done, self._num_trials, trial.trial_id, outcome, result.get("epoch", 0), shown, config)

    def on_trial_complete(self, iteration, trials, trial, **info):
        planned = planned_epochs(trial.config or {}, epochs=self._epochs, max_epochs=self._max_epochs)
        epoch = float((trial.last_result or {}).get("epoch") or 0)
        self._line(trial, "stopped early" if epoch < planned else "finished")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._line(trial, "failed")


def planned_epochs(config: dict, *, epochs: int, max_epochs: int | None) -> int:
    """The epochs a trial was to run: its sampled `epochs`, else the spec's `epochs`, capped by
    max_epochs (ASHA's max_t)."""
    planned = int(config.get("epochs", epochs))
    return planned if max_epochs is None else min(planned, max_epochs)


def trial_rows(results, spec: JobSpec, *, max_epochs: int | None) -> list[dict]:
    """One row per (trial, reported epoch) from a Tune ResultGrid; max_epochs caps the planned
    epochs of every trial (ASHA's max_t), None when nothing caps them."""
    rows = []
    for result in results:
        frame = result.metrics_dataframe
        if frame is None or frame.empty:
            continue
        config = dict(result.config or {})
        planned = planned_epochs(config, epochs=spec.training.epochs, max_epochs=max_epochs)
        status = "ERROR" if result.error is not None else "TERMINATED"
        trial_id = str(frame["trial_id"].iloc[-1])
        # A resumed trial reports some epochs again; keep the last report of each epoch.
        for record in frame.drop_duplicates(subset="epoch", keep="last").to_dict("records"):
            row = {k: v for k, v in record.items() if k in REPORTED or k.startswith("val_")}
            epoch = float(record["epoch"])  # a fraction for a report inside an epoch (step checkpoints)
            row.update({"trial_id": trial_id, "status": status, "config": config, "planned_epochs": planned, "epoch": int(epoch) if epoch.is_integer() else epoch})
            rows.append(row)
    return rows


def trial_summaries(rows: list[dict], key: str) -> list[dict]:
    """One summary per trial from `trial_rows`: how far it got, its last `key`, where it ran."""
    by_trial: dict[str, list[dict]] = {}
    for r in rows:
        by_trial.setdefault(r["trial_id"], []).append(r)
    out = []
    for trial_id, trial in sorted(by_trial.items()):
        last = max(trial, key=lambda r: r["epoch"])
        out.append({
            "trial_id": trial_id,
            "config": last["config"],
            # The epoch it reached, not the reports Tune holds: a trial whose driver died with its
            # node after a checkpoint was committed resumes past an epoch Tune never heard of.
            "epochs_run": math.ceil(last["epoch"]),
            "planned_epochs": last["planned_epochs"],
            "stopped_early": last["epoch"] < last["planned_epochs"],
            f"last_{key}": last[key],
            "status": last["status"],
            # Every node its workers ran on, over its attempts (a trial retried elsewhere has more).
            "node_ids": sorted({n for r in trial for n in (r.get("worker_node_ids") or "").split(",") if n}),
        })
    return out


def write_results(rows: list[dict], exp_dir: Path, *, metric: str) -> dict:
    exp_dir.mkdir(parents=True, exist_ok=True)
    flat = [{**{k: v for k, v in r.items() if k != "config"}, "config": json.dumps(r["config"], sort_keys=True)} for r in rows]
    table = pa.Table.from_pylist(flat)
    pq.write_table(table, exp_dir / "trials.parquet")
    pa_csv.write_csv(table, exp_dir / "trials.csv")
    png = plot_trials(rows, exp_dir / "trials.png", metric=metric)
    return {"results_parquet": str(exp_dir / "trials.parquet"), "results_csv": str(exp_dir / "trials.csv"), "plot_png": str(png)}


def plot_trials(rows: list[dict], out_png: Path, *, metric: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for trial_id in sorted({r["trial_id"] for r in rows}):
        trial = sorted((r for r in rows if r["trial_id"] == trial_id), key=lambda r: r["epoch"])
        stopped = trial[-1]["epoch"] < trial[-1]["planned_epochs"]
        label = f"{trial_id}{' (stopped early)' if stopped else ''}"
        ax.plot([r["epoch"] for r in trial], [r[metric] for r in trial], "o--" if stopped else "o-", label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title(out_png.parent.name)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png
