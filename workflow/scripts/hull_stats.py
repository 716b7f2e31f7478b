"""Probability of better for (In', Ex), (In', In), (In, Ex) per granularity, bootstrap CIs."""

from pathlib import Path

import pandas as pd

from weightspace.hull import hull_statistics
from weightspace.logs import to_log_file
from weightspace.provenance import write_job_provenance
from weightspace.summary import to_markdown

to_log_file(snakemake.log[0])
table = pd.concat([pd.read_parquet(p) for p in snakemake.input.tables], ignore_index=True)
stats = pd.DataFrame(hull_statistics(table, snakemake.params.bootstrap, snakemake.params.seed))
stats.to_csv(snakemake.output.csv, index=False, float_format="%.4f")
Path(snakemake.output.md).write_text(to_markdown(stats, ".3f"))
write_job_provenance(snakemake, snakemake.output.csv, twins=[snakemake.output.md])
