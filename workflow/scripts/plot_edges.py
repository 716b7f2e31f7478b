"""Fig. 11: the loss from the region's centroid outwards."""

import pandas as pd

from weightspace.figures import plot_edges, save_figure
from weightspace.logs import to_log_file
from weightspace.provenance import write_job_provenance

to_log_file(snakemake.log[0])
settings = snakemake.params.figures
table = pd.read_parquet(snakemake.input.table)
save_figure(plot_edges(table, settings["style"], settings["palette"]), snakemake.output.png, snakemake.output.svg, settings["dpi"])
write_job_provenance(snakemake, snakemake.output.png, twins=[snakemake.output.svg])
