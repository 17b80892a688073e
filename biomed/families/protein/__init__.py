"""The protein family: amino-acid sequences, one token per residue (AntiBERTy's vocabulary, or a
built one); compared with residue k-mer counts + logistic regression."""

from __future__ import annotations

from dataclasses import dataclass

from biomed.family import TaskDef
from biomed.families.protein.planted import MOTIF
from biomed.families.sequence import BertModel, SequenceFamily, kmer_logreg
from biomed.families.sequence.backbones import SMALL_BERT, TINY_BERT, PackagedBackbone
from biomed.families.sequence.planted import motif_table
from biomed.families.sequence.tokens import word_level
from biomed.inputs import AlphabetValidator
from biomed.spec_sections import offering

AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
# The 20 standard amino acids plus X (unknown residue; the tokenizer maps it to [UNK]).
ALPHABET = AMINO_ACIDS + "X"

ANTIBERTY = PackagedBackbone(
    package="antiberty",
    subdir="trained_models/AntiBERTy_md_smooth",
    vocab_file="trained_models/vocab.txt",
    safetensors=False,
    description="AntiBERTy protein BERT (antiberty==0.1.3), 8 layers, hidden 512, 25.8M parameters (pretrained on antibody sequences), residue-level vocabulary",
)
BACKBONES = {"antiberty": ANTIBERTY, "tiny-bert": TINY_BERT, "small-bert": SMALL_BERT}


def residue_tokenizer():
    return word_level(list(AMINO_ACIDS))


def _check(*, min_length: int = 1) -> AlphabetValidator:
    return AlphabetValidator(kind="protein", alphabet=ALPHABET, min_length=min_length)


def _planted(num_rows: int, seed: int):
    table = motif_table(num_rows, seed=seed, alphabet="ACDEFGHIKLMNPQRSTVY", motif=MOTIF)
    return table, {"task": {"name": "protein_classification"}, "data": {"text_column": "sequence"}, "model": {"backbone": "tiny-bert"}}


@dataclass(frozen=True, eq=False)
class ProteinFamily(SequenceFamily):
    def prepare(self, sequences, *, kmer_size=None, kmer_stride=None):
        return [" ".join(s) for s in sequences]  # one word per residue

    def fixed_tokenizer(self, kind: str, *, kmer_size: int | None):
        return residue_tokenizer()

    def attribution_entries(self, tokens, raw: str, validated: str) -> list[dict]:
        from biomed.families.sequence.explain import per_position, strip_shift

        # Residue j is word j of the spaced string, at offset 2j.
        positions = [(tokens.offsets[i][0] // 2, tokens.offsets[i][0] // 2 + 1) for i in tokens.units]
        return per_position(tokens, positions, raw, shift=strip_shift(raw))


PROTEIN = ProteinFamily(
    name="protein",
    description="Protein sequences (20 amino acids + X).",
    tasks=(TaskDef("protein_classification", "classification", "auroc", "Protein sequences (20 amino acids + X) to labels."),),
    backbones=BACKBONES,
    model_section=offering(BertModel, "protein", BACKBONES),
    make_check=_check,
    check_from=AlphabetValidator.from_dict,
    baseline_fn=kmer_logreg,
    baseline_name="kmer_logreg",
    planted_table=_planted,
    own_tokenizer=lambda spec, inputs, pieces=None: residue_tokenizer(),
    tokenizer_kinds=("residue",),
)
