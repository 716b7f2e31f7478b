"""bench/gpu_acceptance.py, the script a device loan runs, rehearsed on CPU (`--dry`): every
stage runs and says PASS, or SKIP where only CUDA can check it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO


@pytest.mark.slow
def test_the_gpu_acceptance_script_rehearses_every_stage_on_cpu(full_run, tmp_path):
    out = tmp_path / "acceptance.json"
    cmd = [sys.executable, str(REPO / "bench/gpu_acceptance.py"), "--dry", "--reuse", str(full_run), "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    line = json.loads(done.stdout.strip().splitlines()[-1])
    assert line["bench"] == "gpu_acceptance" and line["ratio"] == 1.0
    assert line["checks"] == {"workflow": "PASS", "sigkill_resume": "PASS", "sigterm_resume": "PASS", "oom_grad_accum": "SKIP", "measurements": "PASS"}
    result = json.loads(out.read_text())
    assert result["commit"] and result["date"] and result["torch"] and result["device"] == "cpu (dry run)"
    # the workflow's outputs all say where they were computed: models, calibration, paths, hull sets, edges
    assert result["checks"]["workflow"]["outputs_checked"] >= 20
    assert result["checks"]["sigterm_resume"]["attempts"] == [0, 6] and result["checks"]["sigkill_resume"]["attempts"] == [0, 4]
    assert result["checks"]["measurements"]["gpu_check"]["throughput"]
    table = done.stdout.splitlines()
    assert table[0].startswith("GPU acceptance on cpu (dry run)") and any("oom_grad_accum  SKIP  needs CUDA" in ln for ln in table)
