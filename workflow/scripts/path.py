"""One pair: the generalized loss along the whole alpha grid on the pair set's targets."""

import logging

from weightspace.device import configure_torch
from weightspace.logs import to_log_file
from weightspace.loss import calibrated_strengths, extractor_for, probe_splits
from weightspace.paths import evaluate_path
from weightspace.plan import model_id
from weightspace.points import configured_chunk
from weightspace.weights import body_prefix, pretrained_body

to_log_file(snakemake.log[0])
configure_torch(snakemake.threads)
loss = snakemake.params.loss
fixed = calibrated_strengths(snakemake.input.regularization if "regularization" in snakemake.input.keys() else [])
splits = probe_splits(snakemake.params.targets, loss, snakemake.input.data)
extractor = extractor_for(snakemake.input.base, loss)
table = evaluate_path(
    extractor,
    pretrained_body(snakemake.input.base),
    body_prefix(snakemake.input.a) + ".",
    snakemake.input.a,
    snakemake.input.b,
    snakemake.params.alphas,
    splits,
    loss,
    fixed,
    chunk=configured_chunk(snakemake.config),
    memory_mb=snakemake.resources.mem_mb,
)
(a, sa), (b, sb) = snakemake.params.pair
table.insert(0, "model_b", model_id(b, sb))
table.insert(0, "model_a", model_id(a, sa))
table.insert(0, "pairset", snakemake.wildcards.pairset)
table.to_parquet(snakemake.output.table, index=False)
logging.info("%d evaluations; not converged: %d", len(table), int((~table["converged"]).sum()))
