"""Synthetic labelled text with a planted signal, for tests that check something was learned."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

FILLER = (
    "patient reports mild symptoms after the visit and the clinician notes stable vitals with no "
    "acute distress today follow up was arranged in clinic next week"
).split()
# One marker word per class; every text holds exactly one of them among filler words.
MARKERS = {"cardiac": "arrhythmia", "renal": "nephropathy", "hepatic": "cirrhosis"}


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


# Planted signals for the other families: each label or value is a known function of the input,
# so a test can check the model learned it (chance levels given per generator).

DNA_MOTIF = "TATAAT"  # the bacterial -10 promoter box
PROTEIN_MOTIF = "WCHW"


def _with_motif(rng, alphabet: str, length: int, motif: str, planted: bool) -> str:
    while True:
        seq = "".join(rng.choice(list(alphabet), size=length))
        if motif not in seq:
            break
    if planted:
        at = int(rng.integers(0, length - len(motif) + 1))
        seq = seq[:at] + motif + seq[at + len(motif):]
    return seq


def planted_sequence_table(kind: str, num_rows: int, *, seed: int, length: int = 48) -> pa.Table:
    """DNA or protein sequences; label "motif" iff the family's motif occurs (chance 0.5)."""
    rng = np.random.default_rng(seed)
    alphabet, motif = ("ACGT", DNA_MOTIF) if kind == "dna" else ("ACDEFGHIKLMNPQRSTVY", PROTEIN_MOTIF)
    planted = rng.random(num_rows) < 0.5
    seqs = [_with_motif(rng, alphabet, length, motif, bool(p)) for p in planted]
    return pa.table({"sequence": seqs, "label": ["motif" if p else "background" for p in planted]})


SMILES_FRAGMENTS = ["C", "C", "CC", "O", "N", "C(Cl)", "C(=O)", "c1ccccc1"]


def planted_smiles_table(num_rows: int, *, seed: int) -> pa.Table:
    """Chains of fragments; value = number of chlorines + 0.5 × number of oxygens + N(0, 0.1)
    noise (an R² near 1 is reachable, predicting the mean scores 0)."""
    rng = np.random.default_rng(seed)
    smiles, values = [], []
    for _ in range(num_rows):
        parts = ["C", *rng.choice(SMILES_FRAGMENTS, size=int(rng.integers(2, 9)))]
        s = "".join(parts)
        smiles.append(s)
        values.append(s.count("Cl") + 0.5 * s.count("O") + float(rng.normal(0, 0.1)))
    return pa.table({"smiles": smiles, "value": values})


# Distractors share the nitro group's atoms (N, O, a charged N), so only the substructure tells.
NITRO_DISTRACTORS = ["C(=O)O", "N", "O", "C(=O)N", "C[N+](C)(C)C", "OC", "c1ccncc1"]


def planted_nitro_table(num_rows: int, *, seed: int) -> pa.Table:
    """Chains of fragments with N and O distractors; label "nitro" iff a nitro group
    ([N+](=O)[O-]) is attached (chance 0.5), else "none"."""
    rng = np.random.default_rng(seed)
    smiles, labels = [], []
    for _ in range(num_rows):
        parts = ["C", *rng.choice(SMILES_FRAGMENTS + NITRO_DISTRACTORS, size=int(rng.integers(2, 7)))]
        nitro = bool(rng.random() < 0.5)
        if nitro:
            parts.insert(int(rng.integers(1, len(parts) + 1)), "C([N+](=O)[O-])")
        smiles.append("".join(parts))
        labels.append("nitro" if nitro else "none")
    return pa.table({"smiles": smiles, "label": labels})


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
