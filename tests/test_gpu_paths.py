"""The finetuning loop's GPU-only paths, reached from CPU: the fp16 loss scaler in the resume
state, bf16 autocast, gradient accumulation, a GPU promised but absent, resume on another
setup. What only a GPU can check is listed in docs/gpu.md."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch

from conftest import saved_weights, toy_splits
from weightspace import finetune
from weightspace.batches import encode
from weightspace.device import GPUMissing, resolve_device
from weightspace.finetune import FinetuneConfig, run_finetune, train
from weightspace.resume import ResumeMismatch, TrainState, save_checkpoint


class Killed(Exception):
    """Stands for SIGKILL right after a checkpoint (the subprocess tests do the real kill)."""


def _splits():
    return toy_splits(48, 32)


CFG = FinetuneConfig(lr=1e-3, batch_size=4, epochs=3, max_steps=12, max_length=8, eval_every=3, patience=5, checkpoint_every=4)


def _weights(folder):
    return saved_weights(folder)


def _on(monkeypatch, dtype):
    """This CPU plays a GPU with `dtype` autocast: the loop takes its CUDA code path."""
    monkeypatch.setattr(finetune, "resolve_device", lambda precision, environ=None: (torch.device("cpu"), dtype))


def _kill_at(monkeypatch, step):
    def kill(at):
        if at >= step:
            raise Killed(at)

    monkeypatch.setattr(finetune, "_maybe_kill", kill)


def test_fp16_kill_resume_is_bitwise_with_the_scaler_state(tiny_assets, tmp_path, monkeypatch):
    _on(monkeypatch, torch.float16)
    # A scale that overflows fp16 at first and grows every 2 steps: the scaler's state changes
    # along the run, so a resume that lost it would skip other steps and end elsewhere.
    monkeypatch.setattr(torch.amp, "GradScaler", functools.partial(torch.amp.GradScaler, init_scale=2.0**20, growth_interval=2))
    run = functools.partial(run_finetune, tiny_assets["model"], _splits(), ["bad", "good"], dataset="toy", seed=0, cfg=CFG, progress=False)
    whole = run(out_dir=tmp_path / "whole", state_dir=tmp_path / "s-whole")
    assert whole["autocast"] == "float16"

    _kill_at(monkeypatch, 8)
    with pytest.raises(Killed):
        run(out_dir=tmp_path / "resumed", state_dir=tmp_path / "s-resumed")
    saved = json.loads((tmp_path / "s-resumed" / "checkpoint" / "state.json").read_text())
    assert saved["scaler"]["scale"] != 2.0**20  # the scaler moved: the test can tell
    assert saved["environment"]["autocast"] == "float16"
    monkeypatch.setattr(finetune, "_maybe_kill", lambda at: None)
    resumed = run(out_dir=tmp_path / "resumed", state_dir=tmp_path / "s-resumed")
    a, b = _weights(tmp_path / "whole"), _weights(tmp_path / "resumed")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [x["from_step"] for x in resumed["attempts"]] == [0, 8]


def test_bf16_autocast_on_cpu_takes_the_gpu_code_path(tiny_assets, tmp_path, monkeypatch):
    run = functools.partial(run_finetune, tiny_assets["model"], _splits(), ["bad", "good"], dataset="toy", seed=0, cfg=CFG, progress=False)
    _on(monkeypatch, None)
    fp32 = run(out_dir=tmp_path / "fp32", state_dir=tmp_path / "s1")
    _on(monkeypatch, torch.bfloat16)
    bf16 = run(out_dir=tmp_path / "bf16", state_dir=tmp_path / "s2")
    assert (fp32["autocast"], bf16["autocast"]) == ("fp32", "bfloat16")
    a, b = _weights(tmp_path / "fp32"), _weights(tmp_path / "bf16")
    assert all(torch.isfinite(b[k]).all() for k in b)
    assert any(not torch.equal(a[k], b[k]) for k in a)  # autocast really computed in bf16
    assert all(b[k].dtype == torch.float32 for k in b)  # master weights stay fp32
    assert abs(bf16["test_loss"] - fp32["test_loss"]) < 0.5


def test_resume_under_another_autocast_is_refused(tiny_assets, tmp_path, monkeypatch):
    run = functools.partial(run_finetune, tiny_assets["model"], _splits(), ["bad", "good"], tmp_path / "m", tmp_path / "s", "toy", 0, CFG, progress=False)
    _on(monkeypatch, torch.bfloat16)
    _kill_at(monkeypatch, 4)
    with pytest.raises(Killed):
        run()
    _on(monkeypatch, None)
    with pytest.raises(ResumeMismatch, match=r"autocast bfloat16.*autocast fp32.*delete"):
        run()
    assert (tmp_path / "s" / "checkpoint").is_dir()  # nothing discarded


@pytest.mark.parametrize("variable", ["CUDA_VISIBLE_DEVICES=0", "SLURM_JOB_GPUS=3", "SLURM_GPUS_ON_NODE=1"])
def test_a_gpu_promised_but_absent_fails_naming_the_cause(variable, tiny_assets, tmp_path, monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: nothing is missing")
    name, value = variable.split("=")
    with pytest.raises(GPUMissing, match=rf"{name}={value} promises this job a GPU.*CPU-only build.*GPU install.*WEIGHTSPACE_CPU_OK=1"):
        resolve_device("auto", {name: value})
    assert resolve_device("auto", {name: value, "WEIGHTSPACE_CPU_OK": "1"}) == (torch.device("cpu"), None)  # on purpose
    monkeypatch.setenv(name, value)
    with pytest.raises(GPUMissing):
        run_finetune(tiny_assets["model"], _splits(), ["bad", "good"], tmp_path / "m", tmp_path / "s", "toy", 0, CFG, progress=False)
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("environ", [{}, {"CUDA_VISIBLE_DEVICES": ""}, {"CUDA_VISIBLE_DEVICES": "-1"}, {"SLURM_GPUS_ON_NODE": "0"}])
def test_no_gpu_promised_trains_on_cpu(environ):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert resolve_device("auto", environ) == (torch.device("cpu"), None)


def _no_dropout_model(path, seed):
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_pretrained(path, num_labels=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


@pytest.mark.parametrize("accum", [2, 3, 8])
def test_grad_accum_gives_the_large_batch_update(accum, tiny_assets, tmp_path, monkeypatch):
    from transformers import AutoTokenizer

    _on(monkeypatch, None)  # fp32: the comparison is up to float rounding, not bf16's
    tok = AutoTokenizer.from_pretrained(tiny_assets["model"])
    splits = _splits()
    data = {k: encode(tok, v, 8) for k, v in splits.items()}
    cfg = FinetuneConfig(lr=1e-3, batch_size=8, epochs=2, max_length=8, eval_every=100, checkpoint_every=100)
    models = []
    for i, n in enumerate([1, accum]):
        model = _no_dropout_model(tiny_assets["model"], 0)
        train(
            model,
            data["train"],
            data["dev"],
            FinetuneConfig(**{**cfg.__dict__, "grad_accum": n}),
            0,
            tok.pad_token_id,
            tmp_path / f"s{i}",
            "toy",
            progress=False,
        )
        models.append(model.state_dict())
    a, b = models
    start = _no_dropout_model(tiny_assets["model"], 0).state_dict()
    assert any(not torch.equal(a[k], start[k]) for k in a)  # it trained
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)


def test_grad_accum_beyond_the_batch_is_refused(tiny_assets, tmp_path):
    cfg = FinetuneConfig(batch_size=4, max_steps=2, max_length=8, grad_accum=5)
    with pytest.raises(ValueError, match="grad_accum must be between 1 and batch_size"):
        run_finetune(tiny_assets["model"], _splits(), ["bad", "good"], tmp_path / "m", tmp_path / "s", "toy", 0, cfg, progress=False)


def test_unchanged_best_weights_are_linked_not_rewritten(tmp_path, monkeypatch):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters())
    best = {k: v.clone() for k, v in model.state_dict().items()}
    state = TrainState(step=4, best_step=2)
    links = []
    from weightspace import resume

    real_link = resume.os.link
    monkeypatch.setattr(resume.os, "link", lambda a, b: (links.append(b), real_link(a, b)))
    save_checkpoint(tmp_path, model, opt, state, best, {})
    state.step = 8
    save_checkpoint(tmp_path, model, opt, state, best, {})
    assert len(links) == 1
    state.step, state.best_step = 12, 10
    save_checkpoint(tmp_path, model, opt, state, {k: v + 1 for k, v in best.items()}, {})
    assert len(links) == 1  # a new best is written
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "checkpoint" / "best.safetensors"))
    assert torch.equal(saved["bias"], best["bias"] + 1)


def test_checkpoint_minutes_checkpoint_by_wall_time(tiny_assets, tmp_path, monkeypatch):
    saves = []
    real = finetune.save_checkpoint
    monkeypatch.setattr(finetune, "save_checkpoint", lambda *a, **k: (saves.append(a[3].step), real(*a, **k)))
    cfg = FinetuneConfig(**{**CFG.__dict__, "checkpoint_every": 10**6, "checkpoint_minutes": 0.0})
    run_finetune(tiny_assets["model"], _splits(), ["bad", "good"], tmp_path / "m", tmp_path / "s", "toy", 0, cfg, progress=False)
    assert saves == list(range(1, 12))  # every step once 0 minutes have passed; never at the end


@pytest.mark.slow
def test_gpu_check_runs_at_tiny_size_and_prints_its_json_line(tmp_path):
    """bench/gpu_check.py, the script a GPU node runs, at tiny size on this machine: every
    section completes (determinism and kill-resume through real subprocesses and SIGKILL)."""
    import subprocess
    import sys

    from conftest import REPO

    out = tmp_path / "check.json"
    done = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_check.py"), "--tiny", "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    line = json.loads(done.stdout.strip().splitlines()[-1])
    assert line["bench"] == "gpu_check" and "ratio" in line
    assert json.loads(out.read_text())["env"] == line["env"]
    for precision, check in line["determinism"].items():
        assert check["same_seed_bitwise"] and check["kill_resume_bitwise"], (precision, check)
        assert check["killed_returncode"] == -9
    assert line["throughput"] and all("error" not in row and row["examples_per_s"] > 0 for row in line["throughput"])
    assert line["points"]["loss_eval_s_per_point"] > 0 and len(line["points"]["loss_eval_rows"]) == 4


# --- points sized by the body -----------------------------------------------------------------


def test_job_memory_and_chunk_follow_from_the_body_size():
    from weightspace.points import points_chunk, points_memory_mb

    minilm, roberta = 22_700_000, 124_000_000
    assert points_memory_mb(roberta, 8) > points_memory_mb(minilm, 8) > points_memory_mb(minilm, 1)
    assert 12_000 < points_memory_mb(roberta, 8) < 14_000  # a chunk of 8 peaked at 13.9 GB RSS (issue 15)
    assert points_memory_mb(minilm, 8, loaded=2) > points_memory_mb(minilm, 8)
    # a job given the memory for chunk c materialises c points at a time, never more than asked
    for body in (minilm, roberta):
        for c in (1, 3, 8):
            assert points_chunk(body, 8, points_memory_mb(body, c)) == c
            assert points_chunk(body, 8, points_memory_mb(body, c, loaded=2), loaded=2) == c
    assert points_chunk(roberta, 8, None) == 8  # no memory figure: the config's chunk
    assert points_chunk(roberta, 8, 100) == 1  # never below one point


def test_each_checkpoint_is_read_once_per_chunk(tiny_assets, monkeypatch):
    from weightspace import points as points
    from weightspace import weights
    from weightspace.loss import FeatureExtractor, score_points
    from weightspace.points import Point

    extractor = FeatureExtractor(str(tiny_assets["model"]), 8)
    pretrained = {n: p.detach().clone() for n, p in extractor.model.named_parameters() if weights.in_body(n)}
    reads = []

    def fake_checkpoint(folder, names, prefix=None):
        reads.append(folder)
        g = torch.Generator().manual_seed(int(folder[1:]))
        return {n: pretrained[n] + 0.01 * torch.randn(pretrained[n].shape, generator=g) for n in names}

    monkeypatch.setattr(weights, "checkpoint_body", fake_checkpoint)
    folders = ["m0", "m1", "m2"]
    combos = [Point.combination([folders[i % 3], folders[(i + 1) % 3]], [0.5, 0.5]) for i in range(7)]
    splits = {"toy": tuple(df.assign(label=df["label"] % 2) for df in (_splits()["train"], _splits()["test"]))}
    spec = {"choose": "per_target", "l2_grid": [1.0], "cv_folds": 2}
    body = sum(t.numel() for t in pretrained.values())

    def expected(chunk):
        return sum(len({f for p in combos[lo : lo + chunk] for f, _ in p.coefficients}) for lo in range(0, len(combos), chunk))

    # memory for exactly two float64 bodies beside the fixed cost (points_memory_mb rounds up
    # to whole MB, which is many bodies of this tiny model)
    two = points.OVERHEAD_MB + points.HEADROOM * (points.FIXED_BYTES_PER_PARAMETER + 2 * points.POINT_BYTES_PER_PARAMETER) * body / 2**20 + 1e-6
    for chunk, memory in [(3, None), (7, None), (2, two)]:
        reads.clear()
        table = score_points(extractor, pretrained, "", combos, splits, spec, {"toy": 1.0}, chunk=7 if memory else chunk, progress=False, memory_mb=memory)
        assert len(reads) == expected(chunk), (chunk, reads)
        assert len(table) == len(combos)
    assert expected(7) == 3  # one chunk: every checkpoint read once


def test_out_of_memory_says_so_and_the_retry_doubles_grad_accum(tiny_assets, tmp_path, monkeypatch):
    """A micro-batch of more than 2 examples 'does not fit' this fake GPU: the first attempt
    fails saying what to change; the next one doubles grad_accum, resumes, and finishes."""
    real_collate = finetune.collate

    def small_memory(data, idx, pad_id):
        if isinstance(idx, np.ndarray) and len(idx) > 2:  # training batches only
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_collate(data, idx, pad_id)

    run = functools.partial(run_finetune, tiny_assets["model"], _splits(), ["bad", "good"], tmp_path / "m", tmp_path / "s", "toy", 0, CFG, progress=False)
    _kill_at(monkeypatch, 4)
    with pytest.raises(Killed):
        run()  # a checkpoint at step 4 first
    monkeypatch.setattr(finetune, "_maybe_kill", lambda at: None)
    monkeypatch.setattr(finetune, "collate", small_memory)
    with pytest.raises(torch.OutOfMemoryError, match="out of GPU memory at batch 4 in 1 micro-batch.*doubles finetune.grad_accum"):
        run()
    metrics = run()
    assert metrics["finetune"]["grad_accum"] == 2 and metrics["steps"] == 12
    assert [a["from_step"] for a in metrics["attempts"]] == [0, 4]  # resumed from the checkpoint (the failed attempt saved none)


def test_under_auto_a_resume_continues_in_the_precision_its_state_was_written_in():
    """A job requeued onto another GPU class resumes in its recorded autocast dtype (bf16 is
    emulated where the GPU lacks it) instead of failing every retry with ResumeMismatch."""
    from weightspace.device import resume_precision

    assert resume_precision("auto", {"device": "cuda", "autocast": "bfloat16"}) == "bf16"
    assert resume_precision("auto", {"device": "cuda", "autocast": "float16"}) == "fp16"
    assert resume_precision("auto", None) == "auto"  # a fresh start chooses by the GPU
    assert resume_precision("auto", {"device": "cpu", "autocast": "fp32"}) == "auto"
    assert resume_precision("fp16", {"device": "cuda", "autocast": "bfloat16"}) == "fp16"  # explicit: as given (a mismatch is refused)


def test_a_resume_reads_the_precision_from_the_state(tiny_assets, tmp_path, monkeypatch):
    """The loop asks resolve_device for the state's recorded precision under auto."""
    asked = []

    def fake(precision, environ=None):
        asked.append(precision)
        return torch.device("cpu"), None

    monkeypatch.setattr(finetune, "resolve_device", fake)
    monkeypatch.setattr(finetune, "recorded_environment", lambda state_dir: {"device": "cuda", "autocast": "bfloat16"})
    import dataclasses

    run_finetune(
        str(tiny_assets["model"]),
        _splits(),
        ["bad", "good"],
        tmp_path / "out",
        tmp_path / "state",
        "toy",
        0,
        dataclasses.replace(CFG, max_steps=2),
        progress=False,
    )
    assert asked == ["bf16"]
