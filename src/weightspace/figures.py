"""What every loss figure shares: the reference a generalized loss is read against."""

from __future__ import annotations

from typing import Any


def draw_prior(ax: Any, prior: float, reference: float | None = None, what: str = "models", colour: str = "0.25", xmin: float = 0.0, xmax: float = 1.0) -> None:
    """The prior predictor's loss as a dotted horizontal line (labelled for the legend). When
    `reference` (the loss of the trained models the figure starts from) is not below it, the
    panel says plainly that the probe, not the model, is measured."""
    ax.axhline(prior, xmin=xmin, xmax=xmax, color=colour, linestyle=":", linewidth=1.0, label="prior predictor")
    if reference is not None and not reference < prior:
        ax.text(0.02, 0.98, f"instrument fails its reference:\n{what} not below the prior loss", transform=ax.transAxes,
                va="top", ha="left", fontsize=6, color="firebrick")
