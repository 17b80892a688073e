"""Driver side of `biomed pretrain`: check the corpus, train its tokenizer, run TorchTrainer,
register the best checkpoint as a version of kind `backbone`.

Before Ray starts, one pass reads the corpus a unit at a time: every row is checked (invalid
rows dropped and counted, or an error naming the file and rows), the rows kept per unit are
counted, and units are held out for validation. The tokenizer is trained from the corpus's
first `tokenizer.sample_rows` training rows, collected in the same pass, and saved in the run folder, so a resumed run
uses the same one.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import numpy as np
import ray.train

from biomed.data import Columns, fingerprint_files
from biomed.log import get_logger
from biomed.mlm import family_tokenizer
from biomed.models import backbone_tokenizer
from biomed.streams import StreamIndex, scan
from cluster.capacity import wait_for_capacity
from cluster.storage import check_storage_shared
from cluster.connect import connect
from jobs.errors import TrainingFailed
from jobs.pretrain_recipe import corpus_checks, corpus_encoder
from jobs.pretrain_spec import PretrainSpec
from jobs.registry import registry_for
from jobs.trainer import build_trainer, run_name, worker_demand
from jobs.worker import METRICS_FILE, MODEL_DIR

log = get_logger(__name__)
TOKENIZER_DIR = "tokenizer"


class CorpusError(ValueError):
    """A corpus that cannot be pretrained on (too few rows or units left after the checks)."""


class TokenizerSample:
    """The first `limit` rows of the training units, prepared for the tokenizer (k-mer cut,
    residue spacing), taken during the corpus pass so the tokenizer needs no second pass (which
    would parse every SMILES again). Kept per unit, so held-out units stay out of it."""

    def __init__(self, spec: PretrainSpec):
        self.limit, self.prepare = spec.tokenizer.sample_rows, corpus_encoder(spec, None).sequences.prepare
        self.parts: list[list[str]] = []  # one per unit, in the scan's unit order
        self.taken = 0
        self.train_units: list[int] | None = None  # set once units are held out; None: every unit

    def update(self, examples) -> None:
        part = self.prepare(examples.inputs[: max(self.limit - self.taken, 0)])
        self.parts.append(part)
        self.taken += len(part)

    def result(self) -> dict:
        return {"rows": self.taken}

    def texts(self) -> Iterator[str]:
        units = range(len(self.parts)) if self.train_units is None else self.train_units
        return (text for u in units for text in self.parts[u])


def corpus_indexes(spec: PretrainSpec, *, sample: TokenizerSample | None = None) -> dict[str, StreamIndex]:
    """{"train", "validation"}: the corpus's checked units, with units held out when no
    validation_path is given (seeded, `validation_fraction` of them, at least one); `sample`
    collects the training rows the tokenizer learns from in the same pass."""
    c = spec.corpus
    columns, checks = Columns(input=c.column), corpus_checks(spec)
    train = scan(c.train_path, columns=columns, statistics={"tokenizer_sample": sample} if sample else None, **checks)
    if c.validation_path:
        validation = scan(c.validation_path, columns=columns, **checks)
    else:
        usable = [u for u, k in enumerate(train.kept_rows) if k]
        if len(usable) < 2:
            raise CorpusError(
                f"corpus.train_path has {len(usable)} unit(s) with valid rows (a unit is a Parquet row group or a file): "
                "give corpus.validation_path, or split the corpus into more files or row groups"
            )
        count = min(max(1, round(c.validation_fraction * len(usable))), len(usable) - 1)
        held = set(np.random.default_rng([c.seed, 17]).choice(usable, size=count, replace=False).tolist())
        kept = [u for u in range(len(train.units)) if u not in held]
        if sample is not None:
            sample.train_units = kept
        train, validation = _subset(train, kept), _subset(train, sorted(held))
    if validation.num_rows == 0 or train.num_rows == 0:
        raise CorpusError(f"no valid rows left in the corpus's {'validation' if train.num_rows else 'training'} part after the checks")
    return {"train": train, "validation": validation}


def corpus_report(indexes: dict[str, StreamIndex]) -> dict:
    """Per part of the corpus: rows kept, units, and the rows the checks dropped (counted per file)."""
    return {role: {"rows": index.num_rows, "units": len(index.units), "dropped": index.dropped} for role, index in indexes.items()}


def _subset(index: StreamIndex, units: list[int]) -> StreamIndex:
    return StreamIndex(files=index.files, units=[index.units[u] for u in units], kept_rows=[index.kept_rows[u] for u in units], dropped=index.dropped)


def corpus_tokenizer(spec: PretrainSpec, sample: TokenizerSample, directory: Path):
    """The run's tokenizer, saved under `directory` (reused as it is when already there)."""
    from transformers import AutoTokenizer

    if (directory / "tokenizer.json").is_file() or (directory / "vocab.txt").is_file():
        return AutoTokenizer.from_pretrained(directory)
    m, t = spec.model, spec.tokenizer
    tokenizer = backbone_tokenizer(backbone=m.backbone, path=None, input_kind=spec.family) if m.backbone else None
    if tokenizer is None:
        tokenizer = family_tokenizer(spec.family, t.kind, sample.texts(), vocab_size=t.vocab_size, min_frequency=t.min_frequency, kmer_size=t.kmer_size)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(directory)
    return tokenizer


def pretrain(spec: PretrainSpec, *, address: str | None = None) -> dict:
    """Pretrain per the spec on Ray Train, register the best checkpoint as a backbone, return a summary."""
    started = time.perf_counter()
    sample = TokenizerSample(spec)
    indexes = corpus_indexes(spec, sample=sample)  # bad data fails here, before any cluster or worker starts
    fingerprint = fingerprint_files(spec.files())
    name = run_name(spec, fingerprint)
    run_dir = Path(spec.storage_path) / name
    tokenizer = corpus_tokenizer(spec, sample, run_dir / TOKENIZER_DIR)
    passed = time.perf_counter()
    resources = connect(address=address)
    log.info("pretraining %s → %s on %s (%d rows, vocabulary %d)", name, run_dir, resources, indexes["train"].num_rows, len(tokenizer))
    check_storage_shared(spec.storage_path, given=spec.storage_given)
    wait_for_capacity(worker_demand(spec.scaling), fixed_size=resources["fixed_size"])
    extra = {"tokenizer_dir": str(run_dir / TOKENIZER_DIR), **{f"{role}_index": index.to_dict() for role, index in indexes.items()}}
    try:
        result = build_trainer(spec, name=name, loop="pretrain", extra_config=extra).fit()
    except ray.train.TrainingFailedError as error:
        raise TrainingFailed(f"run {name} failed after {spec.failure.max_failures} retries: {error}") from error
    candidates = [(c, m) for c, m in result.best_checkpoints if not np.isnan(m.get("val_loss", float("nan")))]
    if not candidates:
        raise TrainingFailed(f"run {name} produced no validated checkpoint")
    ckpt, metrics = min(candidates, key=lambda cm: (cm[1]["val_loss"], -cm[1]["step"]))
    record = {
        "kind": "backbone", "family": spec.family, "spec_hash": spec.spec_hash(), "data_fingerprint": fingerprint,
        "corpus_fingerprint": fingerprint, "run_name": name, "run_path": str(run_dir), "source_checkpoint": ckpt.path,
        "steps": int(metrics["step"]), "val_metrics": {k: v for k, v in metrics.items() if k.startswith("val_")},
        "corpus": corpus_report(indexes),
        "curve_csv": str(run_dir / METRICS_FILE), "spec": spec.model_dump(mode="json"),
    }
    selection = {"metric": "val_loss", "mode": "min", "value": metrics["val_loss"]}
    entry = registry_for(spec.registry_storage).register(name=spec.name, model_dir=Path(ckpt.path) / MODEL_DIR, record=record, selection=selection)
    return {
        "name": spec.name, "kind": "backbone", "run_name": name, "run_path": str(run_dir),
        "registered": {"version": entry["version"], "path": entry["path"], "is_best": entry["is_best"]},
        "selection": selection, "val_metrics": record["val_metrics"], "steps": record["steps"], "corpus": record["corpus"],
        "vocab_size": len(tokenizer), "metrics_csv": str(run_dir / METRICS_FILE),
        # Rank 0's figures at its last report (bench/pretrain_scale.py reads them).
        "last_report": {k: (result.metrics or {}).get(k) for k in ("train_tokens_per_s", "setup_seconds", "first_step_seconds", "peak_rss_mb")},
        "timing_s": {"corpus_pass": round(passed - started, 3), "total": round(time.perf_counter() - started, 3)},
    }
