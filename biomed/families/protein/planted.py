"""Planted signals for the protein family's tests: a motif for fine-tuning, a residue pair for pretraining."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

MOTIF = "WCHW"
# Pretraining corpora: a residue that always follows another, which a masked-language model
# can only predict from its neighbour (chance: one in the alphabet).
PLANTED_PAIR = ("W", "Y")


def planted_pair_corpus(num_rows: int, *, seed: int, length: int = 40) -> pa.Table:
    """Protein-like sequences (column `sequence`) in which every W is followed by a Y, and Y
    appears nowhere else; the other residues are uniform."""
    rng = np.random.default_rng(seed)
    first, second = PLANTED_PAIR
    others = np.array([a for a in "ACDEFGHIKLMNPQRSTV" if a not in PLANTED_PAIR])
    rows = []
    for _ in range(num_rows):
        residues = list(rng.choice(others, size=length))
        for position in rng.choice(np.arange(0, length - 1, 2), size=3, replace=False):  # pairs never overlap
            residues[position], residues[position + 1] = first, second
        rows.append("".join(residues))
    return pa.table({"sequence": rows})
