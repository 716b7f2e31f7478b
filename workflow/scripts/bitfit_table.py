"""Table 2 (full data) or Table 3 (few-shot): centroid vs pretrained start."""

from pathlib import Path

import pandas as pd

from weightspace.centroid import gain_table, table_markdown
from weightspace.io import read_json, write_json
from weightspace.logs import to_log_file
from weightspace.provenance import write_job_provenance
from weightspace.zoo import majority_accuracy

to_log_file(snakemake.log[0])
regime = snakemake.wildcards.regime
rows = []
for folder in snakemake.input.runs:
    m = read_json(Path(folder) / "metrics.json")
    start = Path(folder).parts[-3]
    rows.append({"dataset": m["dataset"], "start": start, "seed": m["seed"], "test_accuracy": m["test_accuracy"], "train_examples": m["train_examples"]})
runs = pd.DataFrame(rows)
table, summary = gain_table(runs, majority_accuracy(snakemake.input.info))
table.to_csv(snakemake.output.csv, index=False, float_format="%.4f")
title = {"full": "Table 2: BitFit, full training data", "few_shot": "Table 3: BitFit, few-shot"}[regime]
Path(snakemake.output.md).write_text(table_markdown(table, summary, title))
write_json(snakemake.output.json, {**summary, "regime": regime, "train_examples": runs.groupby("dataset")["train_examples"].max().to_dict(), "runs": rows})
write_job_provenance(snakemake, snakemake.output.csv, twins=[snakemake.output.md, snakemake.output.json])
