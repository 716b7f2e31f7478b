"""The instrument along training: the generalized loss of every snapshot of one dataset's models
on that dataset, beside the prior predictor's loss, read both ways (loss.both_readings): the
head fitted on the probe split (loss.probe_on) and on the train split (the paper's literal
reading). Each snapshot's L2 strength is cross-validated on the fitting split (a strength chosen
on the final models does not transfer: a snapshot's features are far less, or far more,
separable); the cross-validated loss on the train folds is kept beside the test loss (a
train-fold loss far below the test loss means the body memorised its training examples, and a
head fitted on them is overconfident)."""

import logging

import pandas as pd
from tqdm.auto import tqdm

from weightspace.device import configure_torch
from weightspace.finetune import snapshot_path
from weightspace.logs import to_log_file
from weightspace.loss import both_readings, extractor_for, fit_train_test
from weightspace.plan import model_id
from weightspace.points import Point, materialize
from weightspace.weights import body_prefix, pretrained_body

to_log_file(snakemake.log[0])
configure_torch(snakemake.threads)
loss, dataset = snakemake.params.loss, snakemake.wildcards.dataset
fit, train, test = fit_train_test(dataset, loss, snakemake.input.data)
fit_y, train_y, test_y = fit["label"].to_numpy(), train["label"].to_numpy(), test["label"].to_numpy()
pretrained = pretrained_body(snakemake.input.base)
prefix = body_prefix(snakemake.input.base) + "."
extractor = extractor_for(snakemake.input.base, loss)
rows = []
runs = [(member, folder, step) for member, folder in zip(snakemake.params.models, snakemake.input.models, strict=True) for step in snakemake.params.steps]
for (d, seed), folder, step in tqdm(runs, desc=f"snapshots on {dataset}", mininterval=1.0):
    extractor.set_body(materialize(Point.combination([str(snapshot_path(folder, step))], [1.0]), pretrained, prefix))
    fx, vx = extractor.features(fit, "fit"), extractor.features(test, "test")
    tx = fx if train is fit else extractor.features(train, "train")
    rows.append(
        {
            "model_id": model_id(d, seed),
            "dataset": dataset,
            "seed": seed,
            "step": step,
            "probe_on": loss["probe_on"],
            "device": extractor.device_label,
            **both_readings(fx, fit_y, tx, train_y, vx, test_y, loss["l2_grid"], loss["cv_folds"]),
        }
    )
table = pd.DataFrame(rows)
table.to_parquet(snakemake.output.table, index=False)
logging.info("%s", table.to_string(index=False))
