"""Regions as they form (issue 16): the zoo's geometry and the instrument at every snapshot step.

Every finetune keeps its weights after the steps of `finetune.snapshots`. At each step the
task-vector Gram of all zoo models is computed exactly as the final models' (`gram_in_parts`:
the same position ranges summed in the same order, so the last step of a run whose final
model is its last step gives the same matrix bit for bit), then clustered per grouping like
the final models (`step_geometry`). Each model's direction settles (`settling`: the cosine
between its task vector at each step and at its last step), and the generalized loss of every
snapshot on its own dataset (its L2 strength cross-validated on train, per snapshot) is read
beside the prior predictor's loss.

A clustering accuracy means something only next to chance: `chance_accuracy` is the 95th
percentile of the one-to-one accuracy when the same clusters are matched against randomly
permuted labels (seeded). A grouping "clusters" at a step when its one-to-one accuracy is
above that and its models are closer within groups than between (`clusters`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from .clustering import cluster_core, hungarian_accuracy
from .geometry import cosine, gram_partial, part_range


def gram_in_parts(models: Sequence[str | Path], pretrained: str | Path, parts: int, chunk_size: int, num_positions: int) -> np.ndarray:
    """The task-vector Gram of `models`, computed as the gram_part jobs and the gram rule do:
    each of `parts` position ranges (row-group aligned) summed separately, then the parts added
    in order. Same models, same order, same bits."""
    ranges = [part_range(num_positions, p, parts, chunk_size) for p in range(parts)]
    return sum(gram_partial(models, pretrained, start, stop, block=chunk_size) for start, stop in ranges)


def chance_accuracy(truth: Sequence[str], clusters: Sequence[int], permutations: int = 200, seed: int = 0, quantile: float = 0.95) -> float:
    """The one-to-one (Hungarian) accuracy that chance reaches: its `quantile` over random
    permutations of the true labels against the same clusters (seeded)."""
    rng = np.random.default_rng(seed)
    truth = np.asarray(truth)
    null = [hungarian_accuracy(rng.permutation(truth).tolist(), clusters) for _ in range(permutations)]
    return float(np.quantile(null, quantile))


def clusters(row: Mapping[str, Any]) -> bool:
    """Whether a grouping clusters at a step: one-to-one accuracy above chance and models closer
    within their groups than between groups."""
    return bool(row["accuracy_hungarian"] > row["chance_hungarian"] and row["cosine_within"] > row["cosine_between"])


def step_geometry(cos: np.ndarray, labels: Sequence[str | None], datasets: Sequence[str], random_state: int = 0) -> dict[str, Any]:
    """One grouping at one step: spectral clustering accuracy (majority rule and one-to-one,
    beside chance), mean cosine within and between groups and their ratio, and the mean
    cosine of models of the same group but different datasets (the family signal without the
    dataset one). `labels`: each model's group (None: left out of this grouping)."""
    core = cluster_core(cos, labels, datasets, random_state)
    m = core["metrics"]
    within, between = m["cosine_within"], m["cosine_between"]
    row = {
        **{k: m[k] for k in ("models", "groups", "accuracy_majority", "accuracy_hungarian")},
        "chance_hungarian": chance_accuracy(core["truth"], core["clusters"], seed=random_state),
        "cosine_within": within,
        "cosine_between": between,
        # a ratio of cosines only reads as "times closer" while the between-group mean is positive
        "within_between_ratio": within / between if between > 0 else float("nan"),
        "cosine_gap": within - between,
        "cosine_within_other_dataset": m["cosine_within_other_dataset"],  # None without such pairs
    }
    row["clusters"] = clusters(row)
    return row


def settling(step_gram: np.ndarray, steps: Sequence[int]) -> pd.DataFrame:
    """How far one model's direction has settled: for each snapshot step, the task vector's
    norm and its cosine with the task vector at the last step. `step_gram`: the Gram of the
    model's snapshots in `steps` order."""
    cos = cosine(step_gram)
    return pd.DataFrame({"step": list(steps), "norm": np.sqrt(np.clip(np.diag(step_gram), 0, None)), "cosine_to_last": cos[:, -1]})


def first_step_at_final(table: pd.DataFrame, column: str = "accuracy_hungarian") -> pd.DataFrame:
    """Per grouping: the first step from which `column` stays at its last step's value (the
    accuracy it ends with), whether it ever clusters, and from which step on it stays clustered."""
    rows = []
    for grouping, g in table.sort_values("step").groupby("grouping", sort=False):
        values, steps, flags = g[column].to_numpy(), g["step"].to_numpy(), g["clusters"].to_numpy(bool)
        final = values[-1]
        settled = len(values) - 1
        while settled > 0 and np.isclose(values[settled - 1], final):
            settled -= 1
        stays = len(flags)
        while stays > 0 and flags[stays - 1]:
            stays -= 1
        rows.append(
            {
                "grouping": grouping,
                "final_accuracy": float(final),
                "final_chance": float(g["chance_hungarian"].to_numpy()[-1]),
                "first_step_at_final": int(steps[settled]),
                "ever_clusters": bool(flags.any()),
                "clusters_from_step": int(steps[stays]) if stays < len(flags) else None,
            }
        )
    table = pd.DataFrame(rows)
    # None stays None (never clusters), not a float NaN
    table["clusters_from_step"] = pd.Series([r["clusters_from_step"] for r in rows], dtype=object)
    return table
