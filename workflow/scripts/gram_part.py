"""One Gram map job: the task-vector Gram matrix summed over one position range."""

import logging

import numpy as np

from weightspace.geometry import gram_partial, part_range
from weightspace.logs import to_log_file
from weightspace.weights import FlatWeights

to_log_file(snakemake.log[0])
reference = FlatWeights(snakemake.input.pretrained)
start, stop = part_range(reference.num_positions, int(snakemake.wildcards.part), snakemake.params.parts, reference.chunk_size)
gram = gram_partial(snakemake.input.weights, snakemake.input.pretrained, start, stop, block=reference.chunk_size)
with open(snakemake.output.part, "wb") as f:
    np.save(f, gram, allow_pickle=False)
logging.info("positions [%d, %d) of %d, %d models", start, stop, reference.num_positions, len(gram))
