"""Planted signals for the tabular family's tests: a label and a hazard decided by known features."""

from __future__ import annotations

import numpy as np
import pyarrow as pa


# The columns that decide the label and the hazard; x3 and x4 (classification), x3 (survival) are noise.
SIGNAL = {"classification": ("x1", "x2", "site"), "survival": ("x1", "x2", "stage")}


def signal_part(target: str):
    """Whether an attribution entry is one of the columns the planted signal is made of."""
    return lambda entry: entry.get("feature") in SIGNAL[target]


def high_risk(row: dict) -> bool:
    """Whether a survival record's planted log-hazard is well above average (its signal columns
    raise the risk score an explanation of it explains)."""
    return 1.2 * row["x1"] - 0.8 * row["x2"] + 0.7 * (row["stage"] == "iii") > 1.0


def planted_tabular_table(num_rows: int, *, seed: int) -> pa.Table:
    """Four numeric features (x3 often missing) and a categorical `site`; label "high" iff
    x1 - x2 + 1.5·[site = b] > 0.3 (about balanced)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(num_rows, 4))
    site = rng.choice(["a", "b", "c"], size=num_rows)
    score = x[:, 0] - x[:, 1] + 1.5 * (site == "b")
    x3 = [None if rng.random() < 0.1 else float(v) for v in x[:, 3]]
    return pa.table({
        "x1": x[:, 0], "x2": x[:, 1], "x3": x[:, 2], "x4": x3, "site": site,
        "label": np.where(score > 0.3, "high", "low"),
    })


def planted_survival_table(num_rows: int, *, seed: int) -> pa.Table:
    """Exponential event times with log-hazard 1.2·x1 - 0.8·x2 + 0.7·[stage = iii]; uniform
    censoring leaves about a third of the records censored. A random score has c-index 0.5."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(num_rows, 3))
    stage = rng.choice(["i", "ii", "iii"], size=num_rows)
    hazard = np.exp(1.2 * x[:, 0] - 0.8 * x[:, 1] + 0.7 * (stage == "iii"))
    event_time = rng.exponential(1.0 / hazard)
    censor_time = rng.uniform(0, 3.0, size=num_rows)
    return pa.table({
        "x1": x[:, 0], "x2": x[:, 1], "x3": x[:, 2], "stage": stage,
        "time": np.minimum(event_time, censor_time), "event": (event_time <= censor_time).astype(np.int64),
    })

