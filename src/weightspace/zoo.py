"""The zoo: one row per finetuned model, the table every analysis starts from."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from .io import atomic_path, read_json

SCHEMA = pa.schema(
    [
        ("model_id", pa.string()),
        ("dataset", pa.string()),
        ("families", pa.list_(pa.string())),
        ("derived_from", pa.string()),
        ("size_of", pa.string()),
        ("train_size", pa.int64()),
        ("seed", pa.int64()),
        ("derived_seed", pa.int64()),
        ("checkpoint", pa.string()),
        ("checkpoint_sha256", pa.string()),
        ("weights", pa.string()),
        ("num_positions", pa.int64()),
        ("dev_loss", pa.float64()),
        ("dev_accuracy", pa.float64()),
        ("test_loss", pa.float64()),
        ("test_accuracy", pa.float64()),
        ("steps", pa.int64()),
        ("step", pa.int64()),  # the step whose weights the model holds (its best dev step)
        ("train_examples", pa.int64()),
        ("examples_per_s", pa.float64()),
    ]
)


def zoo_row(model_id: str, dataset: str, entry: Mapping[str, Any], seed: int, checkpoint: str | Path, weights: str | Path) -> dict[str, Any]:
    metrics = read_json(Path(checkpoint) / "metrics.json")
    manifest = read_json(Path(weights) / "manifest.json")
    return {
        "model_id": model_id,
        "dataset": dataset,
        "families": list(entry["families"]),
        "derived_from": entry.get("derived_from"),
        "size_of": entry.get("size_of"),
        "train_size": entry.get("train_size"),
        "seed": seed,
        "derived_seed": metrics["derived_seed"],
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": manifest["checkpoint_sha256"],
        "weights": str(weights),
        "num_positions": manifest["num_positions"],
        **{k: metrics[k] for k in ("dev_loss", "dev_accuracy", "test_loss", "test_accuracy", "steps", "train_examples", "examples_per_s")},
        "step": metrics["best_step"],
    }


def write_zoo(rows: Sequence[Mapping[str, Any]], path: str | Path) -> pa.Table:
    table = pa.Table.from_pylist(list(rows), schema=SCHEMA)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return table


def read_zoo(path: str | Path) -> pa.Table:
    return pq.read_table(path)


def majority_accuracy(info_files: list[str]) -> dict[str, float]:
    """Accuracy of always predicting the most frequent test label, per dataset (from the
    info.json files prepare_data writes)."""
    out = {}
    for path in info_files:
        info = read_json(path)
        counts = info["label_counts"]["test"]
        out[info["dataset"]] = max(counts.values()) / sum(counts.values())
    return out
