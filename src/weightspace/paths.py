"""Interpolation and extrapolation between two finetuned models (methods.md §5).

theta(alpha) = (1 - alpha) theta_A + alpha theta_B over body weights, scored with the
generalized loss on the pair's target datasets. One job evaluates a whole alpha grid for one
pair: each endpoint checkpoint is read once, each point materialised once, each target's
splits tokenised once.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from .points import DEFAULT_CHUNK


def evaluate_path(
    extractor: Any,
    pretrained: Mapping[str, Any],
    prefix: str,
    a: str,
    b: str,
    alphas: Sequence[float],
    splits: Mapping[str, tuple[pd.DataFrame, pd.DataFrame]],
    spec: Mapping[str, Any],
    fixed: Mapping[str, float] | None = None,
    progress: bool = True,
    chunk: int = DEFAULT_CHUNK,
    memory_mb: float | None = None,
) -> pd.DataFrame:
    """Generalized loss and accuracy at every alpha on every target, beside the target's prior
    loss and majority accuracy: one row per (alpha, target). `spec`: the config's loss block;
    `fixed`: the targets' calibrated L2 strengths (loss.score_points)."""
    from .loss import score_points
    from .points import Point
    from .weights import checkpoint_body

    endpoints = {str(f): checkpoint_body(f, list(pretrained), prefix) for f in (a, b)}  # read once
    points = [Point.interpolation(a, b, alpha) for alpha in alphas]
    rows = score_points(
        extractor, pretrained, prefix, points, splits, spec, fixed, loaded=endpoints, progress=progress, desc="alpha grid", chunk=chunk, memory_mb=memory_mb
    )
    rows.insert(0, "alpha", [float(alphas[i]) for i in rows.pop("point")])
    return rows


def pair_curves(table: pd.DataFrame) -> pd.DataFrame:
    """Loss per (pair set, pair, alpha), averaged over the pair's targets."""
    return table.groupby(["pairset", "model_a", "model_b", "alpha"], as_index=False)[["loss", "accuracy", "prior_loss", "majority_accuracy"]].mean()


def path_statistics(table: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per pair set (methods.md §5 findings): share of pairs whose lowest loss on [0, 1] lies
    strictly inside (0, 1); mean loss at alpha = 0.5 vs the mean of the endpoints; mean loss at
    the extrapolation extremes vs the endpoints; each beside its reference (the prior
    predictor's loss on the same targets) and with the probe's accuracy (beside the majority
    class's). Losses and accuracies are averaged over each pair's targets."""
    curves = pair_curves(table)
    out = {}
    for name, group in curves.groupby("pairset", sort=False):
        inside, mid, ends, far_pos, far_neg = [], [], [], [], []
        acc_mid, acc_ends, acc_pos, acc_neg = [], [], [], []
        for _, c in group.groupby(["model_a", "model_b"]):
            c = c.set_index("alpha").sort_index()
            loss, acc = c["loss"], c["accuracy"]
            seg = loss[(loss.index >= 0) & (loss.index <= 1)]
            inside.append(0 < seg.idxmin() < 1)
            ends.append((loss.get(0.0, np.nan) + loss.get(1.0, np.nan)) / 2)
            acc_ends.append((acc.get(0.0, np.nan) + acc.get(1.0, np.nan)) / 2)
            mid.append(loss.get(0.5, np.nan))
            acc_mid.append(acc.get(0.5, np.nan))
            far_pos.append(loss.iloc[-1] if loss.index.max() > 1 else np.nan)
            acc_pos.append(acc.iloc[-1] if loss.index.max() > 1 else np.nan)
            far_neg.append(loss.iloc[0] if loss.index.min() < 0 else np.nan)
            acc_neg.append(acc.iloc[0] if loss.index.min() < 0 else np.nan)

        def mean(values: list[float]) -> float | None:
            return None if np.isnan(values).all() else float(np.nanmean(values))

        out[name] = {
            "pairs": len(inside),
            "targets": sorted(set(table[table["pairset"] == name]["target"])),
            "share_min_inside": float(np.mean(inside)),
            "loss_mid": mean(mid),
            "loss_endpoints": mean(ends),
            "alpha_max": float(group["alpha"].max()),
            "alpha_min": float(group["alpha"].min()),
            "loss_alpha_max": mean(far_pos),
            "loss_alpha_min": mean(far_neg),
            "prior_loss": float(group["prior_loss"].mean()),
            "accuracy_mid": mean(acc_mid),
            "accuracy_endpoints": mean(acc_ends),
            "accuracy_alpha_max": mean(acc_pos),
            "accuracy_alpha_min": mean(acc_neg),
            "majority_accuracy": float(group["majority_accuracy"].mean()),
            "regularization": sorted(float(r) for r in set(table[table["pairset"] == name]["regularization"])),
        }
    return out
