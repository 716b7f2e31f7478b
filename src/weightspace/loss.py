"""The generalized loss (methods.md §4): how any point of weight space is scored on any dataset.

Drop the head, freeze the body, fit a new linear head on examples of the target dataset and
report mean cross-entropy and accuracy on its test split. [choice, revised] The head is fitted
on the target's **probe split** (`loss.probe_on: probe`, the default), which no finetune reads:
the paper fits it on the train split (`probe_on: train`), and once a body has memorised that
split its features separate those examples perfectly, the head fitted there is overconfident
and its test loss can exceed the prior predictor's although its accuracy is high
(docs/generalized-loss.md). Wherever this docstring says "fit split", read the split
`probe_on` names. [choice] The head is a single linear
layer on the pooled final hidden states (`pooling`: the first token, as the paper, or the mean
over tokens), fitted to convergence as L2-regularised multinomial logistic regression on the
frozen features (convex: deterministic, and far cheaper than training a head by SGD through
the model). Features are standardised with the train split's mean and sd before fitting.

[choice, revised] The L2 strength is chosen by stratified k-fold cross-validation on the
target's fit split only (`cross_validated_l2`), over a fixed grid: once per target and then
held fixed for every point scored on it (`choose: per_target`, the default: the strength whose
mean cross-validated loss over the target's own finetuned models is lowest, `calibrate_target`),
or for every point and target anew (`choose: per_point`). Every result carries the strength
used and the target's reference: the loss of the constant predictor of the fit split's class prior
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


PROBE_ON = ("probe", "train")


def _capped_splits(files: Sequence[str], wanted: Sequence[tuple[str, str]], loss: Mapping[str, Any]) -> dict[tuple[str, str], pd.DataFrame]:
    """(dataset, split) -> that split as the probe sees it: capped by the `loss` settings
    (max_train for a fitting split, max_test for test; seeded stratified subsamples, the same
    examples in every job). `files`: the jobs' split files, `<folder>/<dataset>/<split>.parquet`."""
    from pathlib import Path

    from .data import load_split

    by_name = {(Path(f).parent.name, Path(f).stem): str(f) for f in files}
    missing = [f"{d}/{s}" for d, s in wanted if (d, s) not in by_name]
    if missing:
        raise ValueError(f"no split file for {missing} among {list(files)[:6]}")
    caps = {"test": loss["max_test"]}
    return {(d, s): subsample(load_split(by_name[(d, s)]), caps.get(s, loss["max_train"]), f"{d}/{s}") for d, s in dict.fromkeys(wanted)}


def _fit_on(loss: Mapping[str, Any], fit_on: str | None = None) -> str:
    fit_on = fit_on or loss.get("probe_on", "probe")
    if fit_on not in PROBE_ON:
        raise ValueError(f"loss.probe_on must be one of {PROBE_ON}, not {fit_on!r}")
    return fit_on


def probe_splits(
    datasets: Sequence[str], loss: Mapping[str, Any], files: Sequence[str], fit_on: str | None = None
) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """dataset -> (fit, test) as the probe sees them: the split the head is fitted on
    (`fit_on`, by default the config's `loss.probe_on`: `probe` or `train`) and the test split,
    capped by the `loss` settings (max_train, max_test), the same examples in every job.
    `files`: the jobs' split files, `<folder>/<dataset>/<split>.parquet` of each dataset."""
    fit_on = _fit_on(loss, fit_on)
    splits = _capped_splits(files, [(d, s) for d in datasets for s in (fit_on, "test")], loss)
    return {name: (splits[(name, fit_on)], splits[(name, "test")]) for name in datasets}


def fit_train_test(dataset: str, loss: Mapping[str, Any], files: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(fit, train, test) of one dataset as the probe sees them, each read once: the split the
    head is fitted on (loss.probe_on), the finetunes' train split (for the train-split reading
    beside it; the same frame as `fit` when probe_on is train) and test."""
    fit_on = _fit_on(loss)
    splits = _capped_splits(files, [(dataset, fit_on), (dataset, "train"), (dataset, "test")], loss)
    return splits[(dataset, fit_on)], splits[(dataset, "train")], splits[(dataset, "test")]


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
        from .device import environment, resolve_device

        # the finetunes' device rule: CUDA when present, and a GPU promised but absent fails (GPUMissing)
        self.device, _ = resolve_device("fp32")
        setup = environment(self.device, None)
        self.device_label = f"{setup['device']} ({setup['device_name']})"  # recorded in every loss output
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
    """The feature extractor the config's `loss` block describes (max_length, batch_size, pooling)."""
    return FeatureExtractor(base_model, spec["max_length"], batch_size=spec.get("batch_size", 32), pooling=spec["pooling"])


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


def cv_folds(y: np.ndarray, folds: int, seed: int = 0) -> tuple[list[tuple[np.ndarray, np.ndarray]], dict[str, int]]:
    """The (fitting, held-out) index pairs of the probe's cross-validation, with the rule for
    small classes (written into every calibration output as `cv_rule`): k = `folds`, fewer
    down to 2 when the smallest class with two or more examples is smaller; every class with
    at least k examples is stratified over the k folds; a class with fewer (a singleton) is
    never held out and sits in every fitting part, so the head always knows it. A class absent
    from `y` is simply not there. Raises when no class has two examples."""
    from sklearn.model_selection import StratifiedKFold

    classes, counts = np.unique(y, return_counts=True)
    splittable = counts[counts >= 2]
    if len(splittable) == 0:
        raise ValueError(f"cross-validating the probe needs a class with two or more examples (class sizes: {counts.tolist()})")
    k = int(max(2, min(folds, splittable.min())))
    held_classes = classes[counts >= k]
    held_mask = np.isin(y, held_classes)
    fit_only = np.flatnonzero(~held_mask)
    cv_idx = np.flatnonzero(held_mask)
    pairs = []
    if len(held_classes) == 1:  # one class to hold out: plain shuffled folds of it
        rng = np.random.default_rng(seed)
        parts = np.array_split(rng.permutation(cv_idx), k)
        pairs = [(np.sort(np.concatenate([fit_only, *[p for j, p in enumerate(parts) if j != i]])), np.sort(part)) for i, part in enumerate(parts)]
    else:
        for fit_idx, held_idx in StratifiedKFold(k, shuffle=True, random_state=seed).split(cv_idx, y[cv_idx]):
            pairs.append((np.sort(np.concatenate([fit_only, cv_idx[fit_idx]])), cv_idx[held_idx]))
    return pairs, {"folds": k, "fit_only_examples": int(len(fit_only)), "fit_only_classes": int((counts < k).sum())}


CV_RULE = (
    "k = cv_folds, fewer down to 2 when the smallest class with two or more examples is smaller; "
    "a class with fewer than k examples is never held out and sits in every fitting part"
)


def cross_validated_l2(x: np.ndarray, y: np.ndarray, grid: Sequence[float], folds: int, seed: int = 0) -> tuple[float, list[float]]:
    """The L2 strength of `grid` with the lowest mean held-out cross-entropy in stratified
    `folds`-fold cross-validation on (x, y), a fit split (seeded folds, the small-class rule of
    `cv_folds`; each fold standardised with its own fitting part). Ties go to the stronger
    penalty. Returns the choice and the mean held-out loss per grid value (grid order).

    Each fold fits the grid from the strongest penalty to the weakest, each fit warm-started
    from the previous one: a regularisation path, a few lbfgs iterations per value."""
    from sklearn.linear_model import LogisticRegression

    grid = [float(g) for g in grid]
    if len(grid) == 1:
        return grid[0], [float("nan")]
    pairs, _ = cv_folds(y, folds, seed)
    classes = np.unique(y)
    path = sorted(range(len(grid)), key=lambda i: -grid[i])  # strongest penalty first
    losses = np.zeros(len(grid))
    for fit_idx, held_idx in pairs:
        fx, hx = _standardise(x[fit_idx], x[held_idx])
        clf = LogisticRegression(warm_start=True, max_iter=2000, tol=1e-6)
        for i in path:
            clf.set_params(C=1.0 / grid[i])
            clf.fit(fx, y[fit_idx])
            losses[i] += _test_cross_entropy(clf, hx, y[held_idx], classes)[0] / len(pairs)
    return _lowest(grid, losses), losses.tolist()


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


def both_readings(
    fit_x: np.ndarray,
    fit_y: np.ndarray,
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    grid: Sequence[float],
    folds: int,
) -> dict[str, Any]:
    """One body's generalized loss read both ways, each head's L2 strength cross-validated on
    its own fitting split: fitted on the fit split (the probe split under the default
    `probe_on: probe`; SCORES and `fit_cv_loss`), and fitted on the finetunes'
    train split, the paper's literal reading (`train_reading_*`, with the held-out loss of its
    cross-validation, `train_cv_loss`). Pass the same arrays twice when probe_on is train."""
    grid = [float(g) for g in grid]
    l2, curve = cross_validated_l2(fit_x, fit_y, grid, folds)
    out = probe(fit_x, fit_y, test_x, test_y, l2)
    same = fit_x is train_x
    l2_train, train_curve = (l2, curve) if same else cross_validated_l2(train_x, train_y, grid, folds)
    other = out if same else probe(train_x, train_y, test_x, test_y, l2_train)
    return {
        **{k: out[k] for k in SCORES},
        "fit_cv_loss": curve[grid.index(l2)],
        "train_cv_loss": train_curve[grid.index(l2_train)],
        "train_reading_loss": other["loss"],
        "train_reading_prior_loss": other["prior_loss"],
        "train_reading_accuracy": other["accuracy"],
        "train_regularization": l2_train,
    }


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


SCORES = ["loss", "prior_loss", "accuracy", "majority_accuracy", "regularization", "converged"]
# probe_on: the split the head was fitted on, stated in every loss table; device: where the
# features were computed
LOSS_COLUMNS = ["point", "target", *SCORES, "probe_on", "device"]


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
                rows.append(
                    {"point": i, "target": name, **{k: out[k] for k in SCORES}, "probe_on": spec.get("probe_on", "probe"), "device": extractor.device_label}
                )
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


CALIBRATION_COLUMNS = [
    "model_id",
    "dataset",
    "loss",
    "prior_loss",
    "accuracy",
    "majority_accuracy",
    "regularization",
    "beats_prior",
    "converged",
    "probe_on",
    "fit_fold_loss",
    "train_fold_loss",
    "train_reading_loss",
    "train_reading_prior_loss",
]


def _lowest(grid: Sequence[float], curve: Sequence[float]) -> float:
    """The grid value with the lowest loss (ties: the stronger penalty)."""
    return grid[min(range(len(grid)), key=lambda i: (round(float(curve[i]), 12), -grid[i]))]


def calibrate_target(
    extractor: FeatureExtractor,
    bodies: Iterable[tuple[str, Mapping[str, torch.Tensor]]],
    dataset: str,
    fit: pd.DataFrame,
    test: pd.DataFrame,
    spec: Mapping[str, Any],
    train: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """The instrument's calibration on one target: its own finetuned models `bodies` (model id,
    body; read once, so a generator keeps one body in memory). `fit` is the split the head is
    fitted on (`spec['probe_on']`), `train` the finetunes' own train split (the same frame when
    probe_on is train).

    Each model's cross-validated loss curve over the L2 grid is computed on the fit split; the
    target's strength is the grid value with the lowest mean curve (ties: the stronger
    penalty), the one every point is scored with under `choose: per_target`. Then each model is
    scored on test with the strength the loss stages use for it (the target's, or its own under
    `per_point`): its row of the calibration table (CALIBRATION_COLUMNS, `beats_prior` = loss
    below the prior loss, the prior taken from the fit split's labels).

    Beside it, the same body read the other way: the held-out loss of the cross-validation on
    the fit split (`fit_fold_loss`) and on the train split (`train_fold_loss`), and the test
    loss of a head fitted on the train split (`train_reading_loss`, the paper's literal reading,
    its strength chosen the same way on train) beside that split's prior. A train-fold loss far
    below the fit-fold loss means the body memorised its training examples."""
    grid = [float(g) for g in spec["l2_grid"]]
    probe_on = spec.get("probe_on", "probe")
    train = fit if train is None else train
    y, train_y, test_y = fit["label"].to_numpy(), train["label"].to_numpy(), test["label"].to_numpy()
    curves, train_curves, features = [], [], []
    for model_id, body in bodies:
        extractor.set_body(body)
        fx, vx = extractor.features(fit, f"{dataset}/fit"), extractor.features(test, f"{dataset}/test")
        tx = fx if train is fit else extractor.features(train, f"{dataset}/train")
        own, curve = cross_validated_l2(fx, y, grid, spec["cv_folds"])
        own_train, train_curve = (own, curve) if train is fit else cross_validated_l2(tx, train_y, grid, spec["cv_folds"])
        curves.append(curve)
        train_curves.append(train_curve)
        features.append((model_id, fx, tx, vx, own, own_train, curve, train_curve))
    mean_curve, mean_train_curve = np.mean(curves, axis=0), np.mean(train_curves, axis=0)
    chosen, chosen_train = _lowest(grid, mean_curve), _lowest(grid, mean_train_curve)
    per_target = spec["choose"] == "per_target"
    rows = []
    for model_id, fx, tx, vx, own, own_train, curve, train_curve in features:
        l2, l2_train = (chosen, chosen_train) if per_target else (own, own_train)
        out = probe(fx, y, vx, test_y, l2)
        other = out if train is fit else probe(tx, train_y, vx, test_y, l2_train)
        rows.append(
            {
                "model_id": model_id,
                "dataset": dataset,
                **{k: out[k] for k in CALIBRATION_COLUMNS[2:7]},
                "beats_prior": bool(out["loss"] < out["prior_loss"]),
                "converged": out["converged"],
                "probe_on": probe_on,
                "fit_fold_loss": float(curve[grid.index(l2)]) if len(grid) > 1 else float("nan"),
                "train_fold_loss": float(train_curve[grid.index(l2_train)]) if len(grid) > 1 else float("nan"),
                "train_reading_loss": other["loss"],
                "train_reading_prior_loss": other["prior_loss"],
            }
        )
    _, rule = cv_folds(y, spec["cv_folds"])
    return {
        "dataset": dataset,
        "choose": spec["choose"],
        "probe_on": probe_on,
        "device": extractor.device_label,
        "fit_examples": len(fit),
        "test_examples": len(test),
        "regularization": chosen,
        "grid": grid,
        "cv_loss": [float(v) for v in mean_curve],
        "cv_rule": CV_RULE,
        "cv": rule,
        "train_regularization": chosen_train,
        "train_cv_loss": [float(v) for v in mean_train_curve],
        "columns": CALIBRATION_COLUMNS,
        "models": rows,
    }
