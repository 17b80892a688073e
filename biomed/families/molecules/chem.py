"""Molecules with RDKit: SMILES parsing, Bemis–Murcko scaffold split, Morgan fingerprints."""

from __future__ import annotations

from collections import defaultdict

import numpy as np


def _quiet_rdkit() -> None:
    # RDKit prints every parse error to stderr; the validator reports them per row instead.
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")


def parse_smiles(smiles: str) -> tuple[str, str | None]:
    """(canonical SMILES, None) or (input, reason it does not parse)."""
    from rdkit import Chem

    _quiet_rdkit()
    mol = Chem.MolFromSmiles(smiles)
    if mol is None or mol.GetNumAtoms() == 0:
        # The input is not quoted back: a row number is enough to find it, and it may be a patient's.
        return smiles, f"SMILES of {len(smiles)} characters does not parse as a molecule (RDKit)"
    return Chem.MolToSmiles(mol), None


def murcko_scaffold(smiles: str) -> str:
    """The Bemis–Murcko scaffold (ring systems and linkers) as SMILES; '' for acyclic molecules."""
    from rdkit.Chem.Scaffolds import MurckoScaffold

    _quiet_rdkit()
    return MurckoScaffold.MurckoScaffoldSmiles(smiles=smiles, includeChirality=False)


def scaffold_split(smiles: list[str], *, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) indices with no scaffold in both parts.

    Scaffold groups go to training largest first (ties by scaffold string, so it is
    deterministic, as in DeepChem's ScaffoldSplitter); the smaller, rarer scaffolds fill the
    held-out part, which makes it a test of generalisation to new chemotypes.
    """
    groups: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(smiles):
        groups[murcko_scaffold(s)].append(i)
    ordered = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    train_cap = len(smiles) - int(round(fraction * len(smiles)))
    train, held = [], []
    for _, rows in ordered:
        (train if len(train) + len(rows) <= train_cap else held).extend(rows)
    return np.array(sorted(train), dtype=np.int64), np.array(sorted(held), dtype=np.int64)


def morgan_fingerprints(smiles: list[str], *, radius: int = 2, num_bits: int = 2048) -> np.ndarray:
    """Binary Morgan (ECFP-like) fingerprints, one row per molecule."""
    from rdkit import Chem
    from rdkit.Chem import rdFingerprintGenerator

    _quiet_rdkit()
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=num_bits)
    return np.stack([generator.GetFingerprintAsNumPy(Chem.MolFromSmiles(s)) for s in smiles]).astype(np.float32)
