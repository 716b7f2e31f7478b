"""Do models cluster by the trait they share? (methods.md §3: Fig. 2, 7, 8, 9; Table 1)

Spectral clustering on the precomputed affinity with k = number of true groups, scored by
clustering accuracy (each cluster takes its majority label, the paper's rule; and one-to-one
matching of clusters to groups, Hungarian), per-group precision/recall/F1, and the mean cosine
within and between groups. t-SNE gives the 2-D picture.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from .geometry import affinity_from_cosine


def spectral_clusters(affinity: np.ndarray, k: int, random_state: int = 0) -> np.ndarray:
    """Cluster ids (0..k-1) from a precomputed affinity, `assign_labels='discretize'`."""
    from sklearn.cluster import SpectralClustering

    model = SpectralClustering(n_clusters=k, affinity="precomputed", assign_labels="discretize", random_state=random_state)
    return model.fit_predict(affinity)


def majority_mapping(truth: Sequence[str], clusters: Sequence[int]) -> dict[int, str]:
    """Each cluster -> the most frequent true label among its members (ties: first in sorted
    order). Two clusters may map to the same label (the paper's rule)."""
    df = pd.DataFrame({"truth": list(truth), "cluster": list(clusters)})
    out = {}
    for c, members in df.groupby("cluster"):
        counts = members["truth"].value_counts()
        out[int(c)] = sorted(counts[counts == counts.max()].index)[0]
    return out


def majority_rule_accuracy(truth: Sequence[str], clusters: Sequence[int]) -> float:
    """Share of models whose cluster's majority label is their own label."""
    mapping = majority_mapping(truth, clusters)
    return float(np.mean([mapping[int(c)] == t for t, c in zip(truth, clusters)]))


def hungarian_accuracy(truth: Sequence[str], clusters: Sequence[int]) -> float:
    """Accuracy under the best one-to-one matching of clusters to groups."""
    from scipy.optimize import linear_sum_assignment

    groups = sorted(set(truth))
    ids = sorted(set(int(c) for c in clusters))
    counts = np.zeros((len(ids), len(groups)))
    for t, c in zip(truth, clusters):
        counts[ids.index(int(c)), groups.index(t)] += 1
    rows, cols = linear_sum_assignment(-counts)
    return float(counts[rows, cols].sum() / len(truth))


def group_scores(truth: Sequence[str], clusters: Sequence[int]) -> pd.DataFrame:
    """Per group: precision, recall and F1 of predicting the group by the cluster's majority label."""
    mapping = majority_mapping(truth, clusters)
    predicted = np.array([mapping[int(c)] for c in clusters])
    truth = np.asarray(truth)
    rows = []
    for g in sorted(set(truth)):
        tp = int(((predicted == g) & (truth == g)).sum())
        pred, true = int((predicted == g).sum()), int((truth == g).sum())
        p = tp / pred if pred else 0.0
        r = tp / true if true else 0.0
        rows.append({"group": g, "precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0, "models": true})
    return pd.DataFrame(rows)


def within_between(similarity: np.ndarray, truth: Sequence[str]) -> tuple[float, float]:
    """Mean similarity over pairs of distinct models in the same group, and in different groups."""
    t = np.asarray(truth)
    same = t[:, None] == t[None, :]
    off = ~np.eye(len(t), dtype=bool)
    within = similarity[same & off]
    between = similarity[~same]
    return (float(within.mean()) if within.size else float("nan"), float(between.mean()) if between.size else float("nan"))


def tsne_coordinates(affinity: np.ndarray, random_state: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """2-D t-SNE on the distance 1 - affinity (precomputed metric, random init); perplexity is
    capped below the number of models, as t-SNE requires."""
    from sklearn.manifold import TSNE

    n = len(affinity)
    distance = np.clip(1.0 - affinity, 0.0, None)
    np.fill_diagonal(distance, 0.0)
    perplexity = min(perplexity, max(1.0, (n - 1) / 3))
    return TSNE(n_components=2, metric="precomputed", init="random", perplexity=perplexity, random_state=random_state).fit_transform(distance)


def grouping_labels(zoo: pd.DataFrame, spec: Mapping[str, Any]) -> pd.Series:
    """The true group of each zoo model for one grouping (None = left out).

    by: dataset -> the dataset (a size variant counts as its parent dataset);
    by: family  -> the first of spec['groups'] that the dataset belongs to (list a domain group,
                   e.g. twitter, first to let it win over the task family);
    by: size    -> the training-set size (cap) of a size-experiment model.
    `models`: 'zoo' (default, the main models) or 'size' (the size experiment's models).
    """
    in_size = zoo["size_of"].notna() if "size_of" in zoo else pd.Series(False, index=zoo.index)
    keep = in_size if spec.get("models", "zoo") == "size" else ~in_size
    by = spec["by"]
    labels: list[str | None] = []
    for row, kept in zip(zoo.itertuples(index=False), keep):
        if not kept:
            labels.append(None)
        elif by == "dataset":
            parent = getattr(row, "size_of", None)
            labels.append(parent if isinstance(parent, str) else row.dataset)
        elif by == "size":
            labels.append(str(int(row.train_size)))
        else:
            labels.append(next((g for g in spec["groups"] if g in row.families), None))
    return pd.Series(labels, index=zoo["model_id"], dtype=object)


def cluster_core(cos: np.ndarray, labels: Sequence[Any], datasets: Sequence[str] | None = None, random_state: int = 0) -> dict[str, Any]:
    """One grouping's clustering, the core the zoo's geometry (cluster_grouping) and the
    formation's per-step geometry (formation.step_geometry) share: the labelled models (a
    missing label, None or NaN, leaves a model out), spectral clustering into as many clusters as groups,
    its accuracy by majority rule and one-to-one, the mean cosine within and between groups,
    and with `datasets` the mean cosine of models of one group but different datasets (None
    when no such pair exists). Returns the metrics and what the callers build on (`keep`,
    `truth`, `clusters`, `affinity`, `cos`: the labelled models' cosines)."""
    keep = np.array([not pd.isna(g) for g in labels], dtype=bool)
    truth = [str(g) for g in np.asarray(list(labels), dtype=object)[keep]]
    sub = cos[np.ix_(keep, keep)]
    k = len(set(truth))
    if k < 2 or len(truth) <= k:
        raise ValueError(f"clustering needs at least 2 groups and more models than groups (groups {k}, models {len(truth)})")
    affinity = affinity_from_cosine(sub)
    clusters = spectral_clusters(affinity, k, random_state)
    within, between = within_between(sub, truth)
    metrics: dict[str, Any] = {
        "models": len(truth),
        "groups": k,
        "accuracy_majority": majority_rule_accuracy(truth, clusters),
        "accuracy_hungarian": hungarian_accuracy(truth, clusters),
        "cosine_within": within,
        "cosine_between": between,
    }
    if datasets is not None:
        t, d = np.asarray(truth), np.asarray(list(datasets))[keep]
        pairs = (t[:, None] == t[None, :]) & (d[:, None] != d[None, :])
        metrics["cosine_within_other_dataset"] = float(sub[pairs].mean()) if pairs.any() else None
    return {"metrics": metrics, "keep": keep, "truth": truth, "clusters": clusters, "affinity": affinity, "cos": sub}


def cluster_grouping(
    cos: np.ndarray, labels: pd.Series, random_state: int = 0, datasets: Sequence[str] | None = None
) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """Everything for one grouping: (metrics, per-model assignments with t-SNE coordinates,
    per-group scores). `cos` is the cosine matrix of all zoo models, in `labels`' order.
    With `datasets` (each model's dataset), also the mean cosine between models of the same
    group but different datasets: the family-level signal without the dataset-level one."""
    core = cluster_core(cos, labels.tolist(), datasets, random_state)
    keep, truth, clusters, sub = core["keep"], core["truth"], core["clusters"], core["cos"]
    xy = tsne_coordinates(core["affinity"], random_state)
    metrics = {**core["metrics"], "affinity": "0.5*(cos+1)" if (sub < 0).any() else "cos"}
    mapping = majority_mapping(truth, clusters)
    assignments = pd.DataFrame(
        {
            "model_id": labels.index[keep],
            "group": truth,
            "cluster": clusters.astype(int),
            "cluster_label": [mapping[int(c)] for c in clusters],
            "tsne_x": xy[:, 0],
            "tsne_y": xy[:, 1],
        }
    )
    return metrics, assignments, group_scores(truth, clusters)
