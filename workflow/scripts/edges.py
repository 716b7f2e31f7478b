"""Fig. 11's points: from the region's centroid along random directions and toward the origin
(the zero vector and/or the pretrained model, hull.edges.origin)."""

import logging
import math

import numpy as np

from weightspace.device import configure_torch
from weightspace.geometry import read_matrix
from weightspace.hull import edge_points, region_radius
from weightspace.logs import to_log_file
from weightspace.loss import calibrated_strengths, extractor_for, probe_splits, score_points
from weightspace.plan import model_id
from weightspace.points import Point, configured_chunk, materialize
from weightspace.weights import body_prefix, pretrained_body

to_log_file(snakemake.log[0])
configure_torch(snakemake.threads)
region, edges, loss = snakemake.params.region, snakemake.params.edges, snakemake.params.loss
origins = [edges["origin"]] if isinstance(edges["origin"], str) else list(edges["origin"])
ids, gram = read_matrix(snakemake.input.gram)
members = [tuple(m) for m in region["members"]]
pick = [ids.index(model_id(d, s)) for d, s in members]
radius, centre_norm = region_radius(gram[np.ix_(pick, pick)])
pretrained = pretrained_body(snakemake.input.base)
prefix = body_prefix(snakemake.input.base) + "."
folders = list(snakemake.input.models)  # the region members' checkpoints, in members' order
centroid = materialize(Point.combination(folders, [1.0 / len(folders)] * len(folders)), pretrained, prefix)
weight_norm = math.sqrt(sum(float((t.double() ** 2).sum()) for t in centroid.values()))
del centroid
logging.info(
    "region %s: %d models, mean distance from the centroid %.4f, centroid's distance from the pretrained model %.4f, centroid's norm %.4f",
    region["region"],
    len(members),
    radius,
    centre_norm,
    weight_norm,
)
placed = edge_points(folders, radius, centre_norm, weight_norm, edges["distances"], edges["directions"], snakemake.params.seed, origins)
points = [p for _, _, p in placed]
fixed = calibrated_strengths(snakemake.input.regularization if "regularization" in snakemake.input.keys() else [])
splits = probe_splits(region["targets"], loss, snakemake.input.data)
extractor = extractor_for(snakemake.input.base, loss)
table = score_points(
    extractor, pretrained, prefix, points, splits, loss, fixed, chunk=configured_chunk(snakemake.config), desc="edges", memory_mb=snakemake.resources.mem_mb
)
table.insert(0, "distance", [placed[i][1] for i in table["point"]])
table.insert(0, "kind", [placed[i][0] for i in table["point"]])
table["radius"] = radius
table["centroid_distance_from_pretrained"] = centre_norm
table["centroid_norm"] = weight_norm
table["distance_fraction_of_centroid_norm"] = table["distance"] * radius / weight_norm
table["label"] = [points[i].label for i in table["point"]]
table["weights"] = [str(points[i]) for i in table["point"]]
table.to_parquet(snakemake.output.table, index=False)
