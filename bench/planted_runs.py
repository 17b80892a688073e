"""Planted-signal models of every family for the explanation benchmarks, trained once per storage.

Each family is trained as its tests train it (tiny models, a few epochs) on data whose label or
hazard is decided by a known part of the input; a second benchmark on the same storage reuses
the registered versions. `cases(name)` gives inputs that hold the planted signal, with the
target to explain and a predicate telling whether an attribution entry lies on the signal.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

FAMILIES = ("text", "dna", "protein", "smiles-bert", "dmpnn", "tabular", "survival", "image")
ROWS = {"train": (400, 1), "test": (150, 2)}


def _write(root: Path) -> None:
    from biomed.families import get_family
    from biomed.families.images.planted import planted_lesion_images
    from biomed.families.molecules.planted import planted_nitro_table
    from biomed.families.text.planted import planted_text_table

    makers = {
        "text": lambda n, seed: planted_text_table(n, seed=seed),
        "dna": lambda n, seed: get_family("dna").planted(n, seed=seed)[0],
        "protein": lambda n, seed: get_family("protein").planted(n, seed=seed)[0],
        "nitro": lambda n, seed: planted_nitro_table(n, seed=seed),
        "decoy": lambda n, seed: planted_nitro_table(n, seed=seed, decoy=True),
        "tabular": lambda n, seed: get_family("tabular").planted(n, seed=seed)[0],
        "survival": lambda n, seed: get_family("tabular").planted(n, seed=seed, target="survival")[0],
    }
    for split, (n, seed) in ROWS.items():
        for name, make in makers.items():
            pq.write_table(make(n, seed), root / f"{name}_{split}.parquet")
        (root / "lesions" / split).mkdir(parents=True, exist_ok=True)
        pq.write_table(planted_lesion_images(root / "lesions" / split, n, seed=seed), root / "lesions" / split / f"{split}.parquet")


def _spec(name: str, root: Path, storage: Path) -> dict:
    # The SMILES transformer reads the decoy set (size says nothing of the label; tests/test_explain.py).
    data = {"text": "text", "dna": "dna", "protein": "protein", "smiles-bert": "decoy", "dmpnn": "nitro", "tabular": "tabular", "survival": "survival"}
    files = {"train_path": str(root / f"{data.get(name)}_train.parquet"), "test_path": str(root / f"{data.get(name)}_test.parquet")}
    training = {"epochs": 6, "batch_size_per_worker": 16, "learning_rate": 3e-3, "max_seq_length": 64, "warmup_ratio": 0.05}
    task, model, columns, workers = {
        "text": ("text_classification", {"backbone": "tiny-bert", "pooling": "mean"}, {}, 1),
        "dna": ("dna_classification", {"backbone": "tiny-bert", "kmer_size": 6}, {"text_column": "sequence"}, 1),
        "protein": ("protein_classification", {"backbone": "tiny-bert"}, {"text_column": "sequence"}, 1),
        "smiles-bert": ("molecule_classification", {"backbone": "tiny-bert"}, {"text_column": "smiles", "split": "scaffold"}, 1),
        "dmpnn": ("molecule_classification", {"backbone": "dmpnn", "hidden_size": 64, "ffn_hidden_size": 64}, {"text_column": "smiles", "split": "scaffold"}, 2),
        "tabular": ("tabular_classification", {"backbone": "mlp"}, {"numeric_columns": ["x1", "x2", "x3", "x4"], "categorical_columns": ["site"]}, 1),
        "survival": ("survival", {"backbone": "mlp"}, {"numeric_columns": ["x1", "x2", "x3"], "categorical_columns": ["stage"], "time_column": "time", "event_column": "event"}, 1),
        "image": ("image_classification", {"backbone": "small-cnn"}, {}, 2),
    }[name]
    if name == "text":
        training["group_by_length"] = False  # a marker word's length would give its label away (tests/conftest.py)
    if name == "dna":
        training["epochs"] = 12
    if name == "dmpnn":
        training = {"epochs": 30, "batch_size_per_worker": 16, "warmup_ratio": 0.05}
    if name == "smiles-bert":
        training["epochs"] = 8
    if name == "image":
        files = {f"{split}_path": str(root / "lesions" / split / f"{split}.parquet") for split in ("train", "test")}
        training = {"epochs": 30, "batch_size_per_worker": 16, "learning_rate": 3e-3, "warmup_ratio": 0.05, "augment_strength": 0.5}
    return {
        "name": f"planted-{name}", "task": {"name": task}, "data": {**files, **columns}, "model": model, "training": training,
        "scaling": {"num_workers": workers}, "checkpointing": {"num_to_keep": 1}, "storage_path": str(storage),
    }


def planted_runs(storage: Path, names=FAMILIES) -> dict[str, str]:
    """{family: registered folder}, training what the storage does not hold yet."""
    from jobs.registry import RegistryError, registry_for
    from jobs.spec import parse_spec
    from jobs.train import train

    root = storage / "data"
    if not (root / "text_test.parquet").is_file():
        root.mkdir(parents=True, exist_ok=True)
        _write(root)
    registry, out = registry_for(storage), {}
    for name in names:
        try:
            out[name] = registry.get(f"planted-{name}@1")["path"]
        except RegistryError:
            out[name] = train(parse_spec(_spec(name, root, storage)))["registered"]["path"]
    return out


def planted_bench_setup(doc: str, *, inputs: int, inputs_help: str):
    """The explanation benches' shared start: their command line (--storage, --inputs,
    --families), quiet logging, and the planted models trained or reused. Returns (args,
    storage, {family: registered folder})."""
    import argparse

    from biomed.log import configure

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--storage", default=str(Path(__file__).resolve().parents[1] / "runs" / "bench-planted"), help="where the planted models are trained and registered (reused)")
    parser.add_argument("--inputs", type=int, default=inputs, help=inputs_help)
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    args = parser.parse_args()
    configure("quiet")
    storage = Path(args.storage)
    return args, storage, planted_runs(storage, args.families)


def cases(name: str, storage: Path, count: int) -> list[tuple[object, str | None, object]]:
    """(input, target, whether an attribution entry lies on the planted signal) per input, up to
    `count` inputs that hold the signal; images: (file bytes, target, the table row with the
    lesion's centre and radius)."""
    from biomed.families.dna import MOTIF as DNA_MOTIF
    from biomed.families.molecules.planted import nitro_part
    from biomed.families.protein.planted import MOTIF as PROTEIN_MOTIF
    from biomed.families.sequence.planted import motif_part
    from biomed.families.tabular.planted import SIGNAL, high_risk, signal_part
    from biomed.families.text.planted import marker_part

    root = storage / "data"
    if name == "image":
        rows = [r for r in pq.read_table(root / "lesions" / "test" / "test.parquet").to_pylist() if r["label"] == "lesion"][:count]
        return [((root / "lesions" / "test" / r["image"]).read_bytes(), "lesion", r) for r in rows]
    if name == "text":
        return [(r["text"], r["label"], marker_part(r["text"], r["label"])) for r in pq.read_table(root / "text_test.parquet").to_pylist()[:count]]
    if name in ("dna", "protein"):
        motif = DNA_MOTIF if name == "dna" else PROTEIN_MOTIF
        rows = [r for r in pq.read_table(root / f"{name}_test.parquet").to_pylist() if r["label"] == "motif"][:count]
        return [(r["sequence"], "motif", motif_part(r["sequence"], motif)) for r in rows]
    if name in ("smiles-bert", "dmpnn"):
        data = "decoy" if name == "smiles-bert" else "nitro"
        rows = [r for r in pq.read_table(root / f"{data}_test.parquet").to_pylist() if r["label"] == "nitro"][:count]
        return [(r["smiles"], "nitro", nitro_part(r["smiles"])) for r in rows]
    target = "survival" if name == "survival" else "classification"
    table = pq.read_table(root / f"{name}_test.parquet")
    rows = table.select([c for c in table.column_names if c.startswith("x") or c in SIGNAL[target]]).to_pylist()
    if name == "survival":  # records whose signal raises the risk score being explained
        rows = [r for r in rows if high_risk(r)]
    return [(r, None, signal_part(target)) for r in rows[:count]]
