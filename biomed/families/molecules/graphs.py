"""Molecules as graphs for message passing (chemprop's featurizers), plus molecule-level features.

A SMILES becomes chemprop's `MolGraph` (multi-hot atom and bond features, directed bond pairs)
through `SimpleMoleculeMolGraphFeaturizer`; a batch is chemprop's `BatchMolGraph`, unpacked into
plain tensors so it crosses devices and DDP like any other batch. Molecule-level features
(Morgan counts or RDKit 2D descriptors, from chemprop's molecule featurizers) are standardised
with statistics fitted on the training split; the statistics are saved in biomed.json with the
checkpoint, so serving computes exactly the features training saw.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

# Names a spec may give as model.molecule_features ("none": the graph alone).
MOLECULE_FEATURES = ("none", "morgan_count", "rdkit_2d")
# Standardised features are clipped: a few RDKit descriptors (Ipc, BCUT ranges) reach 1e30 on
# unusual molecules, and one such value would otherwise swamp the head's input.
FEATURE_CLIP = 6.0


def _mol(smiles: str):
    from rdkit import Chem

    from biomed.families.molecules.chem import _quiet_rdkit

    _quiet_rdkit()
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise ValueError("a SMILES does not parse (RDKit); inputs are validated before encoding")
    return mol


def _molecule_featurizer(kind: str):
    import logging

    from chemprop.featurizers import MorganCountFeaturizer, RDKit2DFeaturizer

    if kind == "morgan_count":
        return MorganCountFeaturizer(radius=2, length=2048)
    if kind == "rdkit_2d":
        # chemprop warns that these need scaling; they are standardised here (MoleculeFeatures).
        logging.getLogger("chemprop.featurizers.molecule").setLevel(logging.ERROR)
        return RDKit2DFeaturizer()
    raise ValueError(f"molecule_features {kind!r} is not one of {list(MOLECULE_FEATURES)}")


@dataclass(frozen=True)
class MoleculeFeatures:
    """Molecule-level features of one kind, standardised by training-split mean and std."""

    kind: str
    means: tuple[float, ...]
    stds: tuple[float, ...]

    @classmethod
    def fit(cls, kind: str, smiles: list[str]) -> MoleculeFeatures:
        raw = raw_features(kind, smiles)
        stds = raw.std(axis=0)
        return cls(kind=kind, means=tuple(raw.mean(axis=0).tolist()), stds=tuple(np.where(stds > 1e-8, stds, 1.0).tolist()))

    def __len__(self) -> int:
        return len(self.means)

    def transform(self, smiles: list[str]) -> np.ndarray:
        raw = raw_features(self.kind, smiles)
        scaled = (raw - np.asarray(self.means)) / np.asarray(self.stds)
        return np.clip(scaled, -FEATURE_CLIP, FEATURE_CLIP).astype(np.float32)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "means": list(self.means), "stds": list(self.stds)}

    @classmethod
    def from_dict(cls, payload: dict) -> MoleculeFeatures:
        return cls(kind=payload["kind"], means=tuple(payload["means"]), stds=tuple(payload["stds"]))


def raw_features(kind: str, smiles: list[str]) -> np.ndarray:
    """Unscaled molecule features, one row per SMILES; non-finite descriptor values become 0."""
    featurizer = _molecule_featurizer(kind)
    rows = np.stack([np.asarray(featurizer(_mol(s)), dtype=np.float64) for s in smiles]) if smiles else np.zeros((0, len(featurizer)))
    # Descriptors past float32's range would be inf once cast; clip them in float64 first.
    return np.nan_to_num(rows, nan=0.0, posinf=0.0, neginf=0.0).clip(-1e12, 1e12)


@dataclass
class MoleculeGraphs:
    """Featurized molecules (chemprop MolGraphs) and their standardised features, if any."""

    graphs: list
    features: np.ndarray | None

    def __len__(self) -> int:
        return len(self.graphs)

    def lengths(self) -> list[int]:
        return [len(g.V) for g in self.graphs]

    def batch(self, rows) -> dict[str, torch.Tensor]:
        """chemprop's BatchMolGraph of the rows, as tensors the model's forward takes."""
        from chemprop.data import BatchMolGraph

        rows = np.asarray(rows, dtype=np.int64)
        bmg = BatchMolGraph([self.graphs[r] for r in rows])
        out = {"V": bmg.V, "E": bmg.E, "edge_index": bmg.edge_index, "rev_edge_index": bmg.rev_edge_index, "graph_index": bmg.batch}
        if self.features is not None:
            out["features"] = torch.from_numpy(self.features[rows])
        return out

    def take(self, rows) -> MoleculeGraphs:
        rows = np.asarray(rows, dtype=np.int64)
        return MoleculeGraphs([self.graphs[r] for r in rows], None if self.features is None else self.features[rows])

    def join(self, other: MoleculeGraphs) -> MoleculeGraphs:
        features = None if self.features is None else np.concatenate([self.features, other.features])
        return MoleculeGraphs(self.graphs + other.graphs, features)


@dataclass
class GraphEncoder:
    """SMILES → MoleculeGraphs, with the molecule features fitted on the training split."""

    features: MoleculeFeatures | None = None
    input_kind: str = "smiles"

    @classmethod
    def fit(cls, train_inputs: list[str], *, molecule_features: str = "none") -> GraphEncoder:
        if molecule_features == "none":
            return cls()
        if not train_inputs:
            raise ValueError(f"molecule_features {molecule_features!r} are standardised on the training split, which must be held in memory (data.streaming: off)")
        return cls(MoleculeFeatures.fit(molecule_features, list(train_inputs)))

    @property
    def atom_fdim(self) -> int:
        return _graph_featurizer().atom_fdim

    @property
    def bond_fdim(self) -> int:
        return _graph_featurizer().bond_fdim

    @property
    def num_features(self) -> int:
        return 0 if self.features is None else len(self.features)

    def encode(self, inputs, *, max_length=None) -> MoleculeGraphs:
        """`max_length` is ignored: a graph has no token limit."""
        featurizer = _graph_featurizer()
        graphs = [featurizer(_mol(s)) for s in inputs]
        return MoleculeGraphs(graphs, None if self.features is None else self.features.transform(list(inputs)))

    def metadata(self) -> dict:
        return {
            "input_kind": "smiles", "kind": "molecule_graph", "featurizer": "chemprop SimpleMoleculeMolGraphFeaturizer (v2 multi-hot)",
            "atom_fdim": self.atom_fdim, "bond_fdim": self.bond_fdim,
            "molecule_features": None if self.features is None else self.features.to_dict(),
        }

    def save(self, directory) -> None:
        pass  # its statistics live in biomed.json (metadata)

    @classmethod
    def from_metadata(cls, encoder: dict) -> GraphEncoder:
        features = encoder.get("molecule_features")
        made = cls(None if features is None else MoleculeFeatures.from_dict(features))
        if (made.atom_fdim, made.bond_fdim) != (encoder["atom_fdim"], encoder["bond_fdim"]):
            raise ValueError(f"checkpoint graphs have atom/bond features of width {encoder['atom_fdim']}/{encoder['bond_fdim']}; this chemprop featurizes {made.atom_fdim}/{made.bond_fdim}")
        return made


def _graph_featurizer():
    from chemprop.featurizers import SimpleMoleculeMolGraphFeaturizer

    return SimpleMoleculeMolGraphFeaturizer()
