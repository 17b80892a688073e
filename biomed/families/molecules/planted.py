"""Planted signals for the molecule family's tests: a value counted from atoms, a substructure label."""

from __future__ import annotations

import numpy as np
import pyarrow as pa


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
NITRO, DECOY = "C([N+](=O)[O-])", "C(C(=O)[O-])"  # a carboxylate: as many atoms and tokens, an [O-] too


def planted_nitro_table(num_rows: int, *, seed: int, decoy: bool = False) -> pa.Table:
    """Chains of fragments with N and O distractors; label "nitro" iff a nitro group
    ([N+](=O)[O-]) is attached (chance 0.5), else "none". Without a decoy, a nitro molecule is
    larger than the others on average, so a model may read the label off its size; with
    `decoy`, a "none" molecule carries a carboxylate of as many atoms and SMILES tokens instead."""
    rng = np.random.default_rng(seed)
    smiles, labels = [], []
    for _ in range(num_rows):
        parts = ["C", *rng.choice(SMILES_FRAGMENTS + NITRO_DISTRACTORS, size=int(rng.integers(2, 7)))]
        nitro = bool(rng.random() < 0.5)
        if nitro or decoy:
            parts.insert(int(rng.integers(1, len(parts) + 1)), NITRO if nitro else DECOY)
        smiles.append("".join(parts))
        labels.append("nitro" if nitro else "none")
    return pa.table({"smiles": smiles, "label": labels})



def nitro_part(smiles: str):
    """Whether an attribution entry is an atom of the planted fragment (a nitro group and the
    carbon that carries it, `NITRO`), or a bond between two of them."""
    from rdkit import Chem

    atoms = {i for match in Chem.MolFromSmiles(smiles).GetSubstructMatches(Chem.MolFromSmarts("C[N+](=O)[O-]")) for i in match}
    return lambda entry: entry.get("atom") in atoms or (entry.get("bond") is not None and set(entry["bond"]) <= atoms)
