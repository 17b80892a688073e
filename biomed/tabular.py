"""Tabular records: feature preprocessing fitted on the training split, and an MLP.

The preprocessor's statistics (means, standard deviations, category lists) are plain JSON saved
in biomed.json with the checkpoint, never a pickle. The MLP is a Hugging Face `PreTrainedModel`
registered with the Auto classes, so it saves as safetensors and reloads with
`AutoModelForSequenceClassification.from_pretrained` like the transformer families.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput


@dataclass(frozen=True)
class TabularPreprocessor:
    """Numeric features standardised (missing → the training mean, i.e. 0 after scaling);
    categorical features one-hot over the categories seen in training (unseen or missing → all
    zeros, as scikit-learn's OneHotEncoder(handle_unknown="ignore"))."""

    numeric: tuple[str, ...]
    means: tuple[float, ...]
    stds: tuple[float, ...]
    categorical: tuple[str, ...]
    categories: tuple[tuple[str, ...], ...]

    @classmethod
    def fit(cls, rows: list[dict], *, numeric: list[str], categorical: list[str]) -> TabularPreprocessor:
        means, stds = [], []
        for name in numeric:
            values = np.array([r[name] for r in rows if r[name] is not None], dtype=np.float64)
            mean = float(values.mean()) if values.size else 0.0
            std = float(values.std()) if values.size else 1.0
            means.append(mean)
            stds.append(std if std > 1e-12 else 1.0)  # a constant column stays 0, not NaN
        categories = tuple(tuple(sorted({r[name] for r in rows if r[name] is not None})) for name in categorical)
        return cls(tuple(numeric), tuple(means), tuple(stds), tuple(categorical), categories)

    @property
    def feature_names(self) -> list[str]:
        return list(self.numeric) + [f"{n}={c}" for n, cats in zip(self.categorical, self.categories) for c in cats]

    @property
    def num_features(self) -> int:
        return len(self.feature_names)

    def transform(self, rows: list[dict]) -> np.ndarray:
        out = np.zeros((len(rows), self.num_features), dtype=np.float32)
        for j, (name, mean, std) in enumerate(zip(self.numeric, self.means, self.stds)):
            column = np.array([np.nan if r[name] is None else r[name] for r in rows], dtype=np.float64)
            out[:, j] = np.nan_to_num((column - mean) / std, nan=0.0)
        offset = len(self.numeric)
        for name, cats in zip(self.categorical, self.categories):
            index = {c: k for k, c in enumerate(cats)}
            for i, r in enumerate(rows):
                k = index.get(r[name])
                if k is not None:
                    out[i, offset + k] = 1.0
            offset += len(cats)
        return out

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, payload: dict) -> TabularPreprocessor:
        return cls(
            numeric=tuple(payload["numeric"]),
            means=tuple(payload["means"]),
            stds=tuple(payload["stds"]),
            categorical=tuple(payload["categorical"]),
            categories=tuple(tuple(c) for c in payload["categories"]),
        )


class BiomedMLPConfig(PretrainedConfig):
    model_type = "biomed-mlp"

    def __init__(self, num_features: int = 1, hidden_sizes: list[int] | tuple[int, ...] = (128, 64), dropout: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        self.num_features = num_features
        self.hidden_sizes = list(hidden_sizes)
        self.dropout = dropout


class BiomedMLPForSequenceClassification(PreTrainedModel):
    """Features → [Linear, LayerNorm, GELU, Dropout] × len(hidden_sizes) → Linear(num_labels)."""

    config_class = BiomedMLPConfig
    base_model_prefix = "mlp"

    def __init__(self, config: BiomedMLPConfig):
        super().__init__(config)
        layers, width = [], config.num_features
        for size in config.hidden_sizes:
            layers += [torch.nn.Linear(width, size), torch.nn.LayerNorm(size), torch.nn.GELU(), torch.nn.Dropout(config.dropout)]
            width = size
        self.mlp = torch.nn.Sequential(*layers)
        self.classifier = torch.nn.Linear(width, config.num_labels)
        self.post_init()

    def _init_weights(self, module):
        # PyTorch's own (Kaiming-uniform) initialisation of each layer suits a ReLU-family MLP
        # better than BERT's N(0, 0.02); nothing to redo here.
        pass

    def forward(self, features: torch.Tensor, **_) -> SequenceClassifierOutput:
        return SequenceClassifierOutput(logits=self.classifier(self.mlp(features)))


AutoConfig.register(BiomedMLPConfig.model_type, BiomedMLPConfig)
AutoModelForSequenceClassification.register(BiomedMLPConfig, BiomedMLPForSequenceClassification)


@dataclass
class TabularStatistics:
    """A `TabularPreprocessor` fitted one unit of rows at a time (streamed training data): sums
    and sums of squares per numeric feature, the categories seen per categorical one."""

    numeric: list[str]
    categorical: list[str]
    sums: dict = field(default_factory=dict)
    categories: dict = field(default_factory=dict)

    def update(self, examples) -> None:
        for name in self.numeric:
            values = np.array([r[name] for r in examples.inputs if r[name] is not None], dtype=np.float64)
            n, total, total_sq = self.sums.get(name, (0, 0.0, 0.0))
            self.sums[name] = (n + values.size, total + float(values.sum()), total_sq + float(np.square(values).sum()))
        for name in self.categorical:
            self.categories.setdefault(name, set()).update(r[name] for r in examples.inputs if r[name] is not None)

    def result(self) -> dict:
        means, stds = [], []
        for name in self.numeric:
            n, total, total_sq = self.sums.get(name, (0, 0.0, 0.0))
            mean = total / n if n else 0.0
            std = float(np.sqrt(max(total_sq / n - mean * mean, 0.0))) if n else 1.0
            means.append(mean)
            stds.append(std if std > 1e-12 else 1.0)
        cats = [sorted(self.categories.get(name, ())) for name in self.categorical]
        return TabularPreprocessor(tuple(self.numeric), tuple(means), tuple(stds), tuple(self.categorical), tuple(tuple(c) for c in cats)).to_dict()

