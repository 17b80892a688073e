"""The pretraining recipe every Ray Train worker runs: `setup`, `train_epoch`, `evaluate`, `save`.

Each worker streams its units of the corpus (jobs/train_data.py), tokenizes them with the
tokenizer the driver trained, masks them and trains a BertForMaskedLM. A batch's masks are a
function of (seed, epoch, batch, rank), not of the RNG's history, and a checkpoint records the
run's position and every rank's RNG state (for dropout): a run resumed from a step checkpoint
goes on with the next batch, the masks and dropout it would have drawn.
"""

from __future__ import annotations

import resource
import time

import numpy as np
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist

from biomed.batching import steps_per_epoch
from biomed.data import Columns
from biomed.devices import batch_to_device
from biomed.families import get_family, register_all
from biomed.families.sequence.tokens import SequenceEncoder, TokenEncoder
from biomed.log import get_logger
from biomed.mlm import mask_tokens, masked_accuracy
from biomed.streams import StreamIndex
from biomed.targets import NO_TARGET
from jobs.pretrain_spec import PretrainSpec
from jobs.recipe_base import RecipeBase
from jobs.train_data import StreamedEval, StreamedTrain, UnitLoader
from jobs.worker import gather, report_with_checkpoint, run_recipe, write_curve

log = get_logger(__name__)


def corpus_checks(spec: PretrainSpec) -> dict:
    """The keyword arguments of `biomed.data.examples_from_table` for the corpus (no targets)."""
    validator = get_family(spec.family).corpus_validator(spec)
    return {"target": NO_TARGET, "labels": None, "validator": validator, "on_invalid": spec.corpus.invalid_inputs}


def corpus_encoder(spec: PretrainSpec, tokenizer) -> TokenEncoder:
    options = get_family(spec.family).corpus_encoder_options(spec)
    return TokenEncoder(SequenceEncoder(input_kind=spec.family, tokenizer=tokenizer, **options))


def _mask_seed(*key: int) -> int:
    return int(np.random.SeedSequence(list(key)).generate_state(1)[0])


class PretrainRecipe(RecipeBase):
    """One worker's share of a pretraining run; `config` is the plain dict the driver sent."""

    def __init__(self, config: dict):
        from transformers import AutoTokenizer

        super().__init__(config)
        register_all(config.get("families"))
        self.first_step_seconds = None
        self.spec = PretrainSpec.model_validate(config["spec"])
        self.tokenizer = AutoTokenizer.from_pretrained(config["tokenizer_dir"])
        self.indexes = {role: StreamIndex.from_dict(config[f"{role}_index"]) for role in ("train", "validation")}

    def setup(self) -> None:
        """Streams, model, optimizer and schedule; then the checkpoint, if any."""
        self._setup_group()
        spec, t = self.spec, self.spec.training
        torch.manual_seed(t.seed)
        self.encoder = corpus_encoder(spec, self.tokenizer)
        loaders = {
            role: UnitLoader(index, Columns(input=spec.corpus.column), corpus_checks(spec), self.encoder, t.max_seq_length)
            for role, index in self.indexes.items()
        }
        self.train_data = StreamedTrain(
            loaders["train"], lambda targets: torch.zeros(len(targets)), seed=t.seed, batch_size=t.batch_size_per_worker,
            buffer_rows=spec.corpus.shuffle_buffer_rows, group_by_length=t.group_by_length,
        )
        self.val_data = StreamedEval(loaders["validation"])
        family = get_family(spec.family)
        model = family.masked_lm(spec.model.preset or spec.model.backbone, vocab_size=len(self.tokenizer), max_positions=max(512, t.max_seq_length))
        self.model = ray.train.torch.prepare_model(model)
        self.core = self.model.module if hasattr(self.model, "module") else self.model
        self._setup_optimizer()
        self.span = family.mask_span(spec) if spec.masking.whole_kmer_spans else 1
        self.special_ids = torch.tensor(sorted(set(self.tokenizer.all_special_ids)))
        self._restore()
        self.setup_seconds = time.perf_counter() - self.entered

    def _setup_optimizer(self) -> None:
        t = self.spec.training
        self.num_batches = steps_per_epoch(len(self.train_data), world=self.world, batch_size=t.batch_size_per_worker)
        self.total_steps = min(self.num_batches * t.epochs, t.max_steps or self.num_batches * t.epochs)
        self._setup_schedule(self.total_steps, t)

    def train(self) -> None:
        for epoch in range(self.epoch, self.spec.training.epochs):
            if self.scheduler.last_epoch >= self.total_steps:
                break
            self.train_epoch(epoch)

    def train_epoch(self, epoch: int) -> None:
        """The epoch's batches from where the run stands; step checkpoints and validation per the spec."""
        c = self.spec.checkpointing
        self.model.train()
        start, self.batches_done = self.batches_done, 0
        loss_sum = self._epoch_loss(start)
        train_s, tokens, index = 0.0, 0, start - 1
        started = time.perf_counter()
        for index, (batch, _, _) in enumerate(self.train_data.batches(epoch, rank=self.rank, world=self.world, start=start), start=start):
            loss, masked = self._step(epoch, index, batch)
            loss_sum += torch.tensor([loss * masked, masked], dtype=torch.float64)
            tokens += int(batch["attention_mask"].sum())
            step = self.scheduler.last_epoch
            if step >= self.total_steps or index == self.num_batches - 1:
                break
            validate = bool(c.eval_every_n_steps) and step % c.eval_every_n_steps == 0
            if validate or (c.every_n_steps and step % c.every_n_steps == 0):
                # Throughput counts training only: validation and checkpoints are timed out.
                train_s, started = train_s + time.perf_counter() - started, None
                self.save(epoch, index + 1, loss_sum, tokens / train_s, scores=self.evaluate() if validate else None)
                started = time.perf_counter()
        train_s += time.perf_counter() - started
        # The epoch's end, or the last step: always validated.
        self.save(epoch, self.num_batches if index == self.num_batches - 1 else index + 1, loss_sum, tokens / max(train_s, 1e-9), scores=self.evaluate())

    def _masked(self, batch: dict, *key: int) -> tuple[torch.Tensor, torch.Tensor]:
        ids = batch["input_ids"]
        special = torch.isin(ids, self.special_ids)
        generator = torch.Generator().manual_seed(_mask_seed(self.spec.training.seed, *key))
        return mask_tokens(ids, special, mask_id=self.tokenizer.mask_token_id, vocab_size=len(self.tokenizer), probability=self.spec.masking.probability, span=self.span, generator=generator)

    def _step(self, epoch: int, index: int, batch: dict) -> tuple[float, int]:
        inputs, labels = self._masked(batch, epoch, index, self.rank)
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
            out = self.model(**batch_to_device({"input_ids": inputs, "attention_mask": batch["attention_mask"], "labels": labels}, self.device))
        self.scaler.scale(out.loss).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.spec.training.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.first_step_seconds is None:
            self.first_step_seconds = time.perf_counter() - self.entered
        if self.rank == 0:
            self.curve.append({"kind": "step", "epoch": epoch + 1, "step": self.scheduler.last_epoch, "train_loss": round(out.loss.item(), 6), "learning_rate": self.scheduler.get_last_lr()[0]})
        return out.loss.item(), int((labels != -100).sum())

    @torch.inference_mode()
    def evaluate(self) -> dict:
        """Masked-token loss and accuracy on the held-out units, the same masks every time."""
        totals = torch.zeros(3, dtype=torch.float64)  # loss * masked, correct, masked
        self.core.eval()
        for unit, encoded, _ in self.val_data.shard(rank=self.rank, world=self.world):
            for first in range(0, len(encoded), self.spec.training.eval_batch_size):
                batch = encoded.batch(np.arange(first, min(first + self.spec.training.eval_batch_size, len(encoded))))
                inputs, labels = self._masked(batch, 1_000_003, unit, first)
                # The bare module: DDP's forward syncs buffers, a collective, and ranks hold different units.
                with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
                    out = self.core(**batch_to_device({"input_ids": inputs, "attention_mask": batch["attention_mask"], "labels": labels}, self.device))
                correct, masked = masked_accuracy(out.logits.float().cpu(), labels)
                if masked:
                    totals += torch.tensor([out.loss.item() * masked, correct, masked], dtype=torch.float64)
        if self.world > 1:
            dist.all_reduce(totals)
        self.model.train()
        masked = max(float(totals[2]), 1.0)
        return {"loss": float(totals[0]) / masked, "masked_accuracy": float(totals[1]) / masked, "masked_tokens": int(totals[2])}

    def save(self, epoch: int, batches_done: int, loss_sum: torch.Tensor, tokens_per_s: float, *, scores: dict | None) -> None:
        """Report to Ray Train with a checkpoint from rank 0 (every rank calls this at the same step).
        `tokens_per_s`: this rank's training throughput in the epoch so far (non-padding tokens)."""
        total = loss_sum.clone()
        if self.world > 1:
            dist.all_reduce(total)
        rng_states = gather(torch.get_rng_state(), self.world)
        end_of_epoch = batches_done == self.num_batches
        metrics = {
            "epoch": epoch + 1 if end_of_epoch else epoch + batches_done / self.num_batches,
            "step": self.scheduler.last_epoch,
            "train_loss": float(total[0] / max(float(total[1]), 1.0)),
            **({f"val_{k}": v for k, v in scores.items()} if scores else {"val_loss": float("nan")}),
            "train_tokens_per_s": tokens_per_s * self.world,
            "setup_seconds": self.setup_seconds,
            # From entering the train function to the end of this attempt's first optimizer step.
            "first_step_seconds": self.first_step_seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
        if self.rank != 0:
            ray.train.report(metrics, checkpoint=None)
            return
        if scores:
            self.curve += [{"kind": "eval", "epoch": epoch + 1, "step": metrics["step"], "val_metric": k, "value": scores[k]} for k in ("loss", "masked_accuracy")]
        state = self._state(epoch, batches_done, total, rng_states)
        metadata = {"kind": "backbone", "family": self.spec.family, "name": self.spec.name, "max_seq_length": self.spec.training.max_seq_length}
        report_with_checkpoint(self.spec, self.core, self.encoder, metadata=metadata, metrics=metrics, val_scores=scores or {}, state=state)
        if scores:
            write_curve(self.run_dir, self.curve)
            log.info("step %d (epoch %d) train_loss=%.4f val_loss=%.4f val_masked_accuracy=%.4f (%.0f tokens/s)", metrics["step"], epoch + 1, metrics["train_loss"], scores["loss"], scores["masked_accuracy"], metrics["train_tokens_per_s"])


def pretrain_loop_per_worker(config: dict) -> None:
    """Ray Train entry point; `config` holds the spec, run folder, tokenizer folder and the corpus indexes."""
    run_recipe(PretrainRecipe, config)
