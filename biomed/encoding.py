"""What an encoder hands the training loop: encoded rows that batch, subset and join.

An encoder (biomed.family.Encoder) is fitted on the training split (a SMILES vocabulary, feature
statistics), saved with the checkpoint, and reloaded by the predictor, so serving encodes
exactly as training did. Each family has its own (biomed/families/).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import torch


class Encoded(Protocol):
    def __len__(self) -> int: ...

    def lengths(self) -> list[int]: ...

    def batch(self, rows: np.ndarray) -> dict[str, torch.Tensor]: ...

    def take(self, rows) -> Encoded: ...

    def join(self, other) -> Encoded: ...


@runtime_checkable
class EpochDrawn(Protocol):
    """Encoded rows whose batches depend on the epoch (random augmentation of images)."""

    def for_epoch(self, epoch: int) -> Encoded: ...
