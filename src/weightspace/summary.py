"""Tables and figures about the zoo itself: how well each finetune learned its dataset."""

from __future__ import annotations

from typing import Any, Mapping

import pandas as pd


def finetune_summary(zoo: pd.DataFrame, majority: Mapping[str, float]) -> pd.DataFrame:
    """Per dataset: models, test accuracy mean and sd over seeds, the majority-class accuracy of
    its test split, and dev loss mean. One row per dataset, zoo order."""
    order = list(dict.fromkeys(zoo["dataset"]))
    g = zoo.groupby("dataset", sort=False)
    out = pd.DataFrame(
        {
            "dataset": order,
            "families": [", ".join(zoo.loc[zoo["dataset"] == d, "families"].iloc[0]) for d in order],
            "models": g.size().reindex(order).to_numpy(),
            "test_accuracy_mean": g["test_accuracy"].mean().reindex(order).to_numpy(),
            "test_accuracy_sd": g["test_accuracy"].std(ddof=1).reindex(order).fillna(0.0).to_numpy(),
            "majority_accuracy": [majority[d] for d in order],
            "dev_loss_mean": g["dev_loss"].mean().reindex(order).to_numpy(),
        }
    )
    return out


def to_markdown(df: pd.DataFrame, floatfmt: str = ".3f") -> str:
    """A GitHub-flavoured Markdown table (no extra dependency)."""

    def cell(v: Any) -> str:
        return format(v, floatfmt) if isinstance(v, float) else str(v)

    head = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "| " + " | ".join("---" for _ in df.columns) + " |"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *rows]) + "\n"
