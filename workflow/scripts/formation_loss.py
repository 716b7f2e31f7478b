"""The instrument along training: the calibrated generalized loss of every snapshot of one
dataset's models on that dataset, beside the prior predictor's loss."""

import logging

import pandas as pd
from tqdm.auto import tqdm

from weightspace.device import configure_torch
from weightspace.finetune import snapshot_path
from weightspace.logs import to_log_file
from weightspace.loss import LOSS_COLUMNS, calibrated_probe, calibrated_strengths, extractor_for, probe_splits
from weightspace.plan import model_id
from weightspace.points import Point, materialize
from weightspace.weights import body_prefix, pretrained_body

to_log_file(snakemake.log[0])
configure_torch(snakemake.threads)
loss, dataset = snakemake.params.loss, snakemake.wildcards.dataset
((train, test),) = probe_splits([dataset], loss, snakemake.input.data).values()
fixed = calibrated_strengths(snakemake.input.get("regularization", []))
l2 = None if fixed is None else fixed[dataset]
pretrained = pretrained_body(snakemake.input.base)
prefix = body_prefix(snakemake.input.base) + "."
extractor = extractor_for(snakemake.input.base, loss)
rows = []
runs = [(member, folder, step) for member, folder in zip(snakemake.params.models, snakemake.input.models, strict=True) for step in snakemake.params.steps]
for (d, seed), folder, step in tqdm(runs, desc=f"snapshots on {dataset}", mininterval=1.0):
    extractor.set_body(materialize(Point.combination([str(snapshot_path(folder, step))], [1.0]), pretrained, prefix))
    tx, vx = extractor.features(train, "train"), extractor.features(test, "test")
    out = calibrated_probe(tx, train["label"].to_numpy(), vx, test["label"].to_numpy(), loss["l2_grid"], loss["cv_folds"], l2)
    rows.append({"model_id": model_id(d, seed), "dataset": dataset, "seed": seed, "step": step, **{k: out[k] for k in LOSS_COLUMNS[2:]}})
table = pd.DataFrame(rows)
table.to_parquet(snakemake.output.table, index=False)
logging.info("%s", table.to_string(index=False))
