"""Fig. 2 for one grouping: t-SNE of the task vectors, true group and assigned cluster."""

import pandas as pd

from weightspace.figures import plot_tsne, save_figure
from weightspace.io import read_json
from weightspace.logs import to_log_file
from weightspace.provenance import write_job_provenance
from weightspace.zoo import read_zoo

to_log_file(snakemake.log[0])
settings = snakemake.params.figures
assignments = pd.read_parquet(snakemake.input.assignments)
m = read_json(snakemake.input.metrics)
title = f"by {snakemake.wildcards.grouping}\nclustering accuracy {m['accuracy_majority']:.2f} (majority rule), {m['accuracy_hungarian']:.2f} (one-to-one)"
fig = plot_tsne(assignments, title, settings["style"], settings["palette"])
save_figure(fig, snakemake.output.png, snakemake.output.svg, settings["dpi"])
zoo = read_zoo(snakemake.input.zoo).to_pandas()
used = zoo[zoo["model_id"].isin(assignments["model_id"])]
write_job_provenance(snakemake, snakemake.output.png, used.to_dict("records"), twins=[snakemake.output.svg])
