"""Fig. 6 (full data) or Fig. 14 (few-shot): the centroid start's gain per dataset."""

from pathlib import Path

import pandas as pd

from weightspace.figures import plot_gains, save_figure
from weightspace.logs import to_log_file
from weightspace.provenance import write_provenance
from weightspace.zoo import read_zoo

to_log_file(snakemake.log[0])
settings = snakemake.params.figures
title = {"full": "Fig. 6: gain from the centroid start (full data)", "few_shot": "Fig. 14: gain from the centroid start (few-shot)"}[snakemake.wildcards.regime]
table = pd.read_csv(snakemake.input.table)
save_figure(plot_gains(table, title, settings["style"], settings["palette"]), snakemake.output.png, snakemake.output.svg, settings["dpi"])
write_provenance(
    snakemake.output.png, snakemake.rule, [snakemake.input.table, snakemake.input.zoo], dict(snakemake.params),
    Path(snakemake.scriptdir), read_zoo(snakemake.input.zoo).to_pylist(), snakemake.output.provenance, snakemake.config,
)
