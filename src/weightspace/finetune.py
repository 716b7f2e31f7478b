"""The seeded, resumable finetuning loop (methods.md §2).

AdamW with decoupled weight decay (none on biases and LayerNorm weights), linear warm-up and
decay, early stopping on the dev loss (the best dev checkpoint is the result). One derived seed
(seeding.derive_seed) sets the head initialisation, the dropout stream and the data order, so
the same (dataset, seed) gives bitwise-identical weights on CPU.

Resume: every `checkpoint_every` steps and/or every `checkpoint_minutes` of wall time, the whole
training state (weights, optimiser moments, the fp16 loss scaler, RNG states, early-stopping
state, the best weights so far) is written atomically, fsynced and checksummed to a state
folder outside the rule's outputs. On SIGTERM (SLURM's warning signal before a preemption or
the time limit) the loop finishes its step, writes the state and stops (Preempted): a
preemption loses at most the signal margin. A restarted job (SLURM requeue, a kill) continues
from the state, verified against its checksums, and ends with the same weights as an
uninterrupted run. The state is deleted only once the finished model has been written.

Devices: CUDA when present; `precision: auto` is bf16 where the GPU has it natively, else fp16
with a loss scaler. A job promised a GPU (CUDA_VISIBLE_DEVICES, SLURM's GPU variables) that
torch cannot see fails instead of training on CPU. The device, its name, the CUDA and torch
versions and the autocast dtype are recorded in the resume state and metrics.json; a resume on
another device type or autocast dtype is refused (ResumeMismatch), one on another GPU model or
software version continues and is recorded in `attempts`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import signal
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from .batches import Encoded, collate, encode, epoch_order
from .device import autocast, configure_torch, environment, resolve_device, resume_precision
from .io import atomic_path, sha256_file, write_json
from .resume import TrainState, cpu_state, load_checkpoint, recorded_environment, save_checkpoint

log = logging.getLogger(__name__)

KILL_AFTER_STEP_ENV = "WEIGHTSPACE_KILL_AFTER_STEP"
TERM_AFTER_STEP_ENV = "WEIGHTSPACE_TERM_AFTER_STEP"  # fault injection: a real SIGTERM to this process


class Preempted(RuntimeError):
    """SIGTERM arrived: the resume state was written and the run stopped; the next attempt
    resumes from it."""


class TrainingDiverged(FloatingPointError):
    """The loss became NaN/infinite or exceeded the configured bound."""


UNDIGESTED = ("grad_accum", "checkpoint_every", "checkpoint_minutes")
OOM_FILE = "oom.json"  # in the state folder: the micro-batching an attempt ran out of memory with


@dataclass(frozen=True)
class FinetuneConfig:
    lr: float = 5e-5
    batch_size: int = 16
    epochs: float = 10
    max_steps: int | None = None
    warmup_ratio: float = 0.0
    weight_decay: float = 0.01
    max_length: int = 128
    eval_every: int | None = None
    patience: int = 3
    checkpoint_every: int | None = 50  # None: by wall time only
    checkpoint_minutes: float | None = None  # also checkpoint when this much wall time has passed
    grad_accum: int = 1  # micro-batches per optimiser step (batch_size is the effective batch)
    grad_clip: float | None = 1.0
    max_loss: float | None = None
    precision: str = "auto"
    trainable: str = "all"  # "bitfit": the body's bias terms and the head only
    snapshots: tuple[int, ...] = ()  # steps after which the weights are also kept (snapshot_path)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "FinetuneConfig":
        known = {f for f in cls.__dataclass_fields__}
        given = {k: v for k, v in values.items() if k in known}
        if "snapshots" in given:
            given["snapshots"] = tuple(sorted({int(s) for s in given["snapshots"] or ()}))
        return cls(**given)

    def digest(self) -> str:
        """What a resume state must match: every setting that changes the training, not those
        that only change how it is computed or checkpointed (micro-batches: the same update up
        to rounding, so an out-of-memory retry with more of them continues the run)."""
        keys = {k: v for k, v in asdict(self).items() if k not in UNDIGESTED}
        return hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:16]


def lr_multiplier(step: int, total: int, warmup: int) -> float:
    """Linear warm-up over `warmup` steps, then linear decay to 0 at `total` (step is 0-based)."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def total_steps(cfg: FinetuneConfig, n_train: int) -> tuple[int, int]:
    """(steps per epoch, total steps): the tighter of epochs and max_steps."""
    per_epoch = math.ceil(n_train / cfg.batch_size)
    total = math.ceil(cfg.epochs * per_epoch)
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps)
    return per_epoch, total


@torch.no_grad()
def evaluate(model: torch.nn.Module, data: Encoded, batch_size: int, pad_id: int, device: torch.device, amp: torch.dtype | None) -> dict[str, float]:
    """Mean cross-entropy and accuracy over a split."""
    model.eval()
    loss_sum, correct = 0.0, 0
    for start in range(0, len(data), batch_size):
        batch = {k: v.to(device) for k, v in collate(data, range(start, min(start + batch_size, len(data))), pad_id).items()}
        labels = batch.pop("labels")
        with autocast(device, amp):
            logits = model(**batch).logits.float()
        loss_sum += torch.nn.functional.cross_entropy(logits, labels, reduction="sum").item()
        correct += (logits.argmax(-1) == labels).sum().item()
    model.train()
    return {"loss": loss_sum / len(data), "accuracy": correct / len(data)}


def bitfit_trainable(model: torch.nn.Module) -> int:
    """BitFit: freeze every body parameter except bias terms; the head (a pooler included,
    weights.in_body) stays trainable. Returns the number of trainable parameters."""
    from .weights import in_body

    prefix = model.base_model_prefix + "."
    for name, p in model.named_parameters():
        body = name.startswith(prefix) and in_body(name[len(prefix) :])
        p.requires_grad_(not body or name.endswith(".bias"))
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay every weight matrix; not biases nor LayerNorm weights (the usual BERT recipe)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_adamw(groups: list[dict[str, Any]], lr: float) -> torch.optim.Optimizer:
    """AdamW, fused where torch has the kernel for the device (on CPU about 9x faster per step
    than the per-parameter loop for a 22 M-parameter model; same update rule)."""
    try:
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8)


def _maybe_kill(step: int) -> None:
    # Fault injection for the resume tests: a real SIGKILL right after a checkpoint.
    at = os.environ.get(KILL_AFTER_STEP_ENV)
    if at is not None and step >= int(at):
        os.kill(os.getpid(), signal.SIGKILL)


def _maybe_term(step: int) -> None:
    # Fault injection for the resume tests: a real SIGTERM to this process after `step`.
    at = os.environ.get(TERM_AFTER_STEP_ENV)
    if at is not None and step == int(at):
        os.kill(os.getpid(), signal.SIGTERM)


@contextlib.contextmanager
def sigterm_flag() -> Iterator[dict[str, int | None]]:
    """While the block runs, SIGTERM sets flag['signal'] instead of killing the process (the
    loop checks it after every step). Outside the main thread signals cannot be caught: the
    flag stays None."""
    flag: dict[str, int | None] = {"signal": None}

    def handler(signum: int, frame: Any) -> None:
        flag["signal"] = signum
        log.warning("SIGTERM: the resume state is written after this step, then the run stops")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:
        previous = None
    try:
        yield flag
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


SNAPSHOTS = "snapshots"  # in a model folder (and in the resume state while training)


def snapshot_path(model_folder: str | Path, step: int) -> Path:
    """The folder of a finetune's snapshot at `step`: model.safetensors (the whole state dict
    after `step` optimiser steps), checksums.json and snapshot.json (step, trained_steps)."""
    return Path(model_folder) / SNAPSHOTS / f"step{int(step)}"


def save_snapshot(state_dir: Path, step: int, trained_steps: int, model: torch.nn.Module) -> None:
    """Write one snapshot atomically into the resume state, with its checksum. The bytes
    depend only on the weights, so a resumed run that passes `step` again writes the same file.
    `trained_steps` < `step` when training ended (early stop, epochs) before `step`: the
    weights are then those it ended with."""
    from safetensors.torch import save_file

    with atomic_path(snapshot_path(state_dir, step)) as tmp:
        tmp.mkdir()
        save_file(cpu_state(model), str(tmp / "model.safetensors"))
        write_json(tmp / "checksums.json", {"model.safetensors": sha256_file(tmp / "model.safetensors")})
        write_json(tmp / "snapshot.json", {"step": int(step), "trained_steps": int(trained_steps)})


def train(
    model: torch.nn.Module,
    train_data: Encoded,
    dev_data: Encoded,
    cfg: FinetuneConfig,
    seed: int,
    pad_id: int,
    state_dir: Path,
    run_id: str,
    progress: bool = True,
) -> tuple[TrainState, torch.device, torch.dtype | None]:
    """Finetune `model` in place; on return it holds the best-dev weights.

    `run_id` names the run in error messages (dataset and seed).
    """
    from tqdm.auto import tqdm

    # under precision auto a resume continues in the precision its state was written in
    device, amp = resolve_device(resume_precision(cfg.precision, recorded_environment(state_dir)))
    if cfg.grad_accum < 1 or cfg.grad_accum > cfg.batch_size:
        raise ValueError(f"finetune.grad_accum must be between 1 and batch_size ({cfg.batch_size}), not {cfg.grad_accum}")
    model.to(device).train()
    optimizer = make_adamw(param_groups(model, cfg.weight_decay), cfg.lr)
    # fp16 needs loss scaling (bf16 has fp32's range); its state is part of the resume state
    scaler = torch.amp.GradScaler(device.type) if amp == torch.float16 else None
    per_epoch, total = total_steps(cfg, len(train_data))
    warmup = int(round(cfg.warmup_ratio * total))
    eval_every = cfg.eval_every or per_epoch
    meta = {"run_id": run_id, "seed": seed, "config": cfg.digest(), "n_train": len(train_data)}
    env = environment(device, amp)

    state, best = TrainState(), None
    resumed = load_checkpoint(state_dir, model, optimizer, meta, scaler, env)
    if resumed is not None:
        state, best = resumed
        log.info("resumed %s from step %d of %d", run_id, state.step, total)
    state.attempts.append({"from_step": state.step, **env})

    bar = tqdm(total=total, initial=state.step, desc=f"finetune {run_id}", unit="step", disable=not progress, mininterval=1.0, dynamic_ncols=False)
    order, order_epoch = None, -1
    last_checkpoint = time.monotonic()
    with sigterm_flag() as terminated:
        while state.step < total and not state.stopped_early:
            if best is None and state.step > 0 and state.best_step == state.step:
                # Keep a copy of the best weights before this step moves away from them.
                best = cpu_state(model)
            epoch, offset = divmod(state.step, per_epoch)
            if epoch != order_epoch:
                order, order_epoch = epoch_order(seed, epoch, len(train_data)), epoch
            idx = order[offset * cfg.batch_size : (offset + 1) * cfg.batch_size]
            for g in optimizer.param_groups:
                g["lr"] = cfg.lr * lr_multiplier(state.step, total, warmup)
            t0 = time.perf_counter()
            # Gradient accumulation: each micro-batch's mean loss weighted by its share of the
            # batch, so the summed gradient is the batch's (one micro-batch: weight 1, no scaling).
            micro = np.array_split(idx, cfg.grad_accum) if cfg.grad_accum > 1 else [idx]
            loss_value = 0.0
            try:
                for part in micro:
                    batch = {k: v.to(device, non_blocking=True) for k, v in collate(train_data, part, pad_id).items()}
                    with autocast(device, amp):
                        loss = model(**batch).loss
                    if len(micro) > 1:
                        loss = loss * (len(part) / len(idx))
                    part_value = loss.item()
                    if not math.isfinite(part_value) or (cfg.max_loss is not None and part_value > cfg.max_loss):
                        raise TrainingDiverged(
                            f"{run_id}: training loss {part_value} at step {state.step + 1} (finetune.max_loss: {cfg.max_loss}); "
                            "lower the learning rate or check the data"
                        )
                    loss_value += part_value
                    (scaler.scale(loss) if scaler is not None else loss).backward()
            except torch.OutOfMemoryError as err:
                # the retry (Snakemake's next attempt) reads this and doubles grad_accum
                write_json(state_dir / OOM_FILE, {"grad_accum": cfg.grad_accum, "step": state.step, "micro_batch": len(micro[0])})
                raise torch.OutOfMemoryError(
                    f"{run_id}: out of GPU memory at batch {len(idx)} in {len(micro)} micro-batch(es) of up to {len(micro[0])} examples, "
                    f"max_length {cfg.max_length}. The next attempt doubles finetune.grad_accum (same effective batch, smaller "
                    f"micro-batches) and resumes from the last checkpoint; set grad_accum in the config to start there. {err}"
                ) from err
            if scaler is not None:
                scaler.unscale_(optimizer)
            if cfg.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            state.train_seconds += time.perf_counter() - t0
            state.train_examples_seen += len(idx)
            state.step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.4f}", refresh=False)
            if state.step in cfg.snapshots:
                save_snapshot(state_dir, state.step, state.step, model)

            if state.step % eval_every == 0 or state.step == total:
                dev = evaluate(model, dev_data, max(cfg.batch_size // cfg.grad_accum, 64), pad_id, device, amp)
                state.history.append({"step": state.step, "train_loss": loss_value, "dev_loss": dev["loss"], "dev_accuracy": dev["accuracy"]})
                log.info("step %d: train loss %.4f, dev loss %.4f, dev accuracy %.4f", state.step, loss_value, dev["loss"], dev["accuracy"])
                if dev["loss"] < state.best_dev_loss:
                    state.best_dev_loss, state.best_step, state.evals_since_best = dev["loss"], state.step, 0
                    best = None  # the current weights are the best
                else:
                    state.evals_since_best += 1
                    if state.evals_since_best >= cfg.patience:
                        state.stopped_early = True
                        log.info("early stop at step %d: no dev improvement in %d evaluations", state.step, cfg.patience)
            due = (cfg.checkpoint_every is not None and state.step % cfg.checkpoint_every == 0) or (
                cfg.checkpoint_minutes is not None and time.monotonic() - last_checkpoint >= 60 * cfg.checkpoint_minutes
            )
            if due and state.step < total and not state.stopped_early:
                save_checkpoint(state_dir, model, optimizer, state, best, meta, scaler, env)
                last_checkpoint = time.monotonic()
                _maybe_kill(state.step)
            _maybe_term(state.step)
            if terminated["signal"] is not None and state.step < total and not state.stopped_early:
                if not due:
                    save_checkpoint(state_dir, model, optimizer, state, best, meta, scaler, env)
                raise Preempted(
                    f"{run_id}: SIGTERM after step {state.step} of {total}: the resume state is saved in {state_dir}; "
                    "the next attempt (a SLURM requeue, a Snakemake retry or rerun) continues from it"
                )
    bar.close()
    for step in cfg.snapshots:
        if step > state.step:  # never reached: training ended first (logged in snapshot.json)
            save_snapshot(state_dir, step, state.step, model)
    if best is not None and state.best_step != state.step:
        model.load_state_dict(best)
    return state, device, amp


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def after_out_of_memory(cfg: FinetuneConfig, state_dir: Path) -> FinetuneConfig:
    """The config of an attempt that follows one that ran out of GPU memory (state_dir/oom.json):
    grad_accum doubled (at most batch_size), so the retry holds half the activations. The
    effective batch, and so the resume state, are unchanged."""
    oom = state_dir / OOM_FILE
    if not oom.is_file():
        return cfg
    failed = int(json.loads(oom.read_text())["grad_accum"])
    accum = min(cfg.batch_size, max(cfg.grad_accum, 2 * failed))
    log.warning("the last attempt ran out of GPU memory with grad_accum %d: this one uses %d", failed, accum)
    return replace(cfg, grad_accum=accum)


def run_finetune(
    base_model: str | Path,
    splits: Mapping[str, pd.DataFrame],
    labels: Sequence[str],
    out_dir: str | Path,
    state_dir: str | Path,
    dataset: str,
    seed: int,
    cfg: FinetuneConfig,
    threads: int = 1,
    progress: bool = True,
    purpose: str = "finetune",
    data_files: Mapping[str, str | Path] | None = None,
    keep_weights: bool = True,
) -> dict[str, Any]:
    """Finetune the base model on one dataset with one seed; write the model folder
    (`keep_weights: False`: everything but the weights, model.safetensors and its checksums,
    for runs whose weights nothing reads again).

    `base_model` is any checkpoint folder to start from (the pretrained model, a centroid);
    `purpose` keys the derived seed, so that different experiments on the same (dataset, seed)
    draw their own head initialisation and data order.

    `out_dir` receives model.safetensors, config.json, the tokenizer files and metrics.json,
    all at once (atomic rename). Returns the metrics. `data_files` (split -> the file it was
    read from) are recorded in metrics.json with their sha256: the model's lineage down to the
    data.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from .data import row_hashes
    from .integrity import verify_checkpoint
    from .seeding import derive_seed, seed_everything

    configure_torch(threads)
    verify_checkpoint(base_model, required=False)  # a centroid start carries checksums.json
    cfg = after_out_of_memory(cfg, Path(state_dir))
    run_id = f"dataset '{dataset}' seed {seed}" + ("" if purpose == "finetune" else f" ({purpose})")
    derived = derive_seed(dataset, seed, purpose)
    seed_everything(derived)
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    model = AutoModelForSequenceClassification.from_pretrained(
        base_model,
        num_labels=len(labels),
        id2label={i: str(name) for i, name in enumerate(labels)},
        label2id={str(name): i for i, name in enumerate(labels)},
        dtype=torch.float32,  # transformers 5 would otherwise take the checkpoint's dtype
    )
    if cfg.trainable == "bitfit":
        log.info("BitFit: %d trainable parameters (body bias terms and the head)", bitfit_trainable(model))
    elif cfg.trainable != "all":
        raise ValueError(f"finetune.trainable must be 'all' or 'bitfit', not {cfg.trainable!r}")
    data = {name: encode(tokenizer, df, cfg.max_length) for name, df in splits.items()}
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    state_dir = Path(state_dir)
    started = time.perf_counter()
    state, device, amp = train(model, data["train"], data["dev"], cfg, derived, pad_id, state_dir, run_id, progress)
    eval_batch = max(cfg.batch_size // cfg.grad_accum, 64)
    # The model holds the best step's weights, whose dev evaluation is in the history (the
    # same evaluation of the same weights: reused, not recomputed)
    best = next((h for h in state.history if h["step"] == state.best_step), None)
    dev = {"loss": best["dev_loss"], "accuracy": best["dev_accuracy"]} if best is not None else evaluate(model, data["dev"], eval_batch, pad_id, device, amp)
    test = evaluate(model, data["test"], eval_batch, pad_id, device, amp)
    metrics = {
        "dataset": dataset,
        "seed": seed,
        "derived_seed": derived,
        "labels": [str(x) for x in labels],
        "dev_loss": dev["loss"],
        "dev_accuracy": dev["accuracy"],
        "test_loss": test["loss"],
        "test_accuracy": test["accuracy"],
        "steps": state.step,
        "best_step": state.best_step,
        "stopped_early": state.stopped_early,
        "train_examples": len(data["train"]),
        "dev_examples": len(data["dev"]),
        "test_examples": len(data["test"]),
        "examples_per_s": state.train_examples_seen / state.train_seconds if state.train_seconds else None,
        "train_seconds": state.train_seconds,
        "wall_seconds_this_attempt": time.perf_counter() - started,
        **environment(device, amp),
        "attempts": state.attempts,
        "threads": threads,
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "history": state.history,
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "body_prefix": model.base_model_prefix,
        "start": str(base_model),
        "data": {split: {"path": str(f), "sha256": sha256_file(f)} for split, f in (data_files or {}).items()},
        # the content hash of every example read, per split (data.row_hashes): auditable
        # against the probe split's hashes in the dataset's info.json, which no run may read
        "rows_read": {name: row_hashes(df) for name, df in splits.items()},
        "finetune": asdict(cfg),
        "torch": torch.__version__,
    }
    snapshots = [json.loads((snapshot_path(state_dir, k) / "snapshot.json").read_text()) for k in cfg.snapshots]
    metrics["snapshots"] = snapshots
    with atomic_path(out_dir) as tmp:
        for k in cfg.snapshots:  # hard links: the resume state keeps its copy until the end
            shutil.copytree(snapshot_path(state_dir, k), snapshot_path(tmp, k), copy_function=_link_or_copy)
        metrics["weights_kept"] = keep_weights
        if keep_weights:
            model.save_pretrained(tmp, safe_serialization=True)
        else:
            model.config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / "metrics.json", metrics)
        if keep_weights:  # recorded once here, so that flatten and provenance need not hash the weights again
            write_json(tmp / "checksums.json", {"model.safetensors": sha256_file(tmp / "model.safetensors")})
    shutil.rmtree(state_dir, ignore_errors=True)
    return metrics
