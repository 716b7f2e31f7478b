"""One model's direction settling: its task vector's norm at every snapshot step and its
cosine with the task vector at the last step."""

import logging

from weightspace.formation import settling
from weightspace.geometry import gram_partial
from weightspace.logs import to_log_file
from weightspace.plan import model_id
from weightspace.weights import FlatWeights

to_log_file(snakemake.log[0])
reference = FlatWeights(snakemake.input.pretrained)
gram = gram_partial(snakemake.input.weights, snakemake.input.pretrained, 0, reference.num_positions, block=reference.chunk_size)
table = settling(gram, snakemake.params.steps)
dataset, seed = snakemake.wildcards.dataset, int(snakemake.wildcards.seed)
table.insert(0, "model_id", model_id(dataset, seed))
table.insert(1, "dataset", dataset)
table.insert(2, "seed", seed)
table.to_parquet(snakemake.output.table, index=False)
logging.info("%s", table.to_string(index=False))
