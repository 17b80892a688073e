"""`biomed` command line. Thin: each command parses, calls one function, prints the result.

Every command takes --json: the final summary is then printed as one JSON object on the last
line of stdout (progress goes to stderr, through the `biomed` logger: one line per epoch and per
trial; --quiet for warnings only, --verbose for everything, Ray's own logs included). Exit codes:
0 ok, 1 the job failed (or Ray is outside the tested versions), 2 bad input (spec, data, resources
the cluster lacks), 3 the cluster is unreachable or refused our credentials.

This module and the other `*/cli.py` are the composition root: the only modules that may import
every layer (see the README's layout and `.importlinter`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from biomed.log import configure as configure_logging
from biomed.log import get_logger
from jobs.model_cli import add_model_parsers
from jobs.output import emit, pretty

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_CLUSTER = 1, 2, 3
# Commands that start or join Ray: checked against the tested Ray versions before they run.
RAY_COMMANDS = ("train", "pretrain", "tune", "serve", "submit", "jobs", "cluster")

log = get_logger(__name__)


def cmd_validate(args) -> int:
    from jobs.resolve import resolve
    from jobs.spec import parse_spec, read_spec_file
    from jobs.splits import load_splits

    raw = read_spec_file(args.spec)
    if "family" in raw:  # a `biomed pretrain` spec: job specs name a task, not a family
        return _validate_pretrain(args, raw)
    job = resolve(parse_spec(raw))
    spec = job.spec
    report = load_splits(job).report
    payload = {"valid": True, "name": spec.name, "labels": spec.task.labels, "metric": spec.metric, "mode": spec.mode, "data": report}
    if args.cluster_config:
        from cluster.resources import check_scaling_fits, load_cluster_config, shapes_from_config

        shapes = shapes_from_config(load_cluster_config(args.cluster_config))
        payload["cluster"] = check_scaling_fits(spec.scaling, shapes, source=f"cluster config {args.cluster_config!r}")
    emit(payload, as_json=args.json, human=lambda p: (print(f"{args.spec}: valid"), pretty(p)))
    return 0


def _validate_pretrain(args, raw: dict) -> int:
    from jobs.pretrain import corpus_indexes, corpus_report
    from jobs.pretrain_spec import parse_pretrain_spec, resolve_pretrain

    spec = resolve_pretrain(parse_pretrain_spec(raw))
    if args.cluster_config:
        log.error("--cluster-config checks job specs only; %s is a pretraining spec", args.spec)
        return EXIT_BAD_INPUT
    payload = {"valid": True, "name": spec.name, "kind": "pretrain", "family": spec.family, "corpus": corpus_report(corpus_indexes(spec))}
    emit(payload, as_json=args.json, human=lambda p: (print(f"{args.spec}: valid"), pretty(p)))
    return 0


def cmd_schema(args) -> int:
    from jobs.spec import spec_schema

    print(json.dumps(spec_schema(), indent=None if args.json else 2))
    return 0


def cmd_data(args) -> int:
    from biomed.datasets import DATASETS as TABLES, ROW_LIMITED
    from biomed.image_datasets import IMAGE_DATASETS, build_image_folder

    DATASETS = {**TABLES, **IMAGE_DATASETS, "image-folder": build_image_folder}
    if args.dataset not in DATASETS:
        log.error("unknown data set %r; known: %s", args.dataset, sorted(DATASETS))
        return EXIT_BAD_INPUT
    if (args.source is not None) != (args.dataset == "image-folder"):
        log.error("--source names the folder of `biomed data image-folder`, and only it")
        return EXIT_BAD_INPUT
    if args.rows is not None and args.dataset not in ROW_LIMITED:
        log.error("--rows applies to %s only, not %r", list(ROW_LIMITED), args.dataset)
        return EXIT_BAD_INPUT
    options = {"rows": args.rows} if args.rows is not None else {"source": args.source} if args.source is not None else {}
    summary = DATASETS[args.dataset](args.out, **options)
    emit(summary, as_json=args.json, human=pretty)
    return 0


def cmd_train(args) -> int:
    from jobs.spec import load_spec
    from jobs.train import train

    spec = load_spec(args.spec, storage_path=args.storage_path)
    summary = train(spec, address=args.address)
    emit(summary, as_json=args.json, human=_print_train_summary)
    return 0


def cmd_pretrain(args) -> int:
    from jobs.pretrain import pretrain
    from jobs.pretrain_spec import load_pretrain_spec

    spec = load_pretrain_spec(args.spec, storage_path=args.storage_path)
    summary = pretrain(spec, address=args.address)
    emit(summary, as_json=args.json, human=_print_pretrain_summary)
    return 0


def _print_pretrain_summary(s: dict) -> None:
    print(f"run {s['run_name']}: registered backbone {s['name']}@{s['registered']['version']} at {s['registered']['path']}")
    print(f"  {s['steps']} steps on {s['corpus']['train']['rows']} sequences, vocabulary {s['vocab_size']}")
    print("  validation: " + _metrics_line(s["val_metrics"]))
    print(f"  curves: {s['metrics_csv']}")


def cmd_tune(args) -> int:
    from jobs.spec import load_spec
    from jobs.tune import tune_search

    spec = load_spec(args.spec, storage_path=args.storage_path)
    summary = tune_search(spec, address=args.address, resume=args.resume)
    emit(summary, as_json=args.json, human=_print_tune_summary)
    return 0


def _metrics_line(metrics: dict) -> str:
    def show(v) -> str:
        if isinstance(v, list):  # a bootstrap interval
            return "[" + ", ".join(f"{x:.4f}" for x in v) + "]"
        return str(v) if isinstance(v, int) else f"{v:.4f}"  # counts (rows) stay whole numbers

    return " ".join(f"{k}={show(v)}" for k, v in metrics.items())


def _print_tune_summary(s: dict) -> None:
    best = s["best_trial"]
    print(f"search {s['experiment']}: {s['num_trials']} trials, {s['num_stopped_early']} stopped early, {s['trial_epochs']} trial-epochs")
    print(f"  best trial {best['trial_id']} epoch {best['epoch']}: {s['selection']['metric']}={s['selection']['value']:.4f} config={best['config']}")
    print(f"  registered {s['name']}@{s['registered']['version']} ({'now best' if s['registered']['is_best'] else s['registered']['best_reason']})")
    print("  " + _guard_line(s))
    if s["test_metrics"]:
        print("  test: " + _metrics_line(s["test_metrics"]))
    print(f"  results: {s['results_csv']}  plot: {s['plot_png']}")


def _print_train_summary(s: dict) -> None:
    print(f"run {s['run_name']}: registered {s['name']}@{s['registered']['version']} at {s['registered']['path']}")
    print(f"  selected by {s['selection']['metric']} = {s['selection']['value']:.4f}")
    print("  " + _guard_line(s))
    for label, metrics in (("model", s["test_metrics"]), (f"baseline {s['baseline']}", s["baseline_test_metrics"])):
        if metrics:
            print(f"  test {label}: " + _metrics_line(metrics))
    print(f"  learning curve: {s['learning_curve_png']}  metrics: {s['metrics_csv']}")


def _guard_line(s: dict) -> str:
    """The baseline guard in one plain line, with both validation figures."""
    from jobs.registry import losing_line

    g = s["guard"]
    if s["beats_baseline"] and g["model"] == g["baseline"]:
        return f"ties its baseline {g['baseline_name']} on validation at the perfect score: {g['metric']} {g['model']:.4f} (made best as usual)"
    if s["beats_baseline"]:
        return f"beats its baseline {g['baseline_name']} on validation: {g['metric']} {g['model']:.4f} against {g['baseline']:.4f}"
    ref = f"{s['name']}@{s['registered']['version']}"
    return f"NOT made best: {losing_line(g)}; `biomed models promote {ref} --force` makes it best anyway"


def _version() -> str:
    """The installed package's version (pyproject.toml's; CHANGELOG.md says what changed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("biomed-ray")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="biomed", description="Fine-tune, tune and serve biomedical models on Ray.")
    parser.add_argument("--version", action="version", version=f"biomed {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    # Flags every command takes.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print the final summary as one JSON object")
    loudness = common.add_mutually_exclusive_group()
    loudness.add_argument("--quiet", "-q", dest="verbosity", action="store_const", const="quiet", help="log warnings and errors only")
    loudness.add_argument("--verbose", "-v", dest="verbosity", action="store_const", const="verbose", help="log everything, Ray's own logs included")
    storage = argparse.ArgumentParser(add_help=False)
    storage.add_argument("--storage", default="runs", help="storage path holding the registry (default: runs)")

    p = sub.add_parser("validate", parents=[common], help="validate a spec and its data; starts no Ray")
    p.add_argument("spec")
    p.add_argument("--cluster-config", default=None, help="also check the spec's scaling against this Ray cluster launcher file's node types")
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser("schema", parents=[common], help="print the job spec's JSON schema")
    p.set_defaults(func=cmd_schema)
    p = sub.add_parser("data", parents=[common], help="write a packaged biomedical data set as Parquet")
    p.add_argument("dataset", help="data set name, e.g. drug-reviews")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--rows", type=int, default=None, help="corpora (moses): write only the first ROWS training rows")
    p.add_argument("--source", default=None, help="image-folder: a folder per class (SOURCE/CLASS/*.png), or train/, val/ and test/ folders of them")
    p.set_defaults(func=cmd_data)
    p = sub.add_parser("train", parents=[common], help="fine-tune per a spec and register the best checkpoint")
    p.add_argument("spec")
    p.add_argument("--address", default=None, help="Ray cluster address; default: an embedded local Ray")
    p.add_argument("--storage-path", default=None, help="override the spec's storage_path")
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("pretrain", parents=[common], help="masked-language pretraining on a corpus; registers a backbone")
    p.add_argument("spec")
    p.add_argument("--address", default=None, help="Ray cluster address; default: an embedded local Ray")
    p.add_argument("--storage-path", default=None, help="override the spec's storage_path")
    p.set_defaults(func=cmd_pretrain)
    p = sub.add_parser("tune", parents=[common], help="hyperparameter search per the spec's tune: section; registers the best trial")
    p.add_argument("spec")
    p.add_argument("--address", default=None, help="Ray cluster address; default: an embedded local Ray")
    p.add_argument("--storage-path", default=None, help="override the spec's storage_path")
    p.add_argument("--resume", action="store_true", help="continue an interrupted search; finished trials are not rerun")
    p.set_defaults(func=cmd_tune)
    add_model_parsers(sub, common=common, storage=storage)
    from serving.cli import add_serve_parser

    add_serve_parser(sub, parents=[common, storage])
    from cluster.cli import add_cluster_parsers

    add_cluster_parsers(sub, common=common)
    return parser


def main(argv: list[str] | None = None) -> int:
    from jobs.registry import RegistryError
    from jobs.spec import SpecError
    from jobs.errors import TrainingFailed

    args = build_parser().parse_args(argv)
    configure_logging(getattr(args, "verbosity", None) or "default")
    from cluster.connect import WORKER_ENV

    # No hub look-ups or progress bars here either: transformers reads these once, on import.
    for key, value in WORKER_ENV.items():
        os.environ.setdefault(key, value)
    from cluster.local_head import prepare_driver_auth

    if args.command in ("submit", "jobs", "cluster"):
        # These talk to a cluster's dashboard, and the clusters this tool starts or describes
        # (cluster up --local, cluster.yaml) all have token auth on: send the token unless the
        # user chose a mode. Set before ray is imported, which is when Ray reads it.
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    elif args.command in ("train", "pretrain", "tune", "serve"):
        prepare_driver_auth(getattr(args, "address", None))
    from cluster.ray_compat import RayVersionError, check_ray_version
    from cluster.resources import ClusterUnavailable

    try:
        if args.command in RAY_COMMANDS:
            check_ray_version()
        return args.func(args)
    except (SpecError, RegistryError, ValueError, FileNotFoundError) as error:
        log.error("%s", error)
        return EXIT_BAD_INPUT
    except ClusterUnavailable as error:
        log.error("%s", error)
        return EXIT_CLUSTER
    except (TrainingFailed, RayVersionError) as error:
        log.error("%s", error)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
