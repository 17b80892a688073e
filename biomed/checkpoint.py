"""The model checkpoint format: a plain Hugging Face folder plus biomed.json.

`save_pretrained` writes safetensors + config (with id2label) + tokenizer, so
`AutoModelForSequenceClassification.from_pretrained(path)` works without this package.
biomed.json records what the service needs beyond that: task, labels, input limits.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from biomed.text import collate, encode_texts, length_sorted_batches

METADATA_FILE = "biomed.json"


def save_model_checkpoint(model, tokenizer, directory: str | Path, metadata: dict) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    (directory / METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True))


def read_metadata(directory: str | Path) -> dict:
    return json.loads((Path(directory) / METADATA_FILE).read_text())


class Predictor:
    """Loads a checkpoint folder (safetensors only) and predicts label probabilities."""

    def __init__(self, *, directory: str | Path, batch_size: int = 32):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.directory = Path(directory)
        self.metadata = read_metadata(self.directory)
        self.labels: list[str] = self.metadata["labels"]
        self.max_length: int = self.metadata["max_seq_length"]
        self.batch_size = batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(self.directory)
        self.model = AutoModelForSequenceClassification.from_pretrained(
            self.directory, use_safetensors=True
        ).eval()

    @torch.inference_mode()
    def predict_proba(self, texts: list[str]) -> np.ndarray:
        ids = encode_texts(self.tokenizer, texts, max_length=self.max_length)
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        for rows in length_sorted_batches(len(ids), [len(i) for i in ids], self.batch_size):
            batch = collate([ids[r] for r in rows], pad_id=self.tokenizer.pad_token_id)
            logits = self.model(**batch).logits
            out[rows] = torch.softmax(logits.float(), dim=-1).numpy()
        return out

    def predict(self, texts: list[str]) -> list[str]:
        return [self.labels[i] for i in self.predict_proba(texts).argmax(axis=1)]

    def probe(self, text: str) -> dict:
        """The prediction for one fixed input, as recorded at registration and re-checked by
        serving replicas (the golden check): {"input", "label", "probabilities"}."""
        probs = self.predict_proba([text])[0]
        return {"input": text, "label": self.labels[int(probs.argmax())], "probabilities": [float(p) for p in probs]}
