"""The model checkpoint format: a plain Hugging Face folder plus biomed.json.

`save_pretrained` writes safetensors + config (with id2label) + tokenizer, so
`AutoModelForSequenceClassification.from_pretrained(path)` works without this package for stock
BERT heads; the other heads (mean-pooled BERT, MLP, D-MPNN, image CNNs) need `import
biomed.checkpoint` first, which has every family register its classes with the Auto classes.
biomed.json records what the service needs beyond that: task, labels, the input check, the
encoder (k-mer settings, feature statistics) and the target scaling. The task names the family
that reads the rest.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from biomed.conformal import Calibration
from biomed.devices import autocast_dtype, batch_to_device
from biomed.families import families, get_task, load_validator
from biomed.family import Encoder
from biomed.padding import length_sorted_batches

METADATA_FILE = "biomed.json"

# After `import biomed.checkpoint`, `AutoModelForSequenceClassification.from_pretrained(folder)`
# (or the image Auto class) loads every built-in family's checkpoints.
for _family in families():
    _family.register_auto_classes()


def save_model_checkpoint(model, encoder: Encoder, directory: str | Path, metadata: dict) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory, safe_serialization=True)
    encoder.save(directory)
    payload = {**metadata, "encoder": encoder.metadata()}
    (directory / METADATA_FILE).write_text(json.dumps(payload, indent=2, sort_keys=True))


def read_metadata(directory: str | Path) -> dict:
    return json.loads((Path(directory) / METADATA_FILE).read_text())


@torch.inference_mode()
def raw_outputs(model, encoded, rows: np.ndarray, *, batch_size: int, device=None, dtype=None) -> np.ndarray:
    """Model outputs (logits) for `rows` of the encoded inputs, in row order; batches group
    similar lengths so little compute goes to padding."""
    device = device or torch.device("cpu")
    model.eval()
    lengths = encoded.lengths()
    order = length_sorted_batches(len(rows), [lengths[r] for r in rows], batch_size)
    out = None
    for batch_pos in order:
        batch = batch_to_device(encoded.batch(rows[batch_pos]), device)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            logits = model(**batch).logits.float().cpu().numpy()
        if out is None:
            out = np.zeros((len(rows), logits.shape[1]), dtype=np.float32)
        out[batch_pos] = logits
    return out if out is not None else np.zeros((0, 1), dtype=np.float32)


class Predictor:
    """Loads a checkpoint folder (safetensors only), checks inputs and predicts.

    Predictions per target kind: class probabilities (N, K), values (N,) in the target's
    units, or log-risk scores (N,).
    """

    def __init__(self, *, directory: str | Path, batch_size: int = 32, device: str = "cpu", precision: str = "fp32"):
        self.directory = Path(directory)
        self.metadata = read_metadata(self.directory)
        self.task = get_task(self.metadata["task"])
        self.labels: list[str] = self.metadata.get("labels") or []
        self.max_length: int = self.metadata["max_seq_length"]
        self.batch_size = batch_size
        self.family = self.task.family
        self.encoder = self.family.load_encoder(self.directory, {"encoder": {"input_kind": "text"}, **self.metadata})
        self.validator = load_validator(self.metadata.get("validator", {"kind": "text"}))
        self.device = torch.device(device)
        # Reduced precision only on CUDA (autocast_dtype is None on CPU): CPU replicas stay fp32.
        self.dtype = autocast_dtype(precision, self.device)
        self.model = self.family.load_model(self.directory).eval().to(self.device)
        # The split-conformal scores registration stored (None: a run's checkpoint, or survival).
        self.calibration = Calibration.load(self.directory)

    def validate(self, inputs: list) -> list:
        """Normalised inputs, or InvalidInputs naming each bad one (the training-time check)."""
        return self.validator.validate(inputs)

    def predict(self, inputs: list, *, validated: bool = False) -> np.ndarray:
        if not validated:
            inputs = self.validate(inputs)
        encoded = self.encoder.encode(inputs, max_length=self.max_length)
        outputs = raw_outputs(self.model, encoded, np.arange(len(inputs)), batch_size=self.batch_size, device=self.device, dtype=self.dtype)
        return self.task.target.predictions(outputs, self.metadata.get("target_scaling"))

    def describe(self, prediction: np.ndarray | float, *, alpha: float | None = None) -> dict:
        """One prediction as JSON: label and probabilities, value, or risk score; with `alpha`,
        also its conformal prediction set or interval at coverage 1 - alpha (where calibrated)."""
        out = self.task.target.describe(prediction, self.labels)
        if alpha is not None and self.calibration is not None:
            out |= self.task.target.conformal(prediction, self.calibration.threshold(alpha), self.labels) | {"alpha": alpha}
        return out

    def probe(self, example) -> dict:
        """The prediction for one fixed input, as recorded at registration and re-checked by
        serving replicas (the golden check): {"input", "prediction", and "label" for classifiers}.
        `example`: a validated input (a decoded image is kept as its family records it)."""
        example = self.family.probe_input(example)
        prediction = np.atleast_1d(self.predict([example])[0])
        probe = {"input": example, "prediction": [float(p) for p in prediction]}
        if self.task.target.has_labels:
            probe["label"] = self.labels[int(prediction.argmax())]
        return probe
