"""Moving batches to the compute device, and the inference precisions a device supports.

On CUDA a batch is copied from pinned (page-locked) host memory with `non_blocking=True`, so
the copy overlaps the previous step's kernels instead of stalling the stream; on CPU the
tensors are used as they are (pinning would only cost a copy).
"""

from __future__ import annotations

import torch

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`tensor` on `device`; through pinned memory and an asynchronous copy on CUDA."""
    if device.type != "cuda":
        return tensor.to(device)
    if not tensor.is_pinned():
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)


def batch_to_device(batch: dict, device: torch.device) -> dict:
    """Every tensor of a batch dict on `device` (see `to_device`)."""
    return {k: to_device(v, device) for k, v in batch.items()}


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `precision` on `device`; None (fp32) on CPU, where reduced
    precision inference is slower than fp32 and would change the golden check's numbers."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {sorted(PRECISIONS)}")
    return PRECISIONS[precision] if device.type == "cuda" else None


def inference_device(num_gpus: float) -> torch.device:
    """CUDA when this process was given a GPU (`num_gpus` > 0 and one is visible), else CPU."""
    return torch.device("cuda") if num_gpus > 0 and torch.cuda.is_available() else torch.device("cpu")
