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

from typing import Any, Sequence

import numpy as np
import pandas as pd

from .plan import LEVELS, Member, model_id
from .points import Point, RandomDirection
from .seeding import derive_seed

SET_LABELS = {"in": "In", "in_prime": "In′", "ex": "Ex"}
COMPARISONS = (("in_prime", "ex"), ("in_prime", "in"), ("in", "ex"))


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


def set_points(
    which: str, members: Sequence[Member], folders: Sequence[str], key: str, seed: int, count: int, in_norms: Sequence[float] | None = None
) -> list[Point]:
    """The points of one set of one group (plan.hull_set says which members and how many).

    `members`/`folders`: the set's zoo models and their checkpoint folders, in the same order
    (plan.set_models: In′ combines every In model, In and Ex score each model). `key` names the
    group (seeds derive from it). `count`: In′'s number of Dirichlet points, or the number of
    random directions when the set has no members (the general level's Ex); `in_norms`, the
    task-vector norms of In, sets the length of those directions."""
    if len(members) != len(folders):
        raise ValueError(f"{len(members)} members but {len(folders)} folders")
    if which == "in_prime":
        w = dirichlet_weights(len(folders), count, derive_seed(key, seed, "dirichlet"))
        return [Point.combination(list(folders), row, label=f"dirichlet {k}") for k, row in enumerate(w)]
    if members:
        return [Point.combination([f], [1.0], label=model_id(*m)) for m, f in zip(members, folders)]
    if which != "ex":
        raise ValueError(f"the {which} set has no models")
    if in_norms is None:
        raise ValueError("random-direction Ex points need the task-vector norms of In")
    norm = float(np.mean(in_norms))
    return [Point(pretrained=1.0, direction=RandomDirection(derive_seed(key, seed * 100003 + k, "direction"), norm), label=f"random {k}") for k in range(count)]


def region_radius(gram: np.ndarray) -> tuple[float, float]:
    """From the task vectors' Gram matrix of a region's models: the mean distance of the models
    from their centroid, and the centroid's distance from the pretrained model (||mean tau||)."""
    g = np.asarray(gram, dtype=float)
    centre_sq = g.mean()
    dist_sq = np.diag(g) - 2 * g.mean(axis=1) + centre_sq
    return float(np.mean(np.sqrt(np.clip(dist_sq, 0, None)))), float(np.sqrt(max(centre_sq, 0.0)))


ORIGINS = ("zero", "pretrained")


def edge_points(
    folders: Sequence[str],
    radius: float,
    centre_norm: float,
    centroid_weight_norm: float,
    distances: Sequence[float],
    directions: int,
    seed: int,
    origins: Sequence[str] = ("zero",),
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
    `folders`: the region's checkpoints; `radius` is the finetuned models' mean distance from
    the centroid."""
    unknown = [o for o in origins if o not in ORIGINS]
    if unknown:
        raise ValueError(f"hull.edges.origin: unknown {unknown}; choose from {ORIGINS}")
    folders = list(folders)
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
                rows.append(
                    {
                        "level": level,
                        "group": scope,
                        "a": a,
                        "b": b,
                        "pb": pooled_probability_of_better(pairs),
                        "ci_low": lo,
                        "ci_high": hi,
                        "pairs": int(sum(len(x) * len(y) for x, y in pairs)),
                        "loss_a": float(np.mean(np.concatenate([x for x, _ in pairs]))),
                        "loss_b": float(np.mean(np.concatenate([y for _, y in pairs]))),
                        "prior_loss": float(sub[sub["group"].isin(gs)].groupby("group")["prior_loss"].first().mean()),
                        "accuracy_a": _mean_of(sub, gs, a, "accuracy"),
                        "accuracy_b": _mean_of(sub, gs, b, "accuracy"),
                        "majority_accuracy": float(sub[sub["group"].isin(gs)].groupby("group")["majority_accuracy"].first().mean()),
                        "targets": " ".join(sorted(set(table[(table["level"] == level) & table["group"].isin(gs)]["target"]))),
                    }
                )
    return rows
