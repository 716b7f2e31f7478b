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
models["train_reading_beats_prior"] = models["train_reading_loss"] < models["train_reading_prior_loss"]
probe_on = str(loss["probe_on"].iloc[0])
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
        "probe_on",
        "device",
        "fit_cv_loss",
        "regularization",
        "train_reading_loss",
        "train_reading_prior_loss",
        "train_reading_beats_prior",
        "train_reading_accuracy",
        "train_cv_loss",
        "train_regularization",
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
        fit_cv_loss=("fit_cv_loss", "mean"),
        l2=("regularization", "median"),
        train_reading_loss=("train_reading_loss", "mean"),
        train_reading_prior_loss=("train_reading_prior_loss", "first"),
        train_reading_models_beating_prior=("train_reading_beats_prior", "sum"),
        train_cv_loss=("train_cv_loss", "mean"),
        cosine_to_last=("cosine_to_last", "mean"),
    )
    .reset_index()
)
last = by_step[by_step["step"] == by_step["step"].max()].set_index("dataset")


# the steps at which every model of a dataset beats the prior (not necessarily a final stretch:
# a body that memorises its training split loses the probe's calibration late in training)
def steps_all_beat(column: str) -> dict[str, list[int]]:
    return {d: [int(k) for k in g.loc[g[column] == g["models"], "step"]] for d, g in by_step.groupby("dataset", sort=False)}


beats, beats_train = steps_all_beat("models_beating_prior"), steps_all_beat("train_reading_models_beating_prior")
Path(snakemake.output.md).write_text(
    "## Clustering along training (one-to-one accuracy beside its chance level, p95 of permuted labels)\n\n"
    + to_markdown(geometry.drop(columns=["models", "groups"]), ".3f")
    + "\n## First step at the final accuracy, per grouping\n\n"
    + to_markdown(first, ".3f")
    + f"\n## The instrument along training, head fitted on the {probe_on} split, beside the train-split reading\n\n"
    + f"Mean over seeds. loss, prior_loss, fit_cv_loss, l2: the head fitted on the {probe_on} split, its strength l2 (median over seeds) "
    + "cross-validated there for each snapshot (fit_cv_loss: its held-out loss), beside the constant predictor of that split's class prior. "
    + "train_reading_*: the paper's literal reading, the head fitted on the finetunes' own train split, beside that split's prior; "
    + "train_cv_loss: its cross-validated loss on the train folds (far below fit_cv_loss: the body memorised its training examples).\n\n"
    + to_markdown(by_step, ".3f")
)
write_json(
    snakemake.output.json,
    {
        "steps": list(snakemake.params.steps),
        "groupings": first.to_dict("records"),
        "probe_on": probe_on,
        "all_models_beat_prior_at_steps": beats,
        "train_reading_all_models_beat_prior_at_steps": beats_train,
        "last_step": last[
            ["loss", "prior_loss", "accuracy", "majority_accuracy", "fit_cv_loss", "train_reading_loss", "train_reading_prior_loss", "train_cv_loss"]
        ].to_dict("index"),
    },
)
write_job_provenance(snakemake, snakemake.output.csv, twins=[snakemake.output.md])
write_job_provenance(snakemake, snakemake.output.models, path=snakemake.output.models_provenance)
write_job_provenance(snakemake, snakemake.output.first, path=snakemake.output.first_provenance)
logging.info("\n%s\n%s", geometry.to_string(index=False), first.to_string(index=False))
