"""Our numbers beside the paper's (methods.md §9), for results/summary.md and its JSON twin."""

from __future__ import annotations

from typing import Any, Sequence

# methods.md §3 and §9: Gueta et al. (2023).
PAPER = {
    "clustering accuracy, by dataset": "98%",
    "clustering accuracy, by task (NLI/Sentiment/Topic)": "90%",
    "Table 1 F1 with the Twitter domain group": "Twitter 30, NLI 100, Topic 61, Sentiment 71",
    "Table 1 F1 without it": "NLI 100, Topic 87, Sentiment 83",
    "PB(In' > Ex), dataset / task / general": "100% / 100% / 100%",
    "PB(In' > In), dataset / task / general": "88% / 96.7% / 90%",
    "centroid >= pretrained (BitFit)": "11 of 12 datasets",
    "centroid gain, full / few-shot": "+3.06 (abstract; table mean 4.03) / +10.66",
}
# Clustering accuracy by the grouping's kind, and PB per comparison and level (methods.md §9).
PAPER_CLUSTERING = {"dataset": "98%", "family": "90% (NLI/Sentiment/Topic)", "size": "clusters follow the dataset, not the size"}
PAPER_PB = {
    ("in_prime", "ex"): {"dataset": "100%", "family": "100%", "general": "100%"},
    ("in_prime", "in"): {"dataset": "88%", "family": "96.7%", "general": "90%"},
    ("in", "ex"): {"family": "75.3%"},
}
PAPER_PATHS = {"min_inside": "often (at or below the endpoints)", "mid": "at or below", "extrapolation": "rises steeply outside [0, 1]"}
PAPER_EDGES = "degrades past 1 radius along random directions, not toward the origin"
PAPER_BITFIT = {
    "full": {"at_least": "11 of 12 datasets", "gain": "+3.06 (abstract; table mean 4.03)"},
    "few_shot": {"at_least": "not reported", "gain": "+10.66"},
}


def pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def row(claim: str, ours: str, note: str = "", paper: str | None = None) -> dict[str, str]:
    return {"claim": claim, "paper": paper if paper is not None else PAPER.get(claim, "—"), "ours": ours, "note": note}


def markdown(rows: Sequence[dict[str, Any]], title: str, preamble: str = "") -> str:
    lines = [f"# {title}", ""]
    if preamble:
        lines += [preamble, ""]
    import pandas as pd

    from .summary import to_markdown

    return "\n".join(lines) + "\n" + to_markdown(pd.DataFrame(list(rows), columns=["claim", "paper", "ours", "note"]))
