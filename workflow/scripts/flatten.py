"""Flatten a body into Parquet shards: the pretrained reference, one finetuned model, or one
of its snapshots (in the reference's parameter order)."""

import logging
from pathlib import Path

from weightspace.finetune import snapshot_path
from weightspace.io import read_json, sha256_file
from weightspace.logs import to_log_file
from weightspace.plan import model_id
from weightspace.weights import body_prefix, checkpoint_body, make_index, pretrained_body, read_index, write_flat

to_log_file(snakemake.log[0])
sizes = snakemake.params.sizes
base = snakemake.params.base_model
base_name = base.get("hub") or base.get("package") or base.get("local")
if snakemake.rule == "flatten_pretrained":
    body = pretrained_body(snakemake.input.base)
    index = make_index(body)
    identity = {
        "model_id": "pretrained",
        "dataset": None,
        "families": [],
        "seed": None,
        "base_model": base_name,
        "checkpoint_sha256": sha256_file(Path(snakemake.input.base) / "model.safetensors"),
    }
else:
    index = read_index(snakemake.input.reference)
    checkpoint = Path(snakemake.input.model)
    # a snapshot (flatten_snapshot): its folder in the model's, the model's body prefix
    step = int(snakemake.wildcards.step) if snakemake.rule == "flatten_snapshot" else None
    prefix = body_prefix(checkpoint) + "."
    if step is not None:
        checkpoint = snapshot_path(checkpoint, step)
    body = checkpoint_body(checkpoint, [p.name for p in index], prefix)
    dataset, seed = snakemake.wildcards.dataset, int(snakemake.wildcards.seed)
    identity = {
        **({"step": step} if step is not None else {}),
        "model_id": model_id(dataset, seed),
        "dataset": dataset,
        "families": list(snakemake.params.families),
        "derived_from": snakemake.params.derived_from,
        "seed": seed,
        "base_model": base_name,
        "checkpoint_sha256": read_json(checkpoint / "checksums.json")["model.safetensors"],
    }
manifest = write_flat(body, index, snakemake.output.weights, identity, sizes["chunk_size"], sizes["shard_size"])
logging.info("%s: %d positions in %d shard(s)", identity["model_id"], manifest["num_positions"], len(manifest["shards"]))
