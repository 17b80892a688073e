"""Why a model decided: integrated gradients (Captum) on every family's own inputs.

`explain(predictor, inputs)` checks the inputs as a prediction does, predicts, then asks the
model's family for attributions of the explained output (`explained_output`): the target
label's log-odds against the other labels (classification; the predicted label unless one is
named), the value (regression, in standardised units) or the log-risk score (survival). Each family maps them back onto what the
user sent (its folder's explain.py):

- text, DNA, protein and SMILES transformers: Layer Integrated Gradients on the embedding
  block, against a reference where every non-special token is [PAD] ([CLS] and [SEP] kept);
  spans of the user's own string (subwords; bases, through the k-mers that cover them;
  residues; atoms and bonds, mapped through RDKit's atom order when SMILES are canonicalised);
- `dmpnn`: integrated gradients on the graph's atom and bond features against the molecule's
  average atom and bond;
- tabular and survival: integrated gradients per original column (a one-hot group summed),
  against the training mean (0 after standardisation; each category's training share);
- images: occlusion against a flat image at the input's mean intensity, as a heat map at the
  input's own resolution (a PNG, base64) and its top regions (no steps, no gap).

`Predictor` predicts under `torch.inference_mode`; explanations run their own forward passes
with gradients, on a private copy of the model (`explaining_view`). Every integrated-gradients
explanation carries the completeness gap (`convergence_delta`: the attributions' sum minus the
output's change from the reference), which shrinks with `n_steps`.
"""

from __future__ import annotations

import copy
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

# Gauss-Legendre steps (Captum's default rule). Unless a request names n_steps, an explanation
# starts at DEFAULT_STEPS and doubles them, up to AUTO_MAX_STEPS, while the completeness gap is
# over GAP_TOLERANCE of the attributions' total: a smooth model stops at 32, a saturated one
# (whose output jumps along the path) gets more (bench/explain_cost.py measures both).
DEFAULT_STEPS = 32
AUTO_MAX_STEPS = 256
GAP_TOLERANCE = 0.05
MAX_STEPS = 512
# Interpolation steps per forward pass: bounds an explanation's memory (activations and their
# gradients for this many copies of the input), whatever n_steps a request asks for.
STEPS_PER_PASS = 16


class ExplainError(ValueError):
    """A request that cannot be explained as asked (an unknown target label); names the value."""


@dataclass
class Explained:
    """One input's explanation: `payload` is what the user gets (attributions, convergence
    delta, a heat map for images); `unit_scores` and `output_without` serve faithfulness checks:
    the attribution of each deletable unit (a token, an atom, a column, an image cell) and the
    explained output with the given units set to the reference."""

    payload: dict
    unit_scores: np.ndarray
    output_without: Callable[[Sequence[int]], float]


def explained_output(logits, target_index: int):
    """What is explained, per row: a classifier's log-odds of the target label against the
    others (logit minus the log-sum-exp of the other logits: a shift that moves every logit
    alike explains nothing), or the one output of a regression or survival model."""
    if logits.shape[-1] == 1:
        return logits[:, 0].float()
    others = torch.cat([logits[:, :target_index], logits[:, target_index + 1 :]], dim=1)
    return (logits[:, target_index] - torch.logsumexp(others, dim=1)).float()


def target_index(predictor, target: str | None, prediction: np.ndarray) -> tuple[int, str]:
    """The output to explain and its name: a named label's class id, the predicted label, or
    the one output of a regression or survival model."""
    labels = predictor.labels
    if predictor.task.target.has_labels:
        if target is None:
            index = int(np.argmax(prediction))
            return index, labels[index]
        return labels.index(target), target
    return 0, next(iter(predictor.task.target.describe(np.atleast_1d(prediction)[0], labels)))


def check_steps(n_steps: int | None) -> None:
    if n_steps is not None and not 2 <= n_steps <= MAX_STEPS:
        raise ExplainError(f"n_steps {n_steps} must be between 2 and {MAX_STEPS}")


def check_target(predictor, target: str | None) -> None:
    """Refuse, before any compute, a target the model cannot explain (ExplainError naming it)."""
    if target is None:
        return
    if not predictor.task.target.has_labels:
        raise ExplainError(f"target {target!r}: a {predictor.task.target.kind} model has one output to explain; leave target out")
    if target not in predictor.labels:
        raise ExplainError(f"target {target!r} is not one of the model's labels {predictor.labels}")


def relative_gap(payload: dict) -> float:
    """The completeness gap as a share of the attributions' total (0 where there is none: occlusion)."""
    delta = payload.get("convergence_delta")
    if delta is None:
        return 0.0
    return delta / max(abs(sum(a["score"] for a in payload["attributions"])), 1e-6)


def _explain_one(predictor, raw, clean, *, index: int, n_steps: int | None) -> Explained:
    """One input's explanation at `n_steps`, or with steps doubled until the gap is small (None)."""
    steps = n_steps or DEFAULT_STEPS
    with torch.inference_mode(False), torch.enable_grad():
        explained = predictor.family.explain(predictor, raw, clean, target_index=index, n_steps=steps)
        while n_steps is None and relative_gap(explained.payload) > GAP_TOLERANCE and steps < AUTO_MAX_STEPS:
            steps *= 2
            explained = predictor.family.explain(predictor, raw, clean, target_index=index, n_steps=steps)
    if explained.payload.get("convergence_delta") is not None:  # occlusion takes no steps
        explained.payload["n_steps"] = steps
    return explained


_POOL_LOCK = threading.Lock()


@contextmanager
def explaining_view(predictor):
    """The predictor with a private copy of its model, held by one explanation at a time.

    Captum's layer attributions hook the model's modules, and a hook runs in every forward pass
    through that module, a concurrent prediction's included: a served replica predicting beside
    an explanation would get the explanation's interpolated batch (wrong shapes, wrong answers;
    bench/explain_load.py saw both). Copies are pooled on the predictor, so a replica makes one
    per explanation it runs at once (`explain_max_concurrent`) and keeps them."""
    with _POOL_LOCK:
        pool = predictor.__dict__.setdefault("_explain_models", [])
        model = pool.pop() if pool else None
    if model is None:
        model = copy.deepcopy(predictor.model)
    view = copy.copy(predictor)
    view.model = model
    try:
        yield view
    finally:
        with _POOL_LOCK:
            pool.append(model)


def explain_units(
    predictor, inputs: Sequence, *, target: str | None = None, n_steps: int | None = None, validated: list | None = None, alpha: float | None = None,
) -> list[tuple[dict, Explained]]:
    """(prediction summary, Explained) per input; `n_steps` None: chosen per input (see
    DEFAULT_STEPS); `validated`: inputs already checked; `alpha`: the predictions carry their
    conformal set or interval at that miscoverage."""
    check_steps(n_steps)
    check_target(predictor, target)
    validated = predictor.validate(list(inputs)) if validated is None else validated
    predictions = predictor.predict(validated, validated=True)
    out = []
    with explaining_view(predictor) as view:
        for raw, clean, prediction in zip(inputs, validated, predictions):
            index, name = target_index(predictor, target, prediction)
            explained = _explain_one(view, raw, clean, index=index, n_steps=n_steps)
            out.append(({"prediction": predictor.describe(prediction, alpha=alpha), "target": name}, explained))
    return out


def explain(predictor, inputs: Sequence, *, target: str | None = None, n_steps: int | None = None, validated: list | None = None, alpha: float | None = None) -> list[dict]:
    """One explanation per input: the prediction, the explained target, the attributions (spans
    of the input or features; a heat map and its top regions for images) and the completeness gap."""
    units = explain_units(predictor, inputs, target=target, n_steps=n_steps, validated=validated, alpha=alpha)
    return [head | explained.payload for head, explained in units]


def integrated_gradients(forward, inputs: tuple, baselines: tuple, *, n_steps: int, extra: tuple = ()) -> tuple[tuple[np.ndarray, ...], float]:
    """Captum's IntegratedGradients of a scalar-per-row `forward`: (attributions per input, as
    arrays without the batch axis, and the absolute completeness gap)."""
    from captum.attr import IntegratedGradients

    ig = IntegratedGradients(forward)
    attributions, delta = ig.attribute(inputs, baselines=baselines, additional_forward_args=extra or None, n_steps=n_steps, internal_batch_size=min(n_steps, STEPS_PER_PASS), return_convergence_delta=True)
    return tuple(a[0].detach().cpu().numpy() for a in attributions), float(delta.abs().max())


def positive_share(attributions: list[dict], inside) -> float:
    """The share of the positive attribution mass on the entries for which `inside(entry)`
    holds (the faithfulness tests' measure of a planted signal)."""
    positive = [max(a["score"], 0.0) for a in attributions]
    total = sum(positive)
    return sum(p for a, p in zip(attributions, positive) if inside(a)) / total if total > 0 else 0.0


def deletion_curves(explained: Explained, *, max_units: int, seed: int = 0, repeats: int = 8) -> dict:
    """The explained output as the top-k attributed units are removed (set to the reference),
    k = 0..max_units, against removing k random units (mean of `repeats` orders); each curve's
    drop and its area over k (the mean output along it; lower for the top units: the
    attribution found what the output rests on)."""
    k = min(max_units, len(explained.unit_scores))
    top = np.argsort(-explained.unit_scores, kind="stable")[:k]
    rng = np.random.default_rng(seed)
    ranked = [explained.output_without(top[:i]) for i in range(k + 1)]
    orders = [rng.permutation(len(explained.unit_scores))[:k] for _ in range(repeats)]
    random = np.mean([[explained.output_without(order[:i]) for i in range(k + 1)] for order in orders], axis=0)
    area = (lambda curve: float(np.trapezoid(curve) / k)) if k else (lambda curve: float(curve[0]))
    return {
        "k": k, "top": ranked, "random": random.tolist(), "drop_top": ranked[0] - ranked[-1], "drop_random": float(random[0] - random[-1]),
        "auc_top": area(np.asarray(ranked)), "auc_random": area(random),
    }
