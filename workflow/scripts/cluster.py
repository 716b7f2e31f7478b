"""Spectral clustering, scores and t-SNE coordinates for one grouping of the zoo."""

import logging

from weightspace.clustering import cluster_grouping, grouping_labels
from weightspace.geometry import read_matrix
from weightspace.io import write_json
from weightspace.logs import to_log_file
from weightspace.zoo import read_zoo

to_log_file(snakemake.log[0])
zoo = read_zoo(snakemake.input.zoo).to_pandas()
ids, cos = read_matrix(snakemake.input.cosine)
if ids != zoo["model_id"].tolist():
    raise ValueError("the cosine matrix and the zoo list different models: rerun gram")
labels = grouping_labels(zoo, snakemake.params.spec)
datasets = zoo["size_of"].fillna(zoo["dataset"]) if "size_of" in zoo else zoo["dataset"]
metrics, assignments, scores = cluster_grouping(cos, labels, snakemake.params.random_state, datasets.tolist())
metrics = {"grouping": snakemake.wildcards.grouping, **snakemake.params.spec, **metrics}
assignments.to_parquet(snakemake.output.assignments, index=False)
scores.to_csv(snakemake.output.scores, index=False, float_format="%.4f")
write_json(snakemake.output.metrics, metrics)
logging.info("%s: %s", snakemake.wildcards.grouping, metrics)
