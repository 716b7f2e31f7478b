"""One target's calibration: its own models' generalized loss beside the prior, and the L2
strength the loss stages use on it."""

import logging

from weightspace.device import configure_torch
from weightspace.io import write_json
from weightspace.logs import to_log_file
from weightspace.loss import calibrate_target, extractor_for, fit_train_test
from weightspace.points import Point, materialize
from weightspace.weights import body_prefix, pretrained_body

to_log_file(snakemake.log[0])
configure_torch(snakemake.threads)
loss, dataset = snakemake.params.loss, snakemake.wildcards.dataset
# the head's fit split (loss.probe_on) and, for the memorisation columns, the train split
fit, train, test = fit_train_test(dataset, loss, snakemake.input.data)
pretrained = pretrained_body(snakemake.input.base)
prefix = body_prefix(snakemake.input.base) + "."
# one body in memory at a time (the paper preset has 20 seeds of roberta-base on a dataset)
bodies = (
    (model, materialize(Point.combination([folder], [1.0]), pretrained, prefix))
    for model, folder in zip(snakemake.params.models, snakemake.input.models, strict=True)
)
result = calibrate_target(extractor_for(snakemake.input.base, loss), bodies, dataset, fit, test, loss, train)
write_json(snakemake.output.json, result)
for r in result["models"]:
    logging.info(
        "%s: loss %.4f vs prior %.4f, accuracy %.4f vs majority %.4f (l2 %g; fit on %s); train-split reading %.4f vs prior %.4f, train-fold loss %.4f",
        r["model_id"],
        r["loss"],
        r["prior_loss"],
        r["accuracy"],
        r["majority_accuracy"],
        r["regularization"],
        r["probe_on"],
        r["train_reading_loss"],
        r["train_reading_prior_loss"],
        r["train_fold_loss"],
    )
logging.info("%s: L2 strength %g (choose: %s)", dataset, result["regularization"], result["choose"])
