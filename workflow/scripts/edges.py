"""Fig. 11's points: from the region's centroid along random directions and toward the origin."""

import logging

import numpy as np

from weightspace.finetune import configure_torch
from weightspace.geometry import read_matrix
from weightspace.hull import edge_points, region_radius
from weightspace.logs import to_log_file
from weightspace.loss import FeatureExtractor, probe_splits, score_points
from weightspace.weights import body_prefix, pretrained_body

to_log_file(snakemake.log[0])
configure_torch(snakemake.threads)
region, edges, loss = snakemake.params.region, snakemake.params.edges, snakemake.params.loss
ids, gram = read_matrix(snakemake.input.gram)
members = [tuple(m) for m in region["members"]]
pick = [ids.index(f"{d}-s{s}") for d, s in members]
radius, centre_norm = region_radius(gram[np.ix_(pick, pick)])
logging.info("region %s: %d models, mean distance from the centroid %.4f, centroid's distance from the pretrained model %.4f",
             region["region"], len(members), radius, centre_norm)
placed = edge_points(members, radius, centre_norm, edges["distances"], edges["directions"], snakemake.params.seed)
points = [p for _, _, p in placed]
splits = probe_splits(region["targets"], loss)
extractor = FeatureExtractor(snakemake.input.base, loss["max_length"])
table = score_points(
    extractor, pretrained_body(snakemake.input.base), body_prefix(snakemake.input.base) + ".",
    points, splits, loss["l2"], chunk=snakemake.config["hull"]["chunk"], desc="edges",
)
table.insert(0, "distance", [placed[i][1] for i in table["point"]])
table.insert(0, "kind", [placed[i][0] for i in table["point"]])
table["radius"] = radius
table["centroid_norm"] = centre_norm
table["weights"] = [str(points[i]) for i in table["point"]]
table.to_parquet(snakemake.output.table, index=False)
