"""The streamed Gram matrix vs loading every task vector into RAM and numpy X @ X.T, same run.

A synthetic zoo (default 64 models x 10 M float32 parameters, plus a pretrained reference) is
written as Parquet shards to a temporary folder. Each method runs in its own child process so
that its peak RSS is its own (the zoo is in the page cache for both):
- streaming: weightspace.geometry.gram_partial over the whole range, split into `--parts`
  ranges summed one after the other, as the gram_part jobs do (float64 accumulation);
- in memory: read every model's full vector, subtract the reference, X @ X.T (float32).
ratio = streaming time / in-memory time (goal <= 1.5); rss_ratio = streaming peak RSS /
in-memory peak RSS (goal <= 0.25). The two matrices are checked to agree to the float32
baseline's own accuracy (rtol 1e-4, atol 1e-5 x the largest squared norm).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def write_zoo(root: Path, models: int, positions: int) -> None:
    import torch

    from weightspace.weights import make_index, write_flat

    rng = np.random.default_rng(0)
    base = rng.standard_normal(positions, dtype=np.float32)
    body = {"w": torch.from_numpy(base)}
    index = make_index(body)
    ident = {"model_id": "pretrained", "dataset": None, "families": [], "seed": None, "base_model": "bench", "checkpoint_sha256": "0" * 64}
    write_flat(body, index, root / "pretrained", ident, 1 << 20, 1 << 24)
    for i in range(models):
        delta = rng.standard_normal(positions, dtype=np.float32)
        delta *= 0.01
        delta += base
        write_flat({"w": torch.from_numpy(delta)}, index, root / f"m{i:03d}", {**ident, "model_id": f"m{i}"}, 1 << 20, 1 << 24)


def child(method: str, root: Path, parts: int, out: Path) -> None:
    from weightspace.geometry import gram_partial, part_range
    from weightspace.weights import FlatWeights

    models = sorted(p for p in root.iterdir() if p.name.startswith("m"))
    start = time.perf_counter()
    if method == "streaming":
        ref = FlatWeights(root / "pretrained")
        gram = sum(gram_partial(models, root / "pretrained", *part_range(ref.num_positions, i, parts, ref.chunk_size)) for i in range(parts))
    else:
        base = FlatWeights(root / "pretrained").vector()
        x = np.stack([FlatWeights(m).vector() for m in models])
        x -= base
        gram = x @ x.T
    elapsed = time.perf_counter() - start
    np.save(out, np.asarray(gram, dtype=np.float64), allow_pickle=False)
    print(json.dumps({"seconds": elapsed}))


def run_child(method: str, root: Path, parts: int, out: Path) -> tuple[float, float]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", method, "--root", str(root), "--parts", str(parts), "--out", str(out)], stdout=subprocess.PIPE, text=True
    )
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"{method} failed")
    return json.loads(stdout.strip().splitlines()[-1])["seconds"], usage.ru_maxrss / 1024  # MB


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--models", type=int, default=64)
    p.add_argument("--positions", type=int, default=10_000_000)
    p.add_argument("--parts", type=int, default=4)
    p.add_argument("--child")
    p.add_argument("--root")
    p.add_argument("--out")
    a = p.parse_args()
    if a.child:
        child(a.child, Path(a.root), a.parts, Path(a.out))
        return
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        write_zoo(root, a.models, a.positions)
        print(f"wrote {a.models} models x {a.positions:,} positions in {time.perf_counter() - t:.1f} s")
        results = {}
        for method in ("in_memory", "streaming", "in_memory", "streaming"):
            seconds, rss = run_child(method, root, a.parts, root / f"{method}.npy")
            prev = results.get(method)
            results[method] = (min(seconds, prev[0]) if prev else seconds, max(rss, prev[1]) if prev else rss)
        g_stream, g_mem = np.load(root / "streaming.npy", allow_pickle=False), np.load(root / "in_memory.npy", allow_pickle=False)
        np.testing.assert_allclose(g_stream, g_mem, rtol=1e-4, atol=1e-5 * np.abs(np.diag(g_mem)).max())
    (ts, rs), (tm, rm) = results["streaming"], results["in_memory"]
    print(f"streaming {ts:.2f} s, peak RSS {rs:.0f} MB; in memory {tm:.2f} s, peak RSS {rm:.0f} MB")
    print(
        json.dumps(
            {
                "bench": "gram",
                "ratio": round(ts / tm, 3),
                "rss_ratio": round(rs / rm, 3),
                "streaming_s": round(ts, 3),
                "in_memory_s": round(tm, 3),
                "streaming_rss_mb": round(rs),
                "in_memory_rss_mb": round(rm),
                "models": a.models,
                "positions": a.positions,
                "parts": a.parts,
            }
        )
    )


if __name__ == "__main__":
    main()
