"""Our finetune loop vs Hugging Face Trainer, set up identically, in the same run.

Same model (a MiniLM-shaped BERT, 6 layers, hidden 384), same data (synthetic texts of 8-48
words, truncated to max length 32), batch 16, same steps, AdamW lr 5e-5, weight decay 0.01,
linear schedule, gradient clipping 1.0, fp32 on CPU. Timed: the whole training call (data
order, padding, forward, backward, optimiser), no evaluation, no checkpoint. Each side runs
twice, alternating; the faster run of each counts. ratio = ours examples/s / Trainer's.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from _common import make_model, texts


def ours(model_dir: Path, df: pd.DataFrame, steps: int, batch: int, max_length: int, work: Path) -> float:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from weightspace.batches import encode
    from weightspace.device import configure_torch
    from weightspace.finetune import FinetuneConfig, train

    tok = AutoTokenizer.from_pretrained(model_dir)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=3)
    cfg = FinetuneConfig(
        lr=5e-5, batch_size=batch, epochs=100, max_steps=steps, max_length=max_length, eval_every=10**9, checkpoint_every=10**9, weight_decay=0.01
    )
    data = encode(tok, df, max_length)
    dev = encode(tok, df.iloc[:1], max_length)  # the loop's final dev evaluation: one example
    configure_torch(torch.get_num_threads())  # as in the workflow: deterministic kernels
    start = time.perf_counter()
    train(model, data, dev, cfg, seed=0, pad_id=tok.pad_token_id, state_dir=work / "state", run_id="bench", progress=False)
    elapsed = time.perf_counter() - start
    torch.use_deterministic_algorithms(False)
    return steps * batch / elapsed


def trainer(model_dir: Path, df: pd.DataFrame, steps: int, batch: int, max_length: int, work: Path) -> float:
    import datasets as hf
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer, TrainingArguments

    tok = AutoTokenizer.from_pretrained(model_dir)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=3)
    ds = hf.Dataset.from_pandas(df).map(lambda b: tok(b["text"], truncation=True, max_length=max_length), batched=True, remove_columns=["text"])
    args = TrainingArguments(
        output_dir=str(work / "trainer"),
        per_device_train_batch_size=batch,
        max_steps=steps,
        learning_rate=5e-5,
        weight_decay=0.01,
        lr_scheduler_type="linear",
        warmup_steps=0,
        max_grad_norm=1.0,
        logging_strategy="no",
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        dataloader_num_workers=0,
        disable_tqdm=True,
        use_cpu=True,
        seed=0,
    )
    t = Trainer(model=model, args=args, train_dataset=ds, data_collator=DataCollatorWithPadding(tok))
    start = time.perf_counter()
    t.train()
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--max-length", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model_dir = make_model(work / "model")
        text, labels = texts(a.steps * a.batch)
        df = pd.DataFrame({"text": text, "label": labels})
        runs = {"ours": [], "trainer": []}
        for _ in range(2):
            runs["ours"].append(ours(model_dir, df, a.steps, a.batch, a.max_length, work))
            runs["trainer"].append(trainer(model_dir, df, a.steps, a.batch, a.max_length, work))
    best = {k: max(v) for k, v in runs.items()}
    print(f"ours: {best['ours']:.1f} examples/s, Trainer: {best['trainer']:.1f} examples/s (runs: {runs})")
    print(
        json.dumps(
            {
                "bench": "finetune_throughput",
                "ratio": round(best["ours"] / best["trainer"], 3),
                "ours_examples_per_s": round(best["ours"], 2),
                "trainer_examples_per_s": round(best["trainer"], 2),
                "steps": a.steps,
                "batch": a.batch,
                "max_length": a.max_length,
                "threads": a.threads,
            }
        )
    )


if __name__ == "__main__":
    main()
