"""Geometry of task vectors: a streamed Gram matrix and what follows from it (methods.md §3).

The Gram matrix G[i, j] = <tau_i, tau_j> of task vectors tau = theta_model - theta_pretrained
(body only) is computed range by range over the Parquet shards: a job holds at most
(number of models x range length) float32 values, and partial Gram matrices simply add up.
Cosine similarity, Euclidean distance and norms all derive from G.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .weights import FlatWeights


def part_range(num_positions: int, part: int, parts: int, align: int = 1) -> tuple[int, int]:
    """Positions [start, stop) of part `part` of `parts` equal parts, boundaries rounded to
    multiples of `align` (a Parquet row group), so each part reads whole row groups."""
    if not 0 <= part < parts:
        raise ValueError(f"part {part} outside 0..{parts - 1}")

    def bound(i: int) -> int:
        return min(num_positions, int(round(i * num_positions / parts / align)) * align)

    return bound(part), (num_positions if part == parts - 1 else bound(part + 1))


def gram_partial(models: Sequence[str | Path], pretrained: str | Path, start: int, stop: int, block: int = 1 << 20) -> np.ndarray:
    """Sum over positions [start, stop) of tau_i * tau_j, float64, shape (n, n).

    Reads `block` positions at a time from every model: memory is n x block float32 values
    (plus their float64 copy), whatever the range length.
    """
    readers = [FlatWeights(m) for m in models]
    reference = FlatWeights(pretrained)
    n = len(readers)
    gram = np.zeros((n, n), dtype=np.float64)
    for lo in range(start, stop, block):
        hi = min(stop, lo + block)
        base = reference.read(lo, hi)
        tau = np.empty((n, hi - lo), dtype=np.float64)
        for i, r in enumerate(readers):
            np.subtract(r.read(lo, hi), base, out=tau[i], dtype=np.float64)
        gram += tau @ tau.T
    return gram


def norms(gram: np.ndarray) -> np.ndarray:
    return np.sqrt(np.clip(np.diag(gram), 0.0, None))


def cosine(gram: np.ndarray) -> np.ndarray:
    """Cosine similarity of the task vectors behind a Gram matrix (1 on the diagonal)."""
    n = norms(gram)
    cos = gram / np.outer(n, n)
    np.fill_diagonal(cos, 1.0)
    return np.clip(cos, -1.0, 1.0)


def euclidean(gram: np.ndarray) -> np.ndarray:
    """Pairwise Euclidean distances ||tau_i - tau_j|| from the Gram matrix."""
    d = np.diag(gram)
    sq = d[:, None] + d[None, :] - 2.0 * gram
    out = np.sqrt(np.clip(sq, 0.0, None))
    np.fill_diagonal(out, 0.0)
    return out


def affinity_from_cosine(cos: np.ndarray) -> np.ndarray:
    """The spectral-clustering affinity (methods.md §3): the cosine itself, or 0.5 * (S + 1)
    when any cosine is negative (an affinity must be non-negative)."""
    return 0.5 * (cos + 1.0) if (cos < 0).any() else cos.copy()


def matrix_table(ids: Sequence[str], matrix: np.ndarray):
    """A square matrix as an Arrow table: column model_id, then one column per model id."""
    import pyarrow as pa

    return pa.table({"model_id": list(ids), **{mid: matrix[:, j] for j, mid in enumerate(ids)}})


def read_matrix(path: str | Path) -> tuple[list[str], np.ndarray]:
    """(model ids, matrix) from a file written with matrix_table."""
    import pyarrow.parquet as pq

    t = pq.read_table(path)
    ids = t.column("model_id").to_pylist()
    return ids, np.column_stack([t.column(mid).to_numpy() for mid in ids])
