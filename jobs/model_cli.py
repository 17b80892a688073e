"""`biomed models ...`, `biomed predict` and `biomed explain`: the commands that read the registry
and answer from a registered checkpoint on this machine (no Ray)."""

from __future__ import annotations

from pathlib import Path

from jobs.output import emit, pretty


def cmd_models(args) -> int:
    from jobs.registry import registry_for

    registry = registry_for(args.storage)
    if args.models_command == "list":
        rows = registry.summary()
        emit({"models": rows}, as_json=args.json, human=lambda p: _print_models(p["models"]))
    elif args.models_command == "promote":
        entry = registry.promote(args.ref, force=args.force)
        payload = {"name": entry["name"], "version": entry["version"], "is_best": True, "previous_best": entry["previous_best"], "beats_baseline": entry.get("beats_baseline")}
        emit(payload, as_json=args.json, human=lambda p: print(f"{p['name']}@{p['version']} is now best (was v{p['previous_best']})"))
    else:
        entry = registry.get(args.ref)
        emit(entry, as_json=args.json, human=pretty)
    return 0


def _print_models(rows: list[dict]) -> None:
    if not rows:
        print("no registered models")
    for r in rows:
        sel = r["best_selection"]
        best = f"best v{r['best_version']} ({sel['metric']}={sel['value']:.4f})" if sel else "no best version (none beat its baseline; see `biomed models promote`)"
        print(f"{r['name']} ({r['kind']}): {r['num_versions']} versions, {best}")


def _load(args):
    """(registry entry, Predictor, inputs, how each input is shown) for `predict` and `explain`:
    images are read here (the files are the user's own, on this machine), shown by file name."""
    from biomed.checkpoint import Predictor
    from jobs.registry import registry_for

    entry = registry_for(args.storage).get(args.ref)
    predictor = Predictor(directory=entry["path"])
    family = predictor.family
    # A family whose inputs are files (images) takes them by path; the others as strings.
    flag = "--image FILE" if family.accepts_files else "--input"
    if family.accepts_files != bool(args.image):
        raise ValueError(f"{entry['name']}@{entry['version']} reads {family.name} inputs: give {flag}")
    if not args.image:
        return entry, predictor, [family.parse_cli_input(i) for i in args.input], list(args.input)
    contents = []
    for path in args.image:
        try:
            contents.append(Path(path).read_bytes())
        except OSError:
            raise ValueError(f"--image {path!r} is missing or cannot be read") from None
    return entry, predictor, [family.parse_cli_input(c) for c in contents], list(args.image)


def cmd_predict(args) -> int:
    entry, predictor, inputs, shown = _load(args)
    alpha = _alpha(args.alpha, predictor)
    predictions = predictor.predict(inputs)  # InvalidInputs (a ValueError) names the bad ones: exit 2
    rows = [{"input": x, **predictor.describe(p, alpha=alpha)} for x, p in zip(shown, predictions)]
    payload = {"model": entry["name"], "version": entry["version"], "task": entry["task"], "predictions": rows}

    def human(p: dict) -> None:
        for r in p["predictions"]:
            answer = r.get("label", r.get("value", r.get("risk_score")))
            sure = f"{r['prediction_set']}" if "prediction_set" in r else f"[{r['interval'][0]:.3g}, {r['interval'][1]:.3g}]" if "interval" in r else ""
            print(f"{answer}\t{sure + chr(9) if sure else ''}{str(r['input'])[:80]}")

    emit(payload, as_json=args.json, human=human)
    return 0


def cmd_explain(args) -> int:
    from biomed.explain import check_target, explain

    entry, predictor, inputs, shown = _load(args)
    check_target(predictor, args.target)  # an unknown label: exit 2 before any compute
    validated = predictor.validate(inputs)
    explanations = explain(predictor, inputs, validated=validated, target=args.target, n_steps=args.n_steps)
    rows = [{"input": x, **e} for x, e in zip(shown, explanations)]
    payload = {"model": entry["name"], "version": entry["version"], "task": entry["task"], "explanations": rows}
    if args.html:
        from biomed.explain_page import write_page

        write_page(args.html, model=f"{entry['name']}@{entry['version']}", explanations=rows, images=validated if predictor.family.accepts_files else None)
        payload["html"] = str(Path(args.html).resolve())
    emit(payload, as_json=args.json, human=_print_explanations)
    return 0


def _print_explanations(payload: dict) -> None:
    for r in payload["explanations"]:
        top = sorted(r["attributions"], key=lambda a: -a["score"])[:5]
        units = ", ".join(f"{_unit(a)} {a['score']:+.3f}" for a in top)
        gap = f"completeness gap {r['convergence_delta']:.2e}" if r["convergence_delta"] is not None else "no completeness gap to report"
        print(f"{r['target']}\t{str(r['input'])[:60]}\n  most for it: {units}\n  {r['method']}, {gap}")
    if "html" in payload:
        print(f"page: {payload['html']}")


def _unit(a: dict) -> str:
    """How one attribution is named on a terminal."""
    if "feature" in a:
        return f"{a['feature']}={a['value']}"
    if "region" in a:
        return f"region {a['region']}"
    if "bond" in a:
        return f"bond {a['bond'][0]}-{a['bond'][1]}" + (f" {a['text']!r}" if a["text"] else "")
    return repr(a["text"])


def _alpha(given: float | None, predictor) -> float | None:
    """The conformal miscoverage to answer with: the one asked for, else 0.1 where the version
    was calibrated; refused for a target with no conformal set (survival)."""
    from biomed.conformal import DEFAULT_ALPHA

    if given is not None and not 0.0 < given < 1.0:
        raise ValueError(f"--alpha {given} must be between 0 and 1")
    if given is not None and predictor.task.target.conformal_method is None:
        raise ValueError("--alpha: no conformal set for a survival risk score (a Cox score has no scale to put an interval on)")
    return given if given is not None else DEFAULT_ALPHA


def _add_inputs(p) -> None:
    given = p.add_mutually_exclusive_group(required=True)
    given.add_argument(
        "--input", "--text", dest="input", action="append",
        help="one input (repeatable): a text, DNA or protein sequence or SMILES; for tabular models a JSON object of features",
    )
    given.add_argument("--image", action="append", metavar="FILE", help="image models: one PNG, JPEG or DICOM file (repeatable)")


def add_model_parsers(sub, *, common, storage) -> None:
    """`biomed models ...`, `biomed predict` and `biomed explain`."""
    from biomed.explain import AUTO_MAX_STEPS, DEFAULT_STEPS

    p = sub.add_parser("models", help="the checkpoint registry")
    models = p.add_subparsers(dest="models_command", required=True)
    m = models.add_parser("list", parents=[common, storage], help="registered models")
    m.set_defaults(func=cmd_models)
    m = models.add_parser("show", parents=[common, storage], help="one model: NAME (its best) or NAME@VERSION")
    m.add_argument("ref")
    m.set_defaults(func=cmd_models)
    m = models.add_parser("promote", parents=[common, storage], help="make NAME@VERSION the best version (what `predict NAME` and `serve deploy NAME` use)")
    m.add_argument("ref", help="NAME@VERSION")
    m.add_argument("--force", action="store_true", help="promote a version that did not beat its classical baseline on validation")
    m.set_defaults(func=cmd_models)
    p = sub.add_parser("predict", parents=[common, storage], help="predict with a registered model")
    p.add_argument("ref", help="NAME or NAME@VERSION")
    _add_inputs(p)
    p.add_argument("--alpha", type=float, default=None, help="miscoverage of the conformal prediction set or interval printed with each prediction (default 0.1; classification and regression)")
    p.set_defaults(func=cmd_predict)
    p = sub.add_parser("explain", parents=[common, storage], help="why a registered model predicts what it does: attributions per input (integrated gradients)")
    p.add_argument("ref", help="NAME or NAME@VERSION")
    _add_inputs(p)
    p.add_argument("--target", default=None, help="classification: the label to explain (default: the predicted one)")
    p.add_argument("--n-steps", type=int, default=None, help=f"integration steps (default: {DEFAULT_STEPS}, doubled up to {AUTO_MAX_STEPS} while the completeness gap is over 5%% of the attributions' total)")
    p.add_argument("--html", default=None, metavar="FILE", help="also write one self-contained page: tokens shaded by attribution, bars for features, the heat map over images")
    p.set_defaults(func=cmd_explain)
