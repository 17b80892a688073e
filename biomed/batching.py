"""The order of training examples: seeded per epoch, every example once across ranks, and the
same number of steps on every rank; optionally grouped by length.

Batches are padded to their longest row, so a batch of similar lengths spends little compute on
padding. Length grouping follows Hugging Face's `LengthGroupedSampler`: shuffle, cut the order
into mega-batches of up to `MEGA_BATCH_STEPS` global batches and at most a quarter of the rows
(its rule, so a small set still mixes lengths across its batches), sort each by length (longest
first), cut it into blocks of a global batch; then the blocks of each mega-batch are put in a seeded random
order, so a run does not see its lengths in a sawtooth. A global batch is shared out over the
ranks, so the ranks' batches of a step have similar lengths as well and no rank waits on a long
one. A streamed rank groups its shuffle windows the same way (`window_order`), keyed so that one
window on one worker gives the in-memory order exactly.
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
    grouped = grouped_order(order, lengths, block=batch_size * world, rng=np.random.default_rng([seed, epoch, 0, 0, 1]))
    return [b for b in (np.array_split(g, world)[rank] for g in np.array_split(grouped, num_steps)) if b.size]


def mega_batch_rows(num_rows: int, *, block: int) -> int:
    """Rows per mega-batch, by Hugging Face's rule: `MEGA_BATCH_STEPS` blocks, but no more blocks
    than a quarter of the rows fill (at least one). A mega-batch of the whole set would sort
    every batch to one length band, and where length goes with the label that biases each step
    (measured on the main job's 263 reviews: macro-F1 0.636 vs 0.752 ungrouped)."""
    block = max(block, 1)
    return block * max(1, min(num_rows // (4 * block), MEGA_BATCH_STEPS))


def grouped_order(order: np.ndarray, lengths: np.ndarray, *, block: int, rng: np.random.Generator) -> np.ndarray:
    """`order` length-grouped: cut into mega-batches of `mega_batch_rows` rows, each sorted by
    length (longest first) and cut into blocks of `block` rows, and the blocks of each mega-batch
    put in a seeded random order (so lengths do not fall in a sawtooth)."""
    mega = mega_batch_rows(len(order), block=block)
    out = []
    for start in range(0, len(order), mega):
        chunk = order[start : start + mega]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        blocks = [chunk[i : i + block] for i in range(0, len(chunk), block)]
        out.extend(blocks[k] for k in rng.permutation(len(blocks)))
    return np.concatenate(out) if out else order


def padding_share(batches: list[np.ndarray], lengths: np.ndarray) -> float:
    """Share of a padded batch's token slots that are padding, over `batches` (0 = none)."""
    lengths = np.asarray(lengths)
    slots = sum(int(lengths[b].max()) * len(b) for b in batches if len(b))
    used = sum(int(lengths[b].sum()) for b in batches if len(b))
    return 1.0 - used / slots if slots else 0.0


# The seed-sequence word that keys the shards' shuffle, apart from the windows' ([seed, epoch,
# rank, window]); numpy ignores trailing zeros, so window 0 of rank 0 is keyed [seed, epoch],
# the in-memory order's key: one window on one worker is the in-memory order exactly.
UNIT_SHUFFLE_KEY = 0x5EED


def assign_units(kept_rows: list[int], *, epoch: int, seed: int, world: int) -> list[list[int]]:
    """Units per rank for an epoch: a seeded shuffle of the units, each dealt to the rank with
    the fewest rows so far (ties: the lowest rank), so ranks' shares differ by under one unit."""
    order = np.random.default_rng([seed, epoch, UNIT_SHUFFLE_KEY]).permutation(len(kept_rows))
    loads, shares = [0] * world, [[] for _ in range(world)]
    for unit in order:
        if kept_rows[unit] == 0:
            continue
        rank = loads.index(min(loads))
        shares[rank].append(int(unit))
        loads[rank] += kept_rows[unit]
    return shares


def stream_windows(units: list[int], kept_rows: list[int], *, buffer_rows: int) -> list[list[int]]:
    """A rank's units cut, in order, into shuffle windows of at least `buffer_rows` rows each
    (the last may be smaller); inside a window the units are in file order."""
    windows, current, rows = [], [], 0
    for unit in units:
        current.append(unit)
        rows += kept_rows[unit]
        if rows >= buffer_rows:
            windows.append(sorted(current))
            current, rows = [], 0
    if current:
        windows.append(sorted(current))
    return windows


def stream_batch_sizes(rank_rows: int, *, total_rows: int, world: int, batch_size: int) -> list[int]:
    """Rows per batch of a rank's stream: the same number of steps on every rank (as in memory),
    the rank's rows spread over them as evenly as `np.array_split` would."""
    num_steps = steps_per_epoch(total_rows, world=world, batch_size=batch_size)
    if rank_rows < num_steps:
        raise ValueError(
            f"a worker's share of the streamed training data is {rank_rows} rows, fewer than the {num_steps} steps of an epoch: "
            "write the files with smaller row groups (pyarrow's row_group_size) or use fewer workers"
        )
    q, r = divmod(rank_rows, num_steps)
    return [q + 1] * r + [q] * (num_steps - r)


def window_order(num_rows: int, *, epoch: int, seed: int, rank: int, window: int, batch_size: int, lengths: np.ndarray | None = None) -> np.ndarray:
    """The order of a shuffle window's rows: a seeded permutation; with `lengths`, grouped by
    length in blocks of `batch_size` (`grouped_order`), keyed as the in-memory order is."""
    order = np.random.default_rng([seed, epoch, rank, window]).permutation(num_rows)
    if lengths is None or not num_rows:
        return order
    return grouped_order(order, np.asarray(lengths), block=batch_size, rng=np.random.default_rng([seed, epoch, rank, window, 1]))
