"""Scoring a selected checkpoint after training: validation and test metrics with intervals,
beside the task's classical baseline, for splits in memory or streamed.

A streamed split is predicted a unit at a time (only the predictions are held). The baseline
trains in memory, so with streamed training data it is fitted on a seeded sample of whole units
(`data.baseline_max_rows`); with a streamed test set it is scored on such a sample, and the model
is scored on the same rows too (`model_on_baseline_rows`), so the comparison stays like for like.
"""

from __future__ import annotations

import numpy as np

from biomed.baselines import BaselineContext
from biomed.checkpoint import Predictor
from biomed.metrics import bootstrap_ci
from biomed.streams import iter_unit_examples
from jobs.registry import better
from jobs.spec import JobSpec
from jobs.splits import Split, Splits, StreamedSplit, checks_for


def with_interval(task, metric: str, targets: np.ndarray, predictions: np.ndarray, *, seed: int) -> dict:
    """All of the task's metrics, plus a bootstrap 95% interval of `metric` as `<metric>_ci95`."""
    scores = task.compute_metrics(targets, predictions)
    scores[f"{metric}_ci95"] = bootstrap_ci(
        lambda rows: task.compute_metrics(targets[rows], predictions[rows], (metric,))[metric], len(targets), seed=seed
    )
    return scores


def _examples(spec: JobSpec, index, units: list[int]):
    """The checked examples of a streamed split's units, a unit at a time."""
    return (examples for _, examples in iter_unit_examples(index, units, columns=spec.columns(), **checks_for(spec)))


def _predict(spec: JobSpec, predictor: Predictor, split) -> tuple[np.ndarray, np.ndarray]:
    """(targets, predictions) of a split; a streamed one a unit at a time."""
    if isinstance(split, Split):
        return split.targets, predictor.predict(split.inputs, validated=True)
    targets, predictions = [], []
    units = [u for u, k in enumerate(split.index.kept_rows) if k]
    for examples in _examples(spec, split.index, units):
        targets.append(examples.targets)
        predictions.append(predictor.predict(examples.inputs, validated=True))
    return np.concatenate(targets), np.concatenate(predictions)


def sample(spec: JobSpec, split) -> Split:
    """A split in memory: itself, or a seeded sample of whole units of a streamed one."""
    if isinstance(split, Split):
        return split
    index, rows, units = split.index, 0, []
    for u in np.random.default_rng([spec.training.seed, 0xBA5E]).permutation(len(index.units)):
        if rows >= spec.data.baseline_max_rows:
            break
        if index.kept_rows[u]:
            units.append(int(u))
            rows += index.kept_rows[u]
    inputs, targets = [], []
    for examples in _examples(spec, index, sorted(units)):
        inputs.extend(examples.inputs)
        targets.append(examples.targets)
    return Split(inputs=inputs, targets=np.concatenate(targets))


def first_validation_input(spec: JobSpec, splits: Splits):
    """The golden check's input: the first validation example, already normalised."""
    validation = splits.validation
    if isinstance(validation, Split):
        return validation.inputs[0]
    first = next(u for u, k in enumerate(validation.index.kept_rows) if k)
    return next(_examples(spec, validation.index, [first])).inputs[0]


def score_test(spec: JobSpec, splits: Splits, predictor: Predictor) -> dict:
    """Validation and test metrics of the checkpoint (with the selection metric's bootstrap
    interval), the task's classical baseline on the same validation and test rows (one fit on
    the training split), and whether the model beats it on validation by the selection metric.
    `predicted` holds the model's (targets, predictions) per split, for calibration."""
    task = spec.task_entry
    seed = spec.training.seed
    validation_predicted = _predict(spec, predictor, splits.validation)
    out = {"validation": with_interval(task, spec.metric, *validation_predicted, seed=seed), "predicted": {"validation": validation_predicted}}
    baseline = task.family.baseline(task.target)
    context = BaselineContext(num_classes=len(spec.task.labels or []), seed=seed, target=task.target, options=task.family.baseline_context(spec))
    train, validation = sample(spec, splits.train), sample(spec, splits.validation)
    test = sample(spec, splits.test) if splits.test is not None else None
    held = validation.inputs + (test.inputs if test is not None else [])
    predictions = baseline.fit_predict(train.inputs, train.targets, held, context)
    cut = len(validation)
    out["baseline_validation"] = with_interval(task, spec.metric, validation.targets, predictions[:cut], seed=seed)
    # Like for like: a streamed validation set is compared on the baseline's sample of it.
    model_validation = out["validation"] if isinstance(splits.validation, Split) else with_interval(task, spec.metric, *_predict(spec, predictor, validation), seed=seed)
    out["beats_baseline"] = beats(model_validation[spec.metric], out["baseline_validation"][spec.metric], spec.mode)
    out["guard"] = {"metric": spec.metric, "mode": spec.mode, "model": model_validation[spec.metric], "baseline": out["baseline_validation"][spec.metric], "baseline_name": baseline.name}
    if test is None:
        return out
    out["predicted"]["test"] = _predict(spec, predictor, splits.test)
    out["model"] = with_interval(task, spec.metric, *out["predicted"]["test"], seed=seed)
    out["baseline"] = with_interval(task, spec.metric, test.targets, predictions[cut:], seed=seed)
    out["baseline"]["train_rows"], out["baseline"]["test_rows"] = len(train), len(test)
    if isinstance(splits.test, StreamedSplit):
        out["model_on_baseline_rows"] = with_interval(task, spec.metric, *_predict(spec, predictor, test), seed=seed)
    return out


def beats(model: float, baseline: float, mode: str) -> bool:
    """Whether the model's score is strictly better than the baseline's. A tie does not beat
    it, except at the metric's perfect score (1 for higher-is-better metrics, which all top out
    at 1 here; 0 for errors and losses), which nothing can beat: there the model is as good as
    anything a user could pick instead."""
    if np.isnan(model):
        return False
    if np.isnan(baseline):
        return True
    perfect = 1.0 if mode == "max" else 0.0
    return model == baseline == perfect or better(model, baseline, mode)
