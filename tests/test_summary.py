"""The finetune summary table, Markdown rendering, and reproducible figure files."""

from __future__ import annotations

import pandas as pd
import pytest

from weightspace.figures import plot_finetune_accuracy, save_figure
from weightspace.summary import finetune_summary, to_markdown

ZOO = pd.DataFrame(
    {
        "dataset": ["b", "b", "a"],
        "families": [["x"], ["x"], ["y", "z"]],
        "test_accuracy": [0.5, 0.7, 0.9],
        "dev_loss": [1.0, 2.0, 0.5],
    }
)


def test_finetune_summary_values():
    t = finetune_summary(ZOO, {"a": 0.6, "b": 0.5})
    assert t["dataset"].tolist() == ["b", "a"]
    assert t["test_accuracy_mean"].tolist() == pytest.approx([0.6, 0.9])
    assert t["test_accuracy_sd"].tolist() == pytest.approx([0.1414213562, 0.0])
    assert t["families"].tolist() == ["x", "y, z"] and t["models"].tolist() == [2, 1]
    assert t["dev_loss_mean"].tolist() == pytest.approx([1.5, 0.5])


def test_markdown_table():
    md = to_markdown(pd.DataFrame({"k": ["a"], "v": [0.12345]}))
    assert md == "| k | v |\n| --- | --- |\n| a | 0.123 |\n"


def test_the_same_data_give_byte_identical_figures(tmp_path):
    for i in range(2):
        fig = plot_finetune_accuracy(ZOO, {"a": 0.6, "b": 0.5})
        save_figure(fig, str(tmp_path / f"f{i}.png"), str(tmp_path / f"f{i}.svg"), 80)
    assert (tmp_path / "f0.png").read_bytes() == (tmp_path / "f1.png").read_bytes()
    assert (tmp_path / "f0.svg").read_bytes() == (tmp_path / "f1.svg").read_bytes()
