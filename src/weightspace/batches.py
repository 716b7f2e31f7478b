"""Examples as the models see them: tokenised once, padded per batch, in a seeded order.

Shared by the finetune loop and the generalized loss's feature extraction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from .data import LABEL, PAIR, TEXT


@dataclass
class Encoded:
    """Tokenised examples, unpadded: one int array per example."""

    input_ids: list[np.ndarray]
    token_type_ids: list[np.ndarray] | None
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def encode(tokenizer: Any, df: pd.DataFrame, max_length: int) -> Encoded:
    """Tokenise a split (truncating to max_length tokens); no padding yet."""
    pairs = df[PAIR].tolist() if PAIR in df else None
    enc = tokenizer(df[TEXT].tolist(), pairs, truncation=True, max_length=max_length)
    types = enc.get("token_type_ids")
    return Encoded(
        input_ids=[np.asarray(x, dtype=np.int64) for x in enc["input_ids"]],
        token_type_ids=[np.asarray(x, dtype=np.int64) for x in types] if types is not None else None,
        labels=df[LABEL].to_numpy(dtype=np.int64),
    )


def collate(data: Encoded, idx: Sequence[int], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad the examples `idx` to their longest; returns model inputs and labels."""
    width = max(len(data.input_ids[i]) for i in idx)
    ids = np.full((len(idx), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(idx), width), dtype=np.int64)
    types = np.zeros((len(idx), width), dtype=np.int64) if data.token_type_ids is not None else None
    for row, i in enumerate(idx):
        n = len(data.input_ids[i])
        ids[row, :n] = data.input_ids[i]
        mask[row, :n] = 1
        if types is not None:
            types[row, :n] = data.token_type_ids[i]
    batch = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask), "labels": torch.from_numpy(data.labels[list(idx)])}
    if types is not None:
        batch["token_type_ids"] = torch.from_numpy(types)
    return batch


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The data order of one epoch: a permutation fixed by (seed, epoch) alone, so a resumed
    run needs no data-loader state."""
    return np.random.default_rng([seed, epoch]).permutation(n)
