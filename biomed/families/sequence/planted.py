"""Planted motifs for the sequence families' tests: a label decided by whether a motif occurs."""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def _with_motif(rng, alphabet: str, length: int, motif: str, planted: bool) -> str:
    while True:
        seq = "".join(rng.choice(list(alphabet), size=length))
        if motif not in seq:
            break
    if planted:
        at = int(rng.integers(0, length - len(motif) + 1))
        seq = seq[:at] + motif + seq[at + len(motif):]
    return seq


def motif_table(num_rows: int, *, seed: int, alphabet: str, motif: str, length: int = 48) -> pa.Table:
    """Sequences over `alphabet` (column `sequence`); label "motif" iff `motif` occurs (chance 0.5)."""
    rng = np.random.default_rng(seed)
    planted = rng.random(num_rows) < 0.5
    seqs = [_with_motif(rng, alphabet, length, motif, bool(p)) for p in planted]
    return pa.table({"sequence": seqs, "label": ["motif" if p else "background" for p in planted]})



def motif_part(sequence: str, motif: str):
    """Whether an attribution entry (a base or residue span) lies on the planted motif."""
    start = sequence.index(motif)
    return lambda entry: entry.get("span") is not None and start <= entry["span"][0] and entry["span"][1] <= start + len(motif)
