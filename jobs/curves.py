"""Learning-curve plot from the metrics.csv that rank 0 keeps in the run folder."""

from __future__ import annotations

import csv
import io

from jobs.run_storage import display, read_file, run_location, write_file
from jobs.worker import METRICS_FILE

CURVE_PNG = "learning_curve.png"


def run_learning_curve(run_dir: str) -> str | None:
    """learning_curve.png beside the run's metrics.csv (a folder or an object-store prefix);
    its location, or None when the run wrote no metrics."""
    raw = read_file(run_dir, METRICS_FILE)
    if raw is None:
        return None
    rows = list(csv.DictReader(io.StringIO(raw.decode())))
    write_file(run_dir, CURVE_PNG, plot_learning_curve(rows, title=display(run_dir).rstrip("/").rsplit("/", 1)[-1]))
    return run_location(run_dir, CURVE_PNG)


def plot_learning_curve(rows: list[dict], *, title: str) -> bytes:
    """The PNG of a run's metrics.csv rows: train loss per step and epoch, validation metric per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r for r in rows if r["kind"] == "step"]
    epochs = [r for r in rows if r["kind"] == "epoch"]
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 4))
    if steps:
        per_epoch = max(1, len(steps) // max(1, len(epochs)))
        ax_loss.plot([int(r["step"]) for r in steps], [float(r["train_loss"]) for r in steps], lw=0.8, label="train loss (step)")
        ax_loss.plot([int(r["epoch"]) * per_epoch for r in epochs], [float(r["train_loss"]) for r in epochs], "o-", label="train loss (epoch mean)")
    ax_loss.set_xlabel("optimizer step")
    ax_loss.set_ylabel("cross-entropy")
    ax_loss.legend()
    # Epochs that ended without validation (checkpointing.eval_every_n_steps) have no value.
    scored = [r for r in epochs if r["value"] not in ("", None)]
    if scored:
        ax_metric.plot([int(r["epoch"]) for r in scored], [float(r["value"]) for r in scored], "o-")
        ax_metric.set_ylabel(f"validation {scored[0]['val_metric']}")
    ax_metric.set_xlabel("epoch")
    fig.suptitle(title)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=100)
    plt.close(fig)
    return out.getvalue()
