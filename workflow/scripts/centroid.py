"""The centroid for one target dataset: the mean body of the region's models not trained on it."""

import logging

from weightspace.centroid import write_centroid
from weightspace.logs import to_log_file
from weightspace.plan import model_id

to_log_file(snakemake.log[0])
members = [tuple(m) for m in snakemake.params.members]
meta = write_centroid(snakemake.input.base, snakemake.input.models, [model_id(d, s) for d, s in members], snakemake.output.model)
logging.info("centroid for %s: mean of %d models: %s", snakemake.wildcards.dataset, len(meta["models"]), ", ".join(meta["models"]))
