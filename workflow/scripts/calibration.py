"""results/loss/calibration.csv: every zoo model's generalized loss on its own dataset, beside
the prior predictor's loss and the majority class's accuracy."""

from pathlib import Path

import pandas as pd

from weightspace.io import read_json
from weightspace.logs import to_log_file
from weightspace.provenance import write_job_provenance
from weightspace.summary import to_markdown

to_log_file(snakemake.log[0])
targets = [read_json(path) for path in snakemake.input.targets]
table = pd.DataFrame([r for t in targets for r in t["models"]], columns=targets[0]["columns"])
table.to_csv(snakemake.output.csv, index=False, float_format="%.6f")
Path(snakemake.output.md).write_text(to_markdown(table.drop(columns=["converged"]), ".3f"))
write_job_provenance(snakemake, snakemake.output.csv, twins=[snakemake.output.md])
