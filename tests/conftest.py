"""Fixtures: a tiny random BERT-like model and tiny datasets that the tests build themselves,
and a helper that runs the real Snakefile through Snakemake."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

WORDS = {
    "alpha": (["sunny", "bright", "warm", "clear"], ["rainy", "grey", "cold", "storm"]),
    "beta": (["cat", "dog", "bird", "fish"], ["car", "bus", "train", "plane"], ["apple", "pear", "plum", "grape"]),
}
FILLER = ["the", "a", "is", "was", "very", "quite", "today", "here", "and", "it"]


def make_tiny_model(folder: Path, vocab: list[str], initializer_range: float = 0.02) -> Path:
    """A 2-layer, 32-wide random BERT with a WordPiece tokenizer over `vocab` (save_pretrained
    layout). At BERT's usual init scale the first token's output of such a small random model
    hardly depends on the input; a larger `initializer_range` makes it mix the input."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(vocab))]
    (folder / "vocab.txt").write_text("\n".join(tokens) + "\n")
    # transformers 5 takes the vocabulary itself (`vocab_file=` would be ignored: all [UNK]).
    tokenizer = BertTokenizerFast(vocab={t: i for i, t in enumerate(tokens)}, do_lower_case=True)
    config = BertConfig(
        vocab_size=len(tokens),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=48,
        max_position_embeddings=64,
        type_vocab_size=2,
        initializer_range=initializer_range,
    )
    torch.manual_seed(1234)
    BertModel(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def make_tiny_datasets(folder: Path, n: int = 64) -> dict[str, Path]:
    """`alpha`: a binary CSV (one file, no split); `beta`: 3-label sentence pairs as JSONL train/test."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)

    def sentence(words: list[str]) -> str:
        picks = list(rng.choice(words, 2)) + list(rng.choice(FILLER, 4))
        rng.shuffle(picks)
        return " ".join(picks)

    rows = [{"id": i, "review": sentence(WORDS["alpha"][i % 2]), "mood": ["good", "bad"][i % 2]} for i in range(n)]
    import pandas as pd

    pd.DataFrame(rows).to_csv(folder / "alpha.csv", index=False)
    for split, m in (("train", n), ("test", n // 2)):
        with open(folder / f"beta_{split}.jsonl", "w") as f:
            for i in range(m):
                k = i % 3
                f.write(json.dumps({"premise": sentence(WORDS["beta"][k]), "hypothesis": sentence(FILLER), "gold": ["animal", "vehicle", "fruit"][k]}) + "\n")
    return {"alpha": folder / "alpha.csv", "beta_train": folder / "beta_train.jsonl", "beta_test": folder / "beta_test.jsonl"}


def tiny_config(model: Path, files: dict[str, Path]) -> dict:
    return {
        "base_model": {"local": str(model)},
        "datasets": {
            "alpha": {
                "families": ["weather"],
                "source": {"files": {"all": str(files["alpha"])}, "format": "csv"},
                "text": "review",
                "label": "mood",
                "labels": ["bad", "good"],
            },
            "beta": {
                "families": ["things", "weather"],
                "source": {"files": {"train": str(files["beta_train"]), "test": str(files["beta_test"])}, "format": "jsonl"},
                "text": "premise",
                "text_pair": "hypothesis",
                "label": "gold",
                "labels": ["animal", "vehicle", "fruit"],
            },
        },
        "data": {"split_seed": 0, "test_fraction": 0.25, "dev_fraction": 0.2, "max_dev": 16, "probe_fraction": 0.3, "min_probe": 8},
        "zoo": {"datasets": ["alpha", "beta"], "seeds": [0, 1]},
        "finetune": {
            "lr": 1e-3,
            "batch_size": 8,
            "epochs": 10,
            "max_steps": 12,
            "max_length": 16,
            "eval_every": 4,
            "patience": 3,
            "checkpoint_every": 4,
        },
        "flatten": {"chunk_size": 1024, "shard_size": 4096},
        "size_experiment": {"datasets": ["alpha", "beta"], "sizes": [12, 24], "seeds": [0]},
        "loss": {"max_train": 24, "max_test": 12, "max_length": 16, "l2_grid": [0.1, 1.0, 10.0, 100.0], "cv_folds": 3},
        "paths": {
            "same_dataset": {"dataset": "alpha"},
            "same_family": {"datasets": ["alpha", "beta"], "max_pairs": 1},
            "alphas": [0.0, 0.5, 1.0],
            "extrapolation_steps": 3,
            "extrapolation_max": 4,
        },
        "hull": {
            "levels": {"dataset": {"groups": ["alpha"]}, "family": {"groups": ["things"]}, "general": {}},
            "bootstrap": 200,
            "chunk": 3,
            "edges": {"region": "weather", "directions": 2, "distances": [1, 2], "origin": ["zero", "pretrained"]},
        },
        "centroid": {"region": "general", "seeds": [0], "few_shot": 12, "finetune": {"lr": 1e-2, "max_steps": 8}},
        "geometry": {
            "gram_parts": 3,
            "groupings": {
                "dataset": {"by": "dataset"},
                "family": {"by": "family", "groups": ["things", "weather"]},
                "size_dataset": {"by": "dataset", "models": "size"},
                "size": {"by": "size", "models": "size"},
            },
        },
    }


@pytest.fixture(scope="session")
def tiny_assets(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("assets")
    files = make_tiny_datasets(root / "data")
    vocab = [w for groups in WORDS.values() for g in groups for w in g] + FILLER
    model = make_tiny_model(root / "model", vocab)
    return {"model": model, "files": files, "config": tiny_config(model, files)}


@pytest.fixture
def tiny_config_dict(tiny_assets: dict) -> dict:
    return copy.deepcopy(tiny_assets["config"])


def write_config(folder: Path, config: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snakemake(workdir: Path, configfile: Path | str, *args: str, env: dict | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run the repository's Snakefile with `workdir` as working directory."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--configfile", str(configfile), "--cores", "2", *args]
    # A kill switch in the caller's environment must never leak into a run.
    full_env = {k: v for k, v in os.environ.items() if k != "WEIGHTSPACE_KILL_AFTER_STEP"}
    full_env.update(env or {})
    return subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=timeout)


def check_run(done: subprocess.CompletedProcess, what: str) -> None:
    assert done.returncode == 0, f"{what} failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"


@pytest.fixture(scope="session")
def full_run(tiny_assets, tmp_path_factory) -> Path:
    """The whole tiny workflow, run once per test session (treat as read-only)."""
    work = tmp_path_factory.mktemp("run_a")
    config = write_config(work, tiny_assets["config"])
    check_run(snakemake(work, config), "tiny workflow")
    return work


def toy_splits(n: int = 40, train: int = 24, dev: int = 8) -> dict:
    """A tiny binary task in the tiny model's vocabulary: weather words, label = i % 2."""
    import pandas as pd

    rng = np.random.default_rng(0)
    words = [["sunny", "bright", "warm"], ["rainy", "grey", "cold"]]
    df = pd.DataFrame([{"text": " ".join(rng.choice(words[i % 2], 3)), "label": i % 2} for i in range(n)])
    cut = {"train": df.iloc[:train], "dev": df.iloc[train : train + dev], "test": df.iloc[train + dev :]}
    return {k: v.reset_index(drop=True) for k, v in cut.items()}


def saved_weights(folder: Path) -> dict:
    """A model folder's model.safetensors, as tensors."""
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))
