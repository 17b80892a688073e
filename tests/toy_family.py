"""A toy task family, defined outside the service: bit strings ("0110...") to a label.

Everything a family brings is here, and nothing in biomed/, jobs/ or serving/ names it: its input
check, an encoder fitted on the training split (the width of the longest string), a backbone (a
small MLP, a Hugging Face model registered with the Auto classes), a classical baseline, its spec
sections, its request body and planted data. `register_family(BITS)` is the one call that adds
it; docs/adding-a-family.md walks through the same steps.

The planted signal is the XOR of the first two bits: a linear model on the bits cannot read it
(its baseline scores chance), an MLP can.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch
from pydantic import BaseModel, ConfigDict, Field
from transformers import AutoConfig, AutoModelForSequenceClassification, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from biomed.family import Baseline, Resolution, TaskDef
from biomed.inputs import raise_if
from biomed.models import head_labels
from biomed.spec_sections import DataSection, ModelSection, TrainingSection, offering


# --- the input check: strings of 0 and 1, the first bad character named by its position ---
@dataclass(frozen=True)
class BitsValidator:
    kind: str = "bits"
    min_length: int = 2

    def validate(self, values: list) -> list[str]:
        problems = []
        for i, value in enumerate(values):
            if not isinstance(value, str):
                problems.append((i, "not a string of bits"))
                continue
            bad = next((k for k, c in enumerate(value) if c not in "01"), None)
            if bad is not None:
                problems.append((i, f"character at position {bad} is not 0 or 1"))
            elif len(value) < self.min_length:
                problems.append((i, f"{len(value)} bits; at least {self.min_length}"))
        raise_if(problems)
        return list(values)


# --- the encoder: bits as a float vector, as wide as the longest training string ---
@dataclass
class BitRows:
    bits: np.ndarray

    def __len__(self) -> int:
        return len(self.bits)

    def lengths(self) -> list[int]:
        return [1] * len(self.bits)

    def batch(self, rows):
        return {"bits": torch.from_numpy(self.bits[np.asarray(rows, dtype=np.int64)])}

    def take(self, rows) -> BitRows:
        return BitRows(self.bits[np.asarray(rows, dtype=np.int64)])

    def join(self, other: BitRows) -> BitRows:
        return BitRows(np.concatenate([self.bits, other.bits]))


@dataclass
class BitsEncoder:
    width: int
    input_kind: str = "bits"

    def encode(self, inputs, *, max_length=None) -> BitRows:
        out = np.zeros((len(inputs), self.width), dtype=np.float32)
        for i, bits in enumerate(inputs):
            row = [float(c) for c in bits[: self.width]]
            out[i, : len(row)] = row
        return BitRows(out)

    def metadata(self) -> dict:
        return {"input_kind": "bits", "width": self.width}

    def save(self, directory) -> None:
        pass  # the width lives in biomed.json


@dataclass
class LongestString:
    """The encoder's statistic, collected a unit at a time when the training split is streamed."""

    width: int = 0

    def update(self, examples) -> None:
        self.width = max([self.width, *map(len, examples.inputs)])

    def result(self) -> dict:
        return {"width": self.width}


# --- the backbone: an MLP as a Hugging Face model ---
class BitsMLPConfig(PretrainedConfig):
    model_type = "toy-bits-mlp"

    def __init__(self, width: int = 8, hidden: int = 32, **kwargs):
        super().__init__(**kwargs)
        self.width, self.hidden = width, hidden


class BitsMLP(PreTrainedModel):
    config_class = BitsMLPConfig

    def __init__(self, config: BitsMLPConfig):
        super().__init__(config)
        self.body = torch.nn.Sequential(torch.nn.Linear(config.width, config.hidden), torch.nn.ReLU())
        self.classifier = torch.nn.Linear(config.hidden, config.num_labels)
        self.post_init()

    def _init_weights(self, module):
        pass  # PyTorch's own initialisation

    def forward(self, bits=None, **_) -> SequenceClassifierOutput:
        return SequenceClassifierOutput(logits=self.classifier(self.body(bits)))


AutoConfig.register(BitsMLPConfig.model_type, BitsMLPConfig)
AutoModelForSequenceClassification.register(BitsMLPConfig, BitsMLP)


# --- the spec sections and the request body ---
class BitsData(DataSection):
    bits_column: str = Field(default="bits", description="Column holding the bit strings.")


class BitsModelFields(ModelSection):
    hidden: int = Field(default=32, ge=2, le=1024, description="Width of the MLP's hidden layer.")


class BitsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: str | list[str] = Field(description="One bit string or a list, such as \"0110\".")


# --- the classical baseline: logistic regression on the bits ---
def bits_logreg(train_x, train_y, test_x, ctx):
    from biomed.baselines import fit_proba, logreg

    width = max(map(len, train_x))
    encoder = BitsEncoder(width)
    return fit_proba(logreg(ctx.num_classes, train_y, ctx.seed), encoder.encode(train_x).bits, train_y, encoder.encode(test_x).bits, ctx.num_classes)


def planted_bits(num_rows: int, *, seed: int, width: int = 8) -> pa.Table:
    """Random bit strings; label "odd" iff exactly one of the first two bits is set (chance 0.5)."""
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2, size=(num_rows, width))
    labels = np.where(bits[:, 0] != bits[:, 1], "odd", "even")
    return pa.table({"bits": ["".join(map(str, row)) for row in bits], "label": labels})


BACKBONES = {"bits-mlp": "an MLP with one hidden layer over the bits"}


@dataclass(frozen=True, eq=False)
class BitsFamily:
    name: str = "bits"
    description: str = "Bit strings (a toy family for tests and the docs)."
    tasks: tuple[TaskDef, ...] = (TaskDef("bits_classification", "classification", "accuracy", "Bit strings to labels."),)
    has_length: bool = False
    split_methods: tuple[str, ...] = ()
    request: type = BitsRequest
    accepts_files: bool = False
    data_section: type = BitsData
    model_section: type = offering(BitsModelFields, "bits", BACKBONES)
    training_section: type = TrainingSection
    backbones = BACKBONES

    def check(self, spec, task) -> None:
        if spec.model.backbone is None:
            raise ValueError(f"task {task.name!r} trains the 'bits-mlp' backbone, not a model folder")

    def resolve(self, spec, *, backbone_metadata):
        return Resolution()

    def input_columns(self, data) -> dict:
        return {"input": data.bits_column}

    def in_memory_reason(self, spec):
        return None

    def hold_out(self, method, inputs, fraction):
        return None

    def validator(self, spec, *, serving=False):
        return BitsValidator()

    def load_validator(self, payload):
        return BitsValidator(min_length=payload.get("min_length", 2))

    def encoder_statistics(self, job):
        return LongestString()

    def build_encoder(self, job, *, train_inputs, statistics):
        if statistics is not None:
            return BitsEncoder(statistics["encoder"]["width"])
        return BitsEncoder(max(map(len, train_inputs)))

    def load_encoder(self, directory, metadata):
        return BitsEncoder(metadata["encoder"]["width"])

    def probe_input(self, example):
        return example

    def parse_cli_input(self, text):
        return text

    def backbone_tokenizer(self, job):
        return None

    def build_model(self, job, *, encoder, labels, num_outputs):
        config = BitsMLPConfig(width=encoder.width, hidden=job.spec.model.hidden, **head_labels(labels, num_outputs))
        return BitsMLP(config)

    def register_auto_classes(self) -> None:
        pass  # registered when this module is imported

    def load_model(self, directory):
        return AutoModelForSequenceClassification.from_pretrained(directory, use_safetensors=True)

    def explain(self, predictor, raw, validated, *, target_index, n_steps):
        from biomed.explain import Explained, explained_output, integrated_gradients

        x = predictor.encoder.encode([validated]).batch([0])["bits"]

        def forward(bits):
            return explained_output(predictor.model(bits=bits).logits, target_index)

        (scores,), delta = integrated_gradients(forward, (x,), (torch.zeros_like(x),), n_steps=n_steps)
        entries = [{"span": [i, i + 1], "text": bit, "score": float(scores[i])} for i, bit in enumerate(validated[: len(scores)])]

        def output_without(units) -> float:
            masked = x.clone()
            masked[0, np.asarray(units, dtype=np.int64)] = 0.0
            with torch.no_grad():
                return float(forward(masked)[0])

        return Explained({"attributions": entries, "convergence_delta": delta, "method": "integrated_gradients"}, scores[: len(validated)], output_without)

    def baseline(self, target):
        return Baseline("bits_logreg", bits_logreg)

    def baseline_context(self, spec):
        return {}

    def planted(self, num_rows, *, seed, folder=None):
        spec = {"task": {"name": "bits_classification"}, "data": {}, "model": {"backbone": "bits-mlp"}}
        return planted_bits(num_rows, seed=seed), spec


BITS = BitsFamily()
