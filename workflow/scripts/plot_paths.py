"""Fig. 3, Fig. 5 and the per-dataset path figures, with the path statistics for the summary."""

import pandas as pd

from weightspace.figures import plot_paths, plot_paths_per_dataset, save_figure
from weightspace.logs import to_log_file
from weightspace.provenance import write_job_provenance
from weightspace.zoo import read_zoo

to_log_file(snakemake.log[0])
settings = snakemake.params.figures
table = pd.concat([pd.read_parquet(p) for p in snakemake.input.tables], ignore_index=True)
zoo = read_zoo(snakemake.input.zoo).to_pandas()
used = zoo[zoo["model_id"].isin(set(table["model_a"]) | set(table["model_b"]))].to_dict("records")
o = snakemake.output
for fig, png, svg, prov in (
    (plot_paths(table, False, settings["style"], settings["palette"]), o.fig3, o.fig3_svg, o.fig3_provenance),
    (plot_paths(table, True, settings["style"], settings["palette"]), o.fig5, o.fig5_svg, o.fig5_provenance),
    (plot_paths_per_dataset(table, settings["style"], settings["palette"]), o.per_dataset, o.per_dataset_svg, o.per_dataset_provenance),
):
    save_figure(fig, png, svg, settings["dpi"])
    write_job_provenance(snakemake, png, used, prov, twins=[svg])
