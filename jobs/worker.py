"""The per-worker training loop run by Ray Train's TorchTrainer (DDP over num_workers).

Resume contract: a reported checkpoint holds the HF model folder plus training_state.pt
(optimizer, scheduler, scaler, epoch, learning curve). On a restart every rank loads the latest
committed checkpoint and redoes the next epoch; epoch order is a function of (seed, epoch), so
a redone epoch sees the same shards it would have seen.
"""

from __future__ import annotations

import contextlib
import csv
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from safetensors.torch import load_file

from biomed.checkpoint import raw_outputs, save_model_checkpoint
from biomed.encoding import build_encoder
from biomed.inputs import validator_to_dict
from biomed.log import configure as configure_logging
from biomed.log import get_logger
from biomed.models import backbone_tokenizer, build_classifier, is_head_parameter
from biomed.tasks import get_task
from cluster.ray_compat import quiet_train_worker_reports
from jobs.spec import JobSpec
from jobs.splits import input_validator, load_splits

STATE_FILE = "training_state.pt"
MODEL_DIR = "model"
METRICS_FILE = "metrics.csv"
CURVE_FIELDS = ("kind", "epoch", "step", "train_loss", "learning_rate", "val_metric", "value", "samples_per_s", "epoch_seconds", "checkpoint_seconds")

log = get_logger(__name__)


def epoch_batches(num_rows: int, *, epoch: int, seed: int, rank: int, world: int, batch_size: int) -> list[np.ndarray]:
    """This rank's batches for an epoch: every row once across ranks, same step count on each.

    Ranks' shards differ by at most one row; splitting each into the same number of nearly equal
    batches keeps DDP's collective calls aligned without padding or repeating examples.
    """
    order = np.random.default_rng([seed, epoch]).permutation(num_rows)
    shard = order[rank::world]
    num_steps = math.ceil(math.ceil(num_rows / world) / batch_size)
    return [b for b in np.array_split(shard, num_steps) if b.size]


def _dtype(precision: str) -> torch.dtype | None:
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)


def _optimizer(model: torch.nn.Module, spec: JobSpec) -> torch.optim.Optimizer:
    t = spec.training
    groups: dict[tuple[bool, bool], list] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        decays = not (param.ndim < 2 or "LayerNorm" in name or "bias" in name)
        groups.setdefault((is_head_parameter(name), decays), []).append(param)
    return torch.optim.AdamW(
        [
            {
                "params": params,
                "lr": (t.head_learning_rate or t.learning_rate) if head else t.learning_rate,
                "weight_decay": t.weight_decay if decays else 0.0,
            }
            for (head, decays), params in sorted(groups.items())
        ]
    )


def _class_weights(label_ids: np.ndarray, num_classes: int, scheme: str) -> torch.Tensor | None:
    if scheme == "none":
        return None
    counts = np.bincount(label_ids, minlength=num_classes).astype(np.float64)
    weights = np.where(counts > 0, label_ids.size / (num_classes * np.maximum(counts, 1)), 0.0)
    return torch.tensor(weights, dtype=torch.float32)


def _gather(obj, world: int) -> list:
    if world == 1:
        return [obj]
    out = [None] * world
    dist.all_gather_object(out, obj)
    return out


def _write_curve(run_dir: Path, curve: list[dict]) -> None:
    # Rewritten whole from the checkpointed history each epoch, so a redone epoch never leaves
    # rows of the attempt that was lost.
    tmp = run_dir / f".{METRICS_FILE}.tmp"
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CURVE_FIELDS)
        writer.writeheader()
        writer.writerows(curve)
    tmp.replace(run_dir / METRICS_FILE)


def target_scaling(spec: JobSpec, train_targets: np.ndarray) -> dict | None:
    """Mean and std of a regression target on the training split (None for other targets)."""
    if get_task(spec.task.name).target_kind != "regression":
        return None
    std = float(train_targets.std())
    return {"mean": float(train_targets.mean()), "std": std if std > 1e-12 else 1.0}


def _training_targets(targets: np.ndarray, scaling: dict | None) -> torch.Tensor:
    if scaling is not None:
        return torch.from_numpy((targets - scaling["mean"]) / scaling["std"]).float()
    return torch.from_numpy(targets)


def checkpoint_metadata(spec: JobSpec, *, scaling: dict | None) -> dict:
    """What biomed.json records beyond the HF folder (the encoder adds its own part)."""
    return {
        "task": spec.task.name,
        "labels": spec.task.labels or [],
        "max_seq_length": spec.training.max_seq_length,
        "text_column": spec.data.text_column,
        "validator": validator_to_dict(input_validator(spec)),
        "target_scaling": scaling,
        "name": spec.name,
    }


def _report_with_checkpoint(spec: JobSpec, model, encoder, *, metadata: dict, metrics: dict, val_scores: dict, state: dict) -> None:
    epoch = state["epoch"]
    metadata = {**metadata, "epoch": epoch, "val_metrics": val_scores}
    with tempfile.TemporaryDirectory() as tmp:
        save_model_checkpoint(model, encoder, Path(tmp) / MODEL_DIR, metadata)
        torch.save(state, Path(tmp) / STATE_FILE)
        # Named by epoch, not time: a redone epoch overwrites the orphan of a lost report.
        ray.train.report(
            metrics,
            checkpoint=ray.train.Checkpoint.from_directory(tmp),
            checkpoint_dir_name=f"checkpoint_epoch_{epoch:04d}",
        )


def _load_state(checkpoint: ray.train.Checkpoint, model, optimizer, scheduler, scaler) -> dict:
    with checkpoint.as_directory() as directory:
        weights = load_file(str(Path(directory) / MODEL_DIR / "model.safetensors"))
        # save_pretrained may drop tied weights; strict=False tolerates exactly those.
        missing, unexpected = model.load_state_dict(weights, strict=False)
        if unexpected:
            raise RuntimeError(f"checkpoint has unexpected weights: {unexpected[:5]}")
        state = torch.load(Path(directory) / STATE_FILE, weights_only=True, map_location="cpu")
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    return state


def train_loop_per_worker(config: dict) -> None:
    """Ray Train entry point; `config` is {"spec": plain dict, "run_dir": str, "verbosity": str}."""
    entered, entered_at = time.perf_counter(), time.time()
    # This worker's own handler (not Ray's root one, which would print each line twice); its
    # stderr reaches the driver through Ray's log forwarding.
    configure_logging(config.get("verbosity", "default"))
    quiet_train_worker_reports(verbose=config.get("verbosity") == "verbose")
    spec = JobSpec.model_validate(config["spec"])
    run_dir = Path(config["run_dir"])
    from transformers import get_linear_schedule_with_warmup

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    t = spec.training
    torch.manual_seed(t.seed)
    task = get_task(spec.task.name)
    labels = spec.task.labels or []

    splits = load_splits(spec)
    m = spec.model
    encoder = build_encoder(
        task.input_kind,
        train_inputs=splits.train.inputs,
        backbone_tokenizer=backbone_tokenizer(backbone=m.backbone, path=m.path, input_kind=task.input_kind),
        kmer_size=m.kmer_size,
        kmer_stride=m.kmer_stride,
        numeric=spec.data.numeric_columns,
        categorical=spec.data.categorical_columns,
    )
    train_enc = encoder.encode(splits.train.inputs, max_length=t.max_seq_length)
    val_enc = encoder.encode(splits.validation.inputs, max_length=t.max_seq_length)
    scaling = target_scaling(spec, splits.train.targets)
    train_targets = _training_targets(splits.train.targets, scaling)
    metadata = checkpoint_metadata(spec, scaling=scaling)
    class_weights = None
    if task.target_kind == "classification":
        class_weights = _class_weights(splits.train.targets, len(labels), t.class_weighting)

    model = build_classifier(
        backbone=m.backbone, path=m.path, labels=labels, num_outputs=task.target.num_outputs(len(labels)), dropout=t.dropout,
        vocab_size=getattr(encoder, "vocab_size", 0), num_features=getattr(encoder, "num_features", 0), hidden_sizes=m.hidden_sizes,
        pooling=m.pooling,
    )
    model = ray.train.torch.prepare_model(model)
    if class_weights is not None:
        class_weights = class_weights.to(device)
    core = model.module if hasattr(model, "module") else model

    steps_per_epoch = len(epoch_batches(len(train_enc), epoch=0, seed=t.seed, rank=rank, world=world, batch_size=t.batch_size_per_worker))
    updates_per_epoch = math.ceil(steps_per_epoch / t.gradient_accumulation_steps)
    total_updates = updates_per_epoch * t.epochs
    optimizer = _optimizer(model, spec)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(t.warmup_ratio * total_updates), total_updates)
    dtype = _dtype(t.precision)
    scaler = torch.amp.GradScaler(device.type, enabled=t.precision == "fp16")

    start_epoch, curve, attempt_starts = 0, [], []
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        state = _load_state(checkpoint, core, optimizer, scheduler, scaler)
        start_epoch, curve, attempt_starts = state["epoch"], state["curve"], state["attempt_start_epochs"]
        if rank == 0:
            log.info("resuming %s from the checkpoint of epoch %d", run_dir.name, start_epoch)
    attempt_starts = attempt_starts + [start_epoch]
    setup_seconds = time.perf_counter() - entered

    for epoch in range(start_epoch, t.epochs):
        model.train()
        batches = epoch_batches(len(train_enc), epoch=epoch, seed=t.seed, rank=rank, world=world, batch_size=t.batch_size_per_worker)
        loss_sum = torch.zeros(2, dtype=torch.float64)
        started = time.perf_counter()
        for step, rows in enumerate(batches):
            last_micro = (step + 1) % t.gradient_accumulation_steps == 0 or step == len(batches) - 1
            batch = {k: v.to(device) for k, v in train_enc.batch(rows).items()}
            targets = train_targets[rows].to(device)
            # Gradients all-reduce only on the micro-batch that ends an accumulation window.
            sync = contextlib.nullcontext() if (last_micro or world == 1) else model.no_sync()
            with sync:
                with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                    logits = model(**batch).logits
                loss = task.target.loss(logits, targets, class_weights)
                scaler.scale(loss / t.gradient_accumulation_steps).backward()
            loss_sum += torch.tensor([loss.item() * len(rows), len(rows)], dtype=torch.float64)
            if last_micro:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), t.max_grad_norm)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                if rank == 0:
                    curve.append({"kind": "step", "epoch": epoch + 1, "step": scheduler.last_epoch, "train_loss": round(loss.item(), 6), "learning_rate": scheduler.get_last_lr()[0]})
        train_seconds = time.perf_counter() - started
        if world > 1:
            dist.all_reduce(loss_sum)
        train_loss = float(loss_sum[0] / loss_sum[1])

        val_rows = np.arange(rank, len(val_enc), world)
        local = raw_outputs(model, val_enc, val_rows, batch_size=t.eval_batch_size, device=device, dtype=dtype)
        gathered = _gather((val_rows, local), world)
        outputs = np.zeros((len(val_enc), task.target.num_outputs(len(labels))), dtype=np.float32)
        for rows, out in gathered:
            outputs[rows] = out
        scores = task.compute_metrics(splits.validation.targets, task.target.predictions(outputs, scaling))
        metrics = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            **{f"val_{k}": v for k, v in scores.items()},
            "train_samples_per_s": float(loss_sum[1]) / max(train_seconds, 1e-9),
            "train_seconds": train_seconds,
            "epoch_seconds": time.perf_counter() - started,
            "learning_rate": scheduler.get_last_lr()[0],
            # Time in this function before the first epoch of this attempt (data, tokenizer, model).
            "setup_seconds": setup_seconds,
            # Wall-clock time this attempt's train function started (start-up cost accounting).
            "train_fn_started_at": entered_at,
        }

        if rank == 0:
            curve.append({
                "kind": "epoch", "epoch": epoch + 1, "train_loss": round(train_loss, 6), "val_metric": spec.metric,
                "value": scores[spec.metric], "samples_per_s": round(metrics["train_samples_per_s"], 3),
                "epoch_seconds": round(time.perf_counter() - started, 4),
            })
            reporting = time.perf_counter()
            state = {
                "epoch": epoch + 1,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "curve": curve,
                "attempt_start_epochs": attempt_starts,
            }
            _report_with_checkpoint(spec, core, encoder, metadata=metadata, metrics=metrics, val_scores=scores, state=state)
            curve[-1]["checkpoint_seconds"] = round(time.perf_counter() - reporting, 4)
            _write_curve(run_dir, curve)
            shown = " ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k.startswith("val_"))
            log.info("epoch %d/%d train_loss=%.4f %s (%.1f samples/s)", epoch + 1, t.epochs, train_loss, shown, metrics["train_samples_per_s"])
        else:
            ray.train.report(metrics, checkpoint=None)

