"""Flatten write + full read vs numpy tofile/fromfile of the same float32 values, same run.

The body: 25 M float32 values in tensors of a BERT-like shape mix (about all-MiniLM-L6-v2).
Ours: write_flat (shards, index, manifest with sha256) then FlatWeights.vector().
Raw: concatenate the tensors, ndarray.tofile, then np.fromfile. Each side three times,
alternating; the fastest counts. ratio = our throughput / raw throughput (= raw time / our
time); size_ratio = bytes on disk (shards + index + manifest) / raw bytes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import _common  # noqa: F401  (puts src/ on the path)
from weightspace.weights import FlatWeights, make_index, write_flat


def body(total: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    shapes, n, i = [], 0, 0
    while n < total:
        shape = [(30522, 384), (384, 384), (384,), (1536, 384), (384, 1536), (1536,)][i % 6]
        numel = int(np.prod(shape))
        if n + numel > total:
            shape = (total - n,)
            numel = total - n
        shapes.append(shape)
        n += numel
        i += 1
    return {f"p{j}": torch.randn(s, generator=g) for j, s in enumerate(shapes)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--positions", type=int, default=25_000_000)
    p.add_argument("--chunk-size", type=int, default=1 << 20)
    p.add_argument("--shard-size", type=int, default=1 << 24)
    a = p.parse_args()
    b = body(a.positions)
    index = make_index(b)
    identity = {"model_id": "bench", "dataset": "bench", "families": [], "seed": 0, "base_model": "bench", "checkpoint_sha256": "0" * 64}
    ours_t, raw_t, size_ours = [], [], 0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for _ in range(3):
            shutil.rmtree(tmp / "ours", ignore_errors=True)
            start = time.perf_counter()
            write_flat(b, index, tmp / "ours", identity, a.chunk_size, a.shard_size)
            back = FlatWeights(tmp / "ours").vector()
            ours_t.append(time.perf_counter() - start)
            size_ours = sum(f.stat().st_size for f in (tmp / "ours").iterdir() if not f.name.startswith("."))

            start = time.perf_counter()
            np.concatenate([t.reshape(-1).numpy() for t in b.values()]).tofile(tmp / "raw.bin")
            raw = np.fromfile(tmp / "raw.bin", dtype=np.float32)
            raw_t.append(time.perf_counter() - start)
            assert np.array_equal(back, raw)
            (tmp / "raw.bin").unlink()
    raw_bytes = a.positions * 4
    ours_best, raw_best = min(ours_t), min(raw_t)
    print(f"ours: {raw_bytes / ours_best / 1e6:.0f} MB/s ({ours_best:.3f} s), raw: {raw_bytes / raw_best / 1e6:.0f} MB/s ({raw_best:.3f} s)")
    print(
        json.dumps(
            {
                "bench": "flatten",
                "ratio": round(raw_best / ours_best, 3),
                "size_ratio": round(size_ours / raw_bytes, 5),
                "ours_s": round(ours_best, 4),
                "raw_s": round(raw_best, 4),
                "positions": a.positions,
            }
        )
    )


if __name__ == "__main__":
    main()
