"""What the four sequence families share: one string per input, tokens, BERT backbones.

`SequenceFamily` implements `biomed.family.Family` for inputs that are one string each (free
text, DNA, protein, SMILES): a column of strings, a tokenizer (the backbone's, or one the family
builds), a BERT classifier. Each family folder instantiates it with its own check, tokenizer,
backbones, baseline, spec sections and planted data, overriding what differs (DNA's k-mer cut,
the molecule family's message passing).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, Mapping

from pydantic import Field

from biomed.conformal import ConformalRequest
from biomed.family import Baseline, Resolution, TaskDef
from biomed.families.sequence.backbones import build_bert_classifier
from biomed.families.sequence.tokens import SequenceEncoder, TokenEncoder
from biomed.spec_sections import DataSection, ModelSection, TrainingSection


class SequenceData(DataSection):
    text_column: str = Field(default="text", description="Column holding the input of sequence tasks: free text, a DNA or protein sequence, or a SMILES string.")


class BertModel(ModelSection):
    pooling: Literal["cls", "mean"] | None = Field(
        default=None,
        description="BERT-family models: what the classification head reads. 'cls': the [CLS] state through the pooler (stock BertForSequenceClassification); 'mean': the mean of the token states, as sentence-embedding models such as all-MiniLM-L6-v2 were trained. Omitted: the backbone's own ('mean' for all-minilm-l6-v2, 'cls' otherwise).",
    )


class SequencePredictRequest(ConformalRequest):

    inputs: str | list[str] = Field(
        description="One input or a list: a text, a DNA sequence (A/C/G/T/N), a protein sequence (amino acids) or a SMILES string, per the model's task.",
        examples=[["I took this for my migraines and it worked."]],
    )


def bert_folder_type(path: str) -> str | None:
    """The model_type a Hugging Face folder's config.json declares."""
    return json.loads((Path(path) / "config.json").read_text()).get("model_type")


def kmer_logreg(train_x, train_y, test_x, ctx):
    """Counts of overlapping k-mers (1 to k residues or bases) + logistic regression."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline

    from biomed.baselines import fit_proba, logreg

    vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(1, max(ctx.options.get("kmer_size", 3), 1)), lowercase=False, sublinear_tf=True)
    pipeline = make_pipeline(vectorizer, logreg(ctx.num_classes, train_y, ctx.seed))
    return fit_proba(pipeline, train_x, train_y, test_x, ctx.num_classes)


@dataclass(frozen=True, eq=False)
class SequenceFamily:
    """A `biomed.family.Family` whose inputs are strings read by a BERT (see the module doc)."""

    name: str
    description: str
    tasks: tuple[TaskDef, ...]
    backbones: Mapping[str, object]
    make_check: Callable  # (**check_options) -> the input check (biomed.inputs.InputValidator)
    check_from: Callable  # the check's recorded dict (biomed.json "validator") -> the check
    baseline_fn: Callable  # (train_x, train_y, test_x, context) -> predictions
    baseline_name: str
    planted_table: Callable  # (num_rows, seed) -> (pyarrow table, data section, model section)
    model_section: type = BertModel
    data_section: type = SequenceData
    training_section: type = TrainingSection
    # The family's own tokenizer when the backbone brings none: (spec, train_inputs, pieces) -> tokenizer.
    own_tokenizer: Callable | None = None
    # Pretraining: the tokenizer kinds on offer (the first the default), and the pre-tokenizer a
    # trained vocabulary splits the corpus with (None: the kind's own).
    tokenizer_kinds: tuple[str, ...] = ()
    pre_tokenizer: Callable | None = None
    has_length: bool = True
    request: type = SequencePredictRequest
    accepts_files: bool = False
    # Split methods beyond stratified and random (molecules: scaffold).
    split_methods: tuple[str, ...] = ()
    options: Mapping = field(default_factory=dict)

    # --- the spec ---
    def check(self, spec, task) -> None:
        pass

    def resolve(self, spec, *, backbone_metadata: dict | None) -> Resolution:
        m = spec.model
        if m.path is not None:
            from biomed.models import has_tokenizer

            if not has_tokenizer(m.path):
                raise ValueError(f"model path {m.path!r} has no tokenizer files (tokenizer.json or vocab.txt); task family {self.name!r} reads sequences")
            if m.pooling == "mean" and bert_folder_type(m.path) != "bert":
                raise ValueError(f"pooling 'mean' needs a BERT model folder; {m.path!r} holds model_type {bert_folder_type(m.path)!r}")
        if m.pooling is not None:
            return Resolution()
        preset = self.backbones.get(m.backbone)
        return Resolution(updates={"model": {"pooling": preset.pooling if preset is not None else "cls"}})

    def input_columns(self, data) -> dict:
        return {"input": data.text_column}

    def in_memory_reason(self, spec) -> str | None:
        return None

    def hold_out(self, method, inputs, fraction):
        return None

    # --- inputs and encoding ---
    def validator(self, spec, *, serving: bool = False):
        return self.make_check(**self.check_options(spec))

    def check_options(self, spec) -> dict:
        """The input check's settings a job spec gives (DNA: the shortest sequence a k-mer cut reads)."""
        return {}

    def corpus_validator(self, spec):
        """The input check of a pretraining corpus (a `biomed pretrain` spec)."""
        return self.make_check(**self.corpus_check_options(spec))

    def corpus_check_options(self, spec) -> dict:
        return {}

    def load_validator(self, payload: dict):
        return self.check_from(payload)

    def prepare(self, sequences: list[str], *, kmer_size=None, kmer_stride=None) -> list[str]:
        """The string step before the tokenizer (none by default)."""
        return sequences

    def encoder_options(self, spec) -> dict:
        """What the encoder records besides the tokenizer (DNA: its k-mer cut)."""
        return {}

    def backbone_tokenizer(self, job):
        if job.model_folder is not None:
            from transformers import AutoTokenizer

            return AutoTokenizer.from_pretrained(job.model_folder)
        return self.backbones[job.spec.model.backbone].tokenizer()

    def encoder_statistics(self, job):
        return None

    def build_encoder(self, job, *, train_inputs: list, statistics: dict | None):
        tokenizer = self.backbone_tokenizer(job)
        if tokenizer is None:
            if self.own_tokenizer is None:
                raise ValueError(f"the {self.name} family needs a backbone with its own tokenizer")
            pieces = statistics["encoder"]["pieces"] if statistics is not None and "encoder" in statistics else None
            tokenizer = self.own_tokenizer(job.spec, list(train_inputs), pieces=pieces)
        return TokenEncoder(SequenceEncoder(input_kind=self.name, tokenizer=tokenizer, **self.encoder_options(job.spec)))

    def load_encoder(self, directory, metadata: dict):
        return TokenEncoder(SequenceEncoder.load(directory, metadata["encoder"]))

    def probe_input(self, example):
        return example

    def parse_cli_input(self, text: str):
        return text

    # --- models ---
    def build_model(self, job, *, encoder, labels: list[str], num_outputs: int):
        spec = job.spec
        return build_bert_classifier(
            self.backbones.get(spec.model.backbone), path=job.model_folder, labels=labels, num_outputs=num_outputs, dropout=spec.training.dropout,
            vocab_size=getattr(encoder, "vocab_size", 0), num_features=getattr(encoder, "num_features", 0), pooling=spec.model.pooling,
        )

    def register_auto_classes(self) -> None:
        import biomed.families.sequence.heads  # noqa: F401  (registers the BERT heads with the Auto classes)

    def load_model(self, directory):
        from transformers import AutoModelForSequenceClassification

        self.register_auto_classes()
        return AutoModelForSequenceClassification.from_pretrained(directory, use_safetensors=True)

    def corpus_encoder_options(self, spec) -> dict:
        """What a pretraining corpus's encoder records besides the tokenizer (DNA k-mers: the cut)."""
        return {}

    def fixed_tokenizer(self, kind: str, *, kmer_size: int | None):
        """A pretraining tokenizer with a fixed vocabulary (k-mers, residues), or None: trained on the corpus."""
        return None

    def mask_span(self, spec) -> int:
        """Neighbouring tokens masked together in pretraining (DNA k-mers share bases); else 1."""
        return 1

    def masked_lm(self, name: str, *, vocab_size: int, max_positions: int):
        """The pretraining model of a backbone this family offers (a preset's shape, or a packaged backbone)."""
        from biomed.families.sequence.backbones import build_masked_lm

        return build_masked_lm(self.backbones[name], vocab_size=vocab_size, max_positions=max_positions)

    # --- explanations ---
    def explain(self, predictor, raw, validated, *, target_index: int, n_steps: int):
        from biomed.families.sequence.explain import token_attributions

        tokens = token_attributions(predictor, validated, target_index=target_index, n_steps=n_steps)
        return tokens.explained(self.attribution_entries(tokens, raw, validated))

    def attribution_entries(self, tokens, raw: str, validated: str) -> list[dict]:
        """Token scores as spans of the user's string (text: words and subwords)."""
        from biomed.families.sequence.explain import spans_of, strip_shift

        return spans_of(tokens, raw, shift=strip_shift(raw) if validated != raw else 0)

    # --- the baseline ---
    def baseline(self, target) -> Baseline:
        return Baseline(self.baseline_name, self.baseline_fn)

    def baseline_context(self, spec) -> dict:
        return dict(self.options.get("baseline", {}))

    # --- tests ---
    def planted(self, num_rows: int, *, seed: int, folder=None):
        return self.planted_table(num_rows, seed)
