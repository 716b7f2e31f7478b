"""BitFit (bias terms and a new head) from the centroid or the pretrained model (resumable)."""

import logging

import numpy as np

from weightspace.data import load_split, stratified_subsample
from weightspace.finetune import FinetuneConfig, run_finetune
from weightspace.io import read_json
from weightspace.logs import to_log_file
from weightspace.seeding import derive_seed

to_log_file(snakemake.log[0])
w = snakemake.wildcards
cfg = FinetuneConfig.from_mapping(snakemake.params.hyperparameters)
info = read_json(snakemake.input.info)
splits = {s: load_split(snakemake.input[s]) for s in ("train", "dev", "test")}
cap = snakemake.params.few_shot
if cap is not None and len(splits["train"]) > cap:
    # The same examples for both starts: keyed on (dataset, seed), not on the start.
    rng = np.random.default_rng(derive_seed(w.dataset, int(w.seed), "few-shot"))
    train = splits["train"]
    splits["train"] = train.iloc[stratified_subsample(train["label"].to_numpy(), cap, rng)].reset_index(drop=True)
logging.info("BitFit from %s on %s (%s: %d training examples)", w.start, w.dataset, w.regime, len(splits["train"]))
metrics = run_finetune(
    base_model=snakemake.input.start,
    splits=splits,
    labels=info["labels"],
    out_dir=snakemake.output.model,
    state_dir=snakemake.params.state,
    dataset=w.dataset,
    seed=int(w.seed),
    cfg=cfg,
    threads=snakemake.threads,
    purpose=f"bitfit-{w.regime}",
    data_files={s: snakemake.input[s] for s in ("train", "dev", "test")},
    keep_weights=snakemake.params.keep_weights,
)
logging.info("done: %d steps, test accuracy %.4f, %d trainable parameters", metrics["steps"], metrics["test_accuracy"], metrics["trainable_parameters"])
