"""The fine-tuning recipe every Ray Train worker runs: `setup`, `train_epoch`, `evaluate`, `save`.

A checkpoint records where in the run it was taken: epochs done, batches done in the epoch in
flight, the partial epoch loss, and every rank's RNG state. The order of examples is a function
of (seed, epoch) (biomed.batching), so a run resumed from a checkpoint taken after batch k of an
epoch goes on with batch k+1 of the same order, the same dropout masks and the same optimizer
state: it ends with the weights of a run that was never interrupted.
"""

from __future__ import annotations

import contextlib
import time
from functools import partial

import numpy as np
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist

from biomed.batching import steps_per_epoch
from biomed.devices import batch_to_device, to_device
from biomed.families import register_all
from biomed.log import get_logger
from jobs.recipe_base import RecipeBase
from jobs.resolve import ResolvedJob
from jobs.splits import StreamedSplit, checks_for, load_splits
from jobs.train_data import InMemoryTrain, StreamedEval, StreamedTrain, UnitLoader
from jobs.worker import (
    class_weights_for,
    checkpoint_metadata,
    gather,
    report_with_checkpoint,
    run_recipe,
    training_targets,
    validation_outputs,
    write_curve,
)

log = get_logger(__name__)


class FineTuneRecipe(RecipeBase):
    """One worker's share of a fine-tuning run; `config` is the plain dict the driver sent."""

    def __init__(self, config: dict):
        super().__init__(config)
        register_all(config.get("families"))
        self.job = ResolvedJob.from_dict(config["job"])
        self.spec, self.task = self.job.spec, self.job.task
        self.labels = self.spec.task.labels or []
        # In a search every report is validated: Tune refuses a result without its metric.
        self.validate_always = bool(config.get("validate_every_report"))
        # Indexes of the streamed splits, from the driver's pass over them (None: none streamed).
        self.streams = config.get("streams")

    def setup(self) -> None:
        """Data and encoder, model, optimizer and schedule; then the checkpoint, if any."""
        self._setup_group()
        # Where this attempt's ranks run, in rank order (the run summary and metrics.csv show it).
        self.node_ids = gather(ray.get_runtime_context().get_node_id(), self.world)
        torch.manual_seed(self.spec.training.seed)
        self._setup_data()
        self._setup_model()
        self._setup_optimizer()
        self._restore()
        self.setup_seconds = time.perf_counter() - self.entered

    def _setup_data(self) -> None:
        spec, t = self.spec, self.spec.training
        self.splits = load_splits(self.job, indexes=self.streams)
        train = self.splits.train
        statistics = train.index.statistics if isinstance(train, StreamedSplit) else None
        self.encoder = self.task.family.build_encoder(self.job, train_inputs=[] if statistics else train.inputs, statistics=statistics)
        target_stats = (statistics or {}).get("targets")
        self.scaling = self.task.target.scaling(train.targets if statistics is None else None, statistics=target_stats)
        self.class_weights = class_weights_for(spec, train.targets if statistics is None else None, statistics=target_stats)
        to_targets = partial(training_targets, scaling=self.scaling)
        if statistics is None:
            encoded = self.encoder.encode(train.inputs, max_length=t.max_seq_length)
            if hasattr(encoded, "augmented"):
                # Images: training batches get the random transforms, seeded per image and epoch
                # (the same on every rank), so any world size or a resume draws the same ones.
                encoded = encoded.augmented(seed=t.seed)
            self.train_data = InMemoryTrain(
                encoded, to_targets(train.targets), seed=t.seed, batch_size=t.batch_size_per_worker,
                lengths=np.asarray(encoded.lengths()) if t.group_by_length else None,
            )
        else:
            self.train_data = StreamedTrain(
                self._loader(train), to_targets, seed=t.seed, batch_size=t.batch_size_per_worker,
                buffer_rows=spec.data.shuffle_buffer_rows, group_by_length=t.group_by_length,
            )
        validation = self.splits.validation
        self.val_data = StreamedEval(self._loader(validation)) if isinstance(validation, StreamedSplit) else self.encoder.encode(validation.inputs, max_length=t.max_seq_length)
        self.metadata = checkpoint_metadata(spec, scaling=self.scaling, data=self.splits.report, statistics=statistics)

    def _loader(self, split: StreamedSplit) -> UnitLoader:
        return UnitLoader(split.index, self.spec.columns(), checks_for(self.spec), self.encoder, self.spec.training.max_seq_length)

    def _setup_model(self) -> None:
        num_outputs = self.task.target.num_outputs(len(self.labels))
        model = self.task.family.build_model(self.job, encoder=self.encoder, labels=self.labels, num_outputs=num_outputs)
        self.model = ray.train.torch.prepare_model(model)
        self.core = self.model.module if hasattr(self.model, "module") else self.model
        self.class_weights = self.class_weights.to(self.device) if self.class_weights is not None else None

    def _setup_optimizer(self) -> None:
        t = self.spec.training
        self.num_batches = steps_per_epoch(len(self.train_data), world=self.world, batch_size=t.batch_size_per_worker)
        updates_per_epoch = -(-self.num_batches // t.gradient_accumulation_steps)
        self._setup_schedule(updates_per_epoch * t.epochs, t)

    def _restore(self) -> None:
        state = super()._restore()
        self.attempt_starts = (state or {}).get("attempt_start_epochs", []) + [self.epoch]

    def train(self) -> None:
        for epoch in range(self.epoch, self.spec.training.epochs):
            self.train_epoch(epoch)

    def train_epoch(self, epoch: int) -> None:
        """The epoch's batches from where the run stands; checkpoints per the spec's checkpointing."""
        t, c = self.spec.training, self.spec.checkpointing
        batches = self.train_data.batches(epoch, rank=self.rank, world=self.world, start=self.batches_done)
        self.model.train()  # from_pretrained hands the model over in eval mode
        start, self.batches_done = self.batches_done, 0
        loss_sum = self._epoch_loss(start)
        started, seen = time.perf_counter(), 0
        last = self.num_batches - 1
        for index, (batch, targets, rows) in enumerate(batches, start=start):
            updated, loss = self._step(epoch, index, batch, targets)
            loss_sum += torch.tensor([loss * rows, rows], dtype=torch.float64)
            seen += rows
            step = self.scheduler.last_epoch
            if not updated or index == last:
                continue
            validate = bool(c.eval_every_n_steps) and step % c.eval_every_n_steps == 0
            if validate or (c.every_n_steps and step % c.every_n_steps == 0):
                train_s = time.perf_counter() - started
                scores = self.evaluate() if (validate or self.validate_always) else None
                self.save(epoch, index + 1, loss_sum, seen, train_s, started, scores=scores)
        train_s = time.perf_counter() - started
        validate = not c.eval_every_n_steps or epoch == t.epochs - 1 or self.validate_always
        scores = self.evaluate() if validate else None
        self.save(epoch, self.num_batches, loss_sum, seen, train_s, started, scores=scores)

    def _step(self, epoch: int, index: int, batch: dict, targets: torch.Tensor) -> tuple[bool, float]:
        t = self.spec.training
        # Gradients all-reduce only on the micro-batch that ends an accumulation window.
        last_micro = (index + 1) % t.gradient_accumulation_steps == 0 or index == self.num_batches - 1
        batch = batch_to_device(batch, self.device)
        targets = to_device(targets, self.device)
        sync = contextlib.nullcontext() if (last_micro or self.world == 1) else self.model.no_sync()
        with sync:
            with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
                logits = self.model(**batch).logits
            loss = self.task.target.loss(logits, targets, self.class_weights)
            self.scaler.scale(loss / t.gradient_accumulation_steps).backward()
        if last_micro:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.max_grad_norm)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            if self.rank == 0:
                self.curve.append({
                    "kind": "step", "epoch": epoch + 1, "step": self.scheduler.last_epoch, "train_loss": round(loss.item(), 6),
                    "learning_rate": self.scheduler.get_last_lr()[0],
                })
        return last_micro, loss.item()

    def evaluate(self) -> dict:
        """The task's validation metrics, with the validation set sharded over the ranks."""
        if isinstance(self.val_data, StreamedEval):
            targets, outputs = self._streamed_outputs()
        else:
            targets = self.splits.validation.targets
            rows = np.arange(self.rank, len(self.val_data), self.world)
            local = validation_outputs(self.model, self.val_data, rows, spec=self.spec, device=self.device, dtype=self.dtype)
            outputs = np.zeros((len(self.val_data), self.task.target.num_outputs(len(self.labels))), dtype=np.float32)
            for shard_rows, out in gather((rows, local), self.world):
                outputs[shard_rows] = out
        self.model.train()
        return self.task.compute_metrics(targets, self.task.target.predictions(outputs, self.scaling))

    def _streamed_outputs(self) -> tuple[np.ndarray, np.ndarray]:
        """Targets and outputs of a streamed validation set, a unit at a time, in unit order."""
        local = []
        for unit, encoded, targets in self.val_data.shard(rank=self.rank, world=self.world):
            # The bare module: DDP's forward syncs buffers, a collective, and ranks hold different units.
            out = validation_outputs(self.core, encoded, np.arange(len(encoded)), spec=self.spec, device=self.device, dtype=self.dtype)
            local.append((unit, targets, out))
        parts = sorted((p for shard in gather(local, self.world) for p in shard), key=lambda p: p[0])
        return np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts])

    def save(
        self, epoch: int, batches_done: int, loss_sum: torch.Tensor, seen: int, train_s: float, started: float, *, scores: dict | None
    ) -> None:
        """Report to Ray Train, with a checkpoint from rank 0 (every rank calls this at the same step).

        At an epoch's end the position is (epoch + 1, 0); inside it, (epoch, batches_done).
        A checkpoint without `scores` is a resume point only: it never competes for best.
        """
        total = loss_sum.clone()
        if self.world > 1:
            dist.all_reduce(total)
        rng_states = gather(torch.get_rng_state(), self.world)
        end_of_epoch = batches_done == self.num_batches
        metrics = self._metrics(epoch, batches_done, total, scores, seen=seen, train_s=train_s, started=started)
        if self.rank != 0:
            ray.train.report(metrics, checkpoint=None)
            return
        if end_of_epoch:
            self._record_epoch(epoch, metrics, scores)
        state = {**self._state(epoch, batches_done, total, rng_states), "attempt_start_epochs": self.attempt_starts}
        reporting = time.perf_counter()
        report_with_checkpoint(self.spec, self.core, self.encoder, metadata=self.metadata, metrics=metrics, val_scores=scores or {}, state=state)
        if end_of_epoch:
            self.curve[-1]["checkpoint_seconds"] = round(time.perf_counter() - reporting, 4)
            write_curve(self.run_dir, self.curve)
            shown = "".join(f" val_{k}={v:.4f}" for k, v in (scores or {}).items())
            log.info("epoch %d/%d train_loss=%.4f%s (%.1f samples/s)", epoch + 1, self.spec.training.epochs, metrics["train_loss"], shown, metrics["train_samples_per_s"])
        else:
            log.debug("step checkpoint at batch %d of epoch %d (step %d)", batches_done, epoch + 1, self.scheduler.last_epoch)

    def _metrics(self, epoch: int, batches_done: int, total: torch.Tensor, scores: dict | None, *, seen: int, train_s: float, started: float) -> dict:
        end_of_epoch = batches_done == self.num_batches
        return {
            # Epochs done: whole at an epoch's end, a fraction inside one (ASHA's rungs read it).
            "epoch": epoch + 1 if end_of_epoch else epoch + batches_done / self.num_batches,
            "step": self.scheduler.last_epoch,
            "train_loss": float(total[0] / max(float(total[1]), 1.0)),
            "examples": float(total[1]),
            # A resume point still names the selection metric, as NaN: Ray Train ranks it below every
            # score (so it goes first) instead of warning on each report, and selection skips it.
            **({f"val_{k}": v for k, v in scores.items()} if scores else {f"val_{self.spec.metric}": float("nan")}),
            # This attempt's share of the epoch only (a resumed epoch starts part way through).
            "train_samples_per_s": seen * self.world / max(train_s, 1e-9),
            "train_seconds": train_s,
            "epoch_seconds": time.perf_counter() - started,
            "learning_rate": self.scheduler.get_last_lr()[0],
            # Time in the train function before this attempt's first step (data, tokenizer, model),
            # and when it started (start-up cost accounting).
            "setup_seconds": self.setup_seconds,
            "train_fn_started_at": self.entered_at,
            "world_size": self.world,
            # One string, not a list: Tune's loggers and result tables take scalars only.
            "worker_node_ids": ",".join(self.node_ids),
            # Where the ranks computed: "cuda:0" with nccl on GPU workers, "cpu" with gloo.
            "worker_device": str(self.device),
            "collective_backend": dist.get_backend() if dist.is_initialized() else "none",
        }

    def _record_epoch(self, epoch: int, metrics: dict, scores: dict | None) -> None:
        self.curve.append({
            "kind": "epoch", "epoch": epoch + 1, "train_loss": round(metrics["train_loss"], 6), "val_metric": self.spec.metric,
            "value": (scores or {}).get(self.spec.metric), "samples_per_s": round(metrics["train_samples_per_s"], 3),
            "epoch_seconds": round(metrics["epoch_seconds"], 4),
            # Examples trained on in this epoch over all ranks, and by how many: an epoch redone
            # after a resize counts once, at the size that finished it.
            "examples": int(metrics["examples"]), "world_size": self.world,
        })


def train_loop_per_worker(config: dict) -> None:
    """Ray Train entry point; `config` is {"job": a ResolvedJob as a dict, "run_dir": str, "verbosity": str, ...}."""
    run_recipe(FineTuneRecipe, config)
