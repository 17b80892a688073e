"""Streamed data: many files and globs, checks in the stream, a deterministic shuffled order that
sees every row once per epoch on any world size, exact resume, and the same model as in memory."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

from biomed.families.protein.planted import MOTIF
from biomed.families.sequence.planted import motif_table
from biomed.batching import assign_units, epoch_batches, stream_batch_sizes, stream_windows, window_order
from jobs.cli import main
from jobs.resolve import resolve_raw
from jobs.splits import checks_for, load_splits
from jobs.train_data import StreamedTrain, UnitLoader
from jobs.worker import MODEL_DIR, STATE_FILE
from tests.conftest import committed, family_spec, run_killed_once, write_spec



def _proteins(num_rows: int, *, seed: int):
    """The protein family's planted motif table (column `sequence`)."""
    return motif_table(num_rows, seed=seed, alphabet="ACDEFGHIKLMNPQRSTVY", motif=MOTIF)

def _write_parts(table: pa.Table, folder: Path, *, parts: int, row_group_size: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    bounds = np.linspace(0, table.num_rows, parts + 1).astype(int)
    paths = []
    for k in range(parts):
        path = folder / f"part-{k:03d}.parquet"
        pq.write_table(table.slice(bounds[k], bounds[k + 1] - bounds[k]), path, row_group_size=row_group_size)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def protein_parts(tmp_path_factory) -> Path:
    """Planted-motif protein data: training as 3 Parquet files of 40-row groups, plus files."""
    root = tmp_path_factory.mktemp("streamed")
    _write_parts(_proteins(400, seed=1), root / "train", parts=3, row_group_size=40)
    pq.write_table(_proteins(120, seed=3), root / "validation.parquet")
    _write_parts(_proteins(150, seed=2), root / "test", parts=2, row_group_size=25)
    return root


def streamed_spec(root: Path, storage: Path, *, data: dict | None = None, **overrides) -> dict:
    spec = family_spec("protein", root, storage, **overrides)
    spec["data"] = {
        "train_path": str(root / "train" / "*.parquet"), "validation_path": str(root / "validation.parquet"),
        "test_path": str(root / "test" / "*.parquet"), "text_column": "sequence", "streaming": "on", **(data or {}),
    }
    return spec


def test_a_glob_is_a_sorted_data_set_and_streams_when_asked(protein_parts, tmp_path):
    spec = resolve_raw(streamed_spec(protein_parts, tmp_path))
    assert [Path(p).name for p in spec.spec.data.train_path] == ["part-000.parquet", "part-001.parquet", "part-002.parquet"]
    splits = load_splits(spec)
    assert splits.report["streamed"] == ["train"]  # validation and test are under in_memory_max_rows
    assert splits.report["rows"] == {"train": 400, "validation": 120, "test": 150}
    index = splits.train.index
    assert len(index.units) == 12 and sum(index.kept_rows) == 400  # 3 files of 3-4 row groups
    counts = splits.report["class_counts"]["train"]
    assert sum(counts.values()) == 400 and min(counts.values()) > 100  # from the streaming pass
    small = resolve_raw(streamed_spec(protein_parts, tmp_path, data={"in_memory_max_rows": 100}))
    assert load_splits(small).report["streamed"] == ["train", "validation", "test"]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"train_path": "{root}/nothing/*.parquet"}, "matches no file"),
        ({"train_path": ["{root}/train/part-000.parquet", "{root}/missing.parquet"]}, "file not found: '{root}/missing.parquet'"),
        ({"train_path": ["{root}/train/part-000.parquet", "{root}/garbage.parquet"]}, "'{root}/garbage.parquet' is not a readable PARQUET file"),
        ({"text_column": "seq"}, "column 'seq' is not a column of '{root}/train/part-000.parquet'"),
        ({"train_path": ["{root}/train/part-000.parquet", "{root}/odd/part-000.parquet"]}, "'{root}/odd/part-000.parquet' has a different schema from '{root}/train/part-000.parquet' (extra columns ['site'])"),
        ({"train_path": ["{root}/train/part-000.parquet", "{root}/typed/part-000.parquet"]}, "column 'label' is double, not string"),
    ],
)
def test_bad_data_sets_exit_2_naming_the_file_before_ray(protein_parts, tmp_path, capsys, change, message):
    root = str(protein_parts)
    odd = _proteins(20, seed=4)
    odd = odd.append_column("site", pa.array(["a"] * 20))
    _write_parts(odd, protein_parts / "odd", parts=1, row_group_size=10)
    typed = _proteins(20, seed=4)
    typed = typed.set_column(1, "label", pa.array([float(i % 2) for i in range(20)]))
    _write_parts(typed, protein_parts / "typed", parts=1, row_group_size=10)
    (protein_parts / "garbage.parquet").write_bytes(b"not parquet at all")
    data = {k: (v.format(root=root) if isinstance(v, str) else [x.format(root=root) for x in v]) for k, v in change.items()}
    path = write_spec(tmp_path / "spec.yaml", streamed_spec(protein_parts, tmp_path, data=data))
    assert main(["validate", str(path)]) == 2
    assert message.format(root=root) in capsys.readouterr().err


def test_a_bad_row_in_the_stream_names_its_file_and_row(protein_parts, tmp_path, capsys):
    table = _proteins(100, seed=5)
    sequences = table.column("sequence").to_pylist()
    sequences[67] = sequences[67][:5] + "@" + sequences[67][6:]
    table = table.set_column(0, "sequence", pa.array(sequences))
    bad = _write_parts(table, tmp_path / "bad", parts=1, row_group_size=30)[0]
    files = [str(p) for p in sorted((protein_parts / "train").glob("*.parquet"))] + [str(bad)]
    path = write_spec(tmp_path / "spec.yaml", streamed_spec(protein_parts, tmp_path, data={"train_path": files}))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: 1 invalid inputs in column 'sequence': row 67:" in err and sequences[67] not in err
    dropped = streamed_spec(protein_parts, tmp_path, data={"train_path": files, "invalid_inputs": "drop"})
    splits = load_splits(resolve_raw(dropped))
    assert splits.report["rows"]["train"] == 499
    assert splits.report["dropped"]["train"] == [{"file": bad.name, "reason": splits.report["dropped"]["train"][0]["reason"], "count": 1, "first_rows": [67]}]


@pytest.mark.parametrize("world", [1, 2, 3])
def test_every_row_once_per_epoch_on_any_world_size(world):
    kept = [40, 40, 17, 40, 40, 3, 0, 40, 40, 25, 40, 40]
    total, batch_size = sum(kept), 8
    for epoch in range(3):
        shares = assign_units(kept, epoch=epoch, seed=7, world=world)
        assert sorted(u for share in shares for u in share) == [u for u, k in enumerate(kept) if k]
        sizes = [stream_batch_sizes(sum(kept[u] for u in share), total_rows=total, world=world, batch_size=batch_size) for share in shares]
        assert len({len(s) for s in sizes}) == 1  # the same number of steps on every rank
        assert all(max(s) <= batch_size + 2 for s in sizes)
        windows = stream_windows(shares[0], kept, buffer_rows=100)
        assert sorted(u for w in windows for u in w) == sorted(shares[0])
    assert assign_units(kept, epoch=1, seed=7, world=2) == assign_units(kept, epoch=1, seed=7, world=2)
    assert assign_units(kept, epoch=1, seed=7, world=2) != assign_units(kept, epoch=2, seed=7, world=2)
    lengths = np.random.default_rng(0).integers(10, 170, size=500)
    order = window_order(500, epoch=0, seed=1, rank=0, window=0, batch_size=4, lengths=lengths)
    assert sorted(order) == list(range(500)) and (np.diff(lengths[order[:200].reshape(50, 4)], axis=1) <= 0).all()


@pytest.mark.parametrize("grouped", [False, True])
def test_one_window_on_one_worker_is_the_in_memory_order(grouped):
    lengths = np.random.default_rng(1).integers(10, 170, size=333) if grouped else None
    for epoch in range(3):
        in_memory = epoch_batches(333, epoch=epoch, seed=5, rank=0, world=1, batch_size=16, lengths=lengths)
        order = window_order(333, epoch=epoch, seed=5, rank=0, window=0, batch_size=16, lengths=lengths)
        sizes = stream_batch_sizes(333, total_rows=333, world=1, batch_size=16)
        streamed = np.split(order, np.cumsum(sizes)[:-1])
        assert len(in_memory) == len(streamed) and all((a == b).all() for a, b in zip(in_memory, streamed))


def _stream(job, *, group_by_length=False):
    splits = load_splits(job)
    encoder = job.family.build_encoder(job, train_inputs=[], statistics=None)
    loader = UnitLoader(splits.train.index, job.spec.columns(), checks_for(job.spec), encoder, 64)
    return StreamedTrain(loader, torch.from_numpy, seed=3, batch_size=16, buffer_rows=90, group_by_length=group_by_length)


def test_a_resumed_stream_goes_on_with_the_next_batch(protein_parts, tmp_path):
    spec = resolve_raw(streamed_spec(protein_parts, tmp_path))
    seen = []
    for rank in range(2):
        stream = _stream(spec, group_by_length=True)
        full = list(stream.batches(1, rank=rank, world=2, start=0))
        resumed = list(stream.batches(1, rank=rank, world=2, start=5))
        assert len(resumed) == len(full) - 5
        for (a, ta, _), (b, tb, _) in zip(full[5:], resumed):
            assert all((a[k] == b[k]).all() for k in a) and (ta == tb).all()
        seen.append(sum(n for _, _, n in full))
    assert sum(seen) == 400


def _weights(summary: dict) -> dict:
    return load_file(str(Path(summary["registered"]["path"]) / "model.safetensors"))


def test_streamed_and_in_memory_train_the_same_model(ray_cluster, protein_parts, tmp_path):
    from jobs.train import train

    training = {"epochs": 2, "batch_size_per_worker": 16, "learning_rate": 3e-3, "max_seq_length": 64, "warmup_ratio": 0.05}
    one_window = {"shuffle_buffer_rows": 1000}
    in_memory = train(resolve_raw(streamed_spec(protein_parts, tmp_path / "a", data={"streaming": "off"}, training=training)))
    streamed = train(resolve_raw(streamed_spec(protein_parts, tmp_path / "b", data=one_window, training=training)))
    assert in_memory["data"]["streamed"] == [] and streamed["data"]["streamed"] == ["train"]
    a, b = _weights(in_memory), _weights(streamed)
    assert a.keys() == b.keys() and all(np.allclose(a[k].numpy(), b[k].numpy(), atol=1e-6) for k in a)
    assert streamed["test_metrics"]["auroc"] == pytest.approx(in_memory["test_metrics"]["auroc"], abs=1e-6)
    meta = json.loads((Path(streamed["registered"]["path"]) / "biomed.json").read_text())
    assert meta["data"]["streamed"] == ["train"] and meta["data"]["training_statistics"]["targets"]["class_counts"]


def test_two_workers_stream_every_split_learn_the_signal_and_resume_a_killed_run_exactly(ray_cluster, protein_parts, tmp_path):
    from jobs.train import train

    def spec_in(storage: Path):
        raw = streamed_spec(
            protein_parts, storage, data={"in_memory_max_rows": 100, "shuffle_buffer_rows": 60, "baseline_max_rows": 80},
            scaling={"num_workers": 2}, failure={"max_failures": 2},
            training={"epochs": 3, "batch_size_per_worker": 4, "learning_rate": 3e-3, "max_seq_length": 64, "warmup_ratio": 0.05},
            checkpointing={"every_n_steps": 10, "eval_every_n_steps": 25, "num_to_keep": 2},
        )
        job = resolve_raw(raw)
        return job, Path(job.spec.storage_path) / job.run_name

    spec, whole_dir = spec_in(tmp_path / "uninterrupted")
    whole = train(spec)
    assert whole["data"]["streamed"] == ["train", "validation", "test"]
    assert whole["test_metrics"]["auroc"] > 0.9  # the planted motif was learned
    assert whole["baseline_test_metrics"]["train_rows"] <= 120 and whole["baseline_test_metrics"]["test_rows"] <= 120
    steps = [int(r["step"]) for r in csv.DictReader(open(whole["metrics_csv"])) if r["kind"] == "step"]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) == 3 * 50  # ceil(ceil(400 / 2) / 4) steps per epoch

    killed_spec, killed_dir = spec_in(tmp_path / "killed")
    resumed = run_killed_once(lambda: train(killed_spec), ready=committed(killed_dir, "checkpoint_epoch_0001_batch_"))
    last = "checkpoint_epoch_0003"
    _, (epochs_done, batches_done, step) = torch.load(killed_dir / last / STATE_FILE, weights_only=True)["attempt_start_positions"]
    # Resumed inside epoch 2 from a step checkpoint, mid-stream: at most 10 steps lost.
    assert epochs_done == 1 and batches_done > 0 and step % 10 == 0
    ours = load_file(str(killed_dir / last / MODEL_DIR / "model.safetensors"))
    reference = load_file(str(whole_dir / last / MODEL_DIR / "model.safetensors"))
    assert ours.keys() == reference.keys()
    assert all(torch.allclose(ours[k], reference[k], atol=1e-5, rtol=1e-4) for k in reference)
    assert resumed["selection"] == whole["selection"]
    assert resumed["test_metrics"]["auroc"] == pytest.approx(whole["test_metrics"]["auroc"], abs=1e-6)
