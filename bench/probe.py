"""Our probe vs training a fresh linear head by SGD (AdamW) through the frozen model, same run.

Model: the real all-MiniLM-L6-v2 (fetched by package name, as the workflow does). Data:
synthetic three-class texts (class-specific words among shared filler), 512 train / 256 test,
max length 32. Ours: one forward pass over both splits, then the L2 logistic-regression probe
with its penalty cross-validated on train over the default grid (weightspace.loss.calibrated_probe). Baseline: a new nn.Linear head on the first token, trained with AdamW
(lr 1e-2, batch 32) through the frozen model, forward passes every epoch as a head trained
through the model does, until its test loss is within 1% of ours (or --max-epochs).
ratio = baseline time / our time (goal >= 5); both losses printed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import minilm  # noqa: E402

FILLER = "the a of and to in is it that was for on are with as this be at by".split()
CLASS_WORDS = [
    "rain storm cloud wind snow cold grey fog".split(),
    "goal match team score coach league cup win".split(),
    "market stock price bank trade profit share fund".split(),
]


GRID = [0.1, 0.3, 1, 3, 10, 30, 100, 300, 1000, 3000, 10000]  # the schema's default loss.l2_grid


def texts(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        k = i % 3
        words = list(rng.choice(FILLER, 10)) + list(rng.choice(CLASS_WORDS[k], 2))
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": k})
    return pd.DataFrame(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--max-epochs", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    from weightspace.batches import collate, encode
    from weightspace.loss import FeatureExtractor, calibrated_probe

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        minilm(tmp)
        model_dir = str(tmp / "model")
        train, test = texts(512, 0), texts(256, 1)

        start = time.perf_counter()
        ex = FeatureExtractor(model_dir, 32)
        ours = calibrated_probe(ex.features(train), train["label"].to_numpy(), ex.features(test), test["label"].to_numpy(), GRID, 5)
        ours_s = time.perf_counter() - start

        start = time.perf_counter()
        ex2 = FeatureExtractor(model_dir, 32)
        body = ex2.model
        for prm in body.parameters():
            prm.requires_grad_(False)
        head = torch.nn.Linear(body.config.hidden_size, 3)
        opt = torch.optim.AdamW(head.parameters(), lr=1e-2, weight_decay=0.01)
        tr, te = encode(ex2.tokenizer, train, 32), encode(ex2.tokenizer, test, 32)
        rng = np.random.default_rng(0)

        def logits(data, idx):
            batch = collate(data, idx, ex2.pad)
            y = batch.pop("labels")
            with torch.no_grad():
                h = body(**batch).last_hidden_state[:, 0]
            return head(h), y

        sgd_loss, epochs = float("inf"), 0
        while epochs < a.max_epochs and sgd_loss > ours["loss"] * 1.01:
            order = rng.permutation(len(tr))
            for s in range(0, len(order), 32):
                out, y = logits(tr, order[s : s + 32])
                loss = torch.nn.functional.cross_entropy(out, y)
                opt.zero_grad()
                loss.backward()
                opt.step()
            epochs += 1
            with torch.no_grad():
                total = 0.0
                for s in range(0, len(te), 64):
                    out, y = logits(te, range(s, min(s + 64, len(te))))
                    total += torch.nn.functional.cross_entropy(out, y, reduction="sum").item()
                sgd_loss = total / len(te)
        sgd_s = time.perf_counter() - start
    reached = sgd_loss <= ours["loss"] * 1.01
    print(
        f"ours: test loss {ours['loss']:.4f} in {ours_s:.1f} s; SGD head: test loss {sgd_loss:.4f} after {epochs} epochs in {sgd_s:.1f} s ({'within' if reached else 'NOT within'} 1%)"
    )
    print(
        json.dumps(
            {
                "bench": "probe",
                "ratio": round(sgd_s / ours_s, 3),
                "ours_loss": round(ours["loss"], 5),
                "sgd_loss": round(sgd_loss, 5),
                "sgd_epochs": epochs,
                "within_1pct": reached,
                "ours_s": round(ours_s, 3),
                "sgd_s": round(sgd_s, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
