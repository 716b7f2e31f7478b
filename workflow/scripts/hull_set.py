"""One piece (points [lo, hi)) of one set (In, In' or Ex) of one group at one granularity, scored
on the group's datasets; hull_set_table gathers the pieces."""

import logging

import pandas as pd

from weightspace.device import configure_torch
from weightspace.hull import set_points
from weightspace.logs import to_log_file
from weightspace.loss import calibrated_strengths, extractor_for, probe_splits, score_points
from weightspace.plan import model_id
from weightspace.points import configured_chunk
from weightspace.weights import body_prefix, pretrained_body

to_log_file(snakemake.log[0])
configure_torch(snakemake.threads)
w, job, spec, loss = snakemake.wildcards, snakemake.params.set, snakemake.params.hull, snakemake.params.loss
members = [tuple(m) for m in job["members"]]  # plan.hull_set: the DAG's choice, not derived again
in_norms = None
if job["random"]:
    norms = pd.read_parquet(snakemake.input.norms).set_index("model_id")["norm"]
    in_norms = [float(norms[model_id(d, s)]) for d, s in job["in"]]
    logging.info("mean task-vector norm of In (%d models): %.4f", len(in_norms), sum(in_norms) / len(in_norms))
# the whole set is drawn (seeded, the same in every piece), then this piece's points scored
lo, hi = snakemake.params.points
points = set_points(w.set, members, list(snakemake.input.models), job["key"], spec["seed"], job["count"], in_norms)[lo:hi]
fixed = calibrated_strengths(snakemake.input.regularization if "regularization" in snakemake.input.keys() else [])
splits = probe_splits(job["targets"], loss, snakemake.input.data)
extractor = extractor_for(snakemake.input.base, loss)
table = score_points(
    extractor,
    pretrained_body(snakemake.input.base),
    body_prefix(snakemake.input.base) + ".",
    points,
    splits,
    loss,
    fixed,
    chunk=configured_chunk(snakemake.config),
    desc=f"{job['key']}/{w.set} [{lo}, {hi})",
    memory_mb=snakemake.resources.mem_mb,
)
table["label"] = [points[i].label for i in table["point"]]
table["weights"] = [str(points[i]) for i in table["point"]]  # the point itself, re-scorable
table["point"] += lo  # the point's index in the whole set
for col, value in (("set", w.set), ("group", w.group), ("level", w.level)):
    table.insert(0, col, value)
table.to_parquet(snakemake.output.table, index=False)
logging.info("%d points x %d datasets; not converged: %d", len(points), len(splits), int((~table["converged"]).sum()))
