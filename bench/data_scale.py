"""Streamed data at N and 10N rows, against the in-memory path, in one run.

Each measurement is a fresh worker process running the job's own data path (`jobs.train_data`:
the stream reads its units, checks and tokenizes them on the fly) under the tiny BERT with AdamW
for a fixed number of optimizer steps, one torch thread (a 1-CPU Ray worker). The driver's pass
over the data (`jobs.splits.load_splits`) runs before, as in a job, and is timed apart: it is
the one cost that grows with the data. Figures:

- `rss_ratio_10x`: a streamed worker's peak RSS at 10N over N (goal <= 1.2); in-memory too;
- `first_step_ratio_10x`: a streamed worker's time from start to its first optimizer step, 10N over N;
- `throughput_ratio`: streamed samples/s over in-memory samples/s on the same N rows (goal >= 0.9);
- `length_grouping_speedup`: samples/s with `group_by_length` over without, on protein
  sequences of 10-170 residues (mean about 33);
- `ray_data_read_ratio`: rows/s of Ray Data (`read_parquet` + `map_batches` tokenizing,
  `iter_batches`) over our unit reader on the same files, reading and tokenizing only.

    python bench/data_scale.py [--rows 50000] [--steps 40]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from results_file import save  # noqa: E402
STARTED = time.perf_counter()


def write_dna(folder: Path, rows: int, *, seed: int) -> None:
    from biomed.families import get_family

    folder.mkdir(parents=True, exist_ok=True)
    per_file = 50_000
    for k, start in enumerate(range(0, rows, per_file)):
        table = get_family("dna").planted(min(per_file, rows - start), seed=seed + k)[0]
        pq.write_table(table, folder / f"part-{k:04d}.parquet", row_group_size=5_000)


def write_proteins(folder: Path, rows: int, *, seed: int) -> None:
    """Protein-like lengths: log-normal around 30 residues, cut to 10-170."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    lengths = np.clip(rng.lognormal(np.log(28), 0.55, size=rows), 10, 170).astype(int)
    alphabet = np.array(list("ACDEFGHIKLMNPQRSTVWY"))
    seqs = ["".join(rng.choice(alphabet, size=n)) for n in lengths]
    labels = ["long" if n > 30 else "short" for n in lengths]  # a signal the lengths carry
    pq.write_table(pa.table({"sequence": seqs, "label": labels}), folder / "part-0000.parquet", row_group_size=2_000)
    return float(lengths.mean())


def spec_dict(train: Path, validation: Path, *, kind: str, streaming: str, group: bool, storage: Path) -> dict:
    return {
        "name": "bench-data",
        "task": {"name": f"{kind}_classification"},
        "data": {"train_path": str(train / "*.parquet"), "validation_path": str(validation), "text_column": "sequence", "streaming": streaming},
        "model": {"backbone": "tiny-bert", **({"kmer_size": 3} if kind == "dna" else {})},
        "training": {"batch_size_per_worker": 32, "learning_rate": 1e-3, "max_seq_length": 192, "group_by_length": group},
        "storage_path": str(storage),
    }


def worker(args) -> None:
    """One worker's data path and training steps; prints a JSON line of its figures."""
    import torch

    torch.set_num_threads(1)
    from jobs.resolve import ResolvedJob
    from jobs.splits import Split, checks_for, load_splits
    from jobs.train_data import InMemoryTrain, StreamedTrain, UnitLoader
    from jobs.worker import optimizer_for

    # As a Ray Train worker does: the job the driver resolved, the indexes of its pass.
    job = ResolvedJob.from_dict(json.loads(Path(args.spec).read_text()))
    spec, family = job.spec, job.family
    indexes = json.loads(Path(args.indexes).read_text()) if args.indexes else None
    splits = load_splits(job, indexes=indexes)
    t = spec.training
    encoder = family.build_encoder(job, train_inputs=[], statistics=None)
    if isinstance(splits.train, Split):
        encoded = encoder.encode(splits.train.inputs, max_length=t.max_seq_length)
        data = InMemoryTrain(encoded, torch.from_numpy(splits.train.targets), seed=0, batch_size=t.batch_size_per_worker,
                             lengths=np.asarray(encoded.lengths()) if t.group_by_length else None)
    else:
        loader = UnitLoader(splits.train.index, spec.columns(), checks_for(spec), encoder, t.max_seq_length)
        data = StreamedTrain(loader, torch.from_numpy, seed=0, batch_size=t.batch_size_per_worker, buffer_rows=spec.data.shuffle_buffer_rows, group_by_length=t.group_by_length)
    model = family.build_model(job, encoder=encoder, labels=spec.task.labels, num_outputs=2)
    optimizer = optimizer_for(model, spec)
    first_step, timed_from, rows = None, None, 0
    for step, (batch, targets, n) in enumerate(data.batches(0, rank=0, world=1, start=0)):
        if step == args.steps:
            break
        loss = torch.nn.functional.cross_entropy(model(**batch).logits, targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if first_step is None:
            first_step = time.perf_counter() - STARTED
        if step == 4:  # steady state from the fifth step
            timed_from, rows = time.perf_counter(), 0
        elif timed_from is not None:
            rows += n
    print(json.dumps({
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "first_step_s": first_step,
        "samples_per_s": rows / (time.perf_counter() - timed_from),
    }))


def measure(spec: dict, tmp: Path, *, steps: int) -> dict:
    """The driver's pass (timed), then one fresh worker process given its result."""
    from jobs.resolve import resolve_raw
    from jobs.splits import load_splits

    started = time.perf_counter()
    job = resolve_raw(spec)
    splits = load_splits(job)
    scan_s = time.perf_counter() - started
    spec_path, index_path = tmp / "spec.json", tmp / "indexes.json"
    spec_path.write_text(json.dumps(job.to_dict()))
    index_path.write_text(json.dumps(splits.streams()))
    out = subprocess.run([sys.executable, __file__, "--worker", "--spec", str(spec_path), "--indexes", str(index_path), "--steps", str(steps)],
                         check=True, capture_output=True, text=True)
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "driver_pass_s": scan_s}


def ray_data_read_ratio(folder: Path, spec: dict) -> dict:
    """Rows/s reading and tokenizing the files: Ray Data's pipeline over our unit reader."""
    import ray

    from jobs.resolve import resolve_raw
    from jobs.splits import checks_for, load_splits
    from jobs.train_data import UnitLoader

    job = resolve_raw(spec)
    encoder = job.family.build_encoder(job, train_inputs=[], statistics=None)
    index = load_splits(job).train.index
    loader = UnitLoader(index, job.spec.columns(), checks_for(job.spec), encoder, 192)
    started = time.perf_counter()
    rows = sum(len(loader([u])[0]) for u in range(len(index.units)))
    ours = rows / (time.perf_counter() - started)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        def tokenize(batch):
            return {"n": np.array([len(x) for x in encoder.encode(list(batch["sequence"]), max_length=192).ids])}

        started = time.perf_counter()
        ds = ray.data.read_parquet(str(folder), columns=["sequence", "label"]).map_batches(tokenize, batch_size=5_000)
        seen = sum(len(b["n"]) for b in ds.iter_batches(batch_size=5_000))
        theirs = seen / (time.perf_counter() - started)
    finally:
        ray.shutdown()
    return {"ours_rows_per_s": ours, "ray_data_rows_per_s": theirs, "ratio": theirs / ours}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--spec")
    parser.add_argument("--indexes")
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        n = args.rows
        write_dna(tmp / "dna_n", n, seed=1)
        write_dna(tmp / "dna_10n", 10 * n, seed=1)
        write_dna(tmp / "dna_val", 2_000, seed=99)
        val = tmp / "dna_val" / "part-0000.parquet"
        figures = {}
        for label, folder in (("n", tmp / "dna_n"), ("10n", tmp / "dna_10n")):
            figures[f"streamed_{label}"] = measure(spec_dict(folder, val, kind="dna", streaming="on", group=False, storage=tmp), tmp, steps=args.steps)
            figures[f"in_memory_{label}"] = measure(spec_dict(folder, val, kind="dna", streaming="off", group=False, storage=tmp), tmp, steps=args.steps)
        mean_length = write_proteins(tmp / "protein", 20_000, seed=3)
        write_proteins(tmp / "protein_val", 1_000, seed=4)
        pval = tmp / "protein_val" / "part-0000.parquet"
        for group in (False, True):
            figures[f"protein_grouped_{group}".lower()] = measure(spec_dict(tmp / "protein", pval, kind="protein", streaming="on", group=group, storage=tmp), tmp, steps=args.steps)
        figures["ray_data"] = ray_data_read_ratio(tmp / "dna_n", spec_dict(tmp / "dna_n", val, kind="dna", streaming="on", group=False, storage=tmp))
    result = {
        "rows_n": n, "steps": args.steps, "protein_mean_length": mean_length,
        "rss_ratio_10x": figures["streamed_10n"]["peak_rss_mib"] / figures["streamed_n"]["peak_rss_mib"],
        "in_memory_rss_ratio_10x": figures["in_memory_10n"]["peak_rss_mib"] / figures["in_memory_n"]["peak_rss_mib"],
        "first_step_ratio_10x": figures["streamed_10n"]["first_step_s"] / figures["streamed_n"]["first_step_s"],
        "driver_pass_ratio_10x": figures["streamed_10n"]["driver_pass_s"] / figures["streamed_n"]["driver_pass_s"],
        "throughput_ratio": figures["streamed_n"]["samples_per_s"] / figures["in_memory_n"]["samples_per_s"],
        "length_grouping_speedup": figures["protein_grouped_true"]["samples_per_s"] / figures["protein_grouped_false"]["samples_per_s"],
        "ray_data_read_ratio": figures["ray_data"]["ratio"],
        "raw": figures,
    }
    for key in ("rss_ratio_10x", "in_memory_rss_ratio_10x", "first_step_ratio_10x", "driver_pass_ratio_10x", "throughput_ratio", "length_grouping_speedup", "ray_data_read_ratio"):
        print(f"{key}: {result[key]:.3f}", file=sys.stderr)
    save("data_scale", result, command=" ".join(["python", *sys.argv]))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
