"""Tokenizers per sequence family, built with Hugging Face `tokenizers` and saved with the model.

- text: the backbone's own tokenizer.
- dna: overlapping k-mers (size and stride configurable) over A/C/G/T/N, one word-level token
  each, as in DNABERT: a sequence is cut into k-mers, then the k-mers are looked up.
- protein: one token per residue (the backbone's vocabulary, e.g. AntiBERTy's, or a built one).
- smiles: atom-level regex pre-tokenizer (Schwaller et al., 2019) with a word-level vocabulary
  learned from the training split.

The saved `tokenizer.json` loads with `AutoTokenizer.from_pretrained`; the k-mer cut and the
residue spacing that come before it are recorded in biomed.json ("encoder") and redone by
`SequenceEncoder.load`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

from biomed.text import encode_texts

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
SMILES_REGEX = r"(\[[^\]]+]|Br?|Cl?|N|O|S|P|F|I|b|c|n|o|s|p|\(|\)|\.|=|#|-|\+|\\|\/|:|~|@|\?|>|\*|\$|\%[0-9]{2}|[0-9])"
AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
MAX_KMER_SIZE = 8


def kmerize(sequence: str, *, size: int, stride: int) -> str:
    """'ACGTAC' with size 3, stride 1 → 'ACG CGT GTA TAC'; a tail shorter than a k-mer is
    covered by one last k-mer ending at the sequence's end, so no base is dropped."""
    starts = list(range(0, max(len(sequence) - size, 0) + 1, stride))
    if starts and starts[-1] + size < len(sequence):
        starts.append(len(sequence) - size)
    return " ".join(sequence[s : s + size] for s in starts)


def _word_level(vocab: list[str]):
    """A BERT-style fast tokenizer over whitespace-separated words with a fixed vocabulary."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = SPECIAL_TOKENS + [w for w in vocab if w not in SPECIAL_TOKENS]
    tok = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return wrap_bert_style(tok)


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


def kmer_tokenizer(size: int):
    """Every k-mer over A/C/G/T/N in the vocabulary (5^k words), so no DNA k-mer is unknown."""
    if not 1 <= size <= MAX_KMER_SIZE:
        raise ValueError(f"k-mer size {size} must be between 1 and {MAX_KMER_SIZE}")
    return _word_level(["".join(p) for p in itertools.product("ACGTN", repeat=size)])


def residue_tokenizer():
    return _word_level(list(AMINO_ACIDS))


def _smiles_split():
    from tokenizers import Regex, pre_tokenizers

    return pre_tokenizers.Split(Regex(SMILES_REGEX), behavior="isolated")


def smiles_pieces(smiles: list[str]) -> set[str]:
    """The atoms and bonds (regex pieces) the SMILES strings are made of."""
    split = _smiles_split()
    return {piece for s in smiles for piece, _ in split.pre_tokenize_str(s)}


def smiles_tokenizer(train_smiles: list[str] = (), *, pieces: list[str] | None = None):
    """Regex atom-level pre-tokenizer; vocabulary = the atoms and bonds seen in training (or
    the `pieces` a streamed pass collected).

    The vocabulary is sorted, not frequency-ranked, so every DDP worker that builds it from
    the same split gets the same token ids.
    """
    from tokenizers import Tokenizer, models

    split = _smiles_split()
    pieces = sorted(set(pieces) if pieces is not None else smiles_pieces(list(train_smiles)))
    words = SPECIAL_TOKENS + [p for p in pieces if p not in SPECIAL_TOKENS]
    tok = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = split
    return wrap_bert_style(tok)


@dataclass
class SequenceEncoder:
    """A tokenizer plus the string step before it (k-mer cut, residue spacing)."""

    input_kind: str
    tokenizer: object
    kmer_size: int | None = None
    kmer_stride: int | None = None

    def prepare(self, sequences: list[str]) -> list[str]:
        if self.input_kind == "dna" and self.kmer_size:  # no k-mer size: BPE over the bases
            return [kmerize(s, size=self.kmer_size, stride=self.kmer_stride) for s in sequences]
        if self.input_kind == "protein":
            return [" ".join(s) for s in sequences]
        return list(sequences)

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
class SmilesVocabulary:
    """The SMILES pieces of a training split, collected one unit of rows at a time."""

    pieces: set = field(default_factory=set)

    def update(self, examples) -> None:
        self.pieces |= smiles_pieces(examples.inputs)

    def result(self) -> dict:
        return {"pieces": sorted(self.pieces)}


def build_sequence_encoder(
    input_kind: str, *, backbone_tokenizer=None, train_inputs: list[str] = (), kmer_size: int | None = 6, kmer_stride: int = 1, pieces: list[str] | None = None
) -> SequenceEncoder:
    """The family's encoder: the backbone's tokenizer when it has one, else the family's own
    (a SMILES vocabulary from the training inputs, or from the `pieces` of a streamed pass)."""
    kmer = {"kmer_size": kmer_size, "kmer_stride": kmer_stride} if input_kind == "dna" else {}
    if backbone_tokenizer is not None:
        return SequenceEncoder(input_kind=input_kind, tokenizer=backbone_tokenizer, **kmer)
    if input_kind == "dna":
        return SequenceEncoder(input_kind=input_kind, tokenizer=kmer_tokenizer(kmer_size), **kmer)
    if input_kind == "protein":
        return SequenceEncoder(input_kind=input_kind, tokenizer=residue_tokenizer())
    if input_kind == "smiles":
        return SequenceEncoder(input_kind=input_kind, tokenizer=smiles_tokenizer(list(train_inputs), pieces=pieces))
    raise ValueError(f"input kind {input_kind!r} needs a backbone with its own tokenizer")
