"""Pieces of the finetuning loop, and determinism/resume of the loop itself (no Snakemake)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import saved_weights, toy_splits
from weightspace.batches import collate, encode, epoch_order
from weightspace.finetune import FinetuneConfig, TrainingDiverged, lr_multiplier, run_finetune, total_steps


def test_lr_schedule_warms_up_then_decays_to_zero():
    lrs = [lr_multiplier(s, 10, 2) for s in range(10)]
    assert lrs[:2] == [0.5, 1.0]
    assert lrs[2] == 1.0 and lrs[-1] == pytest.approx(1 / 8)
    assert all(a >= b for a, b in zip(lrs[1:], lrs[2:]))
    assert lr_multiplier(0, 10, 0) == 1.0


def test_total_steps_takes_the_tighter_bound():
    assert total_steps(FinetuneConfig(batch_size=16, epochs=2), 100) == (7, 14)
    assert total_steps(FinetuneConfig(batch_size=16, epochs=2, max_steps=5), 100) == (7, 5)
    assert total_steps(FinetuneConfig(batch_size=16, epochs=0.5), 100) == (7, 4)


def test_epoch_order_is_a_seeded_permutation():
    a = epoch_order(7, 0, 50)
    assert sorted(a) == list(range(50))
    assert np.array_equal(a, epoch_order(7, 0, 50))
    assert not np.array_equal(a, epoch_order(7, 1, 50))
    assert not np.array_equal(a, epoch_order(8, 0, 50))


def test_collate_pads_to_the_longest_in_batch(tiny_assets):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_assets["model"])
    df = pd.DataFrame({"text": ["sunny", "rainy grey cold storm"], "text_pair": ["cat", "dog"], "label": [0, 1]})
    enc = encode(tok, df, max_length=6)
    assert tok.unk_token_id not in enc.input_ids[0]  # the tiny vocabulary is really used
    assert max(len(x) for x in enc.input_ids) == 6  # truncated
    batch = collate(enc, [0, 1], tok.pad_token_id)
    assert batch["input_ids"].shape == (2, 6)
    # [CLS] sunny [SEP] cat [SEP] + one pad
    assert batch["attention_mask"][0].tolist() == [1, 1, 1, 1, 1, 0]
    assert batch["token_type_ids"][0].tolist() == [0, 0, 0, 1, 1, 0]
    assert batch["labels"].tolist() == [0, 1]


def _splits():
    return toy_splits(40, 24)


CFG = FinetuneConfig(lr=1e-3, batch_size=4, epochs=3, max_steps=10, max_length=8, eval_every=3, patience=2, checkpoint_every=3)


def _state_dict(folder):
    return saved_weights(folder)


def test_same_seed_same_weights_other_seed_or_dataset_other_weights(tiny_assets, tmp_path):
    def run(name, seed, dataset="toy"):
        run_finetune(tiny_assets["model"], _splits(), ["bad", "good"], tmp_path / name, tmp_path / f"state-{name}", dataset, seed, CFG, progress=False)
        return _state_dict(tmp_path / name)

    a, b, c, d = run("a", 0), run("b", 0), run("c", 1), run("d", 0, "other")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["classifier.weight"], c["classifier.weight"])
    # Same seed number on another dataset: another head initialisation (methods.md §2).
    assert not torch.equal(a["classifier.weight"], d["classifier.weight"])
    assert not (tmp_path / "state-a").exists()  # resume state removed after success


def test_divergence_names_dataset_seed_and_step(tiny_assets, tmp_path):
    cfg = FinetuneConfig(lr=1e-3, batch_size=4, epochs=1, max_length=8, eval_every=3, max_loss=1e-6)
    with pytest.raises(TrainingDiverged, match=r"dataset 'toy' seed 3: training loss .* at step 1"):
        run_finetune(tiny_assets["model"], _splits(), ["bad", "good"], tmp_path / "m", tmp_path / "s", "toy", 3, cfg, progress=False)
    assert not (tmp_path / "m").exists()
