"""Learning-curve plot from the metrics.csv that rank 0 keeps in the run folder."""

from __future__ import annotations

import csv
from pathlib import Path


def plot_learning_curve(metrics_csv: Path, out_png: Path) -> Path | None:
    if not metrics_csv.is_file():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with metrics_csv.open() as f:
        rows = list(csv.DictReader(f))
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
    fig.suptitle(metrics_csv.parent.name)
    fig.tight_layout()
    tmp = out_png.with_name(f".{out_png.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(out_png)
    return out_png
