"""Inside and outside the region (methods.md §6-7): In, In', Ex, probability of better, edges.

At each granularity a group shares a trait (one dataset; one family; the whole general group).
In are its finetuned models; In' as many points as In has models, each a Dirichlet(1, ..., 1)
combination of In; Ex models finetuned elsewhere (dataset level: other datasets of the general
group; family level: datasets outside the family) or, at the general level, the pretrained body
moved along a Xavier-like random direction rescaled to In's mean task-vector norm. A point's loss
is its generalized loss averaged over the group's scored datasets. Every point is a
weightspace.points.Point, scored by weightspace.loss.score_points like every other point.

Edges (Fig. 11): from a region's centroid, points along seeded random directions and toward
the origin, read both ways (methods.md §7: the zero vector of weight space, or the pretrained
model, the origin of task-vector space), at distances in units of the finetuned models' mean
distance from the centroid.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from .config import main_datasets
from .points import Point, RandomDirection
from .seeding import derive_seed

LEVELS = ("dataset", "family", "general")
SETS = ("in", "in_prime", "ex")
SET_LABELS = {"in": "In", "in_prime": "In′", "ex": "Ex"}
COMPARISONS = (("in_prime", "ex"), ("in_prime", "in"), ("in", "ex"))

Member = tuple[str, int]


def model_folder(member: Sequence[Any]) -> str:
    dataset, seed = member
    return f"results/models/{dataset}/seed{seed}"


def dirichlet_weights(n: int, count: int, seed: int) -> np.ndarray:
    """`count` points uniformly on the simplex of `n` models (Dirichlet(1, ..., 1)), seeded:
    shape (count, n), every weight positive, every row summing to 1."""
    if n < 1:
        raise ValueError("a convex combination needs at least one model")
    w = np.random.default_rng(seed).dirichlet(np.ones(n), size=count)
    return w / w.sum(axis=1, keepdims=True)


def probability_of_better(a: Sequence[float], b: Sequence[float]) -> float:
    """PB(A, B): the share of all pairs (x in A, y in B) with loss x < y (ties count against A)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if not len(a) or not len(b):
        raise ValueError("probability of better needs two non-empty sets")
    return float((a[:, None] < b[None, :]).mean())


def pooled_probability_of_better(pairs: Sequence[tuple[Sequence[float], Sequence[float]]]) -> float:
    """PB over several groups: wins over all within-group pairs, divided by their number."""
    wins = sum(float((np.asarray(a)[:, None] < np.asarray(b)[None, :]).sum()) for a, b in pairs)
    return wins / sum(len(a) * len(b) for a, b in pairs)


def bootstrap_interval(pairs: Sequence[tuple[Sequence[float], Sequence[float]]], resamples: int, seed: int, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the pooled PB: A and B of every group resampled with
    replacement, independently, `resamples` times (seeded)."""
    rng = np.random.default_rng(seed)
    stats = np.empty(resamples)
    arrays = [(np.asarray(a, dtype=float), np.asarray(b, dtype=float)) for a, b in pairs]
    for r in range(resamples):
        stats[r] = pooled_probability_of_better([(rng.choice(a, len(a)), rng.choice(b, len(b))) for a, b in arrays])
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.percentile(stats, [tail, 100 - tail])
    return float(lo), float(hi)


def general_datasets(config: Mapping[str, Any]) -> list[str]:
    """The general group: hull.general, or every main zoo dataset."""
    return list((config.get("hull") or {}).get("general") or main_datasets(config))


def family_datasets(config: Mapping[str, Any], family: str) -> list[str]:
    return [d for d in main_datasets(config) if family in config["datasets"][d]["families"]]


def _members(config: Mapping[str, Any], datasets: Sequence[str]) -> list[Member]:
    from .config import seeds_of

    return [(d, s) for d in datasets for s in seeds_of(config, d)]


def _capped(members: list[Any], cap: int | None, key: str, seed: int) -> list[Any]:
    """A seeded subsample of at most `cap` members (dataset, seed), stratified by dataset:
    members are drawn round-robin over the datasets (each dataset's own members in a seeded
    order, the datasets' turn order seeded too), so every dataset is represented whenever
    `cap` is at least the number of datasets. Returned in the members' original order."""
    if cap is None or len(members) <= cap:
        return list(members)
    rng = np.random.default_rng(derive_seed(key, seed, "hull-cap"))
    by_dataset: dict[Any, list[int]] = {}
    for i, m in enumerate(members):
        by_dataset.setdefault(m[0], []).append(i)
    queues = [list(rng.permutation(idx)) for idx in by_dataset.values()]
    turn = list(rng.permutation(len(queues)))
    picked: list[int] = []
    while len(picked) < cap:
        for q in turn:
            if queues[q] and len(picked) < cap:
                picked.append(int(queues[q].pop(0)))
    return [members[i] for i in sorted(picked)]


def hull_groups(config: Mapping[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(level, group) -> {"in": members, "ex": members (None: random directions), "targets":
    the datasets its loss averages over}, for the levels and groups hull.levels names."""
    spec = config.get("hull") or {}
    levels = spec.get("levels") or {}
    general = general_datasets(config) if spec else []
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for d in (levels.get("dataset") or {}).get("groups", []):
        others = [o for o in general if o != d]
        out[("dataset", d)] = {"in": _members(config, [d]), "ex": _members(config, others), "targets": [d]}
    family = levels.get("family") or {}
    for f in family.get("groups", []):
        inside = family_datasets(config, f)
        outside = [o for o in main_datasets(config) if o not in inside]
        scored = [d for d in inside if d not in (family.get("exclude") or [])]
        out[("family", f)] = {"in": _members(config, inside), "ex": _members(config, outside), "targets": scored}
    if levels.get("general") is not None:
        out[("general", "general")] = {"in": _members(config, general), "ex": None, "targets": general}
    return out


def set_models(group: Mapping[str, Any], which: str, key: str, seed: int, cap: int | None) -> list[Member]:
    """The zoo models the points of one set combine (none for random directions)."""
    members = [tuple(m) for m in group["in"]]
    if which == "in":
        return _capped(members, cap, key + "/in", seed)
    if which == "in_prime":
        return members
    if which != "ex":
        raise ValueError(f"unknown set {which!r}; sets are {SETS}")
    return [] if group["ex"] is None else _capped([tuple(m) for m in group["ex"]], cap, key + "/ex", seed)


def set_size(group: Mapping[str, Any], which: str, cap: int | None) -> int:
    """How many points a set holds (for sizing its job)."""
    n = len(group["in"]) if which in ("in", "in_prime") or group["ex"] is None else len(group["ex"])
    return min(n, cap or n)


def set_points(group: Mapping[str, Any], which: str, key: str, seed: int, cap: int | None, in_norms: Sequence[float] | None = None) -> list[Point]:
    """The points of one set of one group. `key` names the group (seeds derive from it);
    `cap` limits the scored points per set (a seeded subsample of In or Ex; In' has as many
    points as the capped In, each combining every In model); `in_norms`, the task-vector norms
    of In, sets the length of the general level's random directions."""
    members = [tuple(m) for m in group["in"]]
    if which == "in_prime":
        count = min(len(members), cap or len(members))
        w = dirichlet_weights(len(members), count, derive_seed(key, seed, "dirichlet"))
        return [Point.combination([model_folder(m) for m in members], row, label=f"dirichlet {k}") for k, row in enumerate(w)]
    if which == "in" or group["ex"] is not None:
        return [Point.combination([model_folder(m)], [1.0], label=f"{m[0]}-s{m[1]}") for m in set_models(group, which, key, seed, cap)]
    if in_norms is None:
        raise ValueError("random-direction Ex points need the task-vector norms of In")
    norm = float(np.mean(in_norms))
    count = min(len(members), cap or len(members))
    return [Point(pretrained=1.0, direction=RandomDirection(derive_seed(key, seed * 100003 + k, "direction"), norm), label=f"random {k}") for k in range(count)]


def region_radius(gram: np.ndarray) -> tuple[float, float]:
    """From the task vectors' Gram matrix of a region's models: the mean distance of the models
    from their centroid, and the centroid's distance from the pretrained model (||mean tau||)."""
    g = np.asarray(gram, dtype=float)
    centre_sq = g.mean()
    dist_sq = np.diag(g) - 2 * g.mean(axis=1) + centre_sq
    return float(np.mean(np.sqrt(np.clip(dist_sq, 0, None)))), float(np.sqrt(max(centre_sq, 0.0)))


def edge_region(config: Mapping[str, Any]) -> dict[str, Any]:
    """The region hull.edges names: its models and the datasets scored (a family's exclusions
    at the family level apply)."""
    region = config["hull"]["edges"]["region"]
    if region == "general":
        datasets = general_datasets(config)
        scored = datasets
    else:
        datasets = family_datasets(config, region)
        exclude = ((config["hull"]["levels"].get("family") or {}).get("exclude")) or []
        scored = [d for d in datasets if d not in exclude]
    return {"region": region, "members": _members(config, datasets), "targets": scored}


ORIGINS = ("zero", "pretrained")


def edge_points(
    members: Sequence[Member], radius: float, centre_norm: float, centroid_weight_norm: float,
    distances: Sequence[float], directions: int, seed: int, origins: Sequence[str] = ("zero",),
) -> list[tuple[str, float, Point]]:
    """(kind, distance in radii, point): the centroid (distance 0), then for each distance the
    points `distance * radius` away from it along each random direction ("random k") and
    toward each origin of `origins` (methods.md §7):
    - "toward zero": the centroid scaled down, (1 - s) * centroid with s = distance * radius /
      ||centroid||, the literal origin of weight space (`centroid_weight_norm` = ||centroid||);
      never past the zero vector.
    - "toward pretrained": toward the pretrained model, the origin of task-vector space
      (`centre_norm` = the centroid's distance from it); never past it: distances beyond it
      are left out and the pretrained model itself is the last point, at its own distance
      (likewise the zero vector, when a distance reaches it).
    `radius` is the finetuned models' mean distance from the centroid."""
    unknown = [o for o in origins if o not in ORIGINS]
    if unknown:
        raise ValueError(f"hull.edges.origin: unknown {unknown}; choose from {ORIGINS}")
    folders = [model_folder(m) for m in members]
    n = len(folders)
    centre = Point.combination(folders, [1.0 / n] * n, label="centroid")
    out = [("centroid", 0.0, centre)]
    ends = {"zero": centroid_weight_norm, "pretrained": centre_norm}
    for d in distances:
        for k in range(directions):
            direction = RandomDirection(derive_seed("edges", seed * 100003 + k, "direction"), d * radius)
            out.append((f"random {k}", float(d), Point(centre.coefficients, 0.0, direction, label=f"random {k} at {d:g}")))
    for origin in origins:
        end = ends[origin] / radius  # the origin's distance from the centroid, in radii
        steps = [float(d) for d in distances if d < end] + ([end] if max(distances) >= end else [])
        for d in steps:
            s = min(d / end, 1.0)
            keep = 0.0 if origin == "zero" else s
            label = f"toward {origin} at {d:g}" + (" (reached)" if s == 1.0 else "")
            out.append((f"toward {origin}", d, Point(tuple((f, (1 - s) / n) for f in folders), keep, None, label=label)))
    return out


def point_losses(table: pd.DataFrame) -> pd.DataFrame:
    """Per point of a hull table: loss, accuracy and their references (the prior predictor's
    loss, the majority class's accuracy) averaged over the group's scored datasets."""
    keys = ["level", "group", "set", "point"]
    return table.groupby(keys, as_index=False, sort=False)[["loss", "accuracy", "prior_loss", "majority_accuracy"]].mean()


def _mean_of(losses: pd.DataFrame, groups: Sequence[str], which: str, column: str) -> float:
    return float(losses[losses["group"].isin(groups) & (losses["set"] == which)][column].mean())


def hull_statistics(table: pd.DataFrame, resamples: int, seed: int) -> list[dict[str, Any]]:
    """PB(A, B) for (In', Ex), (In', In), (In, Ex) per level (pooled over the level's groups)
    and per group, with percentile bootstrap intervals; the mean losses and accuracies of A
    and B beside their references (the prior predictor's loss and the majority class's
    accuracy, averaged over the groups)."""
    losses = point_losses(table)
    rows = []
    for level in [lv for lv in LEVELS if lv in set(losses["level"])]:
        sub = losses[losses["level"] == level]
        groups = list(dict.fromkeys(sub["group"]))
        for a, b in COMPARISONS:
            scopes = [("all", groups)] + ([(g, [g]) for g in groups] if len(groups) > 1 else [])
            for scope, gs in scopes:
                pairs = [
                    (sub[(sub["group"] == g) & (sub["set"] == a)]["loss"].to_numpy(), sub[(sub["group"] == g) & (sub["set"] == b)]["loss"].to_numpy())
                    for g in gs
                ]
                pairs = [(x, y) for x, y in pairs if len(x) and len(y)]
                if not pairs:
                    continue
                lo, hi = bootstrap_interval(pairs, resamples, derive_seed(f"{level}/{scope}", seed, f"{a}-{b}"))
                rows.append({
                    "level": level, "group": scope, "a": a, "b": b,
                    "pb": pooled_probability_of_better(pairs), "ci_low": lo, "ci_high": hi,
                    "pairs": int(sum(len(x) * len(y) for x, y in pairs)),
                    "loss_a": float(np.mean(np.concatenate([x for x, _ in pairs]))),
                    "loss_b": float(np.mean(np.concatenate([y for _, y in pairs]))),
                    "prior_loss": float(sub[sub["group"].isin(gs)].groupby("group")["prior_loss"].first().mean()),
                    "accuracy_a": _mean_of(sub, gs, a, "accuracy"),
                    "accuracy_b": _mean_of(sub, gs, b, "accuracy"),
                    "majority_accuracy": float(sub[sub["group"].isin(gs)].groupby("group")["majority_accuracy"].first().mean()),
                    "targets": " ".join(sorted(set(table[(table["level"] == level) & table["group"].isin(gs)]["target"]))),
                })
    return rows


def plot_hull(table: pd.DataFrame, stats: Sequence[Mapping[str, Any]], style: str = "whitegrid", palette: str = "colorblind"):
    """Fig. 4: per granularity, the distribution of point losses of In, In' and Ex per group,
    with the level's PB values in the panel title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style=style, context="paper")
    losses = point_losses(table)
    losses["set"] = losses["set"].map(SET_LABELS)
    levels = [lv for lv in LEVELS if lv in set(losses["level"])]
    fig, axes = plt.subplots(1, len(levels), figsize=(4.0 * len(levels), 3.6), squeeze=False)
    order = [SET_LABELS[s] for s in SETS]
    for ax, level in zip(axes[0], levels):
        sub = losses[losses["level"] == level]
        sns.boxplot(data=sub, x="group", y="loss", hue="set", hue_order=order, palette=palette, ax=ax, fliersize=0, linewidth=0.8)
        sns.stripplot(data=sub, x="group", y="loss", hue="set", hue_order=order, palette=palette, ax=ax, dodge=True, size=2.5, edgecolor="0.2", linewidth=0.3, legend=False)
        groups = list(dict.fromkeys(sub["group"]))
        for k, g in enumerate(groups):
            rows = sub[sub["group"] == g]
            ax.hlines(float(rows["prior_loss"].iloc[0]), k - 0.45, k + 0.45, color="0.25", linestyle=":", linewidth=1.0,
                      label="prior predictor" if k == 0 else None)
        in_loss = sub[sub["set"] == SET_LABELS["in"]].groupby("group")["loss"].mean()
        prior = sub.groupby("group")["prior_loss"].first()
        failing = [g for g in groups if not in_loss.get(g, -np.inf) < prior[g]]
        if failing:
            ax.text(0.02, 0.98, f"In's mean loss not below the prior loss\n({', '.join(failing)}): the probe may be what is measured",
                    transform=ax.transAxes, va="top", ha="left", fontsize=6, color="firebrick")
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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    from .figures import draw_prior

    sns.set_theme(style=style, context="paper")
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
