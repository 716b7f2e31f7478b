"""Sizes the Snakefile needs to plan jobs, without torch: a job's memory from the base model's
parameter count (read from the safetensors header alone) and the points it holds at once.
Importing torch costs every Snakemake start and every dry run seconds; this module does not."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any, Mapping

# Host memory of a job that scores points, per body parameter: the feature model's float32
# weights, the pretrained body (float32) and one checkpoint being read (float32) are fixed;
# each point of a chunk adds its float64 accumulator; a checkpoint held in memory (a path's
# endpoints) adds 4 bytes. Plus the interpreter, torch, the tokenizer and cached features.
FIXED_BYTES_PER_PARAMETER = 12
POINT_BYTES_PER_PARAMETER = 8
LOADED_BYTES_PER_PARAMETER = 4
OVERHEAD_MB = 1500
HEADROOM = 1.2


DEFAULT_CHUNK = 8


def configured_chunk(config: Mapping[str, Any]) -> int:
    """Points materialised at a time: the config's hull.chunk (read by every stage that scores
    points, the paths too, also when no hull is configured), else DEFAULT_CHUNK."""
    return int((config.get("hull") or {}).get("chunk") or DEFAULT_CHUNK)


def points_memory_mb(body_parameters: int, chunk: int, loaded: int = 0) -> int:
    """Host memory (MB) a job needs to materialise `chunk` points at a time from bodies of
    `body_parameters` parameters, with `loaded` checkpoints held in memory; 20% headroom.
    MiniLM-L6 (22.7 M), chunk 8: 3.5 GB; roberta-base (124 M), chunk 8: 12.3 GB."""
    per_parameter = FIXED_BYTES_PER_PARAMETER + POINT_BYTES_PER_PARAMETER * chunk + LOADED_BYTES_PER_PARAMETER * loaded
    return math.ceil(HEADROOM * per_parameter * body_parameters / 2**20 + OVERHEAD_MB)


def parameter_count(model_dir: str | Path) -> int:
    """Parameters stored in a model folder's model.safetensors, from its header (nothing is
    loaded; the header is 8 bytes of length then JSON with every tensor's shape).
    FileNotFoundError while the folder is still to be made (Snakemake then sizes the job's
    resources later)."""
    path = Path(model_dir) / "model.safetensors"
    if not path.is_file():
        # filename = the folder as named: Snakemake recognises a job input that is still to come
        raise FileNotFoundError(2, "no model.safetensors yet", str(model_dir))
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
    return sum(math.prod(t["shape"]) for k, t in header.items() if k != "__metadata__")
