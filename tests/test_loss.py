"""The generalized-loss probe and points of weight space."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from weightspace.io import sha256_file, write_json
from weightspace.loss import calibrated_probe, cross_validated_l2, prior_loss, probe
from weightspace.points import Point, RandomDirection, materialize


def _blobs(n: int, k: int, sep: float, seed: int):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    centres = rng.normal(size=(k, 8)) * sep
    return centres[y] + rng.normal(size=(n, 8)), y


def test_probe_separable_features_reach_near_zero_loss():
    x, y = _blobs(300, 3, 20.0, 0)
    out = probe(x[:200], y[:200], x[200:], y[200:], l2=1e-3)
    assert out["accuracy"] == 1.0 and out["loss"] < 0.01 and out["converged"]


def test_probe_shuffled_labels_give_chance_loss():
    x, y = _blobs(1200, 3, 20.0, 1)
    y = np.random.default_rng(2).permutation(y)
    out = probe(x[:600], y[:600], x[600:], y[600:], l2=10.0)
    assert out["loss"] == pytest.approx(math.log(3), abs=0.05)
    assert 0.25 < out["accuracy"] < 0.42


def test_prior_loss_is_the_train_prior_scored_on_test():
    train_y = np.array([0, 0, 0, 1])  # prior 3/4, 1/4
    test_y = np.array([0, 1, 1, 2])  # class 2 never seen in train: probability 1e-12
    ref = prior_loss(train_y, test_y)
    assert ref["prior_loss"] == pytest.approx(-(math.log(0.75) + 2 * math.log(0.25) + math.log(1e-12)) / 4)
    assert ref["majority_accuracy"] == 0.25
    x, y = _blobs(200, 2, 1.0, 3)
    out = probe(x[:100], y[:100], x[100:], y[100:])
    assert out["prior_loss"] == pytest.approx(math.log(2)) and out["majority_accuracy"] == 0.5 and out["regularization"] == 1.0


GRID = [0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0]


def test_cross_validation_penalises_noise_and_frees_signal():
    # pure noise in 40 dimensions, 60 examples: the strongest penalty wins (near the prior)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(120, 40)), np.arange(120) % 2
    l2, losses = cross_validated_l2(x[:60], y[:60], GRID, 5)
    assert l2 >= 1000.0 and len(losses) == len(GRID)
    noisy = calibrated_probe(x[:60], y[:60], x[60:], y[60:], GRID, 5)
    weak = probe(x[:60], y[:60], x[60:], y[60:], l2=0.01)
    assert noisy["loss"] < weak["loss"] and noisy["loss"] == pytest.approx(noisy["prior_loss"], abs=0.05)
    # well separated classes: a weak penalty wins
    x, y = _blobs(200, 3, 20.0, 4)
    assert cross_validated_l2(x[:100], y[:100], GRID, 5)[0] <= 1.0


def test_the_probe_never_looks_at_the_test_labels_to_choose_its_penalty():
    x, y = _blobs(240, 3, 1.5, 5)
    train_x, train_y, test_x, test_y = x[:120], y[:120], x[120:], y[120:]
    honest = calibrated_probe(train_x, train_y, test_x, test_y, GRID, 5)
    shuffled_y = np.random.default_rng(6).permutation(test_y)
    shuffled = calibrated_probe(train_x, train_y, test_x, shuffled_y, GRID, 5)
    assert shuffled["regularization"] == honest["regularization"]
    assert shuffled["loss"] > honest["loss"]  # the test labels do matter for the score itself
    assert calibrated_probe(train_x, train_y, test_x[::-1], test_y[::-1], GRID, 5)["regularization"] == honest["regularization"]


def test_probe_is_deterministic():
    x, y = _blobs(200, 2, 1.0, 3)
    assert probe(x[:100], y[:100], x[100:], y[100:]) == probe(x[:100], y[:100], x[100:], y[100:])


def _checkpoint(folder, tensors):
    folder.mkdir()
    save_file({"bert." + k: v for k, v in tensors.items()}, str(folder / "model.safetensors"))
    write_json(folder / "checksums.json", {"model.safetensors": sha256_file(folder / "model.safetensors")})
    return str(folder)


def test_materialised_combination_equals_the_hand_computed_sum(tmp_path):
    g = torch.Generator().manual_seed(0)
    pre = {"a": torch.randn(3, 4, generator=g), "b": torch.randn(5, generator=g)}
    m1 = {k: v + torch.randn(v.shape, generator=g) for k, v in pre.items()}
    m2 = {k: v + torch.randn(v.shape, generator=g) for k, v in pre.items()}
    f1, f2 = _checkpoint(tmp_path / "m1", m1), _checkpoint(tmp_path / "m2", m2)
    for alpha in (0.0, 0.3, 1.0, -2.5, 8.0):
        body = materialize(Point.interpolation(f1, f2, alpha), pre, "bert.")
        for k in pre:
            expected = ((1 - alpha) * m1[k].double() + alpha * m2[k].double()).float()
            assert torch.equal(body[k], expected), (alpha, k)
    # Preloaded endpoints (read once by a caller) give the same tensors as reading them here.
    preloaded = {f1: m1, f2: m2}
    via_cache = materialize(Point.interpolation(f1, f2, 3.0), pre, "bert.", preloaded)
    direct = materialize(Point.interpolation(f1, f2, 3.0), pre, "bert.")
    assert all(torch.equal(via_cache[k], direct[k]) for k in pre)
    point = Point.combination([f1, f2], [0.2, 0.5])
    point = Point(point.coefficients, pretrained=0.3)
    body = materialize(point, pre, "bert.")
    for k in pre:
        assert torch.equal(body[k], (0.2 * m1[k].double() + 0.5 * m2[k].double() + 0.3 * pre[k].double()).float())
    assert Point.from_json(point.to_json()) == point


def test_random_direction_has_exactly_the_requested_norm_and_is_seeded():
    shapes = {"w": (64, 32), "b": (64,), "e": (100, 16)}
    d = RandomDirection(seed=7, norm=3.5).draw(shapes)
    total = math.sqrt(sum(float((t * t).sum()) for t in d.values()))
    assert total == pytest.approx(3.5, rel=1e-12)
    again = RandomDirection(seed=7, norm=3.5).draw(shapes)
    assert all(torch.equal(d[k], again[k]) for k in d)
    assert not torch.equal(d["w"], RandomDirection(seed=8, norm=3.5).draw(shapes)["w"])


def test_generalized_loss_of_a_body_is_deterministic_and_learns(tmp_path):
    import pandas as pd

    from conftest import FILLER, WORDS, make_tiny_model
    from weightspace.loss import first_token_features, generalized_loss
    from weightspace.weights import pretrained_body

    model = make_tiny_model(tmp_path / "model", [w for g in WORDS.values() for x in g for w in x] + FILLER, initializer_range=0.5)
    body = pretrained_body(model)
    rng = np.random.default_rng(0)
    words = [["sunny", "bright", "warm"], ["rainy", "grey", "cold"]]
    df = pd.DataFrame({"text": [" ".join(rng.choice(words[i % 2], 3)) for i in range(80)], "label": [i % 2 for i in range(80)]})
    train, test = df.iloc[:60].reset_index(drop=True), df.iloc[60:].reset_index(drop=True)
    a = generalized_loss(body, str(model), train, test, max_length=8)
    b = generalized_loss(body, str(model), train, test, max_length=8)
    assert a == b
    # A random body that mixes its input already separates two disjoint vocabularies linearly.
    assert a["accuracy"] == 1.0 and a["loss"] < math.log(2) / 2
    # Features: one row per example, the first token's hidden state.
    assert first_token_features(body, str(model), test, 8).shape == (len(test), 32)


def test_fifty_classes_with_singletons_and_an_absent_class_go_through_the_probe():
    """The small-class rule (loss.cv_folds): folds drop to the smallest class with two or more
    examples (down to 2); a singleton class is never held out and sits in every fitting part;
    a test class absent from the fit split is scored, not a crash (the head and the prior both
    give it probability 1e-12)."""
    from weightspace.loss import CV_RULE, both_readings, cv_folds

    rng = np.random.default_rng(0)
    sizes = [1] * 5 + [2] * 5 + [3] * 10 + [40] * 29  # 49 classes in the fit split; class 49 only in test
    y = np.concatenate([np.full(n, c) for c, n in enumerate(sizes)])
    centres = rng.normal(size=(50, 16)) * 4
    x = centres[y] + rng.normal(size=(len(y), 16))
    pairs, rule = cv_folds(y, 5)
    assert rule == {"folds": 2, "fit_only_examples": 5, "fit_only_classes": 5} and "never held out" in CV_RULE
    singletons = np.flatnonzero(np.isin(y, range(5)))
    for fit_idx, held_idx in pairs:
        assert set(singletons) <= set(fit_idx) and not set(singletons) & set(held_idx)
        assert sorted(np.concatenate([fit_idx, held_idx])) == list(range(len(y)))
    assert sorted(np.concatenate([h for _, h in pairs])) == sorted(set(range(len(y))) - set(singletons))
    # every class big enough: the plain stratified k folds
    assert cv_folds(np.arange(100) % 4, 5)[1] == {"folds": 5, "fit_only_examples": 0, "fit_only_classes": 0}
    test_y = np.concatenate([np.arange(49), [49, 49]])
    test_x = centres[test_y] + rng.normal(size=(len(test_y), 16))
    out = both_readings(x, y, x, y, test_x, test_y, [0.1, 1.0, 10.0], 5)
    assert np.isfinite(out["loss"]) and np.isfinite(out["prior_loss"]) and out["accuracy"] > 0.8
    # the absent class costs both the head and the prior -log(1e-12) on its two examples
    assert out["prior_loss"] > 2 * 27.6 / len(test_y)
    with pytest.raises(ValueError, match="a class with two or more examples"):
        cv_folds(np.arange(10), 5)


def test_a_memorised_body_misleads_the_train_split_reading_but_not_the_probe_split(tmp_path):
    """A tiny body finetuned until its train loss is near zero on a noisy task (15% of labels
    flipped, each example carrying tokens of its own to memorise): a head fitted on its train
    split (the paper's literal reading) is overconfident and loses to the prior predictor on
    test; a head fitted on a probe split the body never saw beats the prior."""
    import pandas as pd
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from conftest import FILLER, make_tiny_model
    from weightspace.loss import FeatureExtractor, both_readings

    ids = [f"w{i}" for i in range(400)]
    signal = [["sunny", "bright", "warm"], ["rainy", "grey", "cold"]]
    folder = make_tiny_model(tmp_path / "model", [w for g in signal for w in g] + ids + FILLER)
    rng = np.random.default_rng(0)

    def split(n: int, first_id: int) -> pd.DataFrame:
        rows = []
        for i in range(n):
            k = i % 2
            words = [rng.choice(signal[k])] + ids[first_id + 3 * i : first_id + 3 * i + 3]
            rng.shuffle(words)
            rows.append({"text": " ".join(words), "label": k if rng.random() > 0.15 else 1 - k})
        return pd.DataFrame(rows)

    train, probe_split, test = split(64, 0), split(64, 192), split(40, 280)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2)
    batch = AutoTokenizer.from_pretrained(folder)(train["text"].tolist(), padding=True, return_tensors="pt")
    labels = torch.tensor(train["label"].to_numpy())
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(200):
        loss = model(**batch, labels=labels).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert loss.item() < 0.01  # memorised, the flipped labels included
    body = {k.removeprefix("bert."): v.detach() for k, v in model.state_dict().items() if k.startswith("bert.") and ".pooler." not in k}
    extractor = FeatureExtractor(str(folder), 16)
    extractor.set_body(body)
    fx, tx, vx = extractor.features(probe_split), extractor.features(train), extractor.features(test)
    out = both_readings(fx, probe_split["label"].to_numpy(), tx, train["label"].to_numpy(), vx, test["label"].to_numpy(), [0.1, 1, 10, 100, 1000], 5)
    assert out["train_cv_loss"] < 0.05 < out["fit_cv_loss"]  # the train folds are separated perfectly: memorisation
    assert out["train_reading_loss"] > out["train_reading_prior_loss"]  # the paper's reading loses to the prior
    assert out["loss"] < out["prior_loss"]  # the probe split's does not
