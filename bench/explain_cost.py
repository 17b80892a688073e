"""What an explanation costs: per family, explain latency per input against predict's, and the
integration steps (n_steps) against integrated gradients' completeness gap (convergence_delta).

On the planted models of bench/planted_runs.py (trained first unless the storage holds them),
one input per call, on this machine's CPU threads:
- predict: median seconds of `Predictor.predict([x])` (20 calls per input);
- explain: median seconds of `biomed.explain.explain(predictor, [x])` at the default n_steps
  (32, doubled while the gap is large; images: occlusion, no steps and no gap);
- the gap at n_steps 4 to 128: mean absolute convergence_delta, and relative to the
  attributions' total (how much of the output's change the attributions fail to account for).
The last line is one JSON object with every figure.

    python bench/explain_cost.py [--storage DIR] [--inputs 4]
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from planted_runs import cases, planted_bench_setup  # noqa: E402
from results_file import save  # noqa: E402


STEPS = (4, 8, 16, 32, 64, 128)


def _median_s(call, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(folder: str, inputs: list) -> dict:
    from biomed.checkpoint import Predictor
    from biomed.explain import DEFAULT_STEPS, explain, explain_units

    predictor = Predictor(directory=folder)
    predict_s = statistics.median(_median_s(lambda x=x: predictor.predict([x]), 20) for x, _ in inputs)
    explain_s = statistics.median(_median_s(lambda x=x, t=t: explain(predictor, [x], target=t), 3) for x, t in inputs)
    gaps = {}
    ((_, first),) = explain_units(predictor, [inputs[0][0]], target=inputs[0][1])
    integrated = first.payload.get("convergence_delta") is not None  # occlusion (images) has neither steps nor gap
    for steps in STEPS if integrated else ():
        absolute, relative = [], []
        for x, t in inputs:
            ((_, e),) = explain_units(predictor, [x], target=t, n_steps=steps)
            absolute.append(abs(e.payload["convergence_delta"]))
            relative.append(abs(e.payload["convergence_delta"]) / max(abs(float(np.sum(e.unit_scores))), 1e-6))
        gaps[steps] = {"delta": round(float(np.mean(absolute)), 6), "relative": round(float(np.mean(relative)), 5)}
    return {
        "predict_ms": round(predict_s * 1000, 2), "explain_ms": round(explain_s * 1000, 1), "explain_over_predict": round(explain_s / predict_s, 1),
        "default_n_steps": DEFAULT_STEPS, "gap_by_n_steps": gaps,
    }


def main() -> None:
    args, storage, folders = planted_bench_setup(__doc__, inputs=4, inputs_help="inputs per family")
    rows = {name: measure(folders[name], [(x, t) for x, t, _ in cases(name, storage, args.inputs)]) for name in args.families}
    print(f"{'family':12} {'predict ms':>10} {'explain ms':>10} {'ratio':>7}  " + " ".join(f"{'gap@' + str(s):>9}" for s in STEPS))
    for name, r in rows.items():
        gaps = " ".join(f"{r['gap_by_n_steps'][s]['relative']:9.2e}" if s in r["gap_by_n_steps"] else f"{'-':>9}" for s in STEPS)
        print(f"{name:12} {r['predict_ms']:10.2f} {r['explain_ms']:10.1f} {r['explain_over_predict']:7.1f}  {gaps}")
    figures = {"families": rows, "steps": list(STEPS)}
    save("explain_cost", figures, command="python bench/explain_cost.py " + " ".join(sys.argv[1:]))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
