"""The region-formation figures: clustering along training per grouping, and each model's
direction settling beside the generalized loss along training."""

import pandas as pd

from weightspace.figures import plot_formation, plot_settling, save_figure
from weightspace.logs import to_log_file
from weightspace.provenance import write_job_provenance

to_log_file(snakemake.log[0])
style, dpi = snakemake.params.figures["style"], snakemake.params.figures["dpi"]
palette = snakemake.params.figures["palette"]
out = snakemake.output
save_figure(plot_formation(pd.read_csv(snakemake.input.csv), style, palette), out.png, out.svg, dpi)
write_job_provenance(snakemake, out.png, twins=[out.svg])
save_figure(plot_settling(pd.read_csv(snakemake.input.models), style, palette), out.settling, out.settling_svg, dpi)
write_job_provenance(snakemake, out.settling, path=out.settling_provenance, twins=[out.settling_svg])
