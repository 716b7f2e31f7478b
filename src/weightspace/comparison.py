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


def pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def row(claim: str, ours: str, note: str = "", paper: str | None = None) -> dict[str, str]:
    return {"claim": claim, "paper": paper if paper is not None else PAPER.get(claim, "—"), "ours": ours, "note": note}


def markdown(rows: Sequence[dict[str, Any]], title: str, preamble: str = "") -> str:
    lines = [f"# {title}", ""]
    if preamble:
        lines += [preamble, ""]
    lines += ["| claim | paper | ours | note |", "| --- | --- | --- | --- |"]
    lines += [f"| {r['claim']} | {r['paper']} | {r['ours']} | {r['note']} |" for r in rows]
    return "\n".join(lines) + "\n"
