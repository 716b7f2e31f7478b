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
    """Datasets a pair set is scored on: its `targets` (a list of datasets, or a family: that
    family's datasets), or by default the pair's dataset; the datasets of the families the pair
    shares; every main zoo dataset."""
    spec = config["paths"][pairset]
    from .config import main_datasets

    main = main_datasets(config)
    if isinstance(spec.get("targets"), list):
        return list(spec["targets"])
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
    spec: Mapping[str, Any],
    fixed: Mapping[str, float] | None = None,
    progress: bool = True,
    chunk: int = 8,
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
    rows = score_points(extractor, pretrained, prefix, points, splits, spec, fixed, loaded=endpoints, progress=progress, desc="alpha grid",
                        chunk=chunk, memory_mb=memory_mb)
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


def plot_paths(table: pd.DataFrame, extrapolation: bool, style: str = "whitegrid", palette: str = "colorblind"):
    """Fig. 3 (extrapolation=False: alpha in [0, 1]) or Fig. 5 (the whole grid, symmetric-log
    alpha axis): one panel per pair set, mean +- sd over pairs of the target-averaged loss,
    with the prior predictor's loss on the same targets (dotted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    from .figures import draw_prior

    sns.set_theme(style=style, context="paper")
    curves = pair_curves(table)
    if not extrapolation:
        curves = curves[(curves["alpha"] >= 0) & (curves["alpha"] <= 1)]
    names = list(dict.fromkeys(curves["pairset"]))
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.0), squeeze=False)
    colour = sns.color_palette(palette, 1)[0]
    for ax, name in zip(axes[0], names):
        sub = curves[curves["pairset"] == name]
        c = sub.groupby("alpha")["loss"].agg(["mean", "std"]).fillna(0.0)
        ax.plot(c.index, c["mean"], marker="o", ms=3, color=colour, label="generalized loss")
        ax.fill_between(c.index, c["mean"] - c["std"], c["mean"] + c["std"], alpha=0.25, color=colour, linewidth=0)
        ends = sub[sub["alpha"].isin([0.0, 1.0])]["loss"].mean()
        draw_prior(ax, float(sub["prior_loss"].mean()), float(ends), what="the endpoint models")
        if extrapolation:
            ax.set_xscale("symlog", linthresh=1.0)
            ax.axvspan(0, 1, color="0.9", zorder=0)
        ax.set_title(name.replace("_", " "))
        ax.set_xlabel("alpha")
        ax.legend(fontsize=6, frameon=False, loc="lower right")
    axes[0][0].set_ylabel("generalized loss (mean over targets)")
    fig.tight_layout()
    return fig


def plot_paths_per_dataset(table: pd.DataFrame, style: str = "whitegrid", palette: str = "colorblind"):
    """Fig. 10/12/13: the loss along the paths per target dataset (mean over pairs), one panel
    per pair set, symmetric-log alpha axis; each target's prior loss dotted in its colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style=style, context="paper")
    names = list(dict.fromkeys(table["pairset"]))
    fig, axes = plt.subplots(1, len(names), figsize=(3.8 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        sub = table[table["pairset"] == name].groupby(["target", "alpha"], as_index=False)[["loss", "prior_loss"]].mean()
        order = list(dict.fromkeys(sub["target"]))
        colours = dict(zip(order, sns.color_palette(palette, len(order))))
        sns.lineplot(data=sub, x="alpha", y="loss", hue="target", hue_order=order, palette=colours, ax=ax, marker="o", markersize=3)
        for target in order:
            ax.axhline(float(sub[sub["target"] == target]["prior_loss"].iloc[0]), color=colours[target], linestyle=":", linewidth=0.9)
        ax.set_xscale("symlog", linthresh=1.0)
        ax.axvspan(0, 1, color="0.9", zorder=0)
        ax.set_title(name.replace("_", " "))
        ax.legend(fontsize=6, frameon=False)
    fig.tight_layout()
    return fig
