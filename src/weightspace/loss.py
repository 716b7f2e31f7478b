"""The generalized loss (methods.md §4): how any point of weight space is scored on any dataset.

Drop the head, freeze the body, fit a new linear head on the target dataset's train split and
report mean cross-entropy and accuracy on its test split. [choice] The head is a single linear
layer on the pooled final hidden states (`pooling`: the first token, as the paper, or the mean
over tokens), fitted to convergence as L2-regularised multinomial logistic regression on the
frozen features (convex: deterministic, and far cheaper than training a head by SGD through
the model). Features are standardised with the train split's mean and sd before fitting.

[choice, revised] The L2 strength is chosen by stratified k-fold cross-validation on the
target's train split only (`cross_validated_l2`), over a fixed grid: once per target and then
held fixed for every point scored on it (`choose: per_target`, the default: the strength whose
mean cross-validated loss over the target's own finetuned models is lowest, `calibrate_target`),
or for every point and target anew (`choose: per_point`). Every result carries the strength
used and the target's reference: the loss of the constant predictor of the train class prior
(`prior_loss`) and the majority class's accuracy. A generalized loss above the prior measures
the probe, not the body.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from .points import DEFAULT_CHUNK


def subsample(df: pd.DataFrame, cap: int | None, key: str) -> pd.DataFrame:
    """A seeded stratified subsample of at most `cap` rows (the probe's caps)."""
    from .data import stratified_subsample
    from .seeding import derive_seed

    if cap is None or len(df) <= cap:
        return df
    rng = np.random.default_rng(derive_seed(key, 0, "probe"))
    return df.iloc[stratified_subsample(df["label"].to_numpy(), cap, rng)].reset_index(drop=True)


def probe_splits(datasets: Sequence[str], loss: Mapping[str, Any], files: Sequence[str]) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """dataset -> (train, test) as the probe sees them: the prepared splits capped by the
    `loss` settings (max_train, max_test), the same examples in every job. `files`: the jobs'
    split files, `<folder>/<dataset>/train.parquet` and `.../test.parquet` of each dataset."""
    from pathlib import Path

    from .data import load_split

    by_name = {(Path(f).parent.name, Path(f).stem): str(f) for f in files}
    missing = [f"{d}/{s}" for d in datasets for s in ("train", "test") if (d, s) not in by_name]
    if missing:
        raise ValueError(f"no split file for {missing} among {list(files)[:6]}")
    return {
        name: (
            subsample(load_split(by_name[(name, "train")]), loss["max_train"], f"{name}/train"),
            subsample(load_split(by_name[(name, "test")]), loss["max_test"], f"{name}/test"),
        )
        for name in datasets
    }


POOLINGS = ("first", "mean")
CHOICES = ("per_point", "per_target")


class FeatureExtractor:
    """The base model's architecture, loaded once per job; any body is swapped in with
    `set_body`, and splits are tokenised once (cached by name). `pooling`: the first token's
    final hidden state (`first`, the paper's <s>/[CLS]) or the mean over the non-padding
    tokens (`mean`)."""

    def __init__(self, base_model: str, max_length: int, batch_size: int = 32, pooling: str = "first"):
        from transformers import AutoModel, AutoTokenizer

        from .integrity import verify_checkpoint

        if pooling not in POOLINGS:
            raise ValueError(f"loss.pooling must be one of {POOLINGS}, not {pooling!r}")
        verify_checkpoint(base_model, required=False)
        self.tokenizer = AutoTokenizer.from_pretrained(base_model)
        self.model = AutoModel.from_pretrained(base_model, dtype=torch.float32)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(self.device).eval()
        self.base_model, self.max_length, self.batch_size, self.pooling = base_model, max_length, batch_size, pooling
        self.pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self._encoded: dict[str, Any] = {}

    def set_body(self, body: Mapping[str, torch.Tensor]) -> None:
        """Copy `body` (float32, or float64 rounded to the model's float32 on copy) into the
        model. Parameters outside the body (a pooler: part of the head) keep the base model's
        values and are never used: features are taken below the head."""
        from .weights import in_body

        params = dict(self.model.named_parameters())
        missing = [k for k in params if in_body(k) and k not in body]
        unexpected = [k for k in body if k not in params]
        if unexpected or missing:
            raise KeyError(f"body does not fit {self.base_model}: missing {missing[:5]}, unexpected {unexpected[:5]}")
        with torch.no_grad():
            for name, value in body.items():
                params[name].copy_(value)

    def features(self, df: pd.DataFrame, key: str | None = None) -> np.ndarray:
        """Pooled final hidden states of `df` under the current body, (examples, hidden).
        Examples are batched in order of length (less padding); rows come back in df's order."""
        from .batches import collate, encode

        data = self._encoded.get(key) if key is not None else None
        if data is None:
            data = encode(self.tokenizer, df, self.max_length)
            if key is not None:
                self._encoded[key] = data
        order = np.argsort([len(x) for x in data.input_ids], kind="stable")
        out = np.empty((len(data), self.model.config.hidden_size), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(data), self.batch_size):
                idx = order[start : start + self.batch_size]
                batch = collate(data, idx, self.pad)
                batch.pop("labels")
                batch = {k: v.to(self.device) for k, v in batch.items()}
                hidden = self.model(**batch).last_hidden_state
                if self.pooling == "first":
                    pooled = hidden[:, 0]
                else:
                    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                    pooled = (hidden * mask).sum(1) / mask.sum(1)
                out[idx] = pooled.float().cpu().numpy()
        return out


def extractor_for(base_model: str, spec: Mapping[str, Any]) -> FeatureExtractor:
    """The feature extractor the config's `loss` block describes (max_length, pooling)."""
    return FeatureExtractor(base_model, spec["max_length"], pooling=spec["pooling"])


def first_token_features(body: Mapping[str, torch.Tensor], base_model: str, df: pd.DataFrame, max_length: int, batch_size: int = 32) -> np.ndarray:
    """Final hidden state of the first token for every example of `df`, with the body
    `body` loaded into the base model's architecture. Shape (examples, hidden), float32."""
    extractor = FeatureExtractor(base_model, max_length, batch_size)
    extractor.set_body(body)
    return extractor.features(df)


def prior_loss(train_y: np.ndarray, test_y: np.ndarray) -> dict[str, float]:
    """The reference of every generalized loss: the test cross-entropy (nats) of the constant
    predictor that outputs the train split's class prior, and the test accuracy of predicting
    the train split's majority class. A class absent from train gets probability 1e-12."""
    classes, counts = np.unique(train_y, return_counts=True)
    prior = dict(zip(classes.tolist(), (counts / counts.sum()).tolist()))
    picked = np.array([prior.get(y, 0.0) for y in np.asarray(test_y).tolist()])
    majority = classes[np.argmax(counts)]
    return {
        "prior_loss": float(-np.mean(np.log(np.clip(picked, 1e-12, None)))),
        "majority_accuracy": float(np.mean(np.asarray(test_y) == majority)),
    }


def _standardise(train_x: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    mean, sd = train_x.mean(0), train_x.std(0)
    sd[sd == 0] = 1.0
    return [(x - mean) / sd for x in (train_x, *others)]


def _test_cross_entropy(clf: Any, x: np.ndarray, y: np.ndarray, classes: np.ndarray) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of a fitted classifier over the label set `classes`
    (classes it never saw get probability 0, clipped to 1e-12)."""
    proba = np.zeros((len(y), len(classes)))
    proba[:, np.searchsorted(classes, clf.classes_)] = clf.predict_proba(x)
    picked = proba[np.arange(len(y)), np.searchsorted(classes, y)]
    return float(-np.mean(np.log(np.clip(picked, 1e-12, None)))), float(np.mean(classes[proba.argmax(1)] == y))


def probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, l2: float = 1.0, max_iter: int = 2000) -> dict[str, Any]:
    """Fit the linear head (L2-regularised multinomial logistic regression, lbfgs, to
    convergence) on train; mean test cross-entropy (nats) and accuracy, beside the prior
    predictor's loss and the majority class's accuracy (`prior_loss`).

    `l2` is the penalty strength per example: the objective is mean cross-entropy +
    l2 / (2 n) * ||W||^2 (sklearn's C = 1 / l2)."""
    from sklearn.linear_model import LogisticRegression

    tx, vx = _standardise(train_x, test_x)
    classes = np.unique(np.concatenate([train_y, test_y]))
    clf = LogisticRegression(C=1.0 / l2, max_iter=max_iter, tol=1e-8)
    clf.fit(tx, train_y)
    loss, accuracy = _test_cross_entropy(clf, vx, test_y, classes)
    return {
        "loss": loss,
        "accuracy": accuracy,
        **prior_loss(train_y, test_y),
        "regularization": float(l2),
        "converged": bool(clf.n_iter_.max() < max_iter),
        "iterations": int(clf.n_iter_.max()),
    }


def cross_validated_l2(x: np.ndarray, y: np.ndarray, grid: Sequence[float], folds: int, seed: int = 0) -> tuple[float, list[float]]:
    """The L2 strength of `grid` with the lowest mean held-out cross-entropy in stratified
    `folds`-fold cross-validation on (x, y), a train split (seeded folds; each fold
    standardised with its own training part). Ties go to the stronger penalty. Returns the
    choice and the mean held-out loss per grid value (grid order).

    Each fold fits the grid from the strongest penalty to the weakest, each fit warm-started
    from the previous one: a regularisation path, a few lbfgs iterations per value."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    grid = [float(g) for g in grid]
    if len(grid) == 1:
        return grid[0], [float("nan")]
    _, counts = np.unique(y, return_counts=True)
    k = int(min(folds, counts.min()))
    if k < 2:
        raise ValueError(f"cross-validating the probe needs two examples of every class in train (smallest class: {counts.min()})")
    classes = np.unique(y)
    path = sorted(range(len(grid)), key=lambda i: -grid[i])  # strongest penalty first
    losses = np.zeros(len(grid))
    for fit_idx, held_idx in StratifiedKFold(k, shuffle=True, random_state=seed).split(x, y):
        fx, hx = _standardise(x[fit_idx], x[held_idx])
        clf = LogisticRegression(warm_start=True, max_iter=2000, tol=1e-6)
        for i in path:
            clf.set_params(C=1.0 / grid[i])
            clf.fit(fx, y[fit_idx])
            losses[i] += _test_cross_entropy(clf, hx, y[held_idx], classes)[0] / k
    best = min(range(len(grid)), key=lambda i: (round(losses[i], 12), -grid[i]))
    return grid[best], losses.tolist()


def calibrated_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    grid: Sequence[float],
    folds: int,
    l2: float | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """The probe with its L2 strength chosen on train alone by cross_validated_l2 (or `l2`
    when given: a strength chosen once per target). The test split is used for scoring only."""
    if l2 is None:
        l2, _ = cross_validated_l2(train_x, train_y, grid, folds, seed)
    return probe(train_x, train_y, test_x, test_y, l2)


def generalized_loss(
    body: Mapping[str, torch.Tensor],
    base_model: str,
    train: pd.DataFrame,
    test: pd.DataFrame,
    max_length: int,
    grid: Sequence[float] = (1.0,),
    folds: int = 5,
    pooling: str = "first",
) -> dict[str, Any]:
    """The generalized loss of one body on one dataset (train split fits the head and, by
    cross-validation, its L2 strength; test scores it)."""
    extractor = FeatureExtractor(base_model, max_length, pooling=pooling)
    extractor.set_body(body)
    return calibrated_probe(extractor.features(train), train["label"].to_numpy(), extractor.features(test), test["label"].to_numpy(), grid, folds)


LOSS_COLUMNS = ["point", "target", "loss", "prior_loss", "accuracy", "majority_accuracy", "regularization", "converged"]


def score_points(
    extractor: FeatureExtractor,
    pretrained: Mapping[str, torch.Tensor],
    prefix: str,
    points: Sequence[Any],
    splits: Mapping[str, tuple[pd.DataFrame, pd.DataFrame]],
    spec: Mapping[str, Any],
    fixed: Mapping[str, float] | None = None,
    loaded: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
    chunk: int = DEFAULT_CHUNK,
    progress: bool = True,
    desc: str = "points",
    memory_mb: float | None = None,
) -> pd.DataFrame:
    """The generalized loss of every point (weightspace.points.Point) on every target dataset:
    one row per (point, target) with the point's position in `points`, the loss beside the
    target's prior loss, the accuracy beside the majority class's, the L2 strength the probe
    used and whether it converged (LOSS_COLUMNS). `spec` is the config's `loss` block
    (l2_grid, cv_folds, choose); with `choose: per_target`, `fixed` maps every target to its
    strength (from calibrate_target), else each point cross-validates its own. Points are
    materialised `chunk` at a time (each checkpoint read once per chunk, or never when in
    `loaded`), fewer when their accumulators would not fit the job's `memory_mb` or the GPU
    (points.points_chunk); each target's splits are tokenised once."""
    import logging

    from tqdm.auto import tqdm

    from .points import accumulate, points_chunk

    if spec["choose"] not in CHOICES:
        raise ValueError(f"loss.choose must be one of {CHOICES}, not {spec['choose']!r}")
    if spec["choose"] == "per_target":
        missing = [t for t in splits if fixed is None or t not in fixed]
        if missing:
            raise ValueError(f"loss.choose is per_target but no calibrated L2 strength was given for {missing}")
    else:
        fixed = None
    rows = []
    parameters = sum(t.numel() for t in pretrained.values())
    fitted = points_chunk(parameters, chunk, memory_mb, extractor.device, len(loaded or {}))
    if fitted < chunk:
        logging.getLogger(__name__).info(
            "%d points per chunk (hull.chunk %d does not fit %s)", fitted, chunk, "the GPU" if extractor.device.type == "cuda" else f"{memory_mb} MB"
        )
    chunk = fitted
    # float64 accumulators for one chunk of points, allocated once and reused: a fresh
    # body-sized allocation per point costs more than the arithmetic (page faults)
    buffers = [{n: torch.empty(t.shape, dtype=torch.float64, device=extractor.device) for n, t in pretrained.items()} for _ in range(min(chunk, len(points)))]
    bar = tqdm(total=len(points), desc=desc, disable=not progress, mininterval=1.0)
    for lo in range(0, len(points), chunk):
        bodies = accumulate(points[lo : lo + chunk], pretrained, prefix, loaded, buffers)
        for i, body in enumerate(bodies, start=lo):
            extractor.set_body(body)
            for name, (train, test) in splits.items():
                tx = extractor.features(train, f"{name}/train")
                vx = extractor.features(test, f"{name}/test")
                out = calibrated_probe(
                    tx, train["label"].to_numpy(), vx, test["label"].to_numpy(), spec["l2_grid"], spec["cv_folds"], None if fixed is None else fixed[name]
                )
                rows.append({"point": i, "target": name, **{k: out[k] for k in LOSS_COLUMNS[2:]}})
            bar.update(1)
    bar.close()
    return pd.DataFrame(rows, columns=LOSS_COLUMNS)


def calibrated_strengths(paths: Sequence[str]) -> dict[str, float] | None:
    """target -> L2 strength, read from calibrate_target's files (None when there are none:
    every point cross-validates its own)."""
    import json

    if not paths:
        return None
    out = {}
    for path in paths:
        with open(path) as f:
            data = json.load(f)
        out[data["dataset"]] = float(data["regularization"])
    return out


CALIBRATION_COLUMNS = ["model_id", "dataset", "loss", "prior_loss", "accuracy", "majority_accuracy", "regularization", "beats_prior", "converged"]


def calibrate_target(
    extractor: FeatureExtractor,
    bodies: Iterable[tuple[str, Mapping[str, torch.Tensor]]],
    dataset: str,
    train: pd.DataFrame,
    test: pd.DataFrame,
    spec: Mapping[str, Any],
) -> dict[str, Any]:
    """The instrument's calibration on one target: its own finetuned models `bodies` (model id,
    body; read once, so a generator keeps one body in memory). Each model's cross-validated loss curve over the L2 grid is computed on the train
    split; the target's strength is the grid value with the lowest mean curve (ties: the
    stronger penalty), the one every point is scored with under `choose: per_target`. Then
    each model is scored on test with the strength the loss stages use for it (the target's,
    or its own under `per_point`): its row of the calibration table (CALIBRATION_COLUMNS,
    `beats_prior` = loss below the prior loss)."""
    grid = [float(g) for g in spec["l2_grid"]]
    y, test_y = train["label"].to_numpy(), test["label"].to_numpy()
    curves, features = [], []
    for model_id, body in bodies:
        extractor.set_body(body)
        tx, vx = extractor.features(train, f"{dataset}/train"), extractor.features(test, f"{dataset}/test")
        own, curve = cross_validated_l2(tx, y, grid, spec["cv_folds"])
        curves.append(curve)
        features.append((model_id, tx, vx, own))
    mean_curve = np.mean(curves, axis=0)
    chosen = grid[min(range(len(grid)), key=lambda i: (round(float(mean_curve[i]), 12), -grid[i]))]
    rows = []
    for model_id, tx, vx, own in features:
        out = probe(tx, y, vx, test_y, chosen if spec["choose"] == "per_target" else own)
        rows.append(
            {
                "model_id": model_id,
                "dataset": dataset,
                **{k: out[k] for k in CALIBRATION_COLUMNS[2:7]},
                "beats_prior": bool(out["loss"] < out["prior_loss"]),
                "converged": out["converged"],
            }
        )
    return {
        "dataset": dataset,
        "choose": spec["choose"],
        "regularization": chosen,
        "grid": grid,
        "cv_loss": [float(v) for v in mean_curve],
        "columns": CALIBRATION_COLUMNS,
        "models": rows,
    }
