"""Clustering scores on hand-built inputs with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from weightspace.clustering import (
    cluster_grouping,
    group_scores,
    grouping_labels,
    hungarian_accuracy,
    majority_mapping,
    majority_rule_accuracy,
    within_between,
)
from weightspace.geometry import affinity_from_cosine


def test_majority_rule_can_give_two_clusters_one_label_hungarian_cannot():
    truth = ["a", "a", "a", "a", "b", "b"]
    clusters = [0, 0, 1, 1, 1, 2]  # cluster 1: a, a, b -> a ; cluster 2: b
    assert majority_mapping(truth, clusters) == {0: "a", 1: "a", 2: "b"}
    assert majority_rule_accuracy(truth, clusters) == pytest.approx(5 / 6)
    # one-to-one, two groups for three clusters: at best 2 (a) + 1 (b) models matched
    assert hungarian_accuracy(truth, clusters) == pytest.approx(3 / 6)


def test_perfect_and_permuted_clusterings_score_one():
    truth = ["x", "x", "y", "y", "z", "z"]
    assert majority_rule_accuracy(truth, [2, 2, 0, 0, 1, 1]) == 1.0
    assert hungarian_accuracy(truth, [2, 2, 0, 0, 1, 1]) == 1.0


def test_group_scores_known_values():
    truth = ["a", "a", "a", "b", "b"]
    clusters = [0, 0, 1, 1, 1]  # 0 -> a, 1 -> b: one a predicted as b
    s = group_scores(truth, clusters).set_index("group")
    assert s.loc["a", "precision"] == 1.0 and s.loc["a", "recall"] == pytest.approx(2 / 3)
    assert s.loc["a", "f1"] == pytest.approx(0.8)
    assert s.loc["b", "precision"] == pytest.approx(2 / 3) and s.loc["b", "recall"] == 1.0


def test_within_between_and_affinity():
    sim = np.array([[1.0, 0.5, -0.2], [0.5, 1.0, 0.0], [-0.2, 0.0, 1.0]])
    assert within_between(sim, ["a", "a", "b"]) == (0.5, pytest.approx(-0.1))
    np.testing.assert_allclose(affinity_from_cosine(sim), 0.5 * (sim + 1))
    pos = np.abs(sim)
    np.testing.assert_allclose(affinity_from_cosine(pos), pos)


def test_clear_block_structure_is_recovered():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 50))
    vecs = np.concatenate([c + 0.1 * rng.normal(size=(4, 50)) for c in centres])
    n = np.linalg.norm(vecs, axis=1)
    cos = vecs @ vecs.T / np.outer(n, n)
    labels = pd.Series([g for g in "abc" for _ in range(4)], index=[f"m{i}" for i in range(12)])
    metrics, assignments, scores = cluster_grouping(cos, labels, datasets=[f"d{i // 2}" for i in range(12)])
    assert metrics["accuracy_majority"] == 1.0 and metrics["accuracy_hungarian"] == 1.0
    assert metrics["cosine_within"] > metrics["cosine_between"]
    # pairs of the same group from different (made-up) datasets: (0,2),(0,3),(1,2),(1,3) per group
    t = np.array(labels)
    d = np.array([f"d{i // 2}" for i in range(12)])
    pairs = (t[:, None] == t[None, :]) & (d[:, None] != d[None, :])
    assert metrics["cosine_within_other_dataset"] == pytest.approx(cos[pairs].mean())
    assert (scores["f1"] == 1.0).all()
    assert assignments.shape == (12, 6) and np.isfinite(assignments[["tsne_x", "tsne_y"]].to_numpy()).all()


def test_grouping_labels_family_priority_and_size_variants():
    zoo = pd.DataFrame(
        {
            "model_id": ["t-s0", "s-s0", "p-s0", "s_n200-s0"],
            "dataset": ["t", "s", "p", "s_n200"],
            "families": [["sentiment", "twitter"], ["sentiment"], ["other"], ["sentiment"]],
            "size_of": [None, None, None, "s"],
            "train_size": [None, None, None, 200],
        }
    )
    fam = grouping_labels(zoo, {"by": "family", "groups": ["sentiment"]})
    assert fam.tolist() == ["sentiment", "sentiment", None, None]
    dom = grouping_labels(zoo, {"by": "family", "groups": ["twitter", "sentiment"]})
    assert dom.tolist() == ["twitter", "sentiment", None, None]
    assert grouping_labels(zoo, {"by": "dataset", "models": "size"}).tolist() == [None, None, None, "s"]
    assert grouping_labels(zoo, {"by": "size", "models": "size"}).tolist() == [None, None, None, "200"]


def test_one_clustering_core_and_one_answer_for_no_other_dataset_pairs():
    """cluster_grouping (the zoo) and step_geometry (formation) share cluster_core: the same
    accuracies and cosines on the same models; with no model of a group from another dataset
    (grouping by dataset), the other-dataset cosine is None in both."""
    import numpy as np
    import pandas as pd

    from weightspace.clustering import cluster_core, cluster_grouping
    from weightspace.formation import step_geometry

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 20))
    x = np.repeat(centres, 4, axis=0) + 0.3 * rng.normal(size=(12, 20))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    cos = x @ x.T
    datasets = [d for d in ("a", "b", "c") for _ in range(4)]
    labels = pd.Series(datasets, index=[f"m{i}" for i in range(12)])
    zoo, _, _ = cluster_grouping(cos, labels, 0, datasets)
    step = step_geometry(cos, datasets, datasets, 0)
    core = cluster_core(cos, datasets, datasets, 0)["metrics"]
    for key in ("models", "groups", "accuracy_majority", "accuracy_hungarian", "cosine_within", "cosine_between"):
        assert zoo[key] == step[key] == core[key], key
    assert zoo["cosine_within_other_dataset"] is None and step["cosine_within_other_dataset"] is None
    family = ["f", "f", "f", "f", "f", "f", "f", "f", "g", "g", "g", "g"]
    assert cluster_core(cos, family, datasets, 0)["metrics"]["cosine_within_other_dataset"] == pytest.approx(float(cos[:4, 4:8].mean()))
    left_out = [None] * 4 + datasets[4:]  # None (or NaN in a Series) leaves a model out
    assert cluster_core(cos, left_out, datasets, 0)["metrics"]["models"] == 8
