"""The generalized loss (methods.md §4): how any point of weight space is scored on any dataset.

Drop the head, freeze the body, fit a new linear head on the target dataset's train split and
report mean cross-entropy and accuracy on its test split. [choice] The head is a single linear
layer on the first token's final hidden state, fitted to convergence as L2-regularised
multinomial logistic regression on the frozen features (convex: deterministic, and far cheaper
than training a head by SGD through the model). Features are standardised with the train
split's mean and sd before fitting.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch


def subsample(df: pd.DataFrame, cap: int | None, key: str) -> pd.DataFrame:
    """A seeded stratified subsample of at most `cap` rows (the probe's caps)."""
    from .data import stratified_subsample
    from .seeding import derive_seed

    if cap is None or len(df) <= cap:
        return df
    rng = np.random.default_rng(derive_seed(key, 0, "probe"))
    return df.iloc[stratified_subsample(df["label"].to_numpy(), cap, rng)].reset_index(drop=True)


def probe_splits(datasets: Sequence[str], loss: Mapping[str, Any], root: str = "results/data") -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """dataset -> (train, test) as the probe sees them: the prepared splits capped by the
    `loss` settings (max_train, max_test), the same examples in every job."""
    from .data import load_split

    return {
        name: (
            subsample(load_split(f"{root}/{name}/train.parquet"), loss["max_train"], f"{name}/train"),
            subsample(load_split(f"{root}/{name}/test.parquet"), loss["max_test"], f"{name}/test"),
        )
        for name in datasets
    }


class FeatureExtractor:
    """The base model's architecture, loaded once per job; any body is swapped in with
    `set_body`, and splits are tokenised once (cached by name)."""

    def __init__(self, base_model: str, max_length: int, batch_size: int = 64):
        from transformers import AutoModel, AutoTokenizer

        from .integrity import verify_checkpoint

        verify_checkpoint(base_model, required=False)
        self.tokenizer = AutoTokenizer.from_pretrained(base_model)
        self.model = AutoModel.from_pretrained(base_model)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(self.device).eval()
        self.base_model, self.max_length, self.batch_size = base_model, max_length, batch_size
        self.pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self._encoded: dict[str, Any] = {}

    def set_body(self, body: Mapping[str, torch.Tensor]) -> None:
        missing, unexpected = self.model.load_state_dict(dict(body), strict=False)
        # A pooler absent from the body (RoBERTa's classification models have none) is unused:
        # features are the first token's final hidden state.
        if unexpected or any(not k.startswith("pooler.") for k in missing):
            raise KeyError(f"body does not fit {self.base_model}: missing {missing[:5]}, unexpected {unexpected[:5]}")

    def features(self, df: pd.DataFrame, key: str | None = None) -> np.ndarray:
        """First-token final hidden states of `df` under the current body, (examples, hidden)."""
        from .finetune import collate, encode

        data = self._encoded.get(key) if key is not None else None
        if data is None:
            data = encode(self.tokenizer, df, self.max_length)
            if key is not None:
                self._encoded[key] = data
        out = []
        with torch.no_grad():
            for start in range(0, len(data), self.batch_size):
                batch = collate(data, range(start, min(start + self.batch_size, len(data))), self.pad)
                batch.pop("labels")
                hidden = self.model(**{k: v.to(self.device) for k, v in batch.items()}).last_hidden_state[:, 0]
                out.append(hidden.float().cpu().numpy())
        return np.concatenate(out)


def first_token_features(body: Mapping[str, torch.Tensor], base_model: str, df: pd.DataFrame, max_length: int, batch_size: int = 64) -> np.ndarray:
    """Final hidden state of the first token for every example of `df`, with the body
    `body` loaded into the base model's architecture. Shape (examples, hidden), float32."""
    extractor = FeatureExtractor(base_model, max_length, batch_size)
    extractor.set_body(body)
    return extractor.features(df)


def probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, l2: float = 1.0, max_iter: int = 2000) -> dict[str, Any]:
    """Fit the linear head (L2-regularised multinomial logistic regression, lbfgs, to
    convergence) on train; mean test cross-entropy (nats) and accuracy.

    `l2` is the penalty strength per example: the objective is mean cross-entropy +
    l2 / (2 n) * ||W||^2 (sklearn's C = 1 / l2)."""
    from sklearn.linear_model import LogisticRegression

    mean, sd = train_x.mean(0), train_x.std(0)
    sd[sd == 0] = 1.0
    classes = np.unique(np.concatenate([train_y, test_y]))
    clf = LogisticRegression(C=1.0 / l2, max_iter=max_iter, tol=1e-8)
    clf.fit((train_x - mean) / sd, train_y)
    proba = np.zeros((len(test_y), len(classes)))
    proba[:, np.searchsorted(classes, clf.classes_)] = clf.predict_proba((test_x - mean) / sd)
    picked = proba[np.arange(len(test_y)), np.searchsorted(classes, test_y)]
    loss = float(-np.mean(np.log(np.clip(picked, 1e-12, None))))
    accuracy = float(np.mean(classes[proba.argmax(1)] == test_y))
    return {"loss": loss, "accuracy": accuracy, "converged": bool(clf.n_iter_.max() < max_iter), "iterations": int(clf.n_iter_.max())}


def generalized_loss(body: Mapping[str, torch.Tensor], base_model: str, train: pd.DataFrame, test: pd.DataFrame, max_length: int, l2: float = 1.0) -> dict[str, Any]:
    """The generalized loss of one body on one dataset (train split fits the head, test scores it)."""
    extractor = FeatureExtractor(base_model, max_length)
    extractor.set_body(body)
    return probe(extractor.features(train), train["label"].to_numpy(), extractor.features(test), test["label"].to_numpy(), l2)


def score_points(
    extractor: FeatureExtractor,
    pretrained: Mapping[str, torch.Tensor],
    prefix: str,
    points: Sequence[Any],
    splits: Mapping[str, tuple[pd.DataFrame, pd.DataFrame]],
    l2: float,
    loaded: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
    chunk: int = 8,
    progress: bool = True,
    desc: str = "points",
) -> pd.DataFrame:
    """The generalized loss of every point (weightspace.points.Point) on every target dataset:
    one row per (point, target) with the point's position in `points`, loss, accuracy and
    whether the probe converged. Points are materialised `chunk` at a time (each checkpoint
    read once per chunk, or never when in `loaded`); each target's splits are tokenised once."""
    from tqdm.auto import tqdm

    from .points import materialize_many

    rows = []
    bar = tqdm(total=len(points), desc=desc, disable=not progress, mininterval=1.0)
    for lo in range(0, len(points), chunk):
        bodies = materialize_many(points[lo : lo + chunk], pretrained, prefix, loaded)
        for i, body in enumerate(bodies, start=lo):
            extractor.set_body(body)
            for name, (train, test) in splits.items():
                tx = extractor.features(train, f"{name}/train")
                vx = extractor.features(test, f"{name}/test")
                out = probe(tx, train["label"].to_numpy(), vx, test["label"].to_numpy(), l2)
                rows.append({"point": i, "target": name, "loss": out["loss"], "accuracy": out["accuracy"], "converged": out["converged"]})
            bar.update(1)
        del bodies
    bar.close()
    return pd.DataFrame(rows, columns=["point", "target", "loss", "accuracy", "converged"])
