"""Table 1: per-group F1 of the family clustering, with and without the domain group."""

from pathlib import Path

import pandas as pd

from weightspace.logs import to_log_file
from weightspace.provenance import write_job_provenance
from weightspace.summary import to_markdown

to_log_file(snakemake.log[0])
with_domain = pd.read_csv(snakemake.input.with_domain[0]).set_index("group")
without = pd.read_csv(snakemake.input.without_domain[0]).set_index("group")
groups = list(with_domain.index) + [g for g in without.index if g not in with_domain.index]
table = pd.DataFrame(
    {
        "group": groups,
        "f1_with_domain": [with_domain["f1"].get(g, float("nan")) for g in groups],
        "f1_without_domain": [without["f1"].get(g, float("nan")) for g in groups],
        "models_with_domain": [int(with_domain["models"].get(g, 0)) for g in groups],
        "models_without_domain": [int(without["models"].get(g, 0)) for g in groups],
    }
)
table.to_csv(snakemake.output.csv, index=False, float_format="%.4f")
Path(snakemake.output.md).write_text(to_markdown(table, ".2f"))
write_job_provenance(snakemake, snakemake.output.csv, twins=[snakemake.output.md])
