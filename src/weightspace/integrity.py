"""Integrity checks at read time: a corrupted checkpoint or weight shard stops the job that
reads it, naming the file and the model, before its numbers can reach a table or a figure.

- A checkpoint folder's `checksums.json` (written with the checkpoint) holds the sha256 of
  `model.safetensors`; `verify_checkpoint` recomputes it once per process and file version.
- A weight shard's row groups each carry the sha256 of their float32 values in the manifest;
  FlatWeights checks exactly the row groups it reads (plus Parquet's page CRCs), so a range
  read costs one extra hash of the bytes it reads, not of the whole file.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .io import sha256_file
from .plan import model_id

CHECKSUMS_FILE = "checksums.json"
_verified: dict[tuple[str, int, int], str] = {}


class CorruptFile(IOError):
    """A file whose content does not match what was recorded when it was written."""

    def __init__(self, path: str | Path, model: str, problem: str):
        self.path, self.model = str(path), model
        super().__init__(
            f"corrupt file {path} (model {model}): {problem}. Delete the file's folder and rerun (Snakemake recreates it), or restore it from a copy"
        )


def model_name(folder: str | Path) -> str:
    """A checkpoint folder's model, from its metrics.json (dataset and seed) or its path."""
    folder = Path(folder)
    try:
        metrics = json.loads((folder / "metrics.json").read_text())
        return model_id(metrics["dataset"], metrics["seed"])
    except (OSError, ValueError, KeyError):
        return "/".join(folder.parts[-2:])


def chunk_digest(values: Any) -> str:
    """sha256 of a float32 array's bytes (one row group of a weight shard)."""
    return hashlib.sha256(memoryview(values).cast("B")).hexdigest()


def verify_file(path: str | Path, expected: str, model: str) -> None:
    """Check `path` against its recorded sha256 (once per process and file version)."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise CorruptFile(path, model, "the file is missing") from None
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    actual = _verified.get(key) or sha256_file(path)
    if actual != expected:
        raise CorruptFile(path, model, f"sha256 {actual[:16]}... but {expected[:16]}... was recorded when it was written")
    _verified[key] = actual


def verify_checkpoint(folder: str | Path, required: bool = True) -> None:
    """Check a checkpoint folder's model.safetensors against its checksums.json. A folder
    without checksums.json (a base model copied in) passes unless `required`."""
    folder = Path(folder)
    record = folder / CHECKSUMS_FILE
    if not record.is_file():
        if required:
            raise CorruptFile(record, model_name(folder), "the checksum record is missing")
        return
    recorded = json.loads(record.read_text())
    for name, expected in recorded.items():
        verify_file(folder / name, expected, model_name(folder))
