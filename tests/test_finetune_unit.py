"""Pieces of the finetuning loop, and determinism/resume of the loop itself (no Snakemake)."""

from __future__ import annotations

import json

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


# Snapshots (region formation): every 3 steps a resume checkpoint; snapshots at 2, 5 and 10.
SNAPSHOT_CFG = FinetuneConfig(lr=1e-3, batch_size=4, epochs=3, max_steps=10, max_length=8, eval_every=3, patience=10, checkpoint_every=3, snapshots=(2, 5, 10))


def _finetune_process(model, out, state, kill_after: int | None = None, term_after: int | None = None):
    """run_finetune in its own process (the kill switch SIGKILLs the process)."""
    import dataclasses
    import os
    import subprocess
    import sys

    from conftest import REPO

    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from conftest import toy_splits;"
        "from weightspace.finetune import FinetuneConfig, run_finetune;"
        f"cfg = FinetuneConfig(**{dataclasses.asdict(SNAPSHOT_CFG)!r});"
        f"run_finetune({str(model)!r}, toy_splits(), ['bad', 'good'], {str(out)!r}, {str(state)!r}, 'toy', 0, cfg, progress=False)"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("WEIGHTSPACE_KILL_AFTER_STEP", "WEIGHTSPACE_TERM_AFTER_STEP")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    if kill_after is not None:
        env["WEIGHTSPACE_KILL_AFTER_STEP"] = str(kill_after)
    if term_after is not None:
        env["WEIGHTSPACE_TERM_AFTER_STEP"] = str(term_after)
    return subprocess.run([sys.executable, "-c", code, str(REPO / "tests")], env=env, capture_output=True, text=True, timeout=600)


def test_a_finetune_killed_between_snapshots_resumes_to_the_same_snapshot_and_model_bytes(tiny_assets, tmp_path):
    from weightspace.finetune import snapshot_path
    from weightspace.integrity import verify_checkpoint

    whole = _finetune_process(tiny_assets["model"], tmp_path / "whole", tmp_path / "state-whole")
    assert whole.returncode == 0, whole.stderr[-3000:]

    killed = _finetune_process(tiny_assets["model"], tmp_path / "resumed", tmp_path / "state", kill_after=6)
    assert killed.returncode == -9, killed.stderr[-3000:]  # SIGKILL right after the step-6 checkpoint
    assert not (tmp_path / "resumed").exists()
    kept = sorted(p.name for p in (tmp_path / "state" / "snapshots").iterdir() if p.name.startswith("step"))
    assert kept == ["step2", "step5"]  # killed between the snapshots at steps 5 and 10
    resumed = _finetune_process(tiny_assets["model"], tmp_path / "resumed", tmp_path / "state")
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    files = ["model.safetensors"] + [f"snapshots/step{k}/{f}" for k in (2, 5, 10) for f in ("model.safetensors", "checksums.json", "snapshot.json")]
    for f in files:
        assert (tmp_path / "whole" / f).read_bytes() == (tmp_path / "resumed" / f).read_bytes(), f
    metrics = json.loads((tmp_path / "resumed" / "metrics.json").read_text())
    assert metrics["snapshots"] == [{"step": k, "trained_steps": k} for k in (2, 5, 10)]
    assert [a["from_step"] for a in metrics["attempts"]] == [0, 6]
    weights = [saved_weights(snapshot_path(tmp_path / "whole", k)) for k in (2, 5, 10)]
    for a, b in zip(weights, weights[1:]):  # real snapshots: training moved the weights between them
        assert not torch.equal(a["classifier.weight"], b["classifier.weight"])
    for k in (2, 5, 10):
        verify_checkpoint(snapshot_path(tmp_path / "resumed", k))  # checksums hold
    assert not (tmp_path / "state").exists()


def test_sigterm_saves_the_state_at_that_step_and_the_resume_is_bitwise(tiny_assets, tmp_path):
    """A real SIGTERM after step 7 (checkpoints every 3 steps): the run writes its state at step
    7, not at the last checkpoint, and stops; the rerun continues from step 7 and ends with the
    uninterrupted run's bytes. A torn state (one byte changed) is refused, naming the file."""
    import shutil

    whole = _finetune_process(tiny_assets["model"], tmp_path / "whole", tmp_path / "state-whole")
    assert whole.returncode == 0, whole.stderr[-3000:]
    termed = _finetune_process(tiny_assets["model"], tmp_path / "resumed", tmp_path / "state", term_after=7)
    assert termed.returncode == 1 and "Preempted" in termed.stderr and "SIGTERM after step 7 of 10" in termed.stderr, termed.stderr[-3000:]
    saved = json.loads((tmp_path / "state/checkpoint/state.json").read_text())
    assert saved["state"]["step"] == 7  # nothing lost beyond the step in flight
    torn = tmp_path / "torn"
    shutil.copytree(tmp_path / "state", torn)
    data = bytearray((torn / "checkpoint/optimizer.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (torn / "checkpoint/optimizer.safetensors").write_bytes(bytes(data))
    refused = _finetune_process(tiny_assets["model"], tmp_path / "torn-out", torn)
    assert refused.returncode == 1 and "ResumeCorrupt" in refused.stderr
    assert "optimizer.safetensors does not match its sha256" in refused.stderr and f"delete {torn}" in refused.stderr
    resumed = _finetune_process(tiny_assets["model"], tmp_path / "resumed", tmp_path / "state")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (tmp_path / "whole/model.safetensors").read_bytes() == (tmp_path / "resumed/model.safetensors").read_bytes()
    metrics = json.loads((tmp_path / "resumed/metrics.json").read_text())
    assert [a["from_step"] for a in metrics["attempts"]] == [0, 7]


def test_a_snapshot_past_the_end_of_training_holds_the_last_weights_and_says_so(tiny_assets, tmp_path):
    from weightspace.finetune import snapshot_path

    cfg = FinetuneConfig(lr=1e-3, batch_size=4, epochs=1, max_length=8, eval_every=3, checkpoint_every=3, snapshots=(3, 50))
    metrics = run_finetune(tiny_assets["model"], _splits(), ["bad", "good"], tmp_path / "m", tmp_path / "s", "toy", 0, cfg, progress=False)
    assert metrics["steps"] == 6  # one epoch of 24 examples
    assert metrics["snapshots"] == [{"step": 3, "trained_steps": 3}, {"step": 50, "trained_steps": 6}]
    assert (snapshot_path(tmp_path / "m", 50) / "model.safetensors").is_file()


def test_a_finetuned_folder_records_its_body_prefix_as_transformers_names_it(tiny_assets, tmp_path):
    import shutil

    from weightspace.weights import body_prefix

    run_finetune(tiny_assets["model"], _splits(), ["bad", "good"], tmp_path / "m", tmp_path / "s", "toy", 0, CFG, progress=False)
    (tmp_path / "bare").mkdir()
    shutil.copy(tmp_path / "m" / "config.json", tmp_path / "bare" / "config.json")  # no metrics.json: transformers answers
    assert body_prefix(tmp_path / "m") == body_prefix(tmp_path / "bare") == "bert"


def test_a_run_that_keeps_no_weights_writes_everything_else(tiny_assets, tmp_path):
    """BitFit in the paper preset (centroid.keep_weights: false): metrics, config and tokenizer,
    no weights and no checksums of them; the same metrics as a run that keeps them."""
    import dataclasses

    from conftest import toy_splits
    from weightspace.finetune import run_finetune

    cfg = dataclasses.replace(SNAPSHOT_CFG, snapshots=(), max_steps=4)
    kept = run_finetune(str(tiny_assets["model"]), toy_splits(), ["bad", "good"], tmp_path / "kept", tmp_path / "s1", "toy", 0, cfg, progress=False)
    lean = run_finetune(
        str(tiny_assets["model"]), toy_splits(), ["bad", "good"], tmp_path / "lean", tmp_path / "s2", "toy", 0, cfg, progress=False, keep_weights=False
    )
    assert (tmp_path / "kept/model.safetensors").is_file() and not (tmp_path / "lean/model.safetensors").exists()
    assert not (tmp_path / "lean/checksums.json").exists() and (tmp_path / "lean/config.json").is_file()
    assert json.loads((tmp_path / "lean/metrics.json").read_text())["weights_kept"] is False
    assert lean["test_accuracy"] == kept["test_accuracy"] and lean["test_loss"] == kept["test_loss"]
