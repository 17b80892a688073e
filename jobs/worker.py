"""The pieces of a worker's training run that the recipe (jobs/recipe.py) puts together.

Checkpoint contract: a reported checkpoint holds the HF model folder plus training_state.pt
(optimizer, scheduler, scaler, the run's position, every rank's RNG state, the learning curve):
tensors and plain values only, loaded with `weights_only=True`. It is named by its position
(`checkpoint_epoch_NNNN`, `..._batch_NNNNNN` inside an epoch), not by time, so a redone report
overwrites the orphan of a lost one.
"""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path

import numpy as np
import ray.train
import torch
import torch.distributed as dist
from safetensors.torch import load_file

from biomed.checkpoint import raw_outputs, save_model_checkpoint
from biomed.devices import PRECISIONS
from biomed.inputs import validator_to_dict
from biomed.models import is_head_parameter
from jobs.run_names import hash_payload
from jobs.run_storage import write_file
from jobs.spec import JobSpec
from jobs.splits import input_validator

STATE_FILE = "training_state.pt"
MODEL_DIR = "model"
METRICS_FILE = "metrics.csv"
CURVE_FIELDS = ("kind", "epoch", "step", "train_loss", "learning_rate", "val_metric", "value", "samples_per_s", "epoch_seconds", "checkpoint_seconds", "examples", "world_size")


def validation_outputs(model, encoded, rows: np.ndarray, *, spec: JobSpec, device, dtype) -> np.ndarray:
    """Model outputs for this rank's validation rows (length-sorted batches, row order kept)."""
    return raw_outputs(model, encoded, rows, batch_size=spec.training.eval_batch_size, device=device, dtype=dtype)


def precision_dtype(precision: str) -> torch.dtype | None:
    """The training autocast dtype (None: fp32); CPU autocasts bf16 too, unlike inference."""
    return PRECISIONS[precision]


def optimizer_for(model: torch.nn.Module, spec) -> torch.optim.Optimizer:
    """AdamW: no decay on biases and LayerNorm; a job's new head at its own rate."""
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
                # Pretraining specs have no new head, so no head rate.
                "lr": (getattr(t, "head_learning_rate", None) or t.learning_rate) if head else t.learning_rate,
                "weight_decay": t.weight_decay if decays else 0.0,
            }
            for (head, decays), params in sorted(groups.items())
        ]
    )


def class_weights_for(spec: JobSpec, targets: np.ndarray | None, *, statistics: dict | None = None) -> torch.Tensor | None:
    """Loss weights per class for classification tasks (None: unweighted, or not classification),
    from the training targets or, for a streamed split, its class counts (`statistics`)."""
    if not spec.task_entry.target.has_labels or spec.training.class_weighting == "none":
        return None
    num_classes = len(spec.task.labels or [])
    counts = np.bincount(targets, minlength=num_classes) if statistics is None else np.asarray(statistics["class_counts"])
    return _class_weights(counts.astype(np.float64), num_classes)


def _class_weights(counts: np.ndarray, num_classes: int) -> torch.Tensor:
    weights = np.where(counts > 0, counts.sum() / (num_classes * np.maximum(counts, 1)), 0.0)
    return torch.tensor(weights, dtype=torch.float32)


def gather(obj, world: int) -> list:
    if world == 1:
        return [obj]
    out = [None] * world
    dist.all_gather_object(out, obj)
    return out


def write_curve(run_dir: str, curve: list[dict]) -> None:
    """metrics.csv of the run folder (or object-store prefix), rewritten whole from the
    checkpointed history each epoch, so a redone epoch never leaves rows of the attempt that was lost."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=CURVE_FIELDS)
    writer.writeheader()
    writer.writerows(curve)
    write_file(run_dir, METRICS_FILE, text.getvalue().encode())


def training_targets(targets: np.ndarray, scaling: dict | None) -> torch.Tensor:
    if scaling is not None:
        return torch.from_numpy((targets - scaling["mean"]) / scaling["std"]).float()
    return torch.from_numpy(targets)


def checkpoint_metadata(spec: JobSpec, *, scaling: dict | None, data: dict | None = None, statistics: dict | None = None) -> dict:
    """What biomed.json records beyond the HF folder (the encoder adds its own part): with the
    rows per split, and the statistics a streamed training split was fitted with."""
    summary = {"rows": (data or {}).get("rows"), "streamed": (data or {}).get("streamed", []), "training_statistics": statistics}
    return {
        "task": spec.task.name,
        "labels": spec.task.labels or [],
        "max_seq_length": spec.training.max_seq_length,
        # 0.1's field, kept so the format is unchanged: the sequence column, its default elsewhere.
        "text_column": hash_payload(spec)["data"]["text_column"],
        "validator": validator_to_dict(input_validator(spec)),
        "target_scaling": scaling,
        "name": spec.name,
        "data": summary,
    }


def report_with_checkpoint(spec: JobSpec, model, encoder, *, metadata: dict, metrics: dict, val_scores: dict, state: dict) -> None:
    epoch, batches_done = state["epoch"], state.get("batches_done", 0)
    metadata = {**metadata, "epoch": epoch, "val_metrics": val_scores}
    with tempfile.TemporaryDirectory() as tmp:
        save_model_checkpoint(model, encoder, Path(tmp) / MODEL_DIR, metadata)
        torch.save(state, Path(tmp) / STATE_FILE)
        # Named by epoch, not time: a redone epoch overwrites the orphan of a lost report.
        ray.train.report(
            metrics,
            checkpoint=ray.train.Checkpoint.from_directory(tmp),
            checkpoint_dir_name=f"checkpoint_epoch_{epoch:04d}" + (f"_batch_{batches_done:06d}" if batches_done else ""),
        )


def run_recipe(recipe_class, config: dict) -> None:
    """A Ray Train worker's whole run: its logging, then the recipe's `setup` and `train`."""
    from biomed.log import configure as configure_logging
    from cluster.ray_compat import quiet_train_worker_reports

    # This worker's own handler (not Ray's root one, which would print each line twice); its
    # stderr reaches the driver through Ray's log forwarding.
    configure_logging(config.get("verbosity", "default"))
    quiet_train_worker_reports(verbose=config.get("verbosity") == "verbose")
    recipe = recipe_class(config)
    recipe.setup()
    recipe.train()


def load_state(checkpoint: ray.train.Checkpoint, model, optimizer, scheduler, scaler) -> dict:
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
