"""Tabular records: feature preprocessing fitted on the training split.

The preprocessor's statistics (means, standard deviations, category lists) are plain JSON saved
in biomed.json with the checkpoint, never a pickle.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from biomed.inputs import raise_if


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
    # Each category's share of the training rows: the one-hot columns' training mean, which
    # explanations take as the reference (empty in checkpoints from before 0.2).
    frequencies: tuple[tuple[float, ...], ...] = ()

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
        counts = [[sum(r[name] == c for r in rows) for c in cats] for name, cats in zip(categorical, categories)]
        return cls(tuple(numeric), tuple(means), tuple(stds), tuple(categorical), categories, _shares(counts, len(rows)))

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

    def training_mean(self) -> np.ndarray:
        """The model's features at the training mean: 0 for standardised numeric features, each
        category's training share for one-hot columns (0 where no shares were recorded)."""
        out = np.zeros(self.num_features, dtype=np.float32)
        if self.frequencies:
            out[len(self.numeric):] = [share for shares in self.frequencies for share in shares]
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
            frequencies=tuple(tuple(f) for f in payload.get("frequencies", ())),
        )


def _shares(counts: list[list[int]], rows: int) -> tuple[tuple[float, ...], ...]:
    return tuple(tuple(c / rows if rows else 0.0 for c in column) for column in counts)


@dataclass
class TabularStatistics:
    """A `TabularPreprocessor` fitted one unit of rows at a time (streamed training data): sums
    and sums of squares per numeric feature, the categories seen per categorical one."""

    numeric: list[str]
    categorical: list[str]
    sums: dict = field(default_factory=dict)
    categories: dict = field(default_factory=dict)  # column → {category: rows}
    rows: int = 0

    def update(self, examples) -> None:
        for name in self.numeric:
            values = np.array([r[name] for r in examples.inputs if r[name] is not None], dtype=np.float64)
            n, total, total_sq = self.sums.get(name, (0, 0.0, 0.0))
            self.sums[name] = (n + values.size, total + float(values.sum()), total_sq + float(np.square(values).sum()))
        for name in self.categorical:
            seen = self.categories.setdefault(name, {})
            for r in examples.inputs:
                if r[name] is not None:
                    seen[r[name]] = seen.get(r[name], 0) + 1
        self.rows += len(examples.inputs)

    def result(self) -> dict:
        means, stds = [], []
        for name in self.numeric:
            n, total, total_sq = self.sums.get(name, (0, 0.0, 0.0))
            mean = total / n if n else 0.0
            std = float(np.sqrt(max(total_sq / n - mean * mean, 0.0))) if n else 1.0
            means.append(mean)
            stds.append(std if std > 1e-12 else 1.0)
        cats = [sorted(self.categories.get(name, {})) for name in self.categorical]
        counts = [[self.categories[name][c] for c in column] for name, column in zip(self.categorical, cats)]
        shares = _shares(counts, self.rows)
        return TabularPreprocessor(tuple(self.numeric), tuple(means), tuple(stds), tuple(self.categorical), tuple(tuple(c) for c in cats), shares).to_dict()



@dataclass
class FeatureRows:
    features: np.ndarray

    def __len__(self) -> int:
        return len(self.features)

    def lengths(self) -> list[int]:
        return [1] * len(self.features)

    def batch(self, rows):
        return {"features": torch.from_numpy(self.features[np.asarray(rows)])}

    def take(self, rows) -> FeatureRows:
        return FeatureRows(self.features[np.asarray(rows, dtype=np.int64)])

    def join(self, other: FeatureRows) -> FeatureRows:
        return FeatureRows(np.concatenate([self.features, other.features]))


@dataclass
class TabularEncoder:
    preprocessor: TabularPreprocessor
    input_kind: str = "tabular"

    @property
    def num_features(self) -> int:
        return self.preprocessor.num_features

    def encode(self, inputs, *, max_length):
        return FeatureRows(self.preprocessor.transform(inputs))

    def metadata(self):
        return {"input_kind": "tabular", "preprocessor": self.preprocessor.to_dict()}

    def save(self, directory):
        pass  # its statistics live in biomed.json (metadata)


@dataclass(frozen=True)
class TabularValidator:
    """Rows as {feature: value}: every numeric feature a finite number (None or NaN counts as
    missing and is imputed), every categorical feature a string, int or bool; no unknown keys."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...] = ()
    kind: str = "tabular"

    def validate(self, values: list) -> list[dict]:
        expected = set(self.numeric) | set(self.categorical)
        problems, out = [], []
        for i, row in enumerate(values):
            if not isinstance(row, dict):
                problems.append((i, f"expected an object of features, got {type(row).__name__}"))
                continue
            unknown = sorted(set(row) - expected)
            missing = sorted(expected - set(row))
            if unknown:
                problems.append((i, f"unknown features {unknown}; expected {sorted(expected)}"))
            if missing:
                problems.append((i, f"missing features {missing}"))
            out.append(self._typed(i, row, problems))
        raise_if(problems)
        return out

    def _typed(self, i: int, row: dict, problems: list) -> dict:
        clean = {}
        for name in self.numeric:
            value = row.get(name)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                clean[name] = None
            elif isinstance(value, bool) or not isinstance(value, int | float) or math.isinf(value):
                problems.append((i, f"feature {name!r} must be a finite number, got {value!r}"))
            else:
                clean[name] = float(value)
        for name in self.categorical:
            value = row.get(name)
            if value is None:
                clean[name] = None
            elif not isinstance(value, str | int | bool):
                problems.append((i, f"feature {name!r} must be a category (string), got {value!r}"))
            else:
                clean[name] = str(value)
        return clean

    @classmethod
    def from_dict(cls, payload: dict) -> TabularValidator:
        return cls(numeric=tuple(payload["numeric"]), categorical=tuple(payload["categorical"]))
