"""Per-dataset table of the finetunes' test accuracy, as CSV and Markdown, with provenance."""

from pathlib import Path

from weightspace.logs import to_log_file
from weightspace.provenance import write_job_provenance
from weightspace.summary import finetune_summary, to_markdown
from weightspace.zoo import majority_accuracy, read_zoo

to_log_file(snakemake.log[0])
zoo = read_zoo(snakemake.input.zoo).to_pandas()
table = finetune_summary(zoo, majority_accuracy(snakemake.input.info))
table.to_csv(snakemake.output.csv, index=False, float_format="%.4f")
Path(snakemake.output.md).write_text(to_markdown(table))
write_job_provenance(snakemake, snakemake.output.csv, zoo.to_dict("records"), twins=[snakemake.output.md])
