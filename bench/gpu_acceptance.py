"""The GPU acceptance run: every CUDA path the workflow uses, checked on one GPU in one script.

Checks, each PASS, FAIL or SKIP (with the reason), then a one-screen table and a results file:

- workflow: the real Snakefile end to end (`snakemake --cores all`) on the project's own small
  config (the test suite's tiny random BERT and two synthetic datasets, two seeds: finetune,
  flatten, geometry, calibrate, paths, hull sets, edges, centroid, BitFit, summary, figures),
  with every model pass in `gpu_rules` and `precision: auto`; then every metrics.json and
  every loss output (calibration files, path/hull/edges tables) must record the expected
  device (CUDA on a GPU);
- sigkill_resume / sigterm_resume: a finetune killed by a real SIGKILL right after a
  checkpoint, and one stopped by a real SIGTERM between checkpoints (it writes its state and
  stops), each rerun: model.safetensors byte-identical to an uninterrupted run;
- oom_grad_accum (CUDA only): with the GPU capped below what batch 256 x 256 tokens of a
  roberta-base-shaped model needs, the step fails with an error naming `grad_accum`; with
  `grad_accum` set it fits, and its update matches the large batch's to float rounding;
- measurements: bench/gpu_check.py (finetune throughput and peak memory at the paper's shapes,
  feature extraction, point accumulation, one generalized-loss evaluation), its JSON kept.

The results file holds the device name, the commit, torch and CUDA versions, the date, every
check and the measurements. `--dry` runs the same stages on CPU at tiny sizes (the test suite
runs it; CUDA-only checks SKIP there). On a GPU node, from the repository root:

    python bench/gpu_acceptance.py --out bench/results/gpu_acceptance_h200.json     # about 8 minutes on an H200

The lent device's image lacks snakemake, datasets and jsonschema: bench/device_wheels.sh builds
them here as wheels to carry (its header has the device command).

The last line printed is JSON: {"bench": "gpu_acceptance", "ratio": checks passed / checks run, ...}.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "tests"))  # the project's own tiny model, data and config (conftest)

MODEL_PASSES = ["finetune", "bitfit", "calibrate", "path", "hull_set", "edges", "formation_loss"]


def log(msg: str) -> None:
    print(f"[gpu_acceptance {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def commit() -> str:
    done = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=REPO)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, cwd=REPO).stdout.strip()
    return done.stdout.strip() + ("+changes" if dirty else "") if done.returncode == 0 else "unknown"


def clean_env() -> dict[str, str]:
    """This process's environment without the fault-injection switches (a kill must never leak into a run)."""
    return {k: v for k, v in os.environ.items() if k not in ("WEIGHTSPACE_KILL_AFTER_STEP", "WEIGHTSPACE_TERM_AFTER_STEP")}


# --- the workflow on the device ----------------------------------------------------------------------


def acceptance_config(root: Path) -> dict:
    """The test suite's tiny config, with every model pass on the GPU and precision auto."""
    from conftest import FILLER, WORDS, make_tiny_datasets, make_tiny_model, tiny_config

    files = make_tiny_datasets(root / "data")
    model = make_tiny_model(root / "model", [w for groups in WORDS.values() for g in groups for w in g] + FILLER)
    config = tiny_config(model, files)
    config["gpu_rules"] = MODEL_PASSES
    config["finetune"]["precision"] = "auto"
    return config


def recorded_devices(work: Path) -> dict[str, list[str]]:
    """Where each model and each loss output says it was computed."""
    import pandas as pd

    found: dict[str, list[str]] = {}
    trained = list((work / "results/models").glob("**/metrics.json")) + list((work / "results/bitfit").glob("**/metrics.json"))
    for metrics in sorted(trained):  # every finetuned and BitFit model
        found[str(metrics.relative_to(work))] = [json.loads(metrics.read_text())["device"]]
    for calibration in sorted((work / "results/loss/calibration").glob("*.json")):
        found[str(calibration.relative_to(work))] = [json.loads(calibration.read_text())["device"]]
    tables = list((work / "results/paths").glob("*/*.parquet")) + list((work / "results/hull").glob("*/*/*.parquet"))
    tables += [work / "results/hull/edges.parquet"]
    for table in sorted(t for t in tables if t.is_file()):
        found[str(table.relative_to(work))] = sorted(set(pd.read_parquet(table, columns=["device"])["device"]))
    return found


def check_workflow(work: Path, expected: str, reuse: Path | None = None) -> dict:
    """`reuse`: a finished run of the test suite's tiny config (its folder, with config.yaml):
    copied, so that Snakemake runs only what is missing (the suite's rehearsal); else a fresh
    run from new assets."""
    import yaml

    from conftest import write_config

    if reuse is not None:
        shutil.copytree(reuse, work, symlinks=True)
        config = yaml.safe_load((work / "config.yaml").read_text())
        config["gpu_rules"] = MODEL_PASSES  # resources only: no job reruns for it
    else:
        config = acceptance_config(work / "assets")
    config = write_config(work, config)
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(work), "--configfile", str(config), "--cores", "all"]
    cmd += ["--scheduler", "greedy"]  # no pulp needed (the device carries no ILP solver: bench/device_wheels.sh)
    env = clean_env()
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if done.returncode != 0:
        return {"ok": False, "detail": f"snakemake failed: {done.stderr[-1500:]}"}
    devices = recorded_devices(work)
    wrong = {k: v for k, v in devices.items() if not all(d.startswith(expected) for d in v)}
    needed = ["results/summary.md", "results/figures/fig3_interpolation.png", "results/figures/fig4_hull.png", "results/tables/bitfit_full.md"]
    missing = [f for f in needed if not (work / f).is_file()]
    ok = bool(devices) and not wrong and not missing and any("calibration" in k for k in devices) and any("hull" in k for k in devices)
    return {
        "ok": ok,
        "detail": f"{len(devices)} outputs record {expected}" if ok else f"not on {expected}: {dict(list(wrong.items())[:5])}; missing {missing}",
        "seconds": round(time.perf_counter() - t0, 1),
        "outputs_checked": len(devices),
    }


# --- kills and resumes -----------------------------------------------------------------------------------


def finetune_process(model: Path, out: Path, state: Path, cfg: dict, env_extra: dict) -> subprocess.CompletedProcess:
    """run_finetune in its own process, as a job runs it (the kill switches act on that process)."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[2]);"
        "from conftest import toy_splits;"
        "from weightspace.finetune import FinetuneConfig, run_finetune;"
        f"cfg = FinetuneConfig(**{cfg!r});"
        f"run_finetune({str(model)!r}, toy_splits(96, 64), ['bad', 'good'], {str(out)!r}, {str(state)!r}, 'acceptance', 0, cfg, progress=False)"
    )
    env = clean_env()
    env.update(env_extra, PYTHONPATH=os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-c", code, str(REPO / "tests"), str(REPO / "src")], env=env, capture_output=True, text=True, timeout=900)


def check_interrupted(work: Path, model: Path, whole: Path, signal_env: str, at: int, expected_rc: int) -> dict:
    """Interrupt a finetune with `signal_env` after step `at`, rerun it, compare with the
    uninterrupted run in `whole` (made by the first check that needs it, shared by the others)."""
    from weightspace.finetune import FinetuneConfig

    cfg = dataclasses.asdict(
        FinetuneConfig(lr=1e-3, batch_size=8, epochs=5, max_steps=12, max_length=16, eval_every=4, patience=10, checkpoint_every=4, precision="auto")
    )
    if not (whole / "model.safetensors").is_file():
        done = finetune_process(model, whole, whole.with_name("state-whole"), cfg, {})
        if done.returncode != 0:
            return {"ok": False, "detail": f"uninterrupted run failed: {done.stderr[-800:]}"}
    cut = finetune_process(model, work / "resumed", work / "state", cfg, {signal_env: str(at)})
    if cut.returncode != expected_rc:
        return {"ok": False, "detail": f"interrupted run returned {cut.returncode}, expected {expected_rc}: {cut.stderr[-800:]}"}
    again = finetune_process(model, work / "resumed", work / "state", cfg, {})
    if again.returncode != 0:
        return {"ok": False, "detail": f"resumed run failed: {again.stderr[-800:]}"}
    same = (whole / "model.safetensors").read_bytes() == (work / "resumed/model.safetensors").read_bytes()
    attempts = [a["from_step"] for a in json.loads((work / "resumed/metrics.json").read_text())["attempts"]]
    device = json.loads((work / "resumed/metrics.json").read_text())["device"]
    return {"ok": same, "detail": f"{'bitwise equal' if same else 'DIFFERENT'} after resuming from step {attempts[-1]} on {device}", "attempts": attempts}


# --- out of memory -> grad_accum ------------------------------------------------------------------------------


def check_oom(work: Path) -> dict:
    """Cap the GPU below batch 256 x 256 of roberta-base (26.4 GiB in bf16 on an H200): the step
    fails naming grad_accum; with grad_accum 8 it fits; the update equals the uncapped large
    batch's to float rounding."""
    import torch

    sys.path.insert(0, str(REPO / "bench"))
    from gpu_check import PAD, SIZES, build_model, token_data

    from weightspace.finetune import FinetuneConfig, train

    sz = SIZES["base"]
    total = torch.cuda.get_device_properties(0).total_memory
    data = token_data(256, 256, sz["vocab"], 1, fixed_length=True)
    dev = token_data(64, 256, sz["vocab"], 2, fixed_length=True)

    def one_step(accum: int, cap_gib: float | None, name: str) -> dict[str, torch.Tensor]:
        torch.cuda.empty_cache()
        torch.cuda.set_per_process_memory_fraction(1.0 if cap_gib is None else cap_gib * 2**30 / total)
        model = build_model(sz, 0)
        cfg = FinetuneConfig(
            lr=1e-4, batch_size=256, epochs=1, max_steps=1, max_length=256, eval_every=1, patience=5, checkpoint_every=None, grad_accum=accum, precision="bf16"
        )
        try:
            train(model, data, dev, cfg, 0, PAD, work / name, name, progress=False)
            return {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
        finally:
            del model
            torch.cuda.empty_cache()
            torch.cuda.set_per_process_memory_fraction(1.0)

    try:
        one_step(1, 16.0, "capped")
        return {"ok": False, "detail": "batch 256 x 256 fitted under a 16 GiB cap: no OOM to check"}
    except torch.OutOfMemoryError as err:
        message = str(err)
    if "grad_accum" not in message:
        return {"ok": False, "detail": f"the OOM error does not name grad_accum: {message[:300]}"}
    accumulated = one_step(8, 16.0, "accum")
    large = one_step(1, None, "large")
    diff = max(float((accumulated[k] - large[k]).abs().max()) for k in large)
    return {"ok": diff < 1e-3, "detail": f"OOM names grad_accum; grad_accum 8 fits 16 GiB; max |update difference| {diff:.2e} vs the uncapped batch"}


# --- the run ------------------------------------------------------------------------------------------------


def measurements(work: Path, dry: bool) -> dict:
    out = work / "gpu_check.json"
    cmd = [sys.executable, str(REPO / "bench/gpu_check.py"), "--out", str(out)] + (["--tiny"] if dry else [])
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    result = json.loads(out.read_text()) if out.is_file() else {}
    errors = [name for name, section in result.items() if isinstance(section, dict) and "error" in section]
    ok = done.returncode == 0 and not errors and bool(result.get("throughput"))
    rows = [r for r in result.get("throughput", []) if r.get("mode") == "full"]
    best = max((r["examples_per_s"] for r in rows), default=None)
    points = result.get("points") or {}
    detail = (
        f"finetune up to {best} examples/s; loss evaluation {points.get('loss_eval_s_per_point')} s per point"
        if ok
        else f"failed sections {errors}: {done.stderr[-600:]}"
    )
    return {"ok": ok, "detail": detail, "gpu_check": result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dry", action="store_true", help="the same stages on CPU at tiny sizes (CUDA-only checks skip)")
    parser.add_argument("--out", type=Path, help="the results file (JSON)")
    parser.add_argument("--reuse", type=Path, help="a finished tiny run to continue (the test suite's rehearsal), instead of a fresh one")
    parser.add_argument("--only", nargs="*", default=["workflow", "sigkill_resume", "sigterm_resume", "oom_grad_accum", "measurements"])
    args = parser.parse_args()
    import torch

    cuda = torch.cuda.is_available()
    if not cuda and not args.dry:
        sys.exit("no CUDA device: run with --dry for the CPU rehearsal")
    expected = "cuda" if cuda else "cpu"
    result: dict[str, Any] = {
        "bench": "gpu_acceptance",
        "device": torch.cuda.get_device_name(0) if cuda else "cpu (dry run)",
        "commit": commit(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "dry": args.dry,
        "checks": {},
    }
    started = time.perf_counter()

    def save() -> None:
        result["seconds"] = round(time.perf_counter() - started, 1)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=1, default=str))

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        from conftest import FILLER, WORDS, make_tiny_model

        model = make_tiny_model(work / "kill-model", [w for groups in WORDS.values() for g in groups for w in g] + FILLER)
        checks: dict[str, Callable[[], dict]] = {
            "workflow": lambda: check_workflow(work / "workflow", expected, args.reuse),
            "sigkill_resume": lambda: check_interrupted(work / "kill", model, work / "whole", "WEIGHTSPACE_KILL_AFTER_STEP", 4, -9),
            "sigterm_resume": lambda: check_interrupted(work / "term", model, work / "whole", "WEIGHTSPACE_TERM_AFTER_STEP", 6, 1),
            "oom_grad_accum": lambda: check_oom(work / "oom") if cuda else {"ok": None, "detail": "needs CUDA"},
            "measurements": lambda: measurements(work, args.dry),
        }
        for name in args.only:
            log(f"{name} ...")
            t0 = time.perf_counter()
            try:
                outcome = checks[name]()
            except Exception:  # noqa: BLE001 - one check's failure must not hide the others
                outcome = {"ok": False, "detail": traceback.format_exc()[-1500:]}
            outcome.setdefault("seconds", round(time.perf_counter() - t0, 1))
            result["checks"][name] = outcome
            log(f"{name}: {outcome['ok']} ({outcome['seconds']} s) {outcome['detail'][:200]}")
            save()
    ran = [c for c in result["checks"].values() if c["ok"] is not None]
    result["ratio"] = sum(bool(c["ok"]) for c in ran) / len(ran) if ran else None
    save()
    width = max(len(n) for n in result["checks"])
    print(f"GPU acceptance on {result['device']} at {result['commit'][:12]} (torch {result['torch']}, CUDA {result['cuda']}), {result['seconds']} s")
    for name, c in result["checks"].items():
        verdict = "SKIP" if c["ok"] is None else "PASS" if c["ok"] else "FAIL"
        print(f"  {name:<{width}}  {verdict}  {c['detail'][:110]}")
    summary = {k: v for k, v in result.items() if k != "checks"}
    summary["checks"] = {n: ("SKIP" if c["ok"] is None else "PASS" if c["ok"] else "FAIL") for n, c in result["checks"].items()}
    summary.pop("gpu_check", None)
    print(json.dumps(summary, default=str))
    if any(c["ok"] is False for c in result["checks"].values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
