"""`snakemake --profile slurm` (the bare name, as users type it, found in the user's Snakemake
config folder as README's setup line puts it) against a real SLURM cluster started on this machine.

Test-only overrides of the real profile: the account and the two partition names (placeholders there)
and the status command (squeue: this cluster has no accounting database). Never skipped: if SLURM cannot be
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
from slurm_cluster import CPU_PARTITION, GPU_PARTITION, LocalSlurm, install

from conftest import REPO, write_config

pytestmark = pytest.mark.slow

FAILING = "gamma"  # a dataset whose finetune always fails (divergence bound below any loss)


def test_profile_values_are_documented():
    text = (REPO / "profiles/slurm/config.yaml").read_text()
    profile = yaml.safe_load(text)
    assert profile["executor"] == "slurm"
    assert profile["retries"] >= 1 and profile["slurm-requeue"] is True
    assert profile["keep-going"] is True  # one failed job among a thousand must not stop the others
    assert "REPLACE_WITH" in profile["default-resources"]["slurm_account"]
    # SIGTERM before the time limit: a finetune writes its resume state and stops (test_finetune_unit)
    assert "--signal=TERM@" in profile["default-resources"]["slurm_extra"]
    # partitions are chosen from a job's resources alone, in one file: no rule names a partition
    assert "slurm_partition" not in profile["default-resources"] and "set-resources" not in profile
    assert (REPO / "profiles/slurm" / profile["slurm-partition-config"]).is_file()
    cpu, gpu = _partitions(yaml.safe_load((REPO / "profiles/slurm/partitions.yaml").read_text()))
    assert "REPLACE_WITH" in cpu and "REPLACE_WITH" in gpu
    # a finetune, its flatten and its snapshots' flattens are one submission
    assert profile["groups"] == {"finetune": "model", "flatten": "model", "flatten_snapshot": "model"}
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


def _partitions(spec: dict) -> tuple[str, str]:
    """The CPU and the GPU partition's names in a partition file."""
    (cpu,) = [name for name, limits in spec["partitions"].items() if limits["max_gpu"] == 0]
    (gpu,) = [name for name, limits in spec["partitions"].items() if limits["max_gpu"] > 0]
    return cpu, gpu


def test_profile_test_overrides_are_only_partition_names_account_and_status_command():
    real = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    test = _test_profile(real)
    diff = {k for k in real if real[k] != test[k]}
    assert diff == {"default-resources", "slurm-status-command"}
    assert {k for k in real["default-resources"] if real["default-resources"][k] != test["default-resources"][k]} == {"slurm_account"}
    partitions = yaml.safe_load((REPO / "profiles/slurm/partitions.yaml").read_text())
    renamed = _test_partitions(partitions)
    assert list(renamed["partitions"].values()) == list(partitions["partitions"].values())
    assert _partitions(renamed) == (CPU_PARTITION, GPU_PARTITION)


def test_placeholders_stop_the_run_before_any_job_naming_the_keys(tiny_assets, tmp_path):
    """The real profile as README's setup line links it, placeholders left in place: the run
    stops before any job (a download included), naming the account key and both partition
    names; a dry run still plans."""
    install()  # the SLURM executor plugin needs the SLURM client tools
    profiles = tmp_path / "xdg" / "snakemake"
    profiles.mkdir(parents=True)
    (profiles / "slurm").symlink_to(REPO / "profiles/slurm")
    configfile = write_config(tmp_path, copy.deepcopy(tiny_assets["config"]))
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "--configfile", str(configfile), "--profile", "slurm"]
    assert subprocess.run(cmd + ["-n"], capture_output=True, text=True, env=env).returncode == 0
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    out = done.stdout + done.stderr
    assert done.returncode != 0
    assert "default-resources: slurm_account" in out, out[-3000:]
    for name in ("REPLACE_WITH_CPU_PARTITION", "REPLACE_WITH_GPU_PARTITION"):
        assert f"the partition name {name} in" in out, out[-3000:]
    assert not (tmp_path / "results").exists() and not (tmp_path / "resources").exists()


def _test_profile(real: dict) -> dict:
    test = copy.deepcopy(real)
    test["default-resources"]["slurm_account"] = "root"  # the test cluster's (no accounting)
    test["slurm-status-command"] = "squeue"
    return test


def _test_partitions(real: dict) -> dict:
    """The real partition file with the test cluster's partition names, limits unchanged."""
    cpu, gpu = _partitions(real)
    names = {cpu: CPU_PARTITION, gpu: GPU_PARTITION}
    return {"partitions": {names[k]: v for k, v in real["partitions"].items()}}


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
    (profile / "partitions.yaml").write_text(yaml.safe_dump(_test_partitions(yaml.safe_load((REPO / "profiles/slurm/partitions.yaml").read_text()))))
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
        print("\nSLURM jobs of the run (id | state | comment | memory | partition | GPU request):")
        for j in jobs:
            print(f"  {j['id']} | {j['state']} | {j['comment']} | {j['memory']} | {j['partition']} | {j['gres']}")

    # The failing finetune makes the run fail, and Snakemake says which job.
    assert done.returncode != 0, out[-3000:]
    assert re.search(rf"Error in .*?finetune.*?dataset={FAILING}, seed=0", out, flags=re.S), out[-4000:]
    assert "TrainingDiverged" in out and f"dataset '{FAILING}' seed 0" in out

    # Every non-local job ran as a SLURM job of this run (one run id as job name) and recorded its id.
    assert len({j["name"] for j in jobs}) == 1
    by_id = {j["id"]: j for j in jobs}

    def slurm_job(log: str) -> dict[str, str]:
        ids = re.findall(r"SLURM job (\d+)", (tmp_path / "results/logs" / log).read_text())
        assert ids, log
        return by_id[ids[-1]]

    # Each model's finetune and flatten are one SLURM job (the `model` group), which asks for the
    # finetune's GPU and so runs in the GPU partition; the other jobs ask for none (CPU partition).
    models = []
    for seed in (0, 1):
        job = slurm_job(f"finetune/alpha/seed{seed}.log")
        assert slurm_job(f"flatten/alpha/seed{seed}.log") is job
        assert job["state"] == "COMPLETED", job
        assert (tmp_path / f"results/weights/alpha/seed{seed}/manifest.json").is_file()
        models.append(job)
    cpu_jobs = [slurm_job("flatten_pretrained.log"), slurm_job("calibrate/alpha.log")]  # alpha's calibration needs only alpha's models
    assert {j["comment"] for j in cpu_jobs} == {"rule_flatten_pretrained", "rule_calibrate_wildcards_alpha"}
    assert all(j["state"] == "COMPLETED" for j in cpu_jobs)
    for j in jobs:
        asks_gpu = j not in cpu_jobs
        assert j["partition"] == (GPU_PARTITION if asks_gpu else CPU_PARTITION), j
        assert ("gpu" in j["gres"]) == asks_gpu, j
    # Local rules ran here, not through SLURM.
    assert "not a SLURM job" in (tmp_path / "results/logs/prepare_data/alpha.log").read_text()

    # The failing model's group job: tried 1 + retries times, each a SLURM job on the GPU
    # partition, memory growing per attempt; nothing else was submitted.
    retries = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())["retries"]
    failed = sorted((j for j in jobs if j not in models and j not in cpu_jobs), key=lambda j: int(j["id"]))
    assert slurm_job(f"finetune/{FAILING}/seed0.log") is failed[-1]
    assert len(failed) == 1 + retries
    assert all(j["state"] == "FAILED" for j in failed)
    assert [j["memory"] for j in failed] == [f"{16000 * a}M" for a in range(1, retries + 2)]
    assert not (tmp_path / f"results/models/{FAILING}/seed0").exists()


MODEL_PASSES = {"finetune", "bitfit", "calibrate", "path", "hull_set", "edges", "formation_loss"}


class _PlannedJob:
    """A job of a dry run as the SLURM plugin's partition selection reads it."""

    def __init__(self, name: str, resources: dict, threads: int):
        self.name, self.resources, self.threads = name, resources, threads

    def is_group(self) -> bool:
        return False


def _roberta_header_only(folder: Path) -> None:
    """resources/base_model as roberta-base's model.safetensors would be: the real header (names,
    shapes) over a sparse payload, so that the dry run sizes the loss jobs' memory from it."""
    import json
    import struct

    import torch
    from transformers import AutoModelForSequenceClassification, RobertaConfig

    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(RobertaConfig(vocab_size=50265, max_position_embeddings=514, type_vocab_size=1))
    header, offset = {}, 0
    for name, t in model.state_dict().items():
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + 4 * t.numel()]}
        offset += 4 * t.numel()
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    folder.mkdir(parents=True)
    path = folder / "model.safetensors"
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
    os.truncate(path, 8 + len(raw) + offset)


def test_paper_preset_jobs_go_to_the_partition_their_resources_ask_for(tmp_path):
    """`snakemake -n --profile slurm --configfile presets/paper.yaml`, offline: every model
    forward/backward rule asks for a GPU, the plugin's own partition selection (the real
    partitions.yaml) sends exactly those jobs to the GPU partition, and hull_set's first
    attempt has the memory for its chunk of roberta-base bodies."""
    import logging

    from snakemake_executor_plugin_slurm.partitions import get_best_partition, read_partition_file

    from weightspace.points import POINT_BYTES_PER_PARAMETER, configured_chunk, points_memory_mb
    from weightspace.weights import parameter_count

    install()  # the SLURM executor plugin needs the SLURM client tools
    profiles = tmp_path / "xdg" / "snakemake"
    profiles.mkdir(parents=True)
    (profiles / "slurm").symlink_to(REPO / "profiles/slurm")
    _roberta_header_only(tmp_path / "resources/base_model")
    dead = "http://127.0.0.1:9"  # planning stays offline
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "xdg"), "HTTP_PROXY": dead, "HTTPS_PROXY": dead, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "--configfile", str(REPO / "presets/paper.yaml")]
    done = subprocess.run(cmd + ["-n", "--profile", "slurm"], capture_output=True, text=True, env=env)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    # Jobs as the dry run lists them: a job block starts at "rule <name>:"; the members of a
    # job group are listed, indented, under "Group job <name>".
    units, current, last = [], None, None
    for line in done.stdout.splitlines():
        if re.match(r"^\[.*\] Group job (\w+)", line):
            current = {"group": True, "jobs": []}
            units.append(current)
        elif m := re.match(r"^(\s*)(?:local)?rule (\w+):$", line):
            job = {"rule": m.group(2), "text": []}
            if m.group(1) and current is not None:
                current["jobs"].append(job)
            else:
                current = None
                units.append({"group": False, "jobs": [job]})
            last = job
        elif line.strip() and line.startswith(" ") and last is not None:
            last["text"].append(line.strip())
        elif line.strip() and not line.startswith("["):
            current = last = None

    def parsed(job: dict) -> tuple[dict, int]:
        (found,) = [t for t in job["text"] if t.startswith("resources: ")]
        threads = [int(t.split(": ")[1]) for t in job["text"] if t.startswith("threads: ")]
        return dict(kv.split("=", 1) for kv in found[len("resources: ") :].split(", ")), threads[0] if threads else 1

    partitions = read_partition_file(REPO / "profiles/slurm/partitions.yaml")
    cpu, gpu = _partitions(yaml.safe_load((REPO / "profiles/slurm/partitions.yaml").read_text()))
    log = logging.getLogger("partition-test")
    body = parameter_count(tmp_path / "resources/base_model")
    chunk = configured_chunk(yaml.safe_load((REPO / "presets/paper.yaml").read_text()))
    steps = yaml.safe_load((REPO / "presets/paper.yaml").read_text())["finetune"].get("snapshots", [])
    seen, jobs = set(), 0
    for unit in units:
        members = [(j["rule"], *parsed(j)) for j in unit["jobs"]]
        for rule, resources, _ in members:
            assert (resources.get("gpu") == "1") == (rule in MODEL_PASSES), (rule, resources)
            if rule == "hull_set":  # on the GPU: its points' accumulators live there, not in host memory
                assert (POINT_BYTES_PER_PARAMETER * chunk * body) / 2**20 > int(resources["mem_mb"]) >= points_memory_mb(body, 0), resources
            seen.add(rule)
        if unit["group"]:  # one submission per model: its finetune, its flatten, its snapshots' flattens
            assert sorted(r for r, _, _ in members) == ["finetune", "flatten"] + ["flatten_snapshot"] * len(steps), members
        # the submission asks for what its jobs ask for (a group: the most of each)
        asks = {"gpu": str(max(int(r.get("gpu", 0)) for _, r, _ in members))}
        asks["mem_mb"] = str(
            max(int(r["mem_mb"]) for _, r, _ in members if r.get("mem_mb", "<TBD>") != "<TBD>")
            if any(r.get("mem_mb", "<TBD>") != "<TBD>" for _, r, _ in members)
            else "0"
        )
        job = _PlannedJob(members[0][0], asks, max(t for _, _, t in members))
        assert get_best_partition(partitions, job, log) == (gpu if asks["gpu"] == "1" else cpu), members
        jobs += len(members)
    assert jobs > 1000
    # formation_loss runs only where snapshots are configured (opt-in: not in the paper preset)
    assert MODEL_PASSES - ({"formation_loss"} if not steps else set()) <= seen and {"flatten", "gram_part", "centroid"} <= seen


@pytest.mark.parametrize("xdg", [False, True], ids=["home", "xdg_config_home"])
def test_the_readme_profile_line_makes_the_bare_profile_name_work(xdg, tmp_path):
    """README's setup line, run literally, makes `snakemake --profile slurm` find the profile
    whether or not XDG_CONFIG_HOME is set (Snakemake looks there first)."""
    import os

    readme = (REPO / "README.md").read_text()
    (line,) = [m for m in re.findall(r"`([^`]*ln -sfn[^`]*)`", readme)]
    env = {k: v for k, v in os.environ.items() if k != "XDG_CONFIG_HOME"}
    env["HOME"] = str(tmp_path / "home")
    if xdg:
        env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    cmd = [sys.executable, "-m", "snakemake", "--profile", "slurm", "-n", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path / "work")]
    cmd += ["--configfile", str(REPO / "config.yaml")]
    before = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    assert before.returncode != 0  # no profile named slurm yet
    done = subprocess.run(["bash", "-c", line], cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    linked = (tmp_path / "xdg" if xdg else tmp_path / "home/.config") / "snakemake/slurm"
    assert linked.is_symlink() and linked.resolve() == (REPO / "profiles/slurm").resolve()
    plan = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    assert plan.returncode == 0 and "Using profiles slurm" in plan.stdout + plan.stderr, plan.stderr[-2000:]
