"""The region's centroid as a starting point (methods.md §8; Fig. 6, 14; Tables 2, 3).

For a target dataset t the centroid is the mean body of the region's finetuned models,
excluding every model finetuned on t. It is written as a base-model checkpoint (safetensors,
loadable with from_pretrained) whose metadata lists the models it averages. BitFit then trains
only the body's bias terms and a new classification head, from the centroid and from the
pretrained model, with the same seed (same head initialisation and data order) for both starts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from .plan import STARTS

METADATA_KEY = "weightspace_centroid_of"


def write_centroid(base_model: str | Path, folders: Sequence[str], ids: Sequence[str], out_dir: str | Path) -> dict[str, Any]:
    """Average the bodies of the checkpoints `folders` (model ids `ids`) into a base-model
    checkpoint at `out_dir` (atomically): model.safetensors with the averaged ids in its
    metadata, config.json, the tokenizer, centroid.json and checksums.json."""
    from safetensors.torch import load_file, save_file
    from transformers import AutoModel, AutoTokenizer

    from .io import atomic_path, sha256_file, write_json
    from .points import Point, materialize
    from .weights import body_prefix, pretrained_body

    if not folders:
        raise ValueError("a centroid needs at least one model")
    pretrained = pretrained_body(base_model)
    point = Point.combination(list(folders), [1.0 / len(folders)] * len(folders), label="centroid")
    body = materialize(point, pretrained, body_prefix(base_model) + ".")
    model = AutoModel.from_pretrained(base_model, dtype=torch.float32)
    params = dict(model.named_parameters())
    missing = [n for n in body if n not in params]
    if missing:
        raise KeyError(f"{base_model}: the base model lacks body parameters {missing[:5]}")
    with torch.no_grad():
        for name, value in body.items():
            params[name].copy_(value)
    meta = {"models": list(ids), "checkpoints": list(map(str, folders)), "base_model": str(base_model)}
    with atomic_path(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        AutoTokenizer.from_pretrained(base_model).save_pretrained(tmp)
        weights = tmp / "model.safetensors"
        tensors = load_file(str(weights))
        save_file(tensors, str(weights), metadata={"format": "pt", METADATA_KEY: json.dumps(list(ids))})
        write_json(tmp / "centroid.json", meta)
        write_json(tmp / "checksums.json", {"model.safetensors": sha256_file(weights)})
    return meta


def centroid_models(folder: str | Path) -> list[str]:
    """The model ids a centroid checkpoint averages (from its safetensors metadata)."""
    from safetensors import safe_open

    with safe_open(str(Path(folder) / "model.safetensors"), framework="pt") as f:
        return json.loads((f.metadata() or {})[METADATA_KEY])


def gain_table(runs: pd.DataFrame, majority: Mapping[str, float] | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Table 2/3 from BitFit runs (columns dataset, start, seed, test_accuracy): per dataset the
    test accuracy (%) from the pretrained model and from the centroid, mean and sd over seeds,
    and the gain (centroid - pretrained, percentage points); plus the mean gain and the
    win / tie / loss count (a tie: equal mean accuracy). With `majority` (dataset -> majority-
    class test accuracy, a fraction) the table gets that baseline in %, and the summary counts
    the datasets where both starts sit at it (a tie that says nothing about the starts)."""
    order = list(dict.fromkeys(runs["dataset"]))
    stats = runs.assign(accuracy=100 * runs["test_accuracy"]).groupby(["dataset", "start"])["accuracy"].agg(["mean", "std", "count"])
    missing = [(d, st) for d in order for st in STARTS if (d, st) not in stats.index]
    if missing:
        raise ValueError(f"BitFit runs missing for (dataset, start) {missing}")
    table = pd.DataFrame(
        {
            "dataset": order,
            "pretrained": [stats.loc[(d, "pretrained"), "mean"] for d in order],
            "pretrained_sd": [stats.loc[(d, "pretrained"), "std"] for d in order],
            "centroid": [stats.loc[(d, "centroid"), "mean"] for d in order],
            "centroid_sd": [stats.loc[(d, "centroid"), "std"] for d in order],
            "seeds": [int(stats.loc[(d, "centroid"), "count"]) for d in order],
        }
    )
    table["gain"] = table["centroid"] - table["pretrained"]
    informative = np.ones(len(table), dtype=bool)
    if majority is not None:
        table["majority"] = [100 * majority[d] for d in order]
        at = lambda col: (table[col] - table["majority"]).abs() < 1e-6  # noqa: E731
        informative = ~(at("pretrained") & at("centroid")).to_numpy()
    table["informative"] = informative
    eps = 1e-9
    gain = table.loc[informative, "gain"]
    summary = {
        "datasets": len(table),
        "informative": int(informative.sum()),
        "uninformative": int((~informative).sum()),
        "mean_gain": float(gain.mean()) if len(gain) else float("nan"),
        "mean_gain_all": float(table["gain"].mean()),
        "wins": int((gain > eps).sum()),
        "ties": int((gain.abs() <= eps).sum()),
        "losses": int((gain < -eps).sum()),
    }
    summary["at_least_as_good"] = summary["wins"] + summary["ties"]
    if majority is not None:
        summary["both_at_majority"] = summary["uninformative"]
    return table, summary


def table_markdown(table: pd.DataFrame, summary: Mapping[str, Any], title: str) -> str:
    def cell(m: float, sd: float) -> str:
        return f"{m:.2f}" if np.isnan(sd) else f"{m:.2f} ± {sd:.2f}"

    from .summary import to_markdown

    maj = "majority" in table
    cells = [
        {
            "dataset": r.dataset,
            "pretrained": cell(r.pretrained, r.pretrained_sd),
            "centroid": cell(r.centroid, r.centroid_sd),
            "gain": f"{r.gain:+.2f}",
            **({"majority class": f"{r.majority:.2f}", "informative": "yes" if r.informative else "no: both at the majority class"} if maj else {}),
        }
        for r in table.itertuples()
    ]
    mean = f"{summary['mean_gain']:+.2f}" if summary["informative"] else "none"
    cells.append(
        {
            "dataset": "**mean gain (informative datasets)**",
            "pretrained": "",
            "centroid": "",
            "gain": f"**{mean}**",
            **({"majority class": "", "informative": ""} if maj else {}),
        }
    )
    lines = [f"# {title}", "", to_markdown(pd.DataFrame(cells)).rstrip("\n")]
    lines += [
        "",
        f"Centroid at least as good on {summary['at_least_as_good']} of {summary['informative']} informative datasets "
        f"(win / tie / loss {summary['wins']} / {summary['ties']} / {summary['losses']}; "
        f"{summary['uninformative']} of {summary['datasets']} uninformative: both starts at the majority class; "
        f"mean gain over all {summary['datasets']}: {summary['mean_gain_all']:+.2f}). "
        "Test accuracy in %, mean ± sd over seeds; BitFit (bias terms and a new head, a pooler included).",
    ]
    return "\n".join(lines) + "\n"
