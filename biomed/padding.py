"""Tokenizing sequences once and padding per batch (to the longest row, not to max length)."""

from __future__ import annotations

import numpy as np
import torch


def encode_texts(tokenizer, texts: list[str], *, max_length: int) -> list[list[int]]:
    return tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]


def collate(token_ids: list[list[int]], *, pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(ids) for ids in token_ids)
    input_ids = np.full((len(token_ids), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(token_ids), width), dtype=np.int64)
    for row, ids in enumerate(token_ids):
        input_ids[row, : len(ids)] = ids
        mask[row, : len(ids)] = 1
    return {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(mask)}


def length_sorted_batches(num_rows: int, lengths: list[int], batch_size: int) -> list[np.ndarray]:
    """Evaluation batches of similar lengths, so little compute goes to padding."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    return [order[i : i + batch_size] for i in range(0, num_rows, batch_size)]
