"""How faithful the explanations are: per family, on a model trained on a planted signal.

For inputs that hold the signal and that the model classifies as such (a marker word, a DNA motif, a residue motif, a nitro group for
the SMILES transformer and for dmpnn, the signal columns of a table and of a survival record, a
lesion in an image):
- planted mass: the share of the positive attribution mass on the planted part (images: of the
  heat map within three lesion radii), beside the share of the input that part is;
- deletion: the explained output as the k top-attributed units are set to the reference
  (k = the planted part's size; images 2 cells of 64), against k random units (8 orders): the
  area under each curve (the mean output along it; lower is better for the top units) and the
  drop at k.
The models are trained first (bench/planted_runs.py; about 8 minutes on 2 cores) unless the
storage holds them. The last line is one JSON object with every figure.

    python bench/explain_faithfulness.py [--storage DIR] [--inputs 16]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from planted_runs import cases, planted_bench_setup  # noqa: E402
from results_file import save  # noqa: E402



def measure(name: str, folder: str, storage: Path, count: int) -> dict:
    from biomed.checkpoint import Predictor
    from biomed.explain import deletion_curves, explain_units, positive_share
    from biomed.families.images.planted import lesion_mass

    predictor = Predictor(directory=folder)
    masses, parts, curves, missed = [], [], [], 0
    for raw, target, where in cases(name, storage, 2 * count):
        if len(masses) == count:
            break
        ((head, explained),) = explain_units(predictor, [raw], target=target)
        if target is not None and head["prediction"]["label"] != target:
            missed += 1  # the model missed the signal here: nothing of it to find
            continue
        entries = explained.payload["attributions"]
        if name == "image":
            mass, part = lesion_mass(explained.payload["heatmap_png"], where)
            k = 2
        else:
            mass, part = positive_share(entries, where), sum(map(where, entries)) / len(entries)
            k = max(1, sum(map(where, entries)))
        masses.append(mass)
        parts.append(part)
        curves.append(deletion_curves(explained, max_units=k))
    mean = lambda key: round(float(np.mean([c[key] for c in curves])), 4)  # noqa: E731
    return {
        "inputs": len(masses), "missed_by_the_model": missed, "planted_mass": round(float(np.mean(masses)), 4), "planted_mass_min": round(float(np.min(masses)), 4),
        "planted_share_of_input": round(float(np.mean(parts)), 4),
        "deletion_auc_top": mean("auc_top"), "deletion_auc_random": mean("auc_random"), "deletion_drop_top": mean("drop_top"), "deletion_drop_random": mean("drop_random"),
    }


def main() -> None:
    args, storage, folders = planted_bench_setup(__doc__, inputs=16, inputs_help="planted inputs explained per family")
    rows = {name: measure(name, folders[name], storage, args.inputs) for name in args.families}
    print(f"{'family':12} {'planted mass':>12} {'(part of input)':>15} {'deletion AUC top':>17} {'random':>8}")
    for name, r in rows.items():
        print(f"{name:12} {r['planted_mass']:12.3f} {r['planted_share_of_input']:15.3f} {r['deletion_auc_top']:17.3f} {r['deletion_auc_random']:8.3f}")
    figures = {"families": rows, "min_planted_mass": min(r["planted_mass"] for r in rows.values()), "all_top_deletions_beat_random": all(r["deletion_auc_top"] < r["deletion_auc_random"] for r in rows.values())}
    save("explain_faithfulness", figures, command="python bench/explain_faithfulness.py " + " ".join(sys.argv[1:]))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
