"""Hyperparameter search: validation, ASHA on real Ray Train trials, promotion, resume."""

from __future__ import annotations

import csv
import json
import logging
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import torch

from jobs.registry import Registry
from jobs.spec import SpecError, parse_spec
from jobs.worker import STATE_FILE
from tests.conftest import cpu_placement_groups, epochs_done, our_train_workers, tiny_spec, write_spec


def _tune_spec(data_dir: Path, storage: Path, **tune) -> dict:
    raw = tiny_spec(data_dir, storage, name="planted-search", scaling={"num_workers": 1})
    raw["training"] = {**raw["training"], "epochs": 4}
    raw["tune"] = {
        "search_space": {"learning_rate": {"loguniform": [3e-5, 5e-3]}, "dropout": {"uniform": [0.0, 0.2]}},
        "num_samples": 4,
        "max_concurrent_trials": 2,
        "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2},
        **tune,
    }
    return raw


@pytest.mark.parametrize(
    "search_space,expected",
    [
        ({"learning_rate": {"loguniform": [0.0, 1e-3]}}, "loguniform needs low > 0"),
        ({"learning_rate": {"uniform": [1e-3, 1e-4]}}, "needs low < high"),
        ({"dropout": {"uniform": [0.0, 1.5]}}, "tune.search_space.dropout: value 1.5 is invalid"),
        ({"batch_size_per_worker": {"choice": [8, 0]}}, "value 0 is invalid for training.batch_size_per_worker"),
        ({"lr": {"choice": [1e-3]}}, "'lr' is not a training field"),
        ({"epochs": {"choice": [2], "randint": [1, 3]}}, "give exactly one of"),
        ({"epochs": {"normal": [1, 3]}}, "tune.search_space.epochs.normal: unknown key"),
    ],
)
def test_invalid_search_space_fails_validation(planted_dir, tmp_path, search_space, expected):
    raw = _tune_spec(planted_dir, tmp_path)
    raw["tune"]["search_space"] = search_space
    with pytest.raises(SpecError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        parse_spec(raw)


def test_search_algorithm_must_fit_the_space(planted_dir, tmp_path):
    raw = _tune_spec(planted_dir, tmp_path, search_algorithm="grid")
    with pytest.raises(SpecError, match="'grid' needs every search_space key to be a grid"):
        parse_spec(raw)
    raw = _tune_spec(planted_dir, tmp_path, search_algorithm="optuna")
    raw["tune"]["search_space"] = {"learning_rate": {"grid": [1e-3, 1e-4]}}
    with pytest.raises(SpecError, match="'optuna' cannot take grid keys"):
        parse_spec(raw)


@pytest.mark.parametrize(
    "search_space,algorithm,num_samples,include_spec_values,expected",
    [
        # Counts checked against Tune's own (ray.tune.search.variant_generator._count_variants, Ray 2.60).
        ({"learning_rate": {"grid": [3e-3, 1e-5]}}, "grid", 1, True, 2),
        ({"learning_rate": {"grid": [3e-3, 1e-5]}, "dropout": {"grid": [0.0, 0.1, 0.2]}}, "grid", 2, True, 12),
        ({"learning_rate": {"loguniform": [1e-5, 1e-3]}, "dropout": {"uniform": [0.0, 0.2]}}, "random", 4, True, 4),
        # The spec sets no dropout, so its own point leaves that grid to be crossed: 3 + 3 x 3.
        ({"learning_rate": {"loguniform": [1e-5, 1e-3]}, "dropout": {"grid": [0.0, 0.1, 0.2]}}, "random", 4, True, 12),
        ({"learning_rate": {"loguniform": [1e-5, 1e-3]}, "batch_size_per_worker": {"grid": [8, 16]}}, "random", 3, True, 5),
        ({"learning_rate": {"loguniform": [1e-5, 1e-3]}, "batch_size_per_worker": {"grid": [8, 16]}}, "random", 3, False, 6),
    ],
)
def test_the_progress_lines_count_every_trial_the_search_will_run(planted_dir, tmp_path, search_space, algorithm, num_samples, include_spec_values, expected):
    from jobs.tune import planned_trials

    raw = _tune_spec(planted_dir, tmp_path, search_space=search_space, search_algorithm=algorithm, num_samples=num_samples, include_spec_values=include_spec_values)
    assert planned_trials(parse_spec(raw)) == expected


def test_progress_lines_say_which_trials_asha_stopped_early(caplog):
    from types import SimpleNamespace

    from jobs.tune_report import TrialLines

    # Epochs not searched: each trial plans the spec's 6 (the quick start's search printed
    # "finished after 3 epochs" for a trial ASHA had stopped).
    lines = TrialLines(metric="val_loss", num_trials=3, epochs=6, max_epochs=6)
    trial = lambda i, epoch, config: SimpleNamespace(trial_id=f"t{i}", config=config, last_result={"epoch": epoch, "val_loss": 0.5})  # noqa: E731
    # caplog's handler directly on the biomed logger: a CLI run earlier in the session stops it propagating.
    logger = logging.getLogger("biomed")
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level("INFO", logger="biomed"):
            lines.on_trial_complete(0, [], trial(0, 3, {"learning_rate": 1e-4}))
            lines.on_trial_complete(0, [], trial(1, 6, {"learning_rate": 3e-4}))
            lines.on_trial_complete(0, [], trial(2, 4, {"epochs": 4}))  # a sampled epochs value is its plan
    finally:
        logger.removeHandler(caplog.handler)
    said = sorted({r.getMessage() for r in caplog.records})
    assert [m.split(" after ")[0] for m in said] == ["trial 1/3 t0 stopped early", "trial 2/3 t1 finished", "trial 3/3 t2 finished"]


def test_a_trial_whose_report_was_lost_with_its_node_counts_the_epochs_it_reached():
    from jobs.tune_report import trial_summaries

    # A trial driver killed with its node after epoch 2's checkpoint was committed but before
    # Tune got that report resumes at epoch 3: Tune holds epochs 1, 3, 4 and 5.
    common = {"trial_id": "t0", "config": {"learning_rate": 1e-5}, "planned_epochs": 5, "status": "TERMINATED"}
    rows = [{**common, "epoch": e, "val_macro_f1": 0.2, "worker_node_ids": node} for e, node in [(1, "a"), (3, "b"), (4, "b"), (5, "b")]]
    (summary,) = trial_summaries(rows, "val_macro_f1")
    assert summary["epochs_run"] == 5 and not summary["stopped_early"] and summary["node_ids"] == ["a", "b"]
    stopped = [{**common, "trial_id": "t1", "epoch": e, "val_macro_f1": 0.1, "worker_node_ids": "a"} for e in (1, 2)]
    assert trial_summaries(stopped, "val_macro_f1")[0]["epochs_run"] == 2 and trial_summaries(stopped, "val_macro_f1")[0]["stopped_early"]


def test_trial_process_imports_no_model_or_metric_library():
    # Tune starts a new process per trial that imports jobs.trial; transformers and scikit-learn
    # belong on the Train workers, and cost the trial process seconds of start-up for nothing.
    code = "import sys, jobs.trial; print(sorted({m.split('.')[0] for m in sys.modules} & {'transformers', 'sklearn', 'scipy', 'matplotlib'}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=Path(__file__).parents[1])
    assert out.stdout.strip() == "[]"


def test_missing_optuna_is_a_clear_validation_error(planted_dir, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "optuna" else real(name, *a))
    with pytest.raises(SpecError, match="needs the optuna package: pip install"):
        parse_spec(_tune_spec(planted_dir, tmp_path, search_algorithm="optuna"))


def test_asha_search_stops_weak_trials_and_promotes_the_best(ray_cluster, planted_dir, tmp_path):
    from jobs.tune import tune_search

    spec = parse_spec(_tune_spec(planted_dir, tmp_path / "runs"))
    summary = tune_search(spec)

    assert summary["num_trials"] == 4
    assert summary["num_stopped_early"] >= 1
    assert summary["trial_epochs"] < 4 * 4
    with open(summary["results_csv"]) as f:
        rows = list(csv.DictReader(f))
    best_value = max(float(r["val_macro_f1"]) for r in rows)
    assert summary["selection"]["value"] == pytest.approx(best_value)
    assert summary["best_trial"]["val_macro_f1"] == pytest.approx(best_value)
    entry = Registry(root=tmp_path / "runs" / "registry").get("planted-search")
    assert entry["selection"]["value"] == pytest.approx(best_value)
    assert entry["search"]["trial_id"] == summary["best_trial"]["trial_id"]
    assert entry["search"]["config"] == summary["best_trial"]["config"]
    assert Path(summary["plot_png"]).stat().st_size > 10_000
    assert Path(summary["results_parquet"]).is_file()
    # Stopped trials give their workers' CPUs back (a leaked reservation starves later trials).
    assert cpu_placement_groups() == []


def test_trial_whose_worker_dies_is_retried_from_its_checkpoint(ray_cluster, planted_dir, tmp_path):
    from jobs.tune import tune_search

    raw = _tune_spec(planted_dir, tmp_path / "runs", num_samples=1, max_concurrent_trials=1, scheduler={"type": "none"})
    raw["training"] = {**raw["training"], "epochs": 5}
    raw["failure"] = {"max_failures": 1}
    spec = parse_spec(raw)
    outcome: dict = {}
    runner = threading.Thread(target=lambda: outcome.update(summary=tune_search(spec)), daemon=True)
    runner.start()
    deadline = time.monotonic() + 300
    while not any(epochs_done(p) >= 2 for p in (tmp_path / "runs").glob("planted-search-*/metrics.csv")):
        assert runner.is_alive() and time.monotonic() < deadline, "the trial ended before the kill"
        time.sleep(0.2)
    victims = our_train_workers()
    assert len(victims) == 1
    victims[0].send_signal(signal.SIGKILL)
    runner.join(timeout=400)
    assert not runner.is_alive()

    summary = outcome["summary"]
    assert summary["num_trials"] == 1 and summary["trials"][0]["status"] == "TERMINATED"
    (run_dir,) = [p.parent for p in (tmp_path / "runs").glob("planted-search-*/metrics.csv")]
    state = torch.load(run_dir / "checkpoint_epoch_0005" / STATE_FILE, weights_only=True)
    starts = state["attempt_start_epochs"]
    # Resumed, not restarted (the last report before the kill may not have been committed yet).
    assert len(starts) == 2 and starts[0] == 0 and starts[1] >= 1, starts
    assert summary["best_trial"]["epoch"] >= 2
    assert cpu_placement_groups() == []


def _terminated_configs(exp_root: Path) -> list[dict]:
    """Configs of the trials that Tune's saved experiment state records as finished."""
    states = sorted(exp_root.glob("planted-search-tune-*/experiment_state-*.json"))
    if not states:
        return []
    try:
        trials = [json.loads(t[0]) for t in json.loads(states[-1].read_text())["trial_data"]]
    except (json.JSONDecodeError, KeyError):
        return []  # caught mid-write
    return [t["config"] for t in trials if t["status"] == "TERMINATED"]


def test_killed_search_resumes_without_rerunning_finished_trials(tmp_path):
    from biomed.families.text.planted import write_planted_text
    from jobs.resolve import resolve
    from jobs.trial import trial_job, trial_run_name
    from jobs.tune import experiment_name

    write_planted_text(tmp_path / "train.parquet", 1500, seed=3)
    write_planted_text(tmp_path / "test.parquet", 100, seed=4)
    raw = _tune_spec(tmp_path, tmp_path / "runs", max_concurrent_trials=1, num_samples=3, scheduler={"type": "none"})
    raw["training"] = {**raw["training"], "epochs": 3}
    spec_path = write_spec(tmp_path / "spec.yaml", raw)
    spec = parse_spec(raw)
    command = [sys.executable, "-m", "jobs.cli", "tune", str(spec_path), "--json"]
    first = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 400
    while not _terminated_configs(tmp_path / "runs"):
        assert first.poll() is None and time.monotonic() < deadline, "search ended before it could be interrupted"
        time.sleep(0.5)
    family = psutil.Process(first.pid).children(recursive=True)
    first.send_signal(signal.SIGKILL)
    first.wait()
    for proc in family:  # the embedded Ray it started, and nothing else
        try:
            proc.kill()
        except psutil.NoSuchProcess:  # exited with its parent meanwhile
            pass
    finished = _terminated_configs(tmp_path / "runs")
    assert 1 <= len(finished) < 3
    job = resolve(spec)
    experiment = experiment_name(job)
    runs = [tmp_path / "runs" / trial_run_name(trial_job(job, config), experiment) / "metrics.csv" for config in finished]
    mtimes = {run: run.stat().st_mtime for run in runs}

    refused = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "--resume" in refused.stderr

    resumed = subprocess.run([*command, "--resume"], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    summary = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert summary["num_trials"] == 3
    assert len(_terminated_configs(tmp_path / "runs")) == 3
    for run, mtime in mtimes.items():
        assert run.stat().st_mtime == mtime, f"finished trial {run.parent.name} was rerun"
