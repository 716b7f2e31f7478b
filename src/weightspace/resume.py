"""The finetune loop's resume state: everything needed to continue a killed run exactly.

Weights, optimiser moments, the fp16 loss scaler, the CPU and training-device RNG states, the
early-stopping state and the best weights so far, written atomically to a state folder (every
file fsynced, then the folder renamed into place) with the sha256 of each file
(checksums.json, written last); a resume verifies them and refuses a torn or altered state
(ResumeCorrupt), and refuses a state written on another device type or autocast dtype
(ResumeMismatch).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors.torch import load_file, save_file

from .integrity import CHECKSUMS_FILE, CorruptFile, verify_checkpoint
from .io import atomic_path, fsync_path, sha256_file

log = logging.getLogger(__name__)


class ResumeMismatch(RuntimeError):
    """The resume state was written on another device type or autocast dtype."""


class ResumeCorrupt(RuntimeError):
    """The resume state's files do not match its checksums (torn by a crash, or altered)."""


def recorded_environment(state_dir: Path) -> dict[str, Any] | None:
    """The environment (device, autocast, ...) a resume state was written in; None if there is
    no state."""
    path = Path(state_dir) / "checkpoint" / "state.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get("environment", {})


def verify_state(ckpt: Path) -> None:
    """Check every file of a checkpoint folder against its checksums.json (the check every
    checkpoint gets, integrity.verify_checkpoint); ResumeCorrupt names the file and the fix."""
    try:
        verify_checkpoint(ckpt, required=True)
    except CorruptFile as e:
        bad = Path(e.path)
        if bad.name == CHECKSUMS_FILE:
            problem = f"has no {CHECKSUMS_FILE} (torn, or written by an older version)"
        elif not bad.is_file():
            problem = f"{bad.name} is missing"
        else:
            problem = f"{bad.name} does not match its sha256 in {CHECKSUMS_FILE} (torn or altered)"
        raise ResumeCorrupt(f"resume state {ckpt}: {problem}: it cannot be resumed safely: delete {ckpt.parent} to start this model over") from None


@dataclass
class TrainState:
    """What is needed, beyond weights and optimiser moments, to continue exactly."""

    step: int = 0
    best_dev_loss: float = math.inf
    best_step: int = 0
    evals_since_best: int = 0
    stopped_early: bool = False
    history: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0
    train_examples_seen: int = 0
    attempts: list[dict[str, Any]] = field(default_factory=list)  # environment() of each attempt, from its step


def _rng_tensors(device: torch.device) -> dict[str, torch.Tensor]:
    # the CUDA generator of the training device only: a resume may see another GPU count
    out = {"rng.cpu": torch.get_rng_state()}
    if device.type == "cuda":
        out["rng.cuda"] = torch.cuda.get_rng_state(device)
    return out


def _restore_rng(tensors: Mapping[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(tensors["rng.cpu"])
    if "rng.cuda" in tensors and device.type == "cuda":
        torch.cuda.set_rng_state(tensors["rng.cuda"], device)


def cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}


def save_checkpoint(
    state_dir: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: TrainState,
    best: Mapping[str, torch.Tensor] | None,
    meta: Mapping[str, Any],
    scaler: torch.amp.GradScaler | None = None,
    env: Mapping[str, Any] | None = None,
) -> None:
    """Write the resume state atomically: state_dir/checkpoint/ appears whole or not at all.

    The best weights so far are written once per best step: a later checkpoint with the same
    best step hard-links the previous file instead of writing it again."""
    device = next(model.parameters()).device
    opt = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for pid, pstate in opt["state"].items():
        for k, v in pstate.items():
            tensors[f"opt.{pid}.{k}"] = v.detach().cpu().contiguous() if torch.is_tensor(v) else torch.tensor(v)
    tensors.update(_rng_tensors(device))
    previous = state_dir / "checkpoint"
    previous_best = None
    if best is not None and (previous / "state.json").is_file() and (previous / "best.safetensors").is_file():
        if json.loads((previous / "state.json").read_text())["state"]["best_step"] == state.best_step:
            previous_best = previous / "best.safetensors"
    with atomic_path(previous) as tmp:
        tmp.mkdir()
        save_file(cpu_state(model), str(tmp / "model.safetensors"))
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        if previous_best is not None:
            os.link(previous_best, tmp / "best.safetensors")
        elif best is not None:
            save_file(dict(best), str(tmp / "best.safetensors"))
        record = {"state": asdict(state), "param_groups": opt["param_groups"], **meta, "environment": dict(env or {})}
        if scaler is not None:
            record["scaler"] = scaler.state_dict()
        (tmp / "state.json").write_text(json.dumps(record, default=str))
        # a linked best file keeps its recorded digest (the same bytes): no second read
        linked = json.loads((previous / CHECKSUMS_FILE).read_text()) if previous_best is not None and (previous / CHECKSUMS_FILE).is_file() else {}
        digests = {}
        for path in sorted(tmp.iterdir()):
            fsync_path(path)
            digests[path.name] = linked.get(path.name) if path.name == "best.safetensors" and path.name in linked else sha256_file(path)
        (tmp / CHECKSUMS_FILE).write_text(json.dumps(digests, indent=1))
        fsync_path(tmp / CHECKSUMS_FILE)


def load_checkpoint(
    state_dir: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    meta: Mapping[str, Any],
    scaler: torch.amp.GradScaler | None = None,
    env: Mapping[str, Any] | None = None,
) -> tuple[TrainState, dict[str, torch.Tensor] | None] | None:
    """Restore a checkpoint written by save_checkpoint for the same run; None if there is none
    (or it belongs to a different configuration, in which case it is discarded).

    Raises ResumeCorrupt when a file does not match checksums.json, and ResumeMismatch when
    the state was written on another device type or autocast dtype
    than `env` (continuing would silently change the numerics; delete the folder to start
    over). Another GPU model or CUDA/torch version continues with a warning; the attempt's
    environment is appended to the state's `attempts` by the caller."""
    ckpt = state_dir / "checkpoint"
    if not ckpt.is_dir():
        return None
    verify_state(ckpt)
    saved = json.loads((ckpt / "state.json").read_text())
    mismatch = {k: (saved.get(k), v) for k, v in meta.items() if saved.get(k) != v}
    if mismatch:
        log.warning("discarding resume state in %s: it belongs to another run (%s)", ckpt, mismatch)
        shutil.rmtree(ckpt)
        return None
    env, was = dict(env or {}), saved.get("environment", {})
    hard = {k: (was.get(k), env.get(k)) for k in ("device", "autocast") if was.get(k) != env.get(k)}
    if hard:
        raise ResumeMismatch(
            f"resume state {ckpt} was written with {', '.join(f'{k} {a}' for k, (a, _) in hard.items())}; this attempt runs with "
            f"{', '.join(f'{k} {b}' for k, (_, b) in hard.items())}. Run it where it started (finetune.precision, the GPU request), "
            f"or delete {state_dir} to start this model over."
        )
    soft = {k: (was.get(k), env.get(k)) for k in ("device_name", "cuda", "torch") if was.get(k) != env.get(k)}
    if soft:
        log.warning(
            "resuming %s on another setup %s: recorded in metrics.json 'attempts'; the weights may differ in the last bits from an uninterrupted run",
            ckpt,
            soft,
        )
    device = next(model.parameters()).device
    model.load_state_dict(load_file(str(ckpt / "model.safetensors"), device=str(device)))
    tensors = load_file(str(ckpt / "optimizer.safetensors"))
    opt_state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, pid, name = key.split(".", 2)
            opt_state.setdefault(int(pid), {})[name] = value
    optimizer.load_state_dict({"state": opt_state, "param_groups": saved["param_groups"]})
    if scaler is not None and "scaler" in saved:
        scaler.load_state_dict(saved["scaler"])
    _restore_rng(tensors, device)
    best = load_file(str(ckpt / "best.safetensors")) if (ckpt / "best.safetensors").is_file() else None
    return TrainState(**saved["state"]), best
