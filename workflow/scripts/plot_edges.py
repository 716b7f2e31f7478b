"""Fig. 11: the loss from the region's centroid outwards."""

from pathlib import Path

import pandas as pd

from weightspace.figures import plot_edges, save_figure
from weightspace.logs import to_log_file
from weightspace.provenance import write_provenance
from weightspace.zoo import read_zoo

to_log_file(snakemake.log[0])
settings = snakemake.params.figures
table = pd.read_parquet(snakemake.input.table)
save_figure(plot_edges(table, settings["style"], settings["palette"]), snakemake.output.png, snakemake.output.svg, settings["dpi"])
write_provenance(
    snakemake.output.png, snakemake.rule, [snakemake.input.table, snakemake.input.zoo], dict(snakemake.params),
    Path(snakemake.scriptdir), read_zoo(snakemake.input.zoo).to_pylist(), snakemake.output.provenance, snakemake.config,
)
