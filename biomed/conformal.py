"""Split conformal prediction: calibrated at registration, applied by every prediction.

A registered version keeps the nonconformity scores of its validation split (scores only, never
the inputs) in `conformal.json` beside its weights. At a requested miscoverage `alpha`, the
threshold is the ceil((n + 1)(1 - alpha))-th smallest score, so on exchangeable data the set or
interval covers the truth with probability at least 1 - alpha (Vovk et al.; Angelopoulos and
Bates, "A Gentle Introduction to Conformal Prediction"). The target says what its score is
(`Target.conformity_scores`) and what a prediction becomes (`Target.conformal`):

- classification: LAC, the score 1 - p(true label); the set holds every label whose 1 - p is at
  most the threshold;
- regression: the absolute residual; the interval is the prediction ± the threshold;
- survival: none. A Cox risk score has no scale to put an interval on, so no set is given.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

CONFORMAL_FILE = "conformal.json"
DEFAULT_ALPHA = 0.1
# The miscoverage levels whose test coverage registration records.
RECORDED_ALPHAS = (0.1, 0.2)


def threshold(scores: np.ndarray, alpha: float) -> float:
    """The split-conformal quantile of sorted calibration scores (inf when too few to reach 1 - alpha)."""
    n = len(scores)
    k = math.ceil((n + 1) * (1 - alpha))
    return float("inf") if k > n else float(scores[k - 1])


@dataclass(frozen=True)
class Calibration:
    """A registered version's calibration: the method and its sorted validation scores."""

    method: str
    scores: np.ndarray

    def threshold(self, alpha: float) -> float:
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha {alpha} must be between 0 and 1")
        return threshold(self.scores, alpha)

    def to_json(self) -> str:
        """The file's text: the method and the sorted scores (no input, no target, no row)."""
        return json.dumps({"method": self.method, "calibration_rows": len(self.scores), "scores": [float(s) for s in self.scores]})

    @classmethod
    def load(cls, directory: str | Path) -> Calibration | None:
        path = Path(directory) / CONFORMAL_FILE
        if not path.is_file():
            return None
        payload = json.loads(path.read_text())
        return cls(payload["method"], np.asarray(payload["scores"], dtype=np.float64))


def calibrate(target, targets: np.ndarray, predictions: np.ndarray) -> Calibration | None:
    """The calibration of a target's validation predictions (None: the target has no conformal score)."""
    scores = target.conformity_scores(targets, predictions)
    if scores is None:
        return None
    return Calibration(target.conformal_method, np.sort(np.asarray(scores, dtype=np.float64)))


def coverage(target, calibration: Calibration, targets: np.ndarray, predictions: np.ndarray, alpha: float) -> dict:
    """Empirical coverage on held-out rows at `alpha`, with the mean set size or interval width."""
    scores = target.conformity_scores(targets, predictions)
    q = calibration.threshold(alpha)
    out = {"alpha": alpha, "coverage": float(np.mean(scores <= q)), "rows": int(len(scores))}
    return out | target.conformal_size(predictions, q)


class ConformalRequest(BaseModel):
    """What every predict request body may add: the miscoverage of its conformal sets."""

    model_config = ConfigDict(extra="forbid")

    alpha: float = Field(
        default=DEFAULT_ALPHA, gt=0.0, lt=1.0,
        description="Miscoverage of the conformal prediction set (classification) or interval (regression) returned with each prediction: it covers the truth with probability at least 1 - alpha, calibrated on the model's validation split. Not for survival risk scores.",
    )
