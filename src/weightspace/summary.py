"""Tables and figures about the zoo itself: how well each finetune learned its dataset."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
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


def plot_finetune_accuracy(zoo: pd.DataFrame, majority: Mapping[str, float], style: str = "whitegrid", palette: str = "colorblind"):
    """Test accuracy of every model (one point per seed) per dataset, with each dataset's
    majority-class accuracy as a bar behind: a finetune that learned nothing sits on the bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style=style, context="paper")
    np.random.seed(0)  # seaborn's strip jitter draws from NumPy's global generator
    order = list(dict.fromkeys(zoo["dataset"]))
    fig, ax = plt.subplots(figsize=(1.1 * len(order) + 2, 3.4))
    ax.bar(range(len(order)), [majority[d] for d in order], color="0.85", label="majority class", zorder=0)
    sns.stripplot(data=zoo, x="dataset", y="test_accuracy", order=order, hue="dataset", palette=palette, legend=False, size=6, jitter=0.15, ax=ax, zorder=2)
    ax.set_ylim(0, 1)
    ax.set_xlabel("")
    ax.set_ylabel("test accuracy")
    ax.legend(loc="upper left", frameon=False)
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    return fig


def save_figure(fig: Any, png: str, svg: str, dpi: int) -> None:
    """Write a figure as PNG and SVG with no timestamps or tool versions in the files, so the
    same data give byte-identical figures."""
    import matplotlib.pyplot as plt

    with plt.rc_context({"svg.hashsalt": "weightspace"}):
        fig.savefig(png, dpi=dpi, bbox_inches="tight", metadata={"Software": None})
        fig.savefig(svg, bbox_inches="tight", metadata={"Date": None, "Creator": None})
    plt.close(fig)
