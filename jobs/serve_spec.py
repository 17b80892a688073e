"""The `serve:` section of a job spec: how a registered checkpoint is hosted on Ray Serve.

Every field can be overridden by a `biomed serve deploy` flag of the same name. Validated here,
before any cluster is touched; the replica re-validates the plain dict it receives. It lives in
the jobs core, below `serving/`, because the job spec holds it as its `serve:` section.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

class ServeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(default="127.0.0.1", description="Address the HTTP proxy binds to. 127.0.0.1 keeps it off the network; 0.0.0.0 exposes it.")
    port: int = Field(default=8000, ge=1, le=65535, description="HTTP port of the Serve proxy.")
    proxy_location: Literal["EveryNode", "HeadOnly"] = Field(
        default="EveryNode", description="Where Serve runs its HTTP proxies (Ray's proxy_location): on every node, so a load balancer can spread over them, or on the head only (one address; also when several nodes share one host and port).",
    )
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        default="fp32", description="Inference precision on a GPU replica: fp32, or bf16/fp16 autocast (about half the memory traffic); bf16/fp16 need num_gpus_per_replica > 0. The golden check then allows 2% of the value.",
    )
    min_replicas: int = Field(default=1, ge=0, description="Autoscaling floor (0 scales to zero when idle; the first request then waits for a replica).")
    max_replicas: int = Field(default=2, ge=1, description="Autoscaling ceiling.")
    target_ongoing_requests: float = Field(default=4.0, gt=0, description="Requests in flight per replica the autoscaler aims for.")
    upscale_delay_s: float = Field(default=2.0, ge=0, description="Seconds the load must stay above target before replicas are added.")
    downscale_delay_s: float = Field(default=10.0, ge=0, description="Seconds the load must stay below target before replicas are removed.")
    num_cpus_per_replica: float = Field(default=1.0, ge=0, description="CPUs reserved per replica.")
    num_gpus_per_replica: float = Field(default=0.0, ge=0, description="GPUs per replica (fractions share a GPU).")
    max_ongoing_requests: int = Field(default=64, ge=1, description="Requests a replica runs at once; more wait in the queue.")
    max_queued_requests: int = Field(default=128, ge=1, description="Requests allowed to wait for a replica; beyond it the caller gets 503 with Retry-After instead of an unbounded queue.")
    max_batch_size: int = Field(default=16, ge=1, description="Requests run as one forward pass (dynamic batching).")
    batch_wait_timeout_s: float = Field(default=0.005, ge=0, description="How long a batch waits to fill before it runs.")
    batching: bool = Field(default=True, description="Dynamic batching on (false: one forward pass per request).")
    max_models_per_replica: int = Field(default=3, ge=1, description="Multiplexed models a replica keeps loaded (least recently used is evicted).")
    request_timeout_s: float = Field(default=30.0, gt=0, description="Server-side deadline per request; a client header cannot raise it.")
    max_body_bytes: int = Field(default=1_000_000, ge=1024, description="Largest request body accepted (413 beyond).")
    max_inputs_per_request: int = Field(default=64, ge=1, description="Most inputs in one predict request (422 beyond).")
    max_input_chars: int = Field(default=20_000, ge=1, description="Longest single input in characters (422 beyond); the model truncates to its max sequence length anyway.")
    explain_max_inputs_per_request: int = Field(default=4, ge=1, description="Most inputs in one explain request (422 beyond): an explanation costs about n_steps forward passes per input.")
    explain_timeout_s: float = Field(default=120.0, gt=0, description="Server-side deadline per explain request (408 beyond); predict keeps request_timeout_s.")
    explain_max_concurrent: int = Field(
        default=1, ge=1, description="Explain requests a replica runs at once. One more gets 503 with Retry-After at once rather than waiting in a slot predict could use, so explain traffic never starves predict; must be below max_ongoing_requests.",
    )

    @model_validator(mode="after")
    def _replicas(self) -> ServeSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas {self.min_replicas} is above max_replicas {self.max_replicas}")
        if self.explain_max_concurrent >= self.max_ongoing_requests:
            raise ValueError(f"explain_max_concurrent {self.explain_max_concurrent} must be below max_ongoing_requests {self.max_ongoing_requests}, or explanations could take every slot predict needs")
        if self.precision != "fp32" and self.num_gpus_per_replica == 0:
            raise ValueError(f"precision {self.precision!r} needs num_gpus_per_replica > 0: CPU replicas run fp32 (reduced precision is slower there)")
        return self

    def autoscaling_config(self) -> dict:
        return {
            "min_replicas": self.min_replicas,
            "initial_replicas": max(self.min_replicas, 1),
            "max_replicas": self.max_replicas,
            "target_ongoing_requests": self.target_ongoing_requests,
            "upscale_delay_s": self.upscale_delay_s,
            "downscale_delay_s": self.downscale_delay_s,
            # Replicas report load often and the autoscaler looks back briefly, so a burst is
            # seen within a couple of seconds rather than Serve's default 30 s window.
            "metrics_interval_s": 0.5,
            "look_back_period_s": 2.0,
        }
