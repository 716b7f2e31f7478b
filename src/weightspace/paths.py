"""Interpolation and extrapolation between two finetuned models (methods.md §5).

theta(alpha) = (1 - alpha) theta_A + alpha theta_B over body weights, scored with the
generalized loss on the pair's target datasets. One job evaluates a whole alpha grid for one
pair: each endpoint checkpoint is read once, each point materialised once, each target's
splits tokenised once.
"""

from __future__ import annotations

import itertools
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from .loss import subsample  # noqa: F401  (re-exported: the probe's caps)

PAIRSETS = ("same_dataset", "same_family", "cross_family")


def extrapolation_alphas(steps: int, largest: float) -> list[float]:
    """`steps` log-spaced alphas from 1 to `largest`, mirrored (1 - alpha): 0 ... 1 - largest.
    The endpoints 0 and 1 are left to the interpolation grid."""
    if steps == 0:
        return []
    ext = np.logspace(0.0, np.log10(largest), steps)[1:]
    return sorted([float(a) for a in ext] + [float(1.0 - a) for a in ext])


def path_alphas(spec: Mapping[str, Any]) -> list[float]:
    return sorted(set(map(float, spec["alphas"])) | set(extrapolation_alphas(spec["extrapolation_steps"], spec["extrapolation_max"])))


def pair_sets(config: Mapping[str, Any]) -> dict[str, list[tuple[tuple[str, int], tuple[str, int]]]]:
    """Pair set -> [((dataset, seed), (dataset, seed)), ...] for the configured pair sets."""
    from .config import seeds_of

    spec = config.get("paths") or {}
    out = {}
    for name in PAIRSETS:
        block = spec.get(name)
        if not block:
            continue
        if name == "same_dataset":
            d = block["dataset"]
            pairs = [((d, a), (d, b)) for a, b in itertools.combinations(seeds_of(config, d), 2)]
        else:
            a, b = block["datasets"]
            pairs = [((a, s), (b, t)) for s, t in itertools.product(seeds_of(config, a), seeds_of(config, b))]
        out[name] = pairs[: block.get("max_pairs") or len(pairs)]
    return out


def targets(config: Mapping[str, Any], pairset: str) -> list[str]:
    """Datasets a pair set is scored on: the datasets of the family named by its `targets`, or
    by default the pair's dataset; the datasets of the families the pair shares; every main
    zoo dataset."""
    spec = config["paths"][pairset]
    from .config import main_datasets

    main = main_datasets(config)
    if spec.get("targets"):
        return [d for d in main if spec["targets"] in config["datasets"][d]["families"]]
    if pairset == "same_dataset":
        return [spec["dataset"]]
    if pairset == "same_family":
        a, b = spec["datasets"]
        shared = set(config["datasets"][a]["families"]) & set(config["datasets"][b]["families"])
        return [d for d in main if shared & set(config["datasets"][d]["families"])]
    return main


def evaluate_path(
    extractor: Any,
    pretrained: Mapping[str, Any],
    prefix: str,
    a: str,
    b: str,
    alphas: Sequence[float],
    splits: Mapping[str, tuple[pd.DataFrame, pd.DataFrame]],
    l2: float,
    progress: bool = True,
) -> pd.DataFrame:
    """Generalized loss and accuracy at every alpha on every target: one row per (alpha, target)."""
    from .loss import score_points
    from .points import Point
    from .weights import checkpoint_body

    endpoints = {str(f): checkpoint_body(f, list(pretrained), prefix) for f in (a, b)}  # read once
    points = [Point.interpolation(a, b, alpha) for alpha in alphas]
    rows = score_points(extractor, pretrained, prefix, points, splits, l2, loaded=endpoints, progress=progress, desc="alpha grid")
    rows.insert(0, "alpha", [float(alphas[i]) for i in rows.pop("point")])
    return rows


def pair_curves(table: pd.DataFrame) -> pd.DataFrame:
    """Loss per (pair set, pair, alpha), averaged over the pair's targets."""
    return table.groupby(["pairset", "model_a", "model_b", "alpha"], as_index=False)[["loss", "accuracy"]].mean()


def path_statistics(table: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per pair set (methods.md §5 findings): share of pairs whose lowest loss on [0, 1] lies
    strictly inside (0, 1); mean loss at alpha = 0.5 vs the mean of the endpoints; mean loss at
    the extrapolation extremes vs the endpoints."""
    curves = pair_curves(table)
    out = {}
    for name, group in curves.groupby("pairset", sort=False):
        inside, mid, ends, far_pos, far_neg = [], [], [], [], []
        for _, c in group.groupby(["model_a", "model_b"]):
            c = c.set_index("alpha")["loss"].sort_index()
            seg = c[(c.index >= 0) & (c.index <= 1)]
            inside.append(0 < seg.idxmin() < 1)
            end = (c.get(0.0, np.nan) + c.get(1.0, np.nan)) / 2
            ends.append(end)
            mid.append(c.get(0.5, np.nan))
            far_pos.append(c.iloc[-1] if c.index.max() > 1 else np.nan)
            far_neg.append(c.iloc[0] if c.index.min() < 0 else np.nan)
        out[name] = {
            "pairs": len(inside),
            "share_min_inside": float(np.mean(inside)),
            "loss_mid": float(np.nanmean(mid)),
            "loss_endpoints": float(np.nanmean(ends)),
            "alpha_max": float(group["alpha"].max()),
            "alpha_min": float(group["alpha"].min()),
            "loss_alpha_max": float(np.nanmean(far_pos)) if not np.isnan(far_pos).all() else None,
            "loss_alpha_min": float(np.nanmean(far_neg)) if not np.isnan(far_neg).all() else None,
        }
    return out


def plot_paths(table: pd.DataFrame, extrapolation: bool, style: str = "whitegrid", palette: str = "colorblind"):
    """Fig. 3 (extrapolation=False: alpha in [0, 1]) or Fig. 5 (the whole grid, symmetric-log
    alpha axis): one panel per pair set, mean +- sd over pairs of the target-averaged loss."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style=style, context="paper")
    curves = pair_curves(table)
    if not extrapolation:
        curves = curves[(curves["alpha"] >= 0) & (curves["alpha"] <= 1)]
    names = list(dict.fromkeys(curves["pairset"]))
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.0), squeeze=False)
    colour = sns.color_palette(palette, 1)[0]
    for ax, name in zip(axes[0], names):
        c = curves[curves["pairset"] == name].groupby("alpha")["loss"].agg(["mean", "std"]).fillna(0.0)
        ax.plot(c.index, c["mean"], marker="o", ms=3, color=colour)
        ax.fill_between(c.index, c["mean"] - c["std"], c["mean"] + c["std"], alpha=0.25, color=colour, linewidth=0)
        if extrapolation:
            ax.set_xscale("symlog", linthresh=1.0)
            ax.axvspan(0, 1, color="0.9", zorder=0)
        ax.set_title(name.replace("_", " "))
        ax.set_xlabel("alpha")
    axes[0][0].set_ylabel("generalized loss (mean over targets)")
    fig.tight_layout()
    return fig


def plot_paths_per_dataset(table: pd.DataFrame, style: str = "whitegrid", palette: str = "colorblind"):
    """Fig. 10/12/13: the loss along the paths per target dataset (mean over pairs), one panel
    per pair set, symmetric-log alpha axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style=style, context="paper")
    names = list(dict.fromkeys(table["pairset"]))
    fig, axes = plt.subplots(1, len(names), figsize=(3.8 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        sub = table[table["pairset"] == name].groupby(["target", "alpha"], as_index=False)["loss"].mean()
        sns.lineplot(data=sub, x="alpha", y="loss", hue="target", palette=palette, ax=ax, marker="o", markersize=3)
        ax.set_xscale("symlog", linthresh=1.0)
        ax.axvspan(0, 1, color="0.9", zorder=0)
        ax.set_title(name.replace("_", " "))
        ax.legend(fontsize=6, frameon=False)
    fig.tight_layout()
    return fig
