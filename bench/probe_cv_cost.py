"""What `loss.choose: per_point` costs per point at the paper preset's probe shapes: the probe's
5-fold cross-validation over the 11-value L2 grid and the final fit, on 1,000 fit + 1,000 test
examples of 768 features (roberta-base's hidden size), against `per_target`'s one fit at a
strength chosen once (the baseline, in the same run). Features: Gaussian class clusters of
moderate separability (a finetuned body's features on its own dataset), for 2, 3 and 50 classes
(trec_fine has 50). ratio = per_point seconds / per_target seconds. CPU only: the probe's fits
run on the host in either setting.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

GRID = [0.1, 0.3, 1, 3, 10, 30, 100, 300, 1000, 3000, 10000]


def features(n: int, dim: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    centres = rng.normal(size=(classes, dim)) * 0.15
    return (centres[y] + rng.normal(size=(n, dim))).astype(np.float32), y


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--fit", type=int, default=1000)
    p.add_argument("--test", type=int, default=1000)
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--classes", type=int, nargs="+", default=[2, 3, 50])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=2)
    a = p.parse_args()
    from threadpoolctl import threadpool_limits

    from weightspace.loss import calibrated_probe, cross_validated_l2, probe

    threadpool_limits(a.threads)
    rows = []
    for k in a.classes:
        fx, fy = features(a.fit, a.dim, k, 0)
        vx, vy = features(a.test, a.dim, k, 1)
        chosen, _ = cross_validated_l2(fx, fy, GRID, 5)  # per_target's strength, chosen once (not timed)
        per_point, per_target = [], []
        for _ in range(a.repeats):
            t = time.perf_counter()
            calibrated_probe(fx, fy, vx, vy, GRID, 5)
            per_point.append(time.perf_counter() - t)
            t = time.perf_counter()
            probe(fx, fy, vx, vy, chosen)
            per_target.append(time.perf_counter() - t)
        rows.append({"classes": k, "per_point_s": min(per_point), "per_target_s": min(per_target), "chosen_l2": chosen})
        print(json.dumps(rows[-1]), flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent).stdout.strip()
    per_point = float(np.mean([r["per_point_s"] for r in rows]))
    per_target = float(np.mean([r["per_target_s"] for r in rows]))
    print(
        json.dumps(
            {
                "bench": "probe_cv_cost",
                "shape": f"{a.fit}+{a.test} x {a.dim}, 5 folds x {len(GRID)} strengths",
                "threads": a.threads,
                "machine": platform.processor() or platform.machine(),
                "commit": commit,
                "rows": rows,
                "per_point_s": per_point,
                "per_target_s": per_target,
                "ratio": per_point / per_target,
            }
        )
    )


if __name__ == "__main__":
    main()
