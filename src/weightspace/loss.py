"""The generalized loss (methods.md §4): how any point of weight space is scored on any dataset.

Drop the head, freeze the body, fit a new linear head on the target dataset's train split and
report mean cross-entropy and accuracy on its test split. [choice] The head is a single linear
layer on the first token's final hidden state, fitted to convergence as L2-regularised
multinomial logistic regression on the frozen features (convex: deterministic, and far cheaper
than training a head by SGD through the model). Features are standardised with the train
split's mean and sd before fitting.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch


class FeatureExtractor:
    """The base model's architecture, loaded once per job; any body is swapped in with
    `set_body`, and splits are tokenised once (cached by name)."""

    def __init__(self, base_model: str, max_length: int, batch_size: int = 64):
        from transformers import AutoModel, AutoTokenizer

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
