"""The centroid as a starting point: centroid checkpoints, BitFit, Tables 2/3 (methods.md §8)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from weightspace.centroid import gain_table, table_markdown
from weightspace.finetune import bitfit_trainable
from weightspace.plan import centroid_members


def test_gain_table_on_hand_made_runs():
    runs = pd.DataFrame(
        [
            # dataset a: centroid wins by 10 points (mean of two seeds each)
            ("a", "pretrained", 0, 0.50),
            ("a", "pretrained", 1, 0.60),
            ("a", "centroid", 0, 0.60),
            ("a", "centroid", 1, 0.70),
            # b: a tie; c: the centroid loses 5 points
            ("b", "pretrained", 0, 0.80),
            ("b", "centroid", 0, 0.80),
            ("c", "pretrained", 0, 0.90),
            ("c", "centroid", 0, 0.85),
        ],
        columns=["dataset", "start", "seed", "test_accuracy"],
    )
    table, summary = gain_table(runs)
    assert list(table["dataset"]) == ["a", "b", "c"]
    assert table["gain"].tolist() == pytest.approx([10.0, 0.0, -5.0])
    assert table.loc[0, "pretrained"] == pytest.approx(55.0) and table.loc[0, "pretrained_sd"] == pytest.approx(7.0710678)
    assert summary == {
        "datasets": 3,
        "informative": 3,
        "uninformative": 0,
        "mean_gain": pytest.approx(5 / 3),
        "mean_gain_all": pytest.approx(5 / 3),
        "wins": 1,
        "ties": 1,
        "losses": 1,
        "at_least_as_good": 2,
    }
    md = table_markdown(table, summary, "T")
    assert "| a | 55.00 ± 7.07 | 65.00 ± 7.07 | +10.00 |" in md and "2 of 3 informative datasets" in md
    # b: both starts predict the majority class, a tie that says nothing: left out of the headline
    table, with_majority = gain_table(runs, {"a": 0.55, "b": 0.80, "c": 0.5})
    assert with_majority["both_at_majority"] == with_majority["uninformative"] == 1 and with_majority["informative"] == 2
    assert (with_majority["wins"], with_majority["ties"], with_majority["losses"], with_majority["at_least_as_good"]) == (1, 0, 1, 1)
    assert with_majority["mean_gain"] == pytest.approx(2.5) and with_majority["mean_gain_all"] == pytest.approx(5 / 3)
    assert table["informative"].tolist() == [True, False, True]
    assert "1 of 2 informative datasets" in table_markdown(table, with_majority, "T")
    with pytest.raises(ValueError, match="missing"):
        gain_table(runs[runs["start"] == "pretrained"])


def test_centroid_members_leave_out_the_targets_models_and_its_size_variants():
    config = {
        "datasets": {"a": {"families": ["f"]}, "b": {"families": ["f"]}, "c": {"families": ["g"]}, "a_n10": {"families": ["f"], "size_of": "a"}},
        "zoo": {"datasets": ["a", "b", "c", "a_n10"], "seeds": [0, 1]},
        "hull": None,
        "centroid": {"region": "general"},
    }
    assert centroid_members(config, "a") == [("b", 0), ("b", 1), ("c", 0), ("c", 1)]
    config["centroid"]["region"] = "f"
    assert centroid_members(config, "a") == [("b", 0), ("b", 1)]
    assert centroid_members(config, "c") == [("a", 0), ("a", 1), ("b", 0), ("b", 1)]


def test_bitfit_leaves_only_body_biases_and_the_head_trainable(tiny_assets):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_assets["model"], num_labels=3)
    n = bitfit_trainable(model)
    trainable = {k for k, p in model.named_parameters() if p.requires_grad}
    body_biases = {k for k, _ in model.named_parameters() if k.startswith("bert.") and k.endswith(".bias") and not k.startswith("bert.pooler.")}
    # the pooler (dense + tanh on [CLS]) only feeds the classifier: it is head, wholly trainable
    assert {k for k in trainable if k.startswith("bert.")} == body_biases | {"bert.pooler.dense.weight", "bert.pooler.dense.bias"}
    assert {"classifier.weight", "classifier.bias"} <= trainable
    assert n == sum(p.numel() for k, p in model.named_parameters() if k in trainable)
    assert n < sum(p.numel() for p in model.parameters()) / 10


@pytest.mark.slow
def test_centroid_is_the_hand_computed_mean_of_the_other_datasets_models(full_run):
    from safetensors import safe_open
    from safetensors.torch import load_file
    from transformers import AutoModel

    from weightspace.centroid import centroid_models

    folder = full_run / "results/centroids/alpha"
    assert centroid_models(folder) == ["beta-s0", "beta-s1"]  # alpha's own models left out
    assert json.loads((folder / "centroid.json").read_text())["models"] == ["beta-s0", "beta-s1"]
    centroid = load_file(str(folder / "model.safetensors"))
    members = [load_file(str(full_run / f"results/models/beta/seed{s}/model.safetensors")) for s in (0, 1)]
    body_names = [k for k in centroid if "bert." + k in members[0]]
    assert len(body_names) == len([k for k in members[0] if k.startswith("bert.")])
    pretrained = load_file(str(full_run / "resources/base_model/model.safetensors"))
    for k in body_names:
        if k.startswith("pooler."):  # head, not body: the centroid keeps the pretrained pooler
            assert torch.equal(centroid[k], pretrained[k]) and not torch.equal(centroid[k], members[0]["bert." + k]), k
            continue
        mean = ((members[0]["bert." + k].double() + members[1]["bert." + k].double()) / 2).float()
        assert torch.allclose(centroid[k], mean, rtol=0, atol=1e-7), k
    AutoModel.from_pretrained(folder)  # a checkpoint from_pretrained loads
    with safe_open(str(folder / "model.safetensors"), framework="pt") as f:
        assert "weightspace_centroid_of" in f.metadata()


@pytest.mark.slow
@pytest.mark.parametrize("start", ["centroid", "pretrained"])
def test_bitfit_changes_biases_and_leaves_every_other_body_weight_bitwise(full_run, start):
    from safetensors.torch import load_file

    origin = full_run / ("results/centroids/alpha" if start == "centroid" else "resources/base_model")
    before = {k.removeprefix("bert."): v for k, v in load_file(str(origin / "model.safetensors")).items()}
    for regime in ("full", "few_shot"):
        after = load_file(str(full_run / f"results/bitfit/{regime}/{start}/alpha/seed0/model.safetensors"))
        body = {k.removeprefix("bert."): v for k, v in after.items() if k.startswith("bert.")}
        assert body and set(body) <= set(before)
        biases = [k for k in body if k.endswith(".bias")]
        for k, v in body.items():
            if not k.endswith(".bias") and not k.startswith("pooler."):  # the pooler is head: trained
                assert torch.equal(v, before[k]), f"{regime}: {k} changed"
        assert sum(not torch.equal(body[k], before[k]) for k in biases) >= len(biases) // 2, f"{regime}: the biases did not train"
        metrics = json.loads((full_run / f"results/bitfit/{regime}/{start}/alpha/seed0/metrics.json").read_text())
        assert metrics["finetune"]["trainable"] == "bitfit"
        assert metrics["train_examples"] == (12 if regime == "few_shot" else len(pd.read_parquet(full_run / "results/data/alpha/train.parquet")))


@pytest.mark.slow
def test_bitfit_tables_figures_and_summary(full_run):
    for regime, table in (("full", "Table 2"), ("few_shot", "Table 3")):
        csv = pd.read_csv(full_run / f"results/tables/bitfit_{regime}.csv")
        assert list(csv["dataset"]) == ["alpha", "beta"]
        assert table in (full_run / f"results/tables/bitfit_{regime}.md").read_text()
        assert (full_run / f"results/figures/bitfit_gain_{regime}.png").stat().st_size > 5_000
        assert (full_run / f"results/tables/bitfit_{regime}.csv.provenance.json").is_file()
    summary = (full_run / "results/summary.md").read_text()
    assert "| centroid >= pretrained (BitFit), full | 11 of 12 datasets |" in summary and "informative datasets" in summary
    assert "| centroid gain (BitFit), few-shot | +10.66 |" in summary
