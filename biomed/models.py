"""What every backbone shares: where a new head's parameters are, and what a model folder holds.

The backbones themselves belong to their families (biomed/families/<family>/).
"""

from __future__ import annotations

from pathlib import Path

# Names under which Hugging Face sequence-classification models keep the new, randomly
# initialised head (BERT-style "classifier", decoder-style "score").
HEAD_PREFIXES = ("classifier.", "score.")


def is_head_parameter(name: str) -> bool:
    return name.removeprefix("module.").startswith(HEAD_PREFIXES)


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


def head_labels(labels: list[str], num_outputs: int) -> dict:
    """A new head's config settings: `num_labels` outputs named by the labels (classification),
    or `output_i` (one output for regression and survival)."""
    names = labels if len(labels) == num_outputs else [f"output_{i}" for i in range(num_outputs)]
    id2label = dict(enumerate(names))
    return {"num_labels": num_outputs, "id2label": id2label, "label2id": {name: i for i, name in id2label.items()}}
