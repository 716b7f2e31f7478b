"""Finetune the base model on one dataset with one seed (resumes after a kill)."""

import logging

from weightspace.data import load_split
from weightspace.finetune import FinetuneConfig, run_finetune
from weightspace.io import read_json
from weightspace.logs import to_log_file

to_log_file(snakemake.log[0])
cfg = FinetuneConfig.from_mapping(snakemake.params.hyperparameters)
info = read_json(snakemake.input.info)
splits = {s: load_split(snakemake.input[s]) for s in ("train", "dev", "test")}
metrics = run_finetune(
    base_model=snakemake.input.base,
    splits=splits,
    labels=info["labels"],
    out_dir=snakemake.output.model,
    state_dir=snakemake.params.state,
    dataset=snakemake.wildcards.dataset,
    seed=int(snakemake.wildcards.seed),
    cfg=cfg,
    threads=snakemake.threads,
    data_files={s: snakemake.input[s] for s in ("train", "dev", "test")},
)
logging.info(
    "done: %d steps, dev loss %.4f, test accuracy %.4f, %.1f examples/s",
    metrics["steps"],
    metrics["dev_loss"],
    metrics["test_accuracy"],
    metrics["examples_per_s"],
)
