"""The order of training examples: seeded per epoch, every example once across ranks, and the
same number of steps on every rank; optionally grouped by length.

Batches are padded to their longest row, so a batch of similar lengths spends little compute on
padding. Length grouping follows Hugging Face's `LengthGroupedSampler`: shuffle, cut the order
into mega-batches of `MEGA_BATCH_STEPS` global batches, sort each by length (longest first), cut
it into global batches; then the order of the global batches is shuffled too (seeded), so a run
does not see its lengths in a sawtooth. A global batch is shared out over the ranks, so the
ranks' batches of a step have similar lengths as well and no rank waits on a long one.
"""

from __future__ import annotations

import math

import numpy as np

MEGA_BATCH_STEPS = 50


def steps_per_epoch(num_rows: int, *, world: int, batch_size: int) -> int:
    """Micro-batches each rank runs per epoch (the same on every rank)."""
    return math.ceil(math.ceil(num_rows / world) / batch_size)


def epoch_batches(
    num_rows: int, *, epoch: int, seed: int, rank: int, world: int, batch_size: int, lengths: np.ndarray | None = None
) -> list[np.ndarray]:
    """This rank's batches (row indices) for an epoch, a function of (seed, epoch) only.

    Without `lengths`: ranks' shards of one seeded permutation differ by at most one row, and
    each is split into the same number of nearly equal batches, which keeps DDP's collective calls
    aligned without padding or repeating examples. With `lengths` (one per row): length-grouped
    global batches, each split over the ranks into near-equal parts.
    """
    order = np.random.default_rng([seed, epoch]).permutation(num_rows)
    num_steps = steps_per_epoch(num_rows, world=world, batch_size=batch_size)
    if lengths is None:
        return [b for b in np.array_split(order[rank::world], num_steps) if b.size]
    lengths = np.asarray(lengths)
    if lengths.shape != (num_rows,):
        raise ValueError(f"lengths has shape {lengths.shape}, expected ({num_rows},)")
    mega = max(batch_size * world * MEGA_BATCH_STEPS, 1)
    grouped = np.concatenate(
        [chunk[np.argsort(-lengths[chunk], kind="stable")] for chunk in (order[i : i + mega] for i in range(0, num_rows, mega))]
    ) if num_rows else order
    global_batches = np.array_split(grouped, num_steps)
    shuffled = np.random.default_rng([seed, epoch, 1]).permutation(num_steps)
    return [b for b in (np.array_split(global_batches[i], world)[rank] for i in shuffled) if b.size]


def padding_share(batches: list[np.ndarray], lengths: np.ndarray) -> float:
    """Share of a padded batch's token slots that are padding, over `batches` (0 = none)."""
    lengths = np.asarray(lengths)
    slots = sum(int(lengths[b].max()) * len(b) for b in batches if len(b))
    used = sum(int(lengths[b].sum()) for b in batches if len(b))
    return 1.0 - used / slots if slots else 0.0
