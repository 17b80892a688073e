"""The `model:` section of a job spec: which backbone, and its architecture settings.

Split from jobs/spec.py (the whole job spec); JobSpec re-exports ModelSpec.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from biomed.models import BACKBONES, DMPNNPreset, ImagePreset, MLPPreset, check_local_model_dir, default_pooling, has_tokenizer
from jobs.spec_base import _Spec, _absolute


class ModelSpec(_Spec):
    backbone: str | None = Field(
        default=None, description=f"Named backbone from the biomed registry: one of {sorted(BACKBONES)}."
    )
    path: str | None = Field(
        default=None,
        description="A local Hugging Face model folder (config.json, safetensors weights, tokenizer). Exclusive with `backbone`.",
    )
    pretrained: str | None = Field(
        default=None,
        description="NAME or NAME@VERSION: a backbone registered by `biomed pretrain` in this spec's registry (registry_storage_path, else storage_path) (its best version when no version is given; the run pins the version it found). Exclusive with `backbone` and `path`.",
    )

    kmer_size: int | None = Field(
        default=6,
        ge=1,
        le=8,
        description="DNA tasks: nucleotides per k-mer token. null: no k-mer cut, the bases go to the model folder's own tokenizer (a BPE vocabulary, as DNABERT-2 reads DNA); needs model.path or model.pretrained. With model.pretrained, omit it to take the backbone's own cut.",
    )
    kmer_stride: int = Field(default=1, ge=1, le=8, description="DNA tasks: step between k-mer starts (1: overlapping k-mers, kmer_size: non-overlapping).")
    pooling: Literal["cls", "mean"] | None = Field(
        default=None,
        description="BERT-family models: what the classification head reads. 'cls': the [CLS] state through the pooler (stock BertForSequenceClassification); 'mean': the mean of the token states, as sentence-embedding models such as all-MiniLM-L6-v2 were trained. Omitted: the backbone's own ('mean' for all-minilm-l6-v2, 'cls' otherwise).",
    )
    hidden_sizes: list[int] | None = Field(default=None, min_length=1, description="MLP backbone (tabular and survival tasks): widths of the hidden layers. Omitted: the preset's [128, 64].")
    depth: int | None = Field(default=None, ge=1, le=12, description="dmpnn backbone: message-passing steps (chemprop's --depth). Omitted: 3.")
    hidden_size: int | None = Field(default=None, ge=8, le=4096, description="dmpnn backbone: width of the bond messages (chemprop's --message-hidden-dim). Omitted: 300.")
    aggregation: Literal["mean", "sum", "norm"] | None = Field(
        default=None, description="dmpnn backbone: how atom states become the molecule vector: mean, sum, or norm (the sum divided by 100, chemprop's default). Omitted: norm.",
    )
    batch_norm: bool | None = Field(default=None, description="dmpnn backbone: batch norm over the molecule vector before the head (chemprop's --batch-norm). Omitted: off.")
    ffn_hidden_size: int | None = Field(default=None, ge=1, le=8192, description="dmpnn backbone: width of the head's hidden layers (chemprop's --ffn-hidden-dim). Omitted: 300.")
    ffn_num_layers: int | None = Field(default=None, ge=0, le=8, description="dmpnn backbone: hidden layers in the head (chemprop's --ffn-num-layers). Omitted: 1.")
    image_size: int | None = Field(default=None, ge=16, le=1024, description="Image models: side of the square the images are resized to (MONAI Resize, area mode). Omitted: the backbone's own (224 for efficientnet-lite0, 64 for small-cnn and tiny-vit; a model folder's preprocessor_config.json size).")
    molecule_features: Literal["none", "morgan_count", "rdkit_2d"] = Field(
        default="none",
        description="Molecule tasks (dmpnn or a BERT backbone): molecule-level features concatenated before the head: none; morgan_count (radius-2 Morgan counts, 2048 columns); rdkit_2d (RDKit's 2D descriptors, about 217). Computed with chemprop's featurizers, standardised on the training split and saved with the checkpoint, so serving computes them as training did.",
    )

    @model_validator(mode="before")
    @classmethod
    def _resolve_pooling(cls, data):
        # Resolved here so the run name (a hash of the spec) names the architecture trained.
        if isinstance(data, dict) and data.get("pooling") is None:
            data = {**data, "pooling": default_pooling(data.get("backbone"))}
        preset = BACKBONES.get(data.get("backbone")) if isinstance(data, dict) and isinstance(data.get("backbone"), str) else None
        if isinstance(preset, DMPNNPreset):
            data = {**dict(preset.defaults), **{k: v for k, v in data.items() if v is not None}}
        return data

    @field_validator("hidden_sizes")
    @classmethod
    def _widths(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and any(not 1 <= w <= 65536 for w in value):
            raise ValueError(f"hidden_sizes {value}: every width must be between 1 and 65536")
        return value

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, value: str | None) -> str | None:
        if value is not None and value not in BACKBONES:
            raise ValueError(f"unknown backbone {value!r}; known backbones: {sorted(BACKBONES)}")
        return value

    @field_validator("path")
    @classmethod
    def _model_dir(cls, value: str | None) -> str | None:
        if value is None:
            return None
        check_local_model_dir(Path(value).expanduser())
        return _absolute(value)

    @model_validator(mode="after")
    def _exactly_one(self) -> "ModelSpec":
        if sum(v is not None for v in (self.backbone, self.path, self.pretrained)) != 1:
            raise ValueError("give exactly one of model.backbone, model.path or model.pretrained")
        if (self.pooling == "mean" or self.molecule_features != "none") and self.path is not None:
            model_type = json.loads((Path(self.path) / "config.json").read_text()).get("model_type")
            if model_type != "bert":
                what = "pooling 'mean'" if self.pooling == "mean" else f"molecule_features {self.molecule_features!r}"
                raise ValueError(f"{what} needs a BERT model folder; {self.path!r} holds model_type {model_type!r}")
        if self.pooling is not None and isinstance(BACKBONES.get(self.backbone), MLPPreset):
            raise ValueError(f"pooling {self.pooling!r} applies to sequence models; backbone {self.backbone!r} reads tabular features")
        if not isinstance(BACKBONES.get(self.backbone), DMPNNPreset):
            graph_fields = [k for k in GRAPH_FIELDS if getattr(self, k) is not None]
            if graph_fields:
                raise ValueError(f"model.{graph_fields[0]} sets the 'dmpnn' backbone only")
        if self.image_size is not None and self.path is None and not isinstance(BACKBONES.get(self.backbone), ImagePreset):
            raise ValueError(f"model.image_size sets image backbones only, not {self.backbone or 'model.pretrained'!r}")
        if self.kmer_size is None and self.path is None and self.pretrained is None:
            raise ValueError("model.kmer_size null (bases read by a BPE tokenizer) needs the tokenizer of model.path or model.pretrained; a preset backbone reads k-mers")
        if self.kmer_size is not None and self.kmer_stride > self.kmer_size:
            raise ValueError(f"kmer_stride {self.kmer_stride} is larger than kmer_size {self.kmer_size}: bases between k-mers would be skipped")
        return self


# The dmpnn backbone's own fields (biomed.dmpnn); `graph_settings` passes them to the model.
GRAPH_FIELDS = ("depth", "hidden_size", "aggregation", "batch_norm", "ffn_hidden_size", "ffn_num_layers")


def graph_settings(model: ModelSpec) -> dict | None:
    """The dmpnn settings of a model spec (None: another backbone)."""
    if not isinstance(BACKBONES.get(model.backbone), DMPNNPreset):
        return None
    return {k: getattr(model, k) for k in GRAPH_FIELDS}


def image_settings(model: ModelSpec, augment_strength: float, input_kind: str) -> dict | None:
    """The ImagePipeline settings of an image task's model (None: not an image task): the
    preset's, or those a Hugging Face folder's preprocessor_config.json asks for."""
    if input_kind != "image":
        return None
    preset = BACKBONES.get(model.backbone)
    if isinstance(preset, ImagePreset):
        settings = {"image_size": preset.image_size, "channels": preset.channels, "intensity": preset.intensity}
    else:
        from biomed.vision import image_folder_settings

        settings = image_folder_settings(model.path)
    return {**settings, **({"image_size": model.image_size} if model.image_size else {}), "augment_strength": augment_strength}


def check_folder_for(model: ModelSpec, task) -> None:
    """A model folder (or pretrained backbone) must suit the task: image tasks take a Hugging
    Face image-classification folder, the others a folder with a tokenizer."""
    if task.input_kind != "image":
        if model.path is not None and not has_tokenizer(model.path):
            raise ValueError(f"model path {model.path!r} has no tokenizer files (tokenizer.json or vocab.txt); task {task.name!r} reads {task.input_kind}")
        return
    if model.path is None:
        raise ValueError(f"task {task.name!r} takes an image backbone (efficientnet-lite0, small-cnn, tiny-vit) or a Hugging Face image-classification folder (model.path), not model.pretrained")
    if not (Path(model.path) / "preprocessor_config.json").is_file():
        raise ValueError(f"model path {model.path!r} has no preprocessor_config.json: not a Hugging Face image model folder")
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES

    model_type = AutoConfig.from_pretrained(model.path).model_type
    if model_type not in MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES:
        raise ValueError(f"model path {model.path!r} holds model_type {model_type!r}, which has no image-classification head in transformers")
    from biomed.vision import image_folder_settings

    image_folder_settings(model.path)  # its normalisation must be one the pipeline applies
