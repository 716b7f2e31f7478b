"""What one generalized-loss evaluation costs: the probe's cross-validation vs feature extraction.

Model: the real all-MiniLM-L6-v2 (fetched by package name, as the workflow does). Data:
synthetic three-class texts (class-specific words among shared filler), --train / --test
examples, max length 32. Timed in one run: the forward passes that give the features of both
splits (what every evaluation pays), the calibrated probe (5-fold cross-validation over the
default 11-value L2 grid, then the final fit) and the fixed-penalty probe it replaced.
ratio = calibrated probe time / feature time (goal: well below 1, cross-validation must stay
cheap next to the forward passes).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from probe import GRID, texts  # noqa: E402

from _common import minilm  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--train", type=int, default=256)
    p.add_argument("--test", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    from weightspace.loss import FeatureExtractor, calibrated_probe, probe

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        minilm(tmp)
        train, test = texts(a.train, 0), texts(a.test, 1)
        ex = FeatureExtractor(str(tmp / "model"), 32)
        ex.features(train, "train"), ex.features(test, "test")  # tokenised once, warm
        times = {"features": [], "calibrated": [], "fixed": []}
        for _ in range(a.repeats):
            t = time.perf_counter()
            tx, vx = ex.features(train, "train"), ex.features(test, "test")
            times["features"].append(time.perf_counter() - t)
            t = time.perf_counter()
            cal = calibrated_probe(tx, train["label"].to_numpy(), vx, test["label"].to_numpy(), GRID, 5)
            times["calibrated"].append(time.perf_counter() - t)
            t = time.perf_counter()
            fixed = probe(tx, train["label"].to_numpy(), vx, test["label"].to_numpy(), 1.0)
            times["fixed"].append(time.perf_counter() - t)
    best = {k: min(v) for k, v in times.items()}
    print(
        f"features {best['features']:.3f} s ({a.train} + {a.test} examples); calibrated probe {best['calibrated']:.3f} s "
        f"(l2 {cal['regularization']:g}, loss {cal['loss']:.4f}); fixed l2 = 1 probe {best['fixed']:.3f} s (loss {fixed['loss']:.4f})"
    )
    print(
        json.dumps(
            {
                "bench": "loss_cost",
                "ratio": round(best["calibrated"] / best["features"], 3),
                "features_s": round(best["features"], 3),
                "calibrated_s": round(best["calibrated"], 3),
                "fixed_s": round(best["fixed"], 3),
                "train": a.train,
                "test": a.test,
            }
        )
    )


if __name__ == "__main__":
    main()
