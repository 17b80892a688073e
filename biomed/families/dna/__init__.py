"""The DNA family: sequences over A/C/G/T/N cut into overlapping k-mers (DNABERT), or read by a
model folder's own BPE tokenizer (DNABERT-2); compared with k-mer counts + logistic regression."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from pydantic import Field, model_validator

from biomed.family import Resolution, TaskDef
from biomed.families.sequence import BertModel, SequenceFamily, kmer_logreg
from biomed.families.sequence.backbones import SMALL_BERT, TINY_BERT
from biomed.families.sequence.planted import motif_table
from biomed.families.sequence.tokens import word_level
from biomed.inputs import AlphabetValidator
from biomed.spec_sections import offering

ALPHABET = "ACGTN"
MAX_KMER_SIZE = 8
MOTIF = "TATAAT"  # the bacterial -10 promoter box
BACKBONES = {"tiny-bert": TINY_BERT, "small-bert": SMALL_BERT}


def kmer_starts(length: int, *, size: int, stride: int) -> list[int]:
    """Where each k-mer of a sequence starts; a tail shorter than a k-mer is covered by one last
    k-mer ending at the sequence's end, so no base is dropped."""
    starts = list(range(0, max(length - size, 0) + 1, stride))
    if starts and starts[-1] + size < length:
        starts.append(length - size)
    return starts


def kmerize(sequence: str, *, size: int, stride: int) -> str:
    """'ACGTAC' with size 3, stride 1 → 'ACG CGT GTA TAC'."""
    return " ".join(sequence[s : s + size] for s in kmer_starts(len(sequence), size=size, stride=stride))


def kmer_tokenizer(size: int):
    """Every k-mer over A/C/G/T/N in the vocabulary (5^k words), so no DNA k-mer is unknown."""
    if not 1 <= size <= MAX_KMER_SIZE:
        raise ValueError(f"k-mer size {size} must be between 1 and {MAX_KMER_SIZE}")
    return word_level(["".join(p) for p in itertools.product(ALPHABET, repeat=size)])


class DnaModelFields(BertModel):
    kmer_size: int | None = Field(
        default=6,
        ge=1,
        le=8,
        description="DNA tasks: nucleotides per k-mer token. null: no k-mer cut, the bases go to the model folder's own tokenizer (a BPE vocabulary, as DNABERT-2 reads DNA); needs model.path or model.pretrained. With model.pretrained, omit it to take the backbone's own cut.",
    )
    kmer_stride: int = Field(default=1, ge=1, le=8, description="DNA tasks: step between k-mer starts (1: overlapping k-mers, kmer_size: non-overlapping).")

    @model_validator(mode="after")
    def _cut(self):
        if self.kmer_size is None and self.path is None and self.pretrained is None:
            raise ValueError("model.kmer_size null (bases read by a BPE tokenizer) needs the tokenizer of model.path or model.pretrained; a preset backbone reads k-mers")
        if self.kmer_size is not None and self.kmer_stride > self.kmer_size:
            raise ValueError(f"kmer_stride {self.kmer_stride} is larger than kmer_size {self.kmer_size}: bases between k-mers would be skipped")
        return self


def backbone_cut(model, encoder: dict) -> dict:
    """The k-mer cut a DNA fine-tune takes from its backbone's encoder metadata: kmer_size and
    kmer_stride as the backbone read its corpus (kmer_size None: bases through its BPE). A cut
    the spec sets itself must be the backbone's; raises ValueError naming both."""
    theirs = {"kmer_size": encoder.get("kmer_size"), "kmer_stride": encoder.get("kmer_stride")}
    if theirs["kmer_size"] is None:  # no k-mers: the stride means nothing, so the spec's stands
        theirs["kmer_stride"] = model.kmer_stride
    for key in ("kmer_size", "kmer_stride"):
        if key in model.model_fields_set and getattr(model, key) != theirs[key]:
            read = "by BPE, with no k-mer cut (leave out model.kmer_size)" if theirs["kmer_size"] is None else f"as {theirs['kmer_size']}-mers with stride {theirs['kmer_stride']}"
            raise ValueError(f"model.{key} {getattr(model, key)!r} differs from backbone {model.pretrained!r}, which reads DNA {read}")
    return theirs


def _check(*, min_length: int = 1) -> AlphabetValidator:
    return AlphabetValidator(kind="dna", alphabet=ALPHABET, min_length=min_length)


def _planted(num_rows: int, seed: int):
    table = motif_table(num_rows, seed=seed, alphabet="ACGT", motif=MOTIF)
    return table, {"task": {"name": "dna_classification"}, "data": {"text_column": "sequence"}, "model": {"backbone": "tiny-bert", "kmer_size": 3}}


@dataclass(frozen=True, eq=False)
class DnaFamily(SequenceFamily):
    def resolve(self, spec, *, backbone_metadata: dict | None) -> Resolution:
        resolved = super().resolve(spec, backbone_metadata=backbone_metadata)
        if spec.model.pretrained is None:
            return resolved
        cut = backbone_cut(spec.model, (backbone_metadata or {}).get("encoder", {}))
        model = {**resolved.updates.get("model", {}), **cut}
        return Resolution(updates={**resolved.updates, "model": model}, settings=resolved.settings)

    def check_options(self, spec) -> dict:
        # A DNA sequence shorter than one k-mer has no token to give.
        return {"min_length": spec.model.kmer_size or 1}

    def corpus_check_options(self, spec) -> dict:
        return {"min_length": spec.tokenizer.kmer_size if spec.tokenizer.kind == "kmer" else 1}

    def prepare(self, sequences, *, kmer_size=None, kmer_stride=None):
        if not kmer_size:  # no k-mer size: BPE over the bases
            return sequences
        return [kmerize(s, size=kmer_size, stride=kmer_stride) for s in sequences]

    def encoder_options(self, spec) -> dict:
        return {"kmer_size": spec.model.kmer_size, "kmer_stride": spec.model.kmer_stride}

    def corpus_encoder_options(self, spec) -> dict:
        t = spec.tokenizer
        return {"kmer_size": t.kmer_size, "kmer_stride": t.kmer_stride} if t.kind == "kmer" else {}

    def fixed_tokenizer(self, kind: str, *, kmer_size: int | None):
        if kind != "kmer":
            return None
        if kmer_size is None:
            raise ValueError("k-mer tokenizers are not trained: give the k-mer size")
        return kmer_tokenizer(kmer_size)

    def mask_span(self, spec) -> int:
        t = spec.tokenizer
        return max(1, -(-t.kmer_size // t.kmer_stride)) if t.kind == "kmer" else 1

    def attribution_entries(self, tokens, raw: str, validated: str) -> list[dict]:
        """Per base: each k-mer's score spread evenly over the bases it covers (BPE: each piece's)."""
        from biomed.families.sequence.explain import per_position, strip_shift

        size, stride = tokens.sequences.kmer_size, tokens.sequences.kmer_stride
        if not size:
            positions = [tokens.offsets[i] for i in tokens.units]
        else:
            positions = [(s, s + size) for s in kmer_starts(len(validated), size=size, stride=stride)[: len(tokens.units)]]
        return per_position(tokens, positions, raw, shift=strip_shift(raw))

    def baseline_context(self, spec) -> dict:
        # The baseline's character n-grams reach the model's k-mer; 6 (DNABERT's) when it reads BPE.
        return {"kmer_size": spec.model.kmer_size or 6}


DNA = DnaFamily(
    name="dna",
    description="DNA sequences (A/C/G/T/N).",
    tasks=(TaskDef("dna_classification", "classification", "auroc", "DNA sequences (A/C/G/T/N) to labels, tokenized as overlapping k-mers."),),
    backbones=BACKBONES,
    model_section=offering(DnaModelFields, "dna", BACKBONES),
    make_check=_check,
    check_from=AlphabetValidator.from_dict,
    baseline_fn=kmer_logreg,
    baseline_name="kmer_logreg",
    planted_table=_planted,
    own_tokenizer=lambda spec, inputs, pieces=None: kmer_tokenizer(spec.model.kmer_size),
    tokenizer_kinds=("kmer", "bpe"),
)
