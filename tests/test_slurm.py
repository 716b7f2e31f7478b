"""`snakemake --profile profiles/slurm` against a real SLURM cluster started on this machine.

Test-only overrides of the real profile: the partitions (placeholders there) and the status
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

from conftest import REPO, write_config
from slurm_cluster import PARTITION, LocalSlurm, install

pytestmark = pytest.mark.slow

FAILING = "gamma"  # a dataset whose finetune always fails (divergence bound below any loss)


def test_profile_values_are_documented():
    text = (REPO / "profiles/slurm/config.yaml").read_text()
    profile = yaml.safe_load(text)
    assert profile["executor"] == "slurm"
    assert profile["retries"] >= 1 and profile["slurm-requeue"] is True
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


def test_profile_test_overrides_are_only_partition_and_status_command():
    real = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    test = _test_profile(real)
    diff = {k for k in real if real[k] != test[k]}
    assert diff == {"default-resources", "set-resources", "slurm-status-command"}
    assert {k for k in real["default-resources"] if real["default-resources"][k] != test["default-resources"][k]} == {"slurm_partition"}
    assert {k for k in real["set-resources"]["finetune"] if real["set-resources"]["finetune"][k] != test["set-resources"]["finetune"][k]} == {"slurm_partition"}


def _test_profile(real: dict) -> dict:
    test = copy.deepcopy(real)
    test["default-resources"]["slurm_partition"] = PARTITION
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
    profile = tmp_path / "profile"
    profile.mkdir()
    (profile / "config.yaml").write_text(yaml.safe_dump(_test_profile(yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text()))))
    before = {j["id"] for j in cluster.jobs()}

    cmd = ["timeout", "-s", "INT", "600", sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
           "--configfile", str(configfile), "--profile", str(profile), "--keep-going"]
    env = {k: v for k, v in os.environ.items() if k != "WEIGHTSPACE_KILL_AFTER_STEP"}
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
    expected = {"rule_flatten_pretrained", "rule_finetune_wildcards_alpha_0", "rule_finetune_wildcards_alpha_1",
                "rule_flatten_wildcards_alpha_0", "rule_flatten_wildcards_alpha_1", f"rule_finetune_wildcards_{FAILING}_0",
                "rule_calibrate_wildcards_alpha"}  # alpha's calibration needs only alpha's models
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
