"""What the fine-tuning and pretraining recipes share: the worker's place in the group, the
optimizer and its schedule, restoring from a checkpoint, and the checkpointed training state.

A checkpoint records where in the run it was taken (epochs done, batches done in the epoch in
flight, the partial epoch loss), every rank's RNG state, the optimizer, scheduler and scaler,
and the learning curve: tensors and plain values only, loaded with `weights_only=True`.
"""

from __future__ import annotations

import time

import ray.train
import ray.train.torch
import torch

from biomed.log import get_logger
from jobs.run_storage import display
from jobs.worker import load_state, optimizer_for, precision_dtype

log = get_logger(__name__)


class RecipeBase:
    """`setup` → `train` (per epoch `train_epoch`, with `evaluate` and `save`), on every rank."""

    def __init__(self, config: dict):
        self.entered, self.entered_at = time.perf_counter(), time.time()
        self.run_dir = config["run_dir"]  # a folder, or an object-store URI (jobs/run_storage.py)

    def _setup_group(self) -> None:
        context = ray.train.get_context()
        self.rank, self.world = context.get_world_rank(), context.get_world_size()
        self.device = ray.train.torch.get_device()

    def _setup_schedule(self, total_updates: int, training) -> None:
        """AdamW (no decay on biases and LayerNorm, the new head at its own rate) with linear
        warm-up and decay over `total_updates`; autocast and loss scaling per the precision."""
        from transformers import get_linear_schedule_with_warmup

        self.optimizer = optimizer_for(self.model, self.spec)
        self.scheduler = get_linear_schedule_with_warmup(self.optimizer, int(training.warmup_ratio * total_updates), total_updates)
        self.dtype = precision_dtype(training.precision)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=training.precision == "fp16")

    def _restore(self) -> dict | None:
        """The latest committed checkpoint's state, if any: weights, optimizer, position, this
        rank's RNG stream (so the next batch draws the dropout it would have drawn)."""
        self.epoch, self.batches_done, self.curve = 0, 0, []
        self.resumed_loss = torch.zeros(2, dtype=torch.float64)
        checkpoint = ray.train.get_checkpoint()
        state = None
        if checkpoint is not None:
            state = load_state(checkpoint, self.core, self.optimizer, self.scheduler, self.scaler)
            self.epoch, self.batches_done, self.curve = state["epoch"], state.get("batches_done", 0), state["curve"]
            # This epoch's loss so far (summed over ranks once).
            if self.rank == 0:
                self.resumed_loss = state.get("loss_sum", self.resumed_loss).clone()
            rng_states = state.get("rng_states") or []
            if len(rng_states) == self.world:
                torch.set_rng_state(rng_states[self.rank])
            if self.rank == 0:
                where = f"batch {self.batches_done} of epoch {self.epoch + 1}" if self.batches_done else f"the end of epoch {self.epoch}"
                log.info("resuming %s from its checkpoint at %s (step %d)", display(self.run_dir), where, self.scheduler.last_epoch)
        positions = (state or {}).get("attempt_start_positions", [])
        # (epochs done, batches done in the next, optimizer steps) where each attempt started.
        self.attempt_positions = positions + [[self.epoch, self.batches_done, self.scheduler.last_epoch]]
        return state

    def _epoch_loss(self, start: int) -> torch.Tensor:
        """The loss sum and count the epoch starts from: the resumed one inside an epoch."""
        loss_sum = self.resumed_loss if start else torch.zeros(2, dtype=torch.float64)
        self.resumed_loss = torch.zeros(2, dtype=torch.float64)
        return loss_sum

    def _state(self, epoch: int, batches_done: int, total: torch.Tensor, rng_states: list) -> dict:
        """The training state a checkpoint holds: at an epoch's end (epoch + 1, 0), inside it (epoch, batches_done)."""
        end_of_epoch = batches_done == self.num_batches
        return {
            "epoch": epoch + 1 if end_of_epoch else epoch,
            "batches_done": 0 if end_of_epoch else batches_done,
            "loss_sum": torch.zeros(2, dtype=torch.float64) if end_of_epoch else total,
            "rng_states": rng_states,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "curve": self.curve,
            "attempt_start_positions": self.attempt_positions,
        }
