"""Where a job computes: the device, the autocast dtype, deterministic kernels, and a record
of the setup (docs/gpu.md).

CUDA when present; `precision: auto` is bf16 where the GPU has it natively, else fp16 (with a
loss scaler in the loop), fp32 on CPU. A job promised a GPU (CUDA_VISIBLE_DEVICES, SLURM's GPU
variables) that torch cannot see fails (GPUMissing) instead of training on CPU.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
from typing import Any, Mapping

import torch

log = logging.getLogger(__name__)


class GPUMissing(RuntimeError):
    """The environment promises this job a GPU that torch cannot use."""


PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
# Variables that promise a job a GPU: CUDA's own, and what SLURM sets for a GPU allocation.
GPU_PROMISES = ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_GPUS", "SLURM_STEP_GPUS", "SLURM_GPUS_ON_NODE")


CPU_OK_ENV = "WEIGHTSPACE_CPU_OK"


def promised_gpu(environ: Mapping[str, str]) -> str | None:
    """`NAME=value` of the first variable that says this job has a GPU, or None."""
    for name in GPU_PROMISES:
        value = environ.get(name, "").strip()
        if value and value not in ("-1", "NoDevFiles") and not (name == "SLURM_GPUS_ON_NODE" and value == "0"):
            return f"{name}={value}"
    return None


def native_bf16() -> bool:
    """Whether the CUDA GPU computes in bf16 natively (Ampere or newer), not by emulation."""
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # torch < 2.4: no emulation to exclude
        return torch.cuda.is_bf16_supported()


def resolve_device(precision: str, environ: Mapping[str, str] | None = None) -> tuple[torch.device, torch.dtype | None]:
    """The device (CUDA when present) and the autocast dtype (None = full fp32).

    `auto`: bf16 where the GPU has it natively, else fp16 (with the loss scaler), fp32 on CPU.
    Raises GPUMissing when the environment promises a GPU that torch does not see (a CPU build
    of torch on a GPU node would otherwise train on CPU for days without a word), unless
    WEIGHTSPACE_CPU_OK=1 says CPU is intended (e.g. a test cluster whose GPUs are fake)."""
    if precision != "auto" and precision not in PRECISIONS:
        raise ValueError(f"finetune.precision must be auto, fp32, bf16 or fp16, not {precision!r}")
    if torch.cuda.is_available():
        device = torch.device("cuda", torch.cuda.current_device())
        if precision == "auto":
            return device, torch.bfloat16 if native_bf16() else torch.float16
        if precision == "bf16" and not native_bf16():
            log.warning("precision bf16 asked for on %s, which emulates it (slow)", torch.cuda.get_device_name(device))
        return device, PRECISIONS[precision]
    environ = os.environ if environ is None else environ
    promise = promised_gpu(environ)
    if promise is not None and environ.get(CPU_OK_ENV) == "1":
        log.warning("%s promises a GPU that torch does not see; training on CPU as %s=1 asks", promise, CPU_OK_ENV)
    elif promise is not None:
        cause = (
            "this torch is a CPU-only build"
            if torch.version.cuda is None
            else f"this torch (CUDA {torch.version.cuda}) finds no usable GPU: check the driver with nvidia-smi"
        )
        raise GPUMissing(
            f"{promise} promises this job a GPU, but torch {torch.__version__} sees none: {cause}. "
            f"Install the CUDA build of torch (README, 'GPU install'), or set {CPU_OK_ENV}=1 to train on CPU on purpose."
        )
    if precision in ("bf16", "fp16"):
        log.warning("precision %s asked for but no CUDA GPU is present: training in fp32", precision)
    return torch.device("cpu"), None


def resume_precision(precision: str, recorded: Mapping[str, Any] | None) -> str:
    """The precision an attempt runs in. Under `auto`, an attempt that resumes a state written
    on a GPU continues in that state's autocast dtype: a job requeued onto a GPU without native
    bf16 emulates it (slower, with a warning) instead of failing every retry with
    ResumeMismatch. An explicit precision is taken as given."""
    if precision != "auto" or not recorded or recorded.get("device") != "cuda":
        return precision
    return {"bfloat16": "bf16", "float16": "fp16"}.get(str(recorded.get("autocast")), precision)


def autocast_name(amp: torch.dtype | None) -> str:
    return str(amp).removeprefix("torch.") if amp is not None else "fp32"


def environment(device: torch.device, amp: torch.dtype | None) -> dict[str, Any]:
    """What the numbers of a run depend on beyond its config: device type and model, CUDA and
    torch versions, autocast dtype."""
    return {
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine()),
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "torch": torch.__version__,
        "autocast": autocast_name(amp),
    }


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def configure_torch(threads: int) -> None:
    """Thread count (torch's and the BLAS libraries') and deterministic kernels: the same seed
    gives the same weights.

    On CUDA determinism is enforced, not warned about: a kernel without a deterministic
    version raises instead of silently changing the weights between runs (the memory-efficient
    attention backward then takes its deterministic path); cuBLAS gets the workspace setting
    that makes it deterministic, before its first use."""
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(threads)  # NumPy/SciPy's BLAS too (the probe's fits): the job's cores, not the node's
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=not torch.cuda.is_available())
