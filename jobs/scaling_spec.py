"""The `scaling` section of a run spec: how many Train workers, what each holds, where they go."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from jobs.spec_base import _Spec

WorkerCount = Annotated[int, Field(ge=1, le=4096)]


class ScalingSpec(_Spec):
    num_workers: WorkerCount | tuple[WorkerCount, WorkerCount] = Field(
        default=1,
        description="Data-parallel (DDP) training workers; each sees its own shard of every epoch. [MIN, MAX]: elastic, as Ray Train's (min_workers, max_workers): starts with as many as fit (at least MIN), goes on with those left from the latest checkpoint when a node is lost, and grows back up to MAX when nodes return; an epoch cut short by a resize is redone whole at the new size, so every example is still seen once per epoch.",
    )
    use_gpu: bool = Field(default=False, description="Give each worker GPUs and train on CUDA.")
    cpus_per_worker: float = Field(default=1.0, gt=0.0, description="CPUs reserved per worker (also its torch thread count).")
    gpus_per_worker: float = Field(default=1.0, ge=0.0, description="GPUs reserved per worker when use_gpu is true.")
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = Field(
        default="PACK", description="How the workers' placement group lays them on nodes (Ray's strategies): PACK fills few nodes, SPREAD one worker per node where it can, STRICT_* or not at all.",
    )
    resize_check_interval_s: float = Field(
        default=60.0, gt=0.0, description="Elastic runs: seconds between looks for room to grow back to MAX workers (Ray Train's elastic_resize_monitor_interval_s).",
    )

    @field_validator("num_workers")
    @classmethod
    def _range(cls, value):
        if isinstance(value, tuple) and value[0] > value[1]:
            raise ValueError(f"scaling.num_workers {list(value)}: MIN must not exceed MAX")
        return value

    @property
    def elastic(self) -> bool:
        return isinstance(self.num_workers, tuple)

    @property
    def min_workers(self) -> int:
        return self.num_workers[0] if self.elastic else self.num_workers

    @property
    def max_workers(self) -> int:
        return self.num_workers[1] if self.elastic else self.num_workers

    def check_checkpointing(self, checkpointing) -> None:
        """Refuse step checkpoints in an elastic run: a position inside an epoch is a batch of one
        world size's shards, which a resized worker group does not have."""
        if self.elastic and (checkpointing.every_n_steps or checkpointing.eval_every_n_steps):
            raise ValueError(
                f"scaling.num_workers {list(self.num_workers)} is elastic, so runs resume at epoch ends: leave out "
                "checkpointing.every_n_steps and eval_every_n_steps (a step position belongs to one world size)"
            )
