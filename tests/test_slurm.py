"""`snakemake --profile slurm` (the bare name, as users type it, found in the user's Snakemake
config folder as README's setup line puts it) against a real SLURM cluster started on this machine.

Test-only overrides of the real profile: the partitions and the account (placeholders there) and the status
command (squeue: this cluster has no accounting database). Never skipped: if SLURM cannot be
installed or started, the test fails with the reason.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from slurm_cluster import PARTITION, LocalSlurm, install

from conftest import REPO, write_config

pytestmark = pytest.mark.slow

FAILING = "gamma"  # a dataset whose finetune always fails (divergence bound below any loss)


def test_profile_values_are_documented():
    text = (REPO / "profiles/slurm/config.yaml").read_text()
    profile = yaml.safe_load(text)
    assert profile["executor"] == "slurm"
    assert profile["retries"] >= 1 and profile["slurm-requeue"] is True
    assert profile["keep-going"] is True  # one failed job among a thousand must not stop the others
    assert "REPLACE_WITH" in profile["default-resources"]["slurm_partition"]
    assert "REPLACE_WITH" in profile["default-resources"]["slurm_account"]
    assert profile["set-resources"]["finetune"]["gpu"] == 1
    # Every setting is commented: walking up from it past sibling settings and parent keys
    # reaches a comment line.
    lines = [ln for ln in text.splitlines() if ln.strip()]
    setting, parent = re.compile(r"^\s*[\w-]+:\s*\S"), re.compile(r"^\s*[\w-]+:\s*$")
    for i, line in enumerate(lines):
        if setting.match(line):
            j = i - 1
            while j >= 0 and (setting.match(lines[j]) or parent.match(lines[j])):
                j -= 1
            assert j >= 0 and lines[j].lstrip().startswith("#"), f"no comment for: {line}"


def test_profile_test_overrides_are_only_partition_account_and_status_command():
    real = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    test = _test_profile(real)
    diff = {k for k in real if real[k] != test[k]}
    assert diff == {"default-resources", "set-resources", "slurm-status-command"}
    assert {k for k in real["default-resources"] if real["default-resources"][k] != test["default-resources"][k]} == {"slurm_partition", "slurm_account"}
    assert {k for k in real["set-resources"]["finetune"] if real["set-resources"]["finetune"][k] != test["set-resources"]["finetune"][k]} == {"slurm_partition"}


def test_placeholders_stop_the_run_before_any_job_naming_the_keys(tiny_assets, tmp_path):
    """The real profile's placeholders, left in place, stop the run before any job (a
    download included) with the keys to edit; a dry run still plans."""
    real = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    profile = tmp_path / "xdg" / "snakemake" / "placeholders"
    profile.mkdir(parents=True)
    kept = {k: real[k] for k in ("default-resources", "set-resources")}
    (profile / "config.yaml").write_text(yaml.safe_dump({**kept, "cores": 1}))
    configfile = write_config(tmp_path, copy.deepcopy(tiny_assets["config"]))
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "--configfile", str(configfile), "--profile", "placeholders"]
    assert subprocess.run(cmd + ["-n"], capture_output=True, text=True, env=env).returncode == 0
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    out = done.stdout + done.stderr
    assert done.returncode != 0
    assert "default-resources: slurm_partition" in out and "default-resources: slurm_account" in out and "set-resources: finetune: slurm_partition" in out, out[
        -3000:
    ]
    assert not (tmp_path / "results").exists() and not (tmp_path / "resources").exists()


def _test_profile(real: dict) -> dict:
    test = copy.deepcopy(real)
    test["default-resources"]["slurm_partition"] = PARTITION
    test["default-resources"]["slurm_account"] = "root"  # the test cluster's (no accounting)
    for rule in test.get("set-resources", {}).values():
        if "slurm_partition" in rule:
            rule["slurm_partition"] = PARTITION
    test["slurm-status-command"] = "squeue"
    return test


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    install()
    slurm = LocalSlurm(tmp_path_factory.mktemp("slurm"))
    try:
        slurm.start()
        yield slurm
    finally:
        stopped = slurm.stop()
        for pid in stopped:
            assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()


def test_workflow_runs_through_slurm(cluster, tiny_assets, tmp_path, capsys):
    config = copy.deepcopy(tiny_assets["config"])
    config["datasets"][FAILING] = {**copy.deepcopy(config["datasets"]["alpha"]), "seeds": [0], "finetune": {"max_loss": 1e-9}}
    config["zoo"] = {"datasets": ["alpha", FAILING], "seeds": [0, 1]}
    # A small DAG: SLURM polling makes every extra job cost seconds.
    config["size_experiment"] = None
    config["paths"] = None
    config["hull"] = None
    config["centroid"] = None
    config["geometry"]["groupings"] = {"dataset": {"by": "dataset"}}
    configfile = write_config(tmp_path, config)
    # README's setup line links profiles/slurm into ~/.config/snakemake/slurm; here the user's
    # config folder is a fresh XDG_CONFIG_HOME holding the test's copy of the profile.
    profile = tmp_path / "xdg" / "snakemake" / "slurm"
    profile.mkdir(parents=True)
    (profile / "config.yaml").write_text(yaml.safe_dump(_test_profile(yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text()))))
    before = {j["id"] for j in cluster.jobs()}

    cmd = [
        "timeout",
        "-s",
        "INT",
        "600",
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "-d",
        str(tmp_path),
        "--configfile",
        str(configfile),
        "--profile",
        "slurm",
    ]
    env = {k: v for k, v in os.environ.items() if k != "WEIGHTSPACE_KILL_AFTER_STEP"}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    # The test cluster's GPU is a fake GRES device: CUDA_VISIBLE_DEVICES promises one, CPU torch
    # sees none. Training on CPU is intended here (the jobs inherit this environment).
    env["WEIGHTSPACE_CPU_OK"] = "1"
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    out = done.stdout + done.stderr
    jobs = [j for j in cluster.jobs() if j["id"] not in before]
    with capsys.disabled():
        print("\nSLURM jobs of the run (id | state | comment | memory):")
        for j in jobs:
            print(f"  {j['id']} | {j['state']} | {j['comment']} | {j['memory']}")

    # The failing finetune makes the run fail, and Snakemake says which job.
    assert done.returncode != 0, out[-3000:]
    assert re.search(rf"Error in rule finetune:.*?wildcards: dataset={FAILING}, seed=0", out, flags=re.S), out[-4000:]
    assert "TrainingDiverged" in out and f"dataset '{FAILING}' seed 0" in out

    # Every non-local job ran as a SLURM job of this run (one run id as job name), and recorded its id.
    expected = {
        "rule_flatten_pretrained",
        "rule_finetune_wildcards_alpha_0",
        "rule_finetune_wildcards_alpha_1",
        "rule_flatten_wildcards_alpha_0",
        "rule_flatten_wildcards_alpha_1",
        f"rule_finetune_wildcards_{FAILING}_0",
        "rule_calibrate_wildcards_alpha",
    }  # alpha's calibration needs only alpha's models
    assert {j["comment"] for j in jobs} == expected
    assert len({j["name"] for j in jobs}) == 1
    logs = {
        "rule_flatten_pretrained": "flatten_pretrained.log",
        "rule_finetune_wildcards_alpha_0": "finetune/alpha/seed0.log",
        "rule_finetune_wildcards_alpha_1": "finetune/alpha/seed1.log",
        "rule_flatten_wildcards_alpha_0": "flatten/alpha/seed0.log",
        "rule_flatten_wildcards_alpha_1": "flatten/alpha/seed1.log",
    }
    for comment, log in logs.items():
        (job,) = [j for j in jobs if j["comment"] == comment]
        assert job["state"] == "COMPLETED", job
        assert f"SLURM job {job['id']}" in (tmp_path / "results/logs" / log).read_text()
    for name in ("alpha/seed0", "alpha/seed1"):
        assert (tmp_path / f"results/weights/{name}/manifest.json").is_file()
    # Local rules ran here, not through SLURM.
    assert "not a SLURM job" in (tmp_path / "results/logs/prepare_data/alpha.log").read_text()

    # The failing job: tried 1 + retries times, each a SLURM job, memory growing per attempt.
    retries = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())["retries"]
    failed = sorted((j for j in jobs if j["comment"] == f"rule_finetune_wildcards_{FAILING}_0"), key=lambda j: int(j["id"]))
    assert len(failed) == 1 + retries
    assert all(j["state"] == "FAILED" for j in failed)
    assert [j["memory"] for j in failed] == [f"{16000 * a}M" for a in range(1, retries + 2)]
    assert not (tmp_path / f"results/models/{FAILING}/seed0").exists()
