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
from typing import Iterator, Sequence

import numpy as np

from biomed.data import Columns, fingerprint_files
from biomed.families import get_family
from biomed.log import get_logger
from biomed.mlm import family_tokenizer
from biomed.streams import StreamIndex, scan
from jobs.errors import TrainingFailed
from jobs.lifecycle import HookCaller, RunHooks, RunInfo, register, run
from jobs.pretrain_recipe import corpus_checks, corpus_encoder
from jobs.pretrain_spec import PretrainSpec, resolve_pretrain
from jobs.trainer import build_trainer, run_name
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
    train = scan(c.files_of("train_path"), columns=columns, statistics={"tokenizer_sample": sample} if sample else None, **checks)
    if c.validation_path:
        validation = scan(c.files_of("validation_path"), columns=columns, **checks)
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
    tokenizer = get_family(spec.family).backbones[m.backbone].tokenizer() if m.backbone else None
    if tokenizer is None:
        tokenizer = family_tokenizer(spec.family, t.kind, sample.texts(), vocab_size=t.vocab_size, min_frequency=t.min_frequency, kmer_size=t.kmer_size)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(directory)
    return tokenizer


class PretrainJob:
    """A pretraining run as the lifecycle runs it: the corpus pass and tokenizer on the driver,
    the TorchTrainer, and the best checkpoint (lowest masked-token loss) registered as a backbone."""

    def __init__(self, spec: PretrainSpec, *, storage_given: str):
        self.spec, self.storage_given = spec, storage_given
        self.fingerprint = fingerprint_files(spec.files())
        self.name = run_name(spec, self.fingerprint)
        self.run_dir = Path(spec.storage_path) / self.name
        self.info = RunInfo(kind="pretrain", name=spec.name, run_name=self.name, run_path=str(self.run_dir))

    def prepare(self) -> None:
        started = time.perf_counter()
        sample = TokenizerSample(self.spec)
        self.indexes = corpus_indexes(self.spec, sample=sample)  # bad data fails here, before any cluster or worker starts
        self.tokenizer = corpus_tokenizer(self.spec, sample, self.run_dir / TOKENIZER_DIR)
        self.corpus_pass_s = time.perf_counter() - started
        log.info("pretraining %s (%d rows, vocabulary %d)", self.name, self.indexes["train"].num_rows, len(self.tokenizer))

    def trainer(self, callbacks: list):
        payload = {
            "spec": self.spec.model_dump(mode="json"), "tokenizer_dir": str(self.run_dir / TOKENIZER_DIR),
            **{f"{role}_index": index.to_dict() for role, index in self.indexes.items()},
        }
        return build_trainer(self.spec, name=self.name, payload=payload, callbacks=callbacks, loop="pretrain")

    def finish(self, result, caller: HookCaller) -> dict:
        candidates = [(c, m) for c, m in result.best_checkpoints if not np.isnan(m.get("val_loss", float("nan")))]
        if not candidates:
            raise TrainingFailed(f"run {self.name} produced no validated checkpoint")
        ckpt, metrics = min(candidates, key=lambda cm: (cm[1]["val_loss"], -cm[1]["step"]))
        spec, run_dir = self.spec, self.run_dir
        record = {
            "kind": "backbone", "family": spec.family, "spec_hash": spec.spec_hash(), "data_fingerprint": self.fingerprint,
            "corpus_fingerprint": self.fingerprint, "run_name": self.name, "run_path": str(run_dir), "source_checkpoint": ckpt.path,
            "steps": int(metrics["step"]), "val_metrics": {k: v for k, v in metrics.items() if k.startswith("val_")},
            "corpus": corpus_report(self.indexes),
            "curve_csv": str(run_dir / METRICS_FILE), "spec": spec.model_dump(mode="json"),
        }
        selection = {"metric": "val_loss", "mode": "min", "value": metrics["val_loss"]}
        entry = register(self.info, registry_storage=spec.registry_storage, model_dir=Path(ckpt.path) / MODEL_DIR, record=record, selection=selection, caller=caller)
        return {
            "name": spec.name, "kind": "backbone", "run_name": self.name, "run_path": str(run_dir),
            "registered": {"version": entry["version"], "path": entry["path"], "is_best": entry["is_best"]},
            "selection": selection, "val_metrics": record["val_metrics"], "steps": record["steps"], "corpus": record["corpus"],
            "vocab_size": len(self.tokenizer), "metrics_csv": str(run_dir / METRICS_FILE),
            # Rank 0's figures at its last report (bench/pretrain_scale.py reads them).
            "last_report": {k: (result.metrics or {}).get(k) for k in ("train_tokens_per_s", "setup_seconds", "first_step_seconds", "peak_rss_mb")},
            "timing_s": {"corpus_pass": round(self.corpus_pass_s, 3)},
        }


def pretrain(spec: PretrainSpec, *, address: str | None = None, hooks: Sequence[RunHooks] = ()) -> dict:
    """Pretrain per the spec on Ray Train, register the best checkpoint as a backbone, return a summary."""
    return run(PretrainJob(resolve_pretrain(spec), storage_given=spec.storage_path), address=address, hooks=hooks)
