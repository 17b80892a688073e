"""Where a worker's batches come from: a split held in memory, or a split streamed from its files.

Both give an epoch's batches from any batch on (a resumed run starts at the next one) and the
same number of steps on every rank. The stream reads only this rank's units of the epoch
(`biomed.batching.assign_units`), a shuffle window at a time, checks and tokenizes them on the
fly, and never holds more than about two windows; one window on one worker is the in-memory
order exactly (so both paths train the same model).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Protocol

import numpy as np
import torch

from biomed.batching import assign_units, epoch_batches, stream_batch_sizes, stream_windows, window_order
from biomed.data import Columns
from biomed.encoding import Encoded, EpochDrawn
from biomed.family import Encoder
from biomed.streams import StreamIndex, iter_unit_examples


class TrainBatches(Protocol):
    def __len__(self) -> int: ...

    def batches(self, epoch: int, *, rank: int, world: int, start: int) -> Iterator[tuple[dict, torch.Tensor, int]]: ...


@dataclass
class InMemoryTrain:
    """The training split encoded once; batches index into it (`biomed.batching.epoch_batches`)."""

    encoded: Encoded
    targets: torch.Tensor
    seed: int
    batch_size: int
    lengths: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.encoded)

    def batches(self, epoch, *, rank, world, start):
        plan = epoch_batches(len(self.encoded), epoch=epoch, seed=self.seed, rank=rank, world=world, batch_size=self.batch_size, lengths=self.lengths)
        encoded = self.encoded.for_epoch(epoch) if isinstance(self.encoded, EpochDrawn) else self.encoded
        for rows in plan[start:]:
            yield encoded.batch(rows), self.targets[rows], len(rows)


@dataclass
class UnitLoader:
    """Reads units of a streamed split, re-checks every row (file and row named on failure),
    and encodes them: (encoded rows, raw targets), in unit order."""

    index: StreamIndex
    columns: Columns
    checks: dict
    encoder: Encoder
    max_length: int

    def __call__(self, units: list[int]) -> tuple[Encoded, np.ndarray]:
        inputs, targets = [], []
        for _, examples in iter_unit_examples(self.index, units, columns=self.columns, **self.checks):
            inputs.extend(examples.inputs)
            targets.append(examples.targets)
        return self.encoder.encode(inputs, max_length=self.max_length), np.concatenate(targets) if targets else np.zeros(0)


@dataclass
class StreamedTrain:
    """An epoch of a streamed split: this rank's units, shuffled in windows, cut into batches."""

    loader: UnitLoader
    to_targets: object  # raw targets → the training tensor (regression targets standardised)
    seed: int
    batch_size: int
    buffer_rows: int
    group_by_length: bool = False

    def __len__(self) -> int:
        return self.loader.index.num_rows

    def batches(self, epoch, *, rank, world, start):
        kept = self.loader.index.kept_rows
        units = assign_units(kept, epoch=epoch, seed=self.seed, world=world)[rank]
        windows = stream_windows(units, kept, buffer_rows=self.buffer_rows)
        sizes = stream_batch_sizes(sum(kept[u] for u in units), total_rows=len(self), world=world, batch_size=self.batch_size)
        begin, position, b = sum(sizes[:start]), 0, start
        pending, pending_targets, cursor = None, None, 0
        for w, window in enumerate(windows):
            rows = sum(kept[u] for u in window)
            if position + rows <= begin:  # already trained on before the resume point: not read
                position += rows
                continue
            encoded, targets = self.loader(window)
            lengths = np.asarray(encoded.lengths()) if self.group_by_length else None
            order = window_order(rows, epoch=epoch, seed=self.seed, rank=rank, window=w, batch_size=self.batch_size, lengths=lengths)
            order = order[max(begin - position, 0):]
            position += rows
            encoded, targets = encoded.take(order), self.to_targets(targets[order])
            if pending is not None and cursor < len(pending):  # a batch may span two windows
                rest = np.arange(cursor, len(pending))
                encoded, targets = pending.take(rest).join(encoded), torch.cat([pending_targets[rest], targets])
            pending, pending_targets, cursor = encoded, targets, 0
            while b < len(sizes) and len(pending) - cursor >= sizes[b]:
                picked = np.arange(cursor, cursor + sizes[b])
                yield pending.batch(picked), pending_targets[picked], sizes[b]
                cursor, b = cursor + sizes[b], b + 1


@dataclass
class StreamedEval:
    """A streamed validation split: rank r scores every world-th unit; outputs are gathered."""

    loader: UnitLoader

    def __len__(self) -> int:
        return self.loader.index.num_rows

    def shard(self, *, rank: int, world: int) -> Iterator[tuple[int, Encoded, np.ndarray]]:
        """(unit id, encoded rows, raw targets) of this rank's units."""
        for u in range(rank, len(self.loader.index.units), world):
            if self.loader.index.kept_rows[u]:
                encoded, targets = self.loader([u])
                yield u, encoded, targets
