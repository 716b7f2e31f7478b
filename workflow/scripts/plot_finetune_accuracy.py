"""Figure: test accuracy of every model per dataset against the majority class."""

from weightspace.figures import plot_finetune_accuracy, save_figure
from weightspace.logs import to_log_file
from weightspace.provenance import write_job_provenance
from weightspace.zoo import majority_accuracy, read_zoo

to_log_file(snakemake.log[0])
settings = snakemake.params.figures
zoo = read_zoo(snakemake.input.zoo).to_pandas()
fig = plot_finetune_accuracy(zoo, majority_accuracy(snakemake.input.info), settings["style"], settings["palette"])
save_figure(fig, snakemake.output.png, snakemake.output.svg, settings["dpi"])
write_job_provenance(snakemake, snakemake.output.png, zoo.to_dict("records"), twins=[snakemake.output.svg])
