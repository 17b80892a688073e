"""The training order (biomed.batching): every row once per epoch across ranks, the same step
count on every rank, deterministic per (seed, epoch), with and without length grouping."""

from __future__ import annotations

import math

import numpy as np
import pytest

from biomed.batching import MEGA_BATCH_STEPS, epoch_batches, mega_batch_rows, padding_share, steps_per_epoch


def _lengths(n: int, seed: int = 0) -> np.ndarray:
    # Protein-like: 10 to 170 residues around a mean of about 33.
    return np.clip(np.random.default_rng(seed).lognormal(3.4, 0.5, n).astype(int), 10, 170)


@pytest.mark.parametrize("grouped", [False, True])
@pytest.mark.parametrize(("num_rows", "world", "batch_size"), [(480, 1, 16), (481, 2, 16), (1000, 3, 7), (5000, 4, 32), (37, 2, 16)])
def test_every_row_once_per_epoch_and_equal_steps(num_rows, world, batch_size, grouped):
    lengths = _lengths(num_rows) if grouped else None
    for epoch in range(3):
        per_rank = [epoch_batches(num_rows, epoch=epoch, seed=7, rank=r, world=world, batch_size=batch_size, lengths=lengths) for r in range(world)]
        assert {len(b) for b in per_rank} == {steps_per_epoch(num_rows, world=world, batch_size=batch_size)}
        rows = np.concatenate([batch for rank in per_rank for batch in rank])
        assert sorted(rows.tolist()) == list(range(num_rows))
        assert max(len(batch) for rank in per_rank for batch in rank) <= batch_size
        # The ranks' batches of one step are within one row of each other (DDP stays in step).
        for step in range(len(per_rank[0])):
            sizes = [len(rank[step]) for rank in per_rank]
            assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("grouped", [False, True])
def test_order_is_a_function_of_seed_and_epoch(grouped):
    lengths = _lengths(800) if grouped else None

    def order(seed, epoch):
        return np.concatenate(epoch_batches(800, epoch=epoch, seed=seed, rank=0, world=2, batch_size=16, lengths=lengths)).tolist()

    assert order(3, 1) == order(3, 1)
    assert order(3, 1) != order(3, 2) and order(3, 1) != order(4, 1)


def test_plain_order_is_unchanged():
    # The order before length grouping existed: runs without it train exactly as they did.
    num_rows, world, batch_size = 481, 2, 16
    for rank in range(world):
        order = np.random.default_rng([5, 2]).permutation(num_rows)
        steps = math.ceil(math.ceil(num_rows / world) / batch_size)
        expected = [b for b in np.array_split(order[rank::world], steps) if b.size]
        got = epoch_batches(num_rows, epoch=2, seed=5, rank=rank, world=world, batch_size=batch_size)
        assert [b.tolist() for b in got] == [b.tolist() for b in expected]


def test_grouping_cuts_padding_and_still_shuffles():
    lengths = _lengths(4000, seed=1)
    plain = epoch_batches(4000, epoch=0, seed=0, rank=0, world=2, batch_size=16)
    grouped = epoch_batches(4000, epoch=0, seed=0, rank=0, world=2, batch_size=16, lengths=lengths)
    assert padding_share(grouped, lengths) < 0.3 * padding_share(plain, lengths)
    # Not one long-to-short sweep: batch lengths go up as often as down.
    longest = np.array([lengths[b].max() for b in grouped])
    ups = int((np.diff(longest) > 0).sum())
    assert 0.3 < ups / (len(longest) - 1) < 0.7


def test_lengths_must_match_rows():
    with pytest.raises(ValueError, match=r"shape \(3,\), expected \(4,\)"):
        epoch_batches(4, epoch=0, seed=0, rank=0, world=1, batch_size=2, lengths=np.ones(3))


def test_a_small_set_is_grouped_in_mega_batches_of_a_quarter_at_most():
    # Hugging Face's rule: up to 50 global batches, but no more than a quarter of the rows.
    assert mega_batch_rows(100_000, block=16) == 16 * MEGA_BATCH_STEPS
    assert mega_batch_rows(263, block=16) == 64
    assert mega_batch_rows(20, block=16) == 16
    # So a small set's batches do not split its lengths into disjoint bands (one sort of the
    # whole set would): batches of different quarters overlap in length.
    lengths = _lengths(256, seed=2)
    grouped = epoch_batches(256, epoch=0, seed=0, rank=0, world=1, batch_size=16, lengths=lengths)
    ranges = [(lengths[b].min(), lengths[b].max()) for b in grouped]
    overlapping = sum(a[0] < b[1] and b[0] < a[1] for i, a in enumerate(ranges) for b in ranges[i + 1 :])
    assert overlapping > 0
    assert padding_share(grouped, lengths) < padding_share(epoch_batches(256, epoch=0, seed=0, rank=0, world=1, batch_size=16), lengths)
