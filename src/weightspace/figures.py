"""Every figure of the workflow, drawn from the tables the computation modules write.

One style setup (`pyplot`: headless matplotlib, seaborn's theme from the config's `figures`
block) and one writer (`save_figure`: PNG and SVG, the SVG's ids salted so that the same
figure gives the same bytes). The computation modules (hull, paths, clustering, centroid,
summary) import no plotting library; the figure rules' scripts call these functions.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from .hull import COMPARISONS, SET_LABELS, point_losses
from .paths import pair_curves
from .plan import LEVELS, SETS


def pyplot(style: str) -> tuple[Any, Any]:
    """matplotlib's pyplot (headless: the Agg backend) and seaborn, with the workflow's theme."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style=style, context="paper")
    np.random.seed(0)  # seaborn's strip jitter draws from NumPy's global generator: same data, same bytes
    return plt, sns


def say_failing(ax: Any, message: str) -> None:
    """Say in the panel, in red at its top left, that the instrument fails its reference."""
    ax.text(0.02, 0.98, message, transform=ax.transAxes, va="top", ha="left", fontsize=6, color="firebrick")


def draw_prior(ax: Any, prior: float, reference: float | None = None, what: str = "models", colour: str = "0.25", xmin: float = 0.0, xmax: float = 1.0) -> None:
    """The prior predictor's loss as a dotted horizontal line (labelled for the legend). When
    `reference` (the loss of the trained models the figure starts from) is not below it, the
    panel says plainly that the probe, not the model, is measured."""
    ax.axhline(prior, xmin=xmin, xmax=xmax, color=colour, linestyle=":", linewidth=1.0, label="prior predictor")
    if reference is not None and not reference < prior:
        say_failing(ax, f"instrument fails its reference:\n{what} not below the prior loss")


def plot_finetune_accuracy(zoo: pd.DataFrame, majority: Mapping[str, float], style: str = "whitegrid", palette: str = "colorblind"):
    """Test accuracy of every model (one point per seed) per dataset, with each dataset's
    majority-class accuracy as a bar behind: a finetune that learned nothing sits on the bar."""
    plt, sns = pyplot(style)
    order = list(dict.fromkeys(zoo["dataset"]))
    fig, ax = plt.subplots(figsize=(1.1 * len(order) + 2, 3.4))
    ax.bar(range(len(order)), [majority[d] for d in order], color="0.85", label="majority class", zorder=0)
    sns.stripplot(data=zoo, x="dataset", y="test_accuracy", order=order, hue="dataset", palette=palette, legend=False, size=6, jitter=0.15, ax=ax, zorder=2)
    ax.set_ylim(0, 1)
    ax.set_xlabel("")
    ax.set_ylabel("test accuracy")
    ax.legend(loc="upper left", frameon=False)
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    return fig


def save_figure(fig: Any, png: str, svg: str, dpi: int) -> None:
    """Write a figure as PNG and SVG with no timestamps or tool versions in the files, so the
    same data give byte-identical figures."""
    import matplotlib.pyplot as plt

    with plt.rc_context({"svg.hashsalt": "weightspace"}):
        fig.savefig(png, dpi=dpi, bbox_inches="tight", metadata={"Software": None})
        fig.savefig(svg, bbox_inches="tight", metadata={"Date": None, "Creator": None})
    plt.close(fig)


def plot_gains(table: pd.DataFrame, title: str, style: str = "whitegrid", palette: str = "colorblind"):
    """Fig. 6 / Fig. 14: the centroid's gain over the pretrained start per dataset."""
    plt, sns = pyplot(style)
    colours = sns.color_palette(palette, 2)
    t = table.sort_values("gain", ascending=False)
    fig, ax = plt.subplots(figsize=(max(3.5, 0.55 * len(t) + 1.5), 3.2))
    informative = t["informative"] if "informative" in t else pd.Series(True, index=t.index)
    ax.bar(t["dataset"], t["gain"], color=[("0.75" if not ok else colours[0] if g >= 0 else colours[1]) for g, ok in zip(t["gain"], informative)])
    for x, (g, ok) in enumerate(zip(t["gain"], informative)):
        if not ok:
            ax.text(x, g, "both at\nmajority", ha="center", va="bottom", fontsize=5, color="0.3")
    ax.axhline(0, color="0.3", linewidth=0.8)
    mean = t.loc[informative.to_numpy(), "gain"].mean()
    ax.axhline(mean, color="0.3", linewidth=0.8, linestyle="--", label=f"mean over informative datasets {mean:+.2f}")
    ax.set_ylabel("test accuracy gain (points)\ncentroid - pretrained start")
    ax.set_title(title, fontsize=9)
    ax.tick_params(axis="x", rotation=45)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
    ax.legend(frameon=False, fontsize=7)
    fig.tight_layout()
    return fig


def plot_tsne(assignments: pd.DataFrame, title: str, style: str = "whitegrid", palette: str = "colorblind"):
    """Fig. 2: t-SNE of the task vectors, colour = true group; the larger, paler marker behind
    each point is coloured by the group its assigned cluster stands for."""
    plt, sns = pyplot(style)
    groups = sorted(assignments["group"].unique())
    colours = dict(zip(groups, sns.color_palette(palette, len(groups))))
    fig, ax = plt.subplots(figsize=(5.2, 4.2))
    ax.scatter(assignments["tsne_x"], assignments["tsne_y"], s=220, c=[colours[g] for g in assignments["cluster_label"]], alpha=0.3, linewidths=0)
    for g in groups:
        sel = assignments["group"] == g
        ax.scatter(assignments.loc[sel, "tsne_x"], assignments.loc[sel, "tsne_y"], s=30, color=colours[g], label=g, edgecolor="white", linewidth=0.5)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.tight_layout()
    return fig


def plot_paths(table: pd.DataFrame, extrapolation: bool, style: str = "whitegrid", palette: str = "colorblind"):
    """Fig. 3 (extrapolation=False: alpha in [0, 1]) or Fig. 5 (the whole grid, symmetric-log
    alpha axis): one panel per pair set, mean +- sd over pairs of the target-averaged loss,
    with the prior predictor's loss on the same targets (dotted)."""
    plt, sns = pyplot(style)
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
    plt, sns = pyplot(style)
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


def plot_hull(table: pd.DataFrame, stats: Sequence[Mapping[str, Any]], style: str = "whitegrid", palette: str = "colorblind"):
    """Fig. 4: per granularity, the distribution of point losses of In, In' and Ex per group,
    with the level's PB values in the panel title."""
    plt, sns = pyplot(style)
    losses = point_losses(table)
    losses["set"] = losses["set"].map(SET_LABELS)
    levels = [lv for lv in LEVELS if lv in set(losses["level"])]
    fig, axes = plt.subplots(1, len(levels), figsize=(4.0 * len(levels), 3.6), squeeze=False)
    order = [SET_LABELS[s] for s in SETS]
    for ax, level in zip(axes[0], levels):
        sub = losses[losses["level"] == level]
        sns.boxplot(data=sub, x="group", y="loss", hue="set", hue_order=order, palette=palette, ax=ax, fliersize=0, linewidth=0.8)
        sns.stripplot(
            data=sub,
            x="group",
            y="loss",
            hue="set",
            hue_order=order,
            palette=palette,
            ax=ax,
            dodge=True,
            size=2.5,
            edgecolor="0.2",
            linewidth=0.3,
            legend=False,
        )
        groups = list(dict.fromkeys(sub["group"]))
        for k, g in enumerate(groups):
            rows = sub[sub["group"] == g]
            ax.hlines(
                float(rows["prior_loss"].iloc[0]), k - 0.45, k + 0.45, color="0.25", linestyle=":", linewidth=1.0, label="prior predictor" if k == 0 else None
            )
        in_loss = sub[sub["set"] == SET_LABELS["in"]].groupby("group")["loss"].mean()
        prior = sub.groupby("group")["prior_loss"].first()
        failing = [g for g in groups if not in_loss.get(g, -np.inf) < prior[g]]
        if failing:
            say_failing(ax, f"In's mean loss not below the prior loss\n({', '.join(failing)}): the probe may be what is measured")
        pb = {(s["a"], s["b"]): s["pb"] for s in stats if s["level"] == level and s["group"] == "all"}
        text = "  ".join(f"PB({SET_LABELS[a]}>{SET_LABELS[b]})={pb[(a, b)]:.0%}" for a, b in COMPARISONS if (a, b) in pb)
        ax.set_title(f"{level} level (dotted: prior loss {', '.join(f'{p:.2f}' for p in prior[groups])})\n{text}", fontsize=7)
        ax.set_xlabel("")
        ax.set_ylabel("generalized loss (mean over the group's datasets)")
        ax.legend(fontsize=6, frameon=False)
    fig.tight_layout()
    return fig


def plot_edges(table: pd.DataFrame, style: str = "whitegrid", palette: str = "colorblind"):
    """Fig. 11: the loss from the centroid along random directions (mean +- sd over
    directions) and toward each origin read (the zero vector, the pretrained model), against
    the distance in units of the finetuned models' mean distance from the centroid (dashed
    line: 1), with the prior predictor's loss (dotted)."""
    plt, sns = pyplot(style)
    per_point = table.groupby(["kind", "distance", "point"], as_index=False)[["loss", "prior_loss"]].mean()
    centre = per_point[per_point["kind"] == "centroid"]["loss"].mean()
    per_point["way"] = np.where(per_point["kind"].str.startswith("random"), "random directions", per_point["kind"])
    ways = ["random directions"] + [w for w in ("toward zero", "toward pretrained") if w in set(per_point["way"])]
    colours = sns.color_palette(palette, len(ways))
    fig, ax = plt.subplots(figsize=(4.6, 3.4))
    for colour, way in zip(colours, ways):
        c = per_point[per_point["way"] == way].groupby("distance")["loss"].agg(["mean", "std"]).fillna(0.0)
        c.loc[0.0] = [centre, 0.0]
        c = c.sort_index()
        ax.plot(c.index, c["mean"], marker="o", ms=3, color=colour, label=way)
        ax.fill_between(c.index, c["mean"] - c["std"], c["mean"] + c["std"], color=colour, alpha=0.25, linewidth=0)
        if way == "toward pretrained":  # the last point is the pretrained model itself
            ax.annotate("pretrained model", (c.index[-1], c["mean"].iloc[-1]), textcoords="offset points", xytext=(4, -8), fontsize=6, color=colour)
    ax.axvline(1.0, color="0.4", linestyle="--", linewidth=0.8)
    draw_prior(ax, float(per_point["prior_loss"].mean()), float(centre), what="the centroid")
    if "centroid_norm" in table:
        f = float(table["radius"].iloc[0] / table["centroid_norm"].iloc[0])
        top = ax.secondary_xaxis("top", functions=(lambda x: x * f, lambda x: x / f))
        top.set_xlabel("distance as a fraction of the centroid's norm", fontsize=7)
        top.tick_params(labelsize=6)
    ax.set_xlabel("distance from the centroid (mean model distance = 1)")
    ax.set_ylabel("generalized loss (mean over the region's datasets)")
    ax.legend(frameon=False, fontsize=7)
    fig.tight_layout()
    return fig


def plot_formation(geometry: pd.DataFrame, style: str = "whitegrid", palette: str = "colorblind"):
    """Region formation: one panel per grouping, x = snapshot step (log). Clustering accuracy
    (majority rule and one-to-one) with the one-to-one chance level (p95 of permuted labels,
    dotted), and on the right axis the within/between cosine ratio (1 = no region)."""
    plt, sns = pyplot(style)
    names = list(dict.fromkeys(geometry["grouping"]))
    colours = sns.color_palette(palette, 3)
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        g = geometry[geometry["grouping"] == name].sort_values("step")
        ax.plot(g["step"], g["accuracy_hungarian"], marker="o", color=colours[0], label="one-to-one accuracy")
        ax.plot(g["step"], g["accuracy_majority"], marker=".", linestyle="--", color=colours[0], alpha=0.6, label="majority-rule accuracy")
        ax.plot(g["step"], g["chance_hungarian"], linestyle=":", color="0.3", label="one-to-one chance (p95)")
        ax.set_xscale("log")
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("finetuning step")
        ax.set_ylabel("clustering accuracy")
        ax.set_title(f"{name} ({int(g['groups'].iloc[0])} groups, {int(g['models'].iloc[0])} models)", fontsize=9)
        right = ax.twinx()
        right.plot(g["step"], g["within_between_ratio"], marker="s", markersize=3, color=colours[1], label="cosine within / between")
        right.axhline(1.0, color=colours[1], linewidth=0.6, linestyle=":")
        right.set_ylabel("within / between cosine", color=colours[1])
        right.grid(False)
        if not g["clusters"].any():
            say_failing(ax, "never clusters: accuracy not above chance\nwith models closer within than between")
    lines, labels = axes[0][0].get_legend_handles_labels()
    twin_lines, twin_labels = fig.axes[-1].get_legend_handles_labels()
    fig.legend(lines + twin_lines, labels + twin_labels, loc="lower center", ncol=4, frameon=False, fontsize=7, bbox_to_anchor=(0.5, -0.04))
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def plot_settling(models: pd.DataFrame, style: str = "whitegrid", palette: str = "colorblind"):
    """Direction settling and the instrument along training, x = snapshot step (log). Left: each
    model's cosine between its task vector at the step and at its last step (one line per
    model, colour = dataset). Right: the generalized loss of each dataset's snapshots on their
    own dataset (mean over seeds, band = min-max), the prior predictor's loss dotted."""
    plt, sns = pyplot(style)
    order = list(dict.fromkeys(models["dataset"]))
    colours = dict(zip(order, sns.color_palette(palette, len(order))))
    fig, (left, right) = plt.subplots(1, 2, figsize=(8.4, 3.3))
    labelled = set()
    for model, g in models.groupby("model_id", sort=False):
        g = g.sort_values("step")
        d = g["dataset"].iloc[0]
        left.plot(g["step"], g["cosine_to_last"], color=colours[d], alpha=0.8, linewidth=1, label=None if d in labelled else d)
        labelled.add(d)
    left.legend(frameon=False, fontsize=7, title="one line per model", title_fontsize=7)
    for d in order:
        g = models[models["dataset"] == d].groupby("step")
        stats = g["loss"].agg(["mean", "min", "max"]).reset_index()
        right.plot(stats["step"], stats["mean"], marker="o", markersize=3, color=colours[d], label=d)
        right.fill_between(stats["step"], stats["min"], stats["max"], color=colours[d], alpha=0.15, linewidth=0)
        right.axhline(g["prior_loss"].first().iloc[0], color=colours[d], linestyle=":", linewidth=1)
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_xlabel("finetuning step")
    left.set_ylabel("cosine(task vector at step, at last step)")
    left.set_ylim(min(0.0, float(models["cosine_to_last"].min())) - 0.02, 1.02)
    left.set_title("direction settling", fontsize=9)
    right.set_ylabel("generalized loss on own dataset")
    right.set_title("the instrument along training (dotted: prior predictor)", fontsize=9)
    right.legend(frameon=False, fontsize=7)
    last = models[models["step"] == models["step"].max()]
    if not (last["loss"] < last["prior_loss"]).all():
        say_failing(right, "instrument fails its reference:\nsome models' last snapshots not below the prior loss")
    fig.tight_layout()
    return fig
