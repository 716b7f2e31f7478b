"""Gather every finetuned model into results/zoo.parquet."""

import logging

from weightspace.logs import to_log_file
from weightspace.plan import model_id
from weightspace.provenance import write_job_provenance
from weightspace.zoo import write_zoo, zoo_row

to_log_file(snakemake.log[0])
rows = [
    zoo_row(model_id(dataset, seed), dataset, snakemake.params.datasets[dataset], seed, model, weights)
    for (dataset, seed), model, weights in zip(snakemake.params.members, snakemake.input.models, snakemake.input.weights)
]
table = write_zoo(rows, snakemake.output.table)
logging.info("zoo: %d models", table.num_rows)
write_job_provenance(snakemake, snakemake.output.table, rows)
