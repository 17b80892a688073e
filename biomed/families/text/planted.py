"""Synthetic labelled text with a planted signal, for tests that check something was learned."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

FILLER = (
    "patient reports mild symptoms after the visit and the clinician notes stable vitals with no "
    "acute distress today follow up was arranged in clinic next week"
).split()
# One marker word per class; every text holds exactly one of them among filler words. Each is
# one WordPiece token, so a text's length in tokens says nothing of its label (with markers of
# 5, 4 and 3 pieces, a model could read the label off the length, and an explanation against a
# same-length reference would rightly find nothing in the words).
MARKERS = {"cardiac": "heart", "renal": "kidney", "hepatic": "liver"}


def planted_text_table(num_rows: int, *, seed: int, length: int = 24, label_noise: float = 0.0) -> pa.Table:
    """Texts whose label is decided by one marker word at a random position; chance is 1/3.

    With label_noise > 0 that share of rows gets a uniformly drawn label instead, which caps
    the reachable accuracy at 1 - label_noise * 2/3 and slows learning (for benchmarks).
    """
    rng = np.random.default_rng(seed)
    labels = list(MARKERS)
    rows_text, rows_label = [], []
    for _ in range(num_rows):
        label = labels[rng.integers(len(labels))]
        words = list(rng.choice(FILLER, size=length))
        words[rng.integers(length)] = MARKERS[label]
        if rng.random() < label_noise:
            label = labels[rng.integers(len(labels))]
        rows_text.append(" ".join(words))
        rows_label.append(label)
    return pa.table({"text": rows_text, "label": rows_label})


def write_planted_text(path, num_rows: int, *, seed: int, label_noise: float = 0.0) -> None:
    pq.write_table(planted_text_table(num_rows, seed=seed, label_noise=label_noise), path)


def planted(num_rows: int, seed: int) -> tuple[pa.Table, dict]:
    """The family's planted table and the spec sections that read it."""
    return planted_text_table(num_rows, seed=seed), {"task": {"name": "text_classification"}, "data": {}, "model": {"backbone": "tiny-bert"}}


def marker_part(text: str, label: str):
    """Whether an attribution entry lies on the text's marker word (what decides its label)."""
    start = text.index(MARKERS[label])
    end = start + len(MARKERS[label])
    return lambda entry: entry.get("span") is not None and start <= entry["span"][0] and entry["span"][1] <= end
