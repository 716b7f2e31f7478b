"""The formation tables: per step and grouping, the zoo's clustering beside chance and its
within/between cosine (results/tables/formation.csv); per model and step, the direction
settling and the generalized loss beside the prior (formation_models.csv); per grouping, the
first step at its final accuracy and whether it ever clusters (formation_first_step.csv)."""

import logging
from pathlib import Path

import pandas as pd

from weightspace.clustering import grouping_labels
from weightspace.formation import first_step_at_final, step_geometry
from weightspace.geometry import cosine, read_matrix
from weightspace.io import write_json
from weightspace.logs import to_log_file
from weightspace.provenance import write_job_provenance
from weightspace.summary import to_markdown
from weightspace.zoo import read_zoo

to_log_file(snakemake.log[0])
zoo = read_zoo(snakemake.input.zoo).to_pandas()
datasets = (zoo["size_of"].fillna(zoo["dataset"]) if "size_of" in zoo else zoo["dataset"]).tolist()
rows = []
for step, path in zip(snakemake.params.steps, snakemake.input.grams, strict=True):
    ids, gram = read_matrix(path)
    if ids != zoo["model_id"].tolist():
        raise ValueError(f"{path} lists other models than the zoo: rerun formation_gram")
    cos = cosine(gram)
    for grouping, spec in snakemake.params.groupings.items():
        labels = grouping_labels(zoo, spec).tolist()
        rows.append({"step": step, "grouping": grouping, **step_geometry(cos, labels, datasets, snakemake.params.random_state)})
geometry = pd.DataFrame(rows)
geometry.to_csv(snakemake.output.csv, index=False, float_format="%.6f")

settled = pd.concat([pd.read_parquet(p) for p in snakemake.input.settling], ignore_index=True)
loss = pd.concat([pd.read_parquet(p) for p in snakemake.input.loss], ignore_index=True)
models = settled.merge(loss.drop(columns=["converged", "dataset", "seed"]), on=["model_id", "step"], how="left", validate="one_to_one")
models["beats_prior"] = models["loss"] < models["prior_loss"]
models = models[
    [
        "model_id",
        "dataset",
        "seed",
        "step",
        "norm",
        "cosine_to_last",
        "loss",
        "prior_loss",
        "beats_prior",
        "accuracy",
        "majority_accuracy",
        "train_cv_loss",
        "regularization",
    ]
]
models.to_csv(snakemake.output.models, index=False, float_format="%.6f")

first = first_step_at_final(geometry)
first.to_csv(snakemake.output.first, index=False, float_format="%.6f")
by_step = (
    models.groupby(["dataset", "step"], sort=False)
    .agg(
        loss=("loss", "mean"),
        prior_loss=("prior_loss", "first"),
        models_beating_prior=("beats_prior", "sum"),
        models=("beats_prior", "size"),
        accuracy=("accuracy", "mean"),
        majority_accuracy=("majority_accuracy", "first"),
        train_cv_loss=("train_cv_loss", "mean"),
        l2=("regularization", "median"),
        cosine_to_last=("cosine_to_last", "mean"),
    )
    .reset_index()
)
last = by_step[by_step["step"] == by_step["step"].max()].set_index("dataset")
# the steps at which every model of a dataset beats the prior (not necessarily a final stretch:
# a body that memorises its training split loses the probe's calibration late in training)
beats = {d: [int(k) for k in g.loc[g["models_beating_prior"] == g["models"], "step"]] for d, g in by_step.groupby("dataset", sort=False)}
Path(snakemake.output.md).write_text(
    "## Clustering along training (one-to-one accuracy beside its chance level, p95 of permuted labels)\n\n"
    + to_markdown(geometry.drop(columns=["models", "groups"]), ".3f")
    + "\n## First step at the final accuracy, per grouping\n\n"
    + to_markdown(first, ".3f")
    + "\n## The instrument along training (mean over seeds; prior = the constant predictor's loss; train_cv_loss = the probe's "
    + "cross-validated loss on the train folds, at its strength l2 (median over seeds), chosen there for each snapshot)\n\n"
    + to_markdown(by_step, ".3f")
)
write_json(
    snakemake.output.json,
    {
        "steps": list(snakemake.params.steps),
        "groupings": first.to_dict("records"),
        "all_models_beat_prior_at_steps": beats,
        "last_step": last[["loss", "prior_loss", "accuracy", "majority_accuracy", "train_cv_loss"]].to_dict("index"),
    },
)
write_job_provenance(snakemake, snakemake.output.csv, twins=[snakemake.output.md])
write_job_provenance(snakemake, snakemake.output.models, path=snakemake.output.models_provenance)
write_job_provenance(snakemake, snakemake.output.first, path=snakemake.output.first_provenance)
logging.info("\n%s\n%s", geometry.to_string(index=False), first.to_string(index=False))
