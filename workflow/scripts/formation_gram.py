"""The task-vector Gram of every zoo model at one snapshot step, computed exactly as the final
models' Gram (same position ranges, summed in the same order)."""

import logging

import pyarrow.parquet as pq

from weightspace.formation import gram_in_parts
from weightspace.geometry import matrix_table
from weightspace.logs import to_log_file
from weightspace.weights import FlatWeights

to_log_file(snakemake.log[0])
reference = FlatWeights(snakemake.input.pretrained)
gram = gram_in_parts(snakemake.input.weights, snakemake.input.pretrained, snakemake.params.parts, reference.chunk_size, reference.num_positions)
pq.write_table(matrix_table(snakemake.params.models, gram), snakemake.output.gram)
logging.info("step %s: Gram of %d models", snakemake.wildcards.step, len(gram))
