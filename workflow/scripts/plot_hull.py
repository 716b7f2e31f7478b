"""Fig. 4: loss distributions of In, In' and Ex per granularity, PB values in the titles."""

import pandas as pd

from weightspace.figures import plot_hull, save_figure
from weightspace.logs import to_log_file
from weightspace.provenance import write_job_provenance

to_log_file(snakemake.log[0])
settings = snakemake.params.figures
table = pd.concat([pd.read_parquet(p) for p in snakemake.input.tables], ignore_index=True)
stats = pd.read_csv(snakemake.input.stats).to_dict("records")
save_figure(plot_hull(table, stats, settings["style"], settings["palette"]), snakemake.output.png, snakemake.output.svg, settings["dpi"])
write_job_provenance(snakemake, snakemake.output.png, twins=[snakemake.output.svg])
