"""The spec of `biomed pretrain`: masked-language-model pretraining over an unlabelled corpus.

Same rules as job specs (jobs/spec.py): pure pydantic, unknown keys are errors, every field
described; `resolve_pretrain` checks the files and columns and settles the family's defaults,
once, before any compute. The corpus is always streamed (each worker reads only its share, a
Parquet row group or a file at a time), so memory stays flat in corpus size.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from biomed.families import get_family
from biomed.families.sequence.backbones import PRESETS, PackagedBackbone
from biomed.seqfiles import SEQUENCE_COLUMN
from biomed.streams import check_files, resolve_files
from jobs.run_storage import display, is_uri
from jobs.scaling_spec import ScalingSpec
from jobs.spec import CheckpointSpec, FailureSpec, SpecError, read_spec_file, validate_spec
from jobs.spec_base import _RunSpec, _Spec, absolute

FAMILIES = ("smiles", "dna", "protein", "text")


def _tokenizer_kinds() -> dict[str, tuple[str, ...]]:
    return {name: get_family(name).tokenizer_kinds for name in FAMILIES}


def packaged_backbones() -> dict[str, str]:
    """Packaged (pretrained) backbones a pretraining run can continue, by name, with their family."""
    return {name: f for f in FAMILIES for name, b in get_family(f).backbones.items() if isinstance(b, PackagedBackbone)}


class CorpusSpec(_Spec):
    train_path: str | list[str] = Field(
        description="The corpus: Parquet or CSV/TSV files with a `column`, or plain text (.txt, one example a line), FASTA (.fasta/.fa/.faa/.fna) or .smi files; CSV, TSV and sequence files may be gzipped (.gz); a file, a glob or a list."
    )
    validation_path: str | list[str] | None = Field(
        default=None, description="Held-out corpus for the masked-token loss and accuracy. Omitted: `validation_fraction` of the corpus's units (row groups or files), seeded, is held out."
    )
    validation_fraction: float = Field(default=0.05, gt=0.0, lt=0.5, description="Share of the corpus's units held out when no validation_path is given (at least one; the corpus needs two units or more).")
    column: str = Field(default=SEQUENCE_COLUMN, description=f"Column of Parquet/CSV files holding the sequences; text, FASTA and .smi files have one column, {SEQUENCE_COLUMN!r}.")
    invalid_inputs: Literal["drop", "error"] = Field(
        default="drop", description="Rows that fail the family's check (DNA alphabet, SMILES that RDKit cannot parse): drop leaves them out and counts them per file; error stops before training, naming the file and rows."
    )
    canonicalize_smiles: bool = Field(default=True, description="SMILES: rewrite each in RDKit's canonical form, as fine-tuning and serving do.")
    shuffle_buffer_rows: int = Field(default=10_000, ge=1, description="Rows per shuffle window of a worker's stream: memory grows with this, not with the corpus.")
    seed: int = Field(default=0, ge=0, description="Seed of the held-out units.")

    def files_of(self, role: str) -> list[str]:
        value = getattr(self, role)
        return [] if value is None else [value] if isinstance(value, str) else list(value)

    def columns(self) -> list[str]:
        return [self.column]


class TokenizerSpec(_Spec):
    kind: Literal["wordlevel", "bpe", "kmer", "residue", "wordpiece"] | None = Field(
        default=None,
        description=f"How sequences become tokens; per family {_tokenizer_kinds()}, the first its default. wordlevel, bpe and wordpiece are trained on the corpus with Hugging Face tokenizers; kmer (every k-mer over ACGTN) and residue are fixed. Ignored (the backbone's own) when model.backbone is set.",
    )
    vocab_size: int = Field(default=1000, ge=8, le=1_000_000, description="Largest vocabulary a trained tokenizer may learn, the 5 special tokens included.")
    min_frequency: int = Field(default=1, ge=1, description="Fewest occurrences in the corpus for a token to enter a trained vocabulary.")
    sample_rows: int = Field(default=1_000_000, ge=1, description="Training rows (from the first units) a trained tokenizer learns from; they are collected during the corpus pass and held on the driver.")
    kmer_size: int = Field(default=6, ge=1, le=8, description="DNA k-mers: bases per token.")
    kmer_stride: int = Field(default=1, ge=1, le=8, description="DNA k-mers: bases between the starts of neighbouring k-mers (1: overlapping, as DNABERT).")


class ArchitectureSpec(_Spec):
    preset: str | None = Field(default=None, description=f"A BERT built from a config, random init: one of {sorted(PRESETS)}.")
    backbone: str | None = Field(
        default=None, description=f"Continued (domain-adaptive) pretraining of a packaged backbone, with its own tokenizer: one of {sorted(packaged_backbones())}."
    )

    @model_validator(mode="after")
    def _one(self) -> ArchitectureSpec:
        if (self.preset is None) == (self.backbone is None):
            raise ValueError("give exactly one of model.preset or model.backbone")
        name, known = (self.preset, sorted(PRESETS)) if self.preset is not None else (self.backbone, sorted(packaged_backbones()))
        if name not in known:
            raise ValueError(f"unknown {'preset' if self.preset else 'backbone'} {name!r}; known: {known}")
        return self


class MaskingSpec(_Spec):
    probability: float = Field(default=0.15, gt=0.0, lt=1.0, description="Share of the non-special tokens chosen for prediction.")
    whole_kmer_spans: bool = Field(default=True, description="DNA k-mers: mask the neighbouring k-mers that share bases with a chosen one as one span, so it cannot be read off them (DNABERT). Of the chosen tokens 80% become [MASK], 10% a random token, 10% stay.")


class PretrainingSpec(_Spec):
    epochs: int = Field(default=1, ge=1, le=10_000, description="Passes over the corpus.")
    max_steps: int | None = Field(default=None, ge=1, description="Stop after this many optimizer steps (the schedule ends there). Omitted: all the epochs.")
    batch_size_per_worker: int = Field(default=32, ge=1, le=65_536, description="Sequences per worker per step.")
    learning_rate: float = Field(default=5e-4, gt=0.0, le=1.0, description="Peak AdamW learning rate, reached after warmup, then linear decay to 0.")
    weight_decay: float = Field(default=0.01, ge=0.0, le=1.0, description="AdamW weight decay (not on biases and LayerNorm).")
    warmup_ratio: float = Field(default=0.06, ge=0.0, lt=1.0, description="Share of the steps spent warming up the learning rate.")
    max_seq_length: int = Field(default=128, ge=8, le=512, description="Tokens per sequence, [CLS] and [SEP] included; longer ones are cut.")
    max_grad_norm: float = Field(default=1.0, gt=0.0, description="Gradient clipping by global norm.")
    eval_batch_size: int = Field(default=128, ge=1, le=65_536, description="Sequences per forward pass during validation.")
    seed: int = Field(default=0, ge=0, description="Seed of initialisation, data order and masks.")
    precision: Literal["fp32", "bf16", "fp16"] = Field(default="fp32", description="Autocast precision: fp32, bf16 (CPU or GPU) or fp16 (GPU, with loss scaling).")
    group_by_length: bool = Field(default=True, description="Draw each batch from sequences of similar length (biomed.batching), so less compute goes to padding; masked-token prediction has no label for length to give away.")


class PretrainSpec(_RunSpec):
    family: Literal["smiles", "dna", "protein", "text"] = Field(description="What the corpus holds; sets its input check and the tokenizers on offer.")
    corpus: CorpusSpec = Field(description="Where the unlabelled sequences are.")
    tokenizer: TokenizerSpec = Field(default_factory=TokenizerSpec, description="The tokenizer, trained on the corpus.")
    model: ArchitectureSpec = Field(description="The encoder to pretrain.")
    masking: MaskingSpec = Field(default_factory=MaskingSpec, description="Which tokens are masked.")
    training: PretrainingSpec = Field(default_factory=PretrainingSpec, description="Optimisation settings.")
    scaling: ScalingSpec = Field(default_factory=ScalingSpec, description="Workers and resources.")
    checkpointing: CheckpointSpec = Field(default_factory=CheckpointSpec, description="Step checkpoints and validation; the best checkpoint has the lowest masked-token loss.")
    failure: FailureSpec = Field(default_factory=FailureSpec, description="Fault tolerance.")


    @model_validator(mode="after")
    def _consistent(self) -> PretrainSpec:
        kinds = get_family(self.family).tokenizer_kinds
        self.scaling.check_checkpointing(self.checkpointing)
        if is_uri(self.storage_path):
            # The driver trains the corpus tokenizer into the run folder and the workers read it there.
            raise ValueError(f"storage_path {display(self.storage_path)!r}: pretraining runs need a folder every node sees; object-store URIs are for fine-tuning runs")
        if self.model.backbone is not None:
            takes = packaged_backbones()[self.model.backbone]
            if self.family != takes:
                raise ValueError(f"backbone {self.model.backbone!r} takes [{takes!r}] inputs, not {self.family!r}")
        elif self.tokenizer.kind is not None and self.tokenizer.kind not in kinds:
            raise ValueError(f"tokenizer.kind {self.tokenizer.kind!r} is not one of the {self.family} family's: {list(kinds)}")
        if self.checkpointing.metric not in (None, "loss") or self.checkpointing.mode not in (None, "min"):
            raise ValueError("pretraining selects the checkpoint by the masked-token loss: leave checkpointing.metric and mode out")
        return self

    @property
    def metric(self) -> str:
        return "loss"

    @property
    def mode(self) -> str:
        return "min"

    def files(self) -> list[str]:
        return [*self.corpus.files_of("train_path"), *self.corpus.files_of("validation_path")]

    def spec_hash(self) -> str:
        """sha256 of the settings that change what is trained (failure handling excluded)."""
        payload = self.model_dump(mode="json", exclude={"failure"})
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def parse_pretrain_spec(raw: dict) -> PretrainSpec:
    """Validate a pretraining spec dict; raise SpecError with one line per problem."""
    return validate_spec(PretrainSpec, raw)


def resolve_pretrain(spec: PretrainSpec) -> PretrainSpec:
    """The spec with its I/O done, once, on the driver: storage made absolute, corpus files
    resolved and their columns checked, the family's default tokenizer settled (so the run name
    names what is trained). Raises SpecError naming the field."""
    corpus = {}
    for role in ("train_path", "validation_path"):
        value = getattr(spec.corpus, role)
        if value is None:
            continue
        try:
            files = resolve_files(value)
            check_files(files, spec.corpus.columns(), role=f"corpus.{role}")
        except ValueError as error:
            raise SpecError(str(error) if str(error).startswith("corpus.") else f"corpus.{role}: {error}") from None
        corpus[role] = files
    tokenizer = spec.tokenizer
    if spec.model.backbone is None and tokenizer.kind is None:
        tokenizer = tokenizer.model_copy(update={"kind": get_family(spec.family).tokenizer_kinds[0]})
    update = {"storage_path": absolute(spec.storage_path), "corpus": spec.corpus.model_copy(update=corpus), "tokenizer": tokenizer}
    if spec.registry_storage_path is not None:
        update["registry_storage_path"] = absolute(spec.registry_storage_path)
    return PretrainSpec.model_validate(spec.model_copy(update=update).model_dump(mode="json"))


def load_pretrain_spec(path: str | Path, *, storage_path: str | None = None) -> PretrainSpec:
    """Read and validate a YAML pretraining spec; `storage_path` replaces the file's own."""
    return parse_pretrain_spec(read_spec_file(path, storage_path=storage_path))
