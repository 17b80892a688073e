"""Turning validated inputs into model batches, one encoder per input kind.

An encoder is fitted on the training split (a SMILES vocabulary, feature statistics), saved with
the checkpoint, and reloaded by the predictor, so serving encodes exactly as training did.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from biomed.tabular import TabularPreprocessor, TabularStatistics
from biomed.text import collate
from biomed.tokenization import SequenceEncoder, SmilesVocabulary, build_sequence_encoder


class Encoded(Protocol):
    def __len__(self) -> int: ...

    def lengths(self) -> list[int]: ...

    def batch(self, rows: np.ndarray) -> dict[str, torch.Tensor]: ...

    def take(self, rows) -> Encoded: ...

    def join(self, other) -> Encoded: ...


@runtime_checkable
class EpochDrawn(Protocol):
    """Encoded rows whose batches depend on the epoch (random augmentation of images)."""

    def for_epoch(self, epoch: int) -> Encoded: ...


@dataclass
class TokenIds:
    """Token ids per row; a batch is padded to its longest row, not to the maximum length."""

    ids: list[list[int]]
    pad_id: int

    def __len__(self) -> int:
        return len(self.ids)

    def lengths(self) -> list[int]:
        return [len(i) for i in self.ids]

    def batch(self, rows):
        return collate([self.ids[r] for r in rows], pad_id=self.pad_id)

    def take(self, rows) -> TokenIds:
        return TokenIds([self.ids[r] for r in rows], pad_id=self.pad_id)

    def join(self, other: TokenIds) -> TokenIds:
        return TokenIds(self.ids + other.ids, pad_id=self.pad_id)


@dataclass
class FeaturedTokens:
    """Token ids with molecule-level features per row, for a BERT head that reads both."""

    tokens: TokenIds
    features: np.ndarray

    def __len__(self) -> int:
        return len(self.tokens)

    def lengths(self) -> list[int]:
        return self.tokens.lengths()

    def batch(self, rows):
        return {**self.tokens.batch(rows), "features": torch.from_numpy(self.features[np.asarray(rows, dtype=np.int64)])}

    def take(self, rows) -> FeaturedTokens:
        return FeaturedTokens(self.tokens.take(rows), self.features[np.asarray(rows, dtype=np.int64)])

    def join(self, other: FeaturedTokens) -> FeaturedTokens:
        return FeaturedTokens(self.tokens.join(other.tokens), np.concatenate([self.features, other.features]))


@dataclass
class FeatureRows:
    features: np.ndarray

    def __len__(self) -> int:
        return len(self.features)

    def lengths(self) -> list[int]:
        return [1] * len(self.features)

    def batch(self, rows):
        return {"features": torch.from_numpy(self.features[np.asarray(rows)])}

    def take(self, rows) -> FeatureRows:
        return FeatureRows(self.features[np.asarray(rows, dtype=np.int64)])

    def join(self, other: FeatureRows) -> FeatureRows:
        return FeatureRows(np.concatenate([self.features, other.features]))


class Encoder(Protocol):
    input_kind: str

    def encode(self, inputs: list, *, max_length: int) -> Encoded: ...

    def metadata(self) -> dict: ...

    def save(self, directory: str | Path) -> None: ...


@dataclass
class TokenEncoder:
    sequences: SequenceEncoder

    @property
    def input_kind(self) -> str:
        return self.sequences.input_kind

    @property
    def vocab_size(self) -> int:
        return self.sequences.vocab_size

    def encode(self, inputs, *, max_length):
        return TokenIds(self.sequences.encode(inputs, max_length=max_length), pad_id=self.sequences.pad_id)

    def metadata(self):
        return self.sequences.metadata()

    def save(self, directory):
        self.sequences.save(directory)


@dataclass
class FeaturedTokenEncoder:
    """SMILES tokens plus molecule features (biomed.graphs.MoleculeFeatures, standardised on the
    training split and saved in biomed.json), so serving computes them exactly as training did."""

    tokens: TokenEncoder
    features: object  # biomed.graphs.MoleculeFeatures (imported lazily: it needs chemprop)

    @property
    def input_kind(self) -> str:
        return self.tokens.input_kind

    @property
    def vocab_size(self) -> int:
        return self.tokens.vocab_size

    @property
    def num_features(self) -> int:
        return len(self.features)

    def encode(self, inputs, *, max_length):
        return FeaturedTokens(self.tokens.encode(inputs, max_length=max_length), self.features.transform(list(inputs)))

    def metadata(self):
        return {**self.tokens.metadata(), "molecule_features": self.features.to_dict()}

    def save(self, directory):
        self.tokens.save(directory)


@dataclass
class TabularEncoder:
    preprocessor: TabularPreprocessor
    input_kind: str = "tabular"

    @property
    def num_features(self) -> int:
        return self.preprocessor.num_features

    def encode(self, inputs, *, max_length):
        return FeatureRows(self.preprocessor.transform(inputs))

    def metadata(self):
        return {"input_kind": "tabular", "preprocessor": self.preprocessor.to_dict()}

    def save(self, directory):
        pass  # its statistics live in biomed.json (metadata)


def build_encoder(
    input_kind: str, *, train_inputs: list = (), backbone_tokenizer=None, kmer_size: int | None = 6, kmer_stride: int = 1,
    numeric: list[str] = (), categorical: list[str] = (), statistics: dict | None = None,
    graphs: bool = False, molecule_features: str = "none", image: dict | None = None,
) -> Encoder:
    """The encoder of an input kind, fitted on the training inputs, or built from the
    `statistics` of a streamed pass (`encoder_statistics`) when the split is not in memory.
    `graphs`: molecules as chemprop graphs (the dmpnn backbone); `molecule_features` (none,
    morgan_count, rdkit_2d) go with the graphs or with the SMILES tokens. `image`: the
    ImagePipeline settings of an image task."""
    if graphs:
        from biomed.graphs import GraphEncoder

        return GraphEncoder.fit(list(train_inputs), molecule_features=molecule_features)
    if input_kind == "image":
        from biomed.image_encoding import ImageEncoder
        from biomed.image_transforms import ImagePipeline

        return ImageEncoder(ImagePipeline.from_dict(image or {}))
    if input_kind == "tabular":
        if statistics is not None:
            return TabularEncoder(TabularPreprocessor.from_dict(statistics["encoder"]))
        return TabularEncoder(TabularPreprocessor.fit(train_inputs, numeric=list(numeric), categorical=list(categorical)))
    pieces = statistics["encoder"]["pieces"] if statistics is not None and "encoder" in statistics else None
    tokens = TokenEncoder(
        build_sequence_encoder(input_kind, backbone_tokenizer=backbone_tokenizer, train_inputs=train_inputs, kmer_size=kmer_size, kmer_stride=kmer_stride, pieces=pieces)
    )
    if molecule_features == "none":
        return tokens
    from biomed.graphs import MoleculeFeatures

    if input_kind != "smiles" or not train_inputs:
        raise ValueError(f"molecule_features {molecule_features!r} need SMILES inputs held in memory (the training split fits them)")
    return FeaturedTokenEncoder(tokens, MoleculeFeatures.fit(molecule_features, list(train_inputs)))


def encoder_statistics(input_kind: str, *, has_backbone_tokenizer: bool, numeric: list[str] = (), categorical: list[str] = ()):
    """What a streamed pass must collect to build the encoder (None: nothing, a fixed vocabulary)."""
    if input_kind == "tabular":
        return TabularStatistics(numeric=list(numeric), categorical=list(categorical))
    if input_kind == "smiles" and not has_backbone_tokenizer:
        return SmilesVocabulary()
    return None


def load_encoder(directory: str | Path, metadata: dict) -> Encoder:
    """The encoder saved with a checkpoint (tokenizer files, or statistics in biomed.json)."""
    encoder = metadata.get("encoder", {"input_kind": "text"})
    if encoder.get("kind") == "molecule_graph":
        from biomed.graphs import GraphEncoder

        return GraphEncoder.from_metadata(encoder)
    if encoder.get("kind") == "image":
        from biomed.image_encoding import ImageEncoder

        return ImageEncoder.from_metadata(encoder)
    if encoder["input_kind"] == "tabular":
        return TabularEncoder(TabularPreprocessor.from_dict(encoder["preprocessor"]))
    tokens = TokenEncoder(SequenceEncoder.load(directory, encoder))
    if encoder.get("molecule_features") is None:
        return tokens
    from biomed.graphs import MoleculeFeatures

    return FeaturedTokenEncoder(tokens, MoleculeFeatures.from_dict(encoder["molecule_features"]))
