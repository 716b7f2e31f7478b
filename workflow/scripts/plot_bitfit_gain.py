"""Fig. 6 (full data) or Fig. 14 (few-shot): the centroid start's gain per dataset."""

import pandas as pd

from weightspace.figures import plot_gains, save_figure
from weightspace.logs import to_log_file
from weightspace.provenance import write_job_provenance

to_log_file(snakemake.log[0])
settings = snakemake.params.figures
title = {"full": "Fig. 6: gain from the centroid start (full data)", "few_shot": "Fig. 14: gain from the centroid start (few-shot)"}[snakemake.wildcards.regime]
table = pd.read_csv(snakemake.input.table)
save_figure(plot_gains(table, title, settings["style"], settings["palette"]), snakemake.output.png, snakemake.output.svg, settings["dpi"])
write_job_provenance(snakemake, snakemake.output.png, twins=[snakemake.output.svg])
