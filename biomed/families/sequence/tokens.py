"""Token encoders shared by the sequence families (text, DNA, protein, SMILES transformers).

A `SequenceEncoder` is a tokenizer plus the family's string step before it (DNA's k-mer cut,
protein's residue spacing), recorded in biomed.json ("encoder") and redone on load. Batches are
padded to their longest row, not to the maximum length.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from biomed.padding import collate, encode_texts

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def wrap_bert_style(tok):
    """A `tokenizers.Tokenizer` as a BERT-style fast tokenizer: [CLS] $A [SEP], [PAD], [MASK]."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]"
    )


def word_level(vocab: list[str], *, pre_tokenizer=None):
    """A BERT-style fast tokenizer over a fixed vocabulary (whitespace-separated words unless
    another pre-tokenizer is given); the special tokens come first."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = SPECIAL_TOKENS + [w for w in vocab if w not in SPECIAL_TOKENS]
    tok = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizer or pre_tokenizers.WhitespaceSplit()
    return wrap_bert_style(tok)


@dataclass
class SequenceEncoder:
    """A tokenizer plus the string step before it (k-mer cut, residue spacing), which the
    family named by `input_kind` does."""

    input_kind: str
    tokenizer: object
    kmer_size: int | None = None
    kmer_stride: int | None = None

    def prepare(self, sequences: list[str]) -> list[str]:
        from biomed.families import get_family

        return get_family(self.input_kind).prepare(list(sequences), kmer_size=self.kmer_size, kmer_stride=self.kmer_stride)

    def encode(self, sequences: list[str], *, max_length: int) -> list[list[int]]:
        return encode_texts(self.tokenizer, self.prepare(sequences), max_length=max_length)

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    def metadata(self) -> dict:
        return {"input_kind": self.input_kind, "kmer_size": self.kmer_size, "kmer_stride": self.kmer_stride}

    def save(self, directory: str | Path) -> None:
        self.tokenizer.save_pretrained(directory)

    @classmethod
    def load(cls, directory: str | Path, metadata: dict) -> SequenceEncoder:
        from transformers import AutoTokenizer

        return cls(
            input_kind=metadata["input_kind"],
            tokenizer=AutoTokenizer.from_pretrained(directory),
            kmer_size=metadata.get("kmer_size"),
            kmer_stride=metadata.get("kmer_stride"),
        )


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
    """SMILES tokens plus molecule features (standardised on the training split and saved in
    biomed.json), so serving computes them exactly as training did."""

    tokens: TokenEncoder
    features: object  # biomed.families.molecules.graphs.MoleculeFeatures (it needs chemprop)

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
