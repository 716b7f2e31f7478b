"""Faults through the real workflow on the tiny config: kills, corrupted files, diverging
training, bad data, and no code from data (docs/failure-modes.md lists what the user sees)."""

from __future__ import annotations

import ast
import copy
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO, check_run, snakemake, write_config

pytestmark = pytest.mark.slow


def copy_run(full_run: Path, tmp_path: Path) -> Path:
    work = tmp_path / "run"
    shutil.copytree(full_run, work, symlinks=True)
    return work


def kill_session(sid: int) -> None:
    """SIGKILL every process of session `sid` (Snakemake and every job it started)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[3]) == sid:
            try:
                os.kill(int(entry), signal.SIGKILL)
            except ProcessLookupError:
                pass


# (rule, target, its log, files that must come back identical)
STAGES = [
    (
        "prepare_data",
        "results/data/alpha/info.json",
        "results/logs/prepare_data/alpha.log",
        ["results/data/alpha/train.parquet", "results/data/alpha/dev.parquet", "results/data/alpha/test.parquet"],
    ),
    ("finetune", "results/models/alpha/seed0", "results/logs/finetune/alpha/seed0.log", ["results/models/alpha/seed0/model.safetensors"]),
    (
        "flatten",
        "results/weights/alpha/seed0",
        "results/logs/flatten/alpha/seed0.log",
        ["results/weights/alpha/seed0/shard-00000.parquet", "results/weights/alpha/seed0/manifest.json"],
    ),
    ("gram_part", "results/geometry/gram/part1.npy", "results/logs/gram_part/part1.log", ["results/geometry/gram/part1.npy"]),
    (
        "hull_set",
        "results/hull/general/general/in_prime/piece0.parquet",
        "results/logs/hull/general/general/in_prime/piece0.log",
        ["results/hull/general/general/in_prime/piece0.parquet"],
    ),
    (
        "plot_paths",
        "results/figures/fig3_interpolation.png",
        "results/logs/plot_paths.log",
        ["results/figures/fig3_interpolation.png", "results/figures/fig5_extrapolation.png"],
    ),
]


@pytest.mark.parametrize("stage", STAGES, ids=[s[0] for s in STAGES])
def test_sigkill_at_a_random_moment_leaves_nothing_taken_as_complete(full_run, tiny_assets, tmp_path, stage):
    rule, target, log, files = stage
    work = copy_run(full_run, tmp_path)
    config = write_config(work, tiny_assets["config"])
    (work / log).unlink()
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "-d",
        str(work),
        "--configfile",
        str(config),
        "--cores",
        "2",
        target,
        "--forcerun",
        rule,
    ]
    env = {k: v for k, v in os.environ.items() if k != "WEIGHTSPACE_KILL_AFTER_STEP"}
    with open(tmp_path / "killed.out", "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + 300
        while not (work / log).exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        # a random moment of the job: importing, computing or writing (seeded per stage)
        time.sleep(random.Random(rule).uniform(0.1, 1.5))
        kill_session(proc.pid)
        proc.wait(timeout=60)
    # Snakemake's lock stays behind after a kill of Snakemake itself: --unlock, as documented.
    check_run(snakemake(work, config, "--unlock"), "unlock")
    dry = snakemake(work, config, target, "-n")
    check_run(dry, "dry run after the kill")
    replanned = f"rule {rule}:" in dry.stdout
    print(f"{rule}: killed {'during' if replanned else 'after'} the job")
    if not replanned:  # the job had finished before the kill: its outputs must be the real ones
        for f in files:
            assert (work / f).read_bytes() == (full_run / f).read_bytes(), f"{f} kept but differs"
    check_run(snakemake(work, config, target), "rerun after the kill")
    for f in files:
        assert (work / f).read_bytes() == (full_run / f).read_bytes(), f"{f} differs from the uninterrupted run"
    debris = [p for p in (work / "results").rglob(".tmp-*")]
    assert not debris, f"leftovers of the killed job: {debris}"


def _flip_byte(path: Path, where: float = 0.5) -> None:
    data = bytearray(path.read_bytes())
    i = int(len(data) * where)
    data[i] ^= 0x10
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("damage", [_flip_byte, _truncate], ids=["bit_flip", "truncated"])
def test_a_corrupt_checkpoint_stops_its_readers_naming_file_and_model(full_run, tiny_assets, tmp_path, damage):
    work = copy_run(full_run, tmp_path)
    config = write_config(work, tiny_assets["config"])
    damage(work / "results/models/alpha/seed0/model.safetensors")
    figure = work / "results/figures/fig3_interpolation.png"
    before = figure.read_bytes()
    for target, rule in (("results/weights/alpha/seed0", "flatten"), ("results/paths/same_dataset/pair0.parquet", "path")):
        done = snakemake(work, config, target, "--forcerun", rule)
        assert done.returncode != 0
        out = done.stdout + done.stderr
        assert "corrupt file results/models/alpha/seed0/model.safetensors (model alpha-s0)" in out, out[-3000:]
    # nothing downstream was produced from it
    assert not (work / "results/paths/same_dataset/pair0.parquet").exists()
    assert figure.read_bytes() == before


def test_a_corrupt_base_model_stops_its_readers(full_run, tiny_assets, tmp_path):
    work = copy_run(full_run, tmp_path)
    config = write_config(work, tiny_assets["config"])
    assert (work / "resources/base_model/checksums.json").is_file()
    _flip_byte(work / "resources/base_model/model.safetensors")
    done = snakemake(work, config, "results/pretrained/weights", "--forcerun", "flatten_pretrained")
    assert done.returncode != 0
    assert "corrupt file resources/base_model/model.safetensors (model resources/base_model)" in done.stdout + done.stderr


@pytest.mark.parametrize("damage", [_flip_byte, _truncate], ids=["bit_flip", "truncated"])
def test_a_corrupt_weight_shard_stops_the_gram_naming_file_and_model(full_run, tiny_assets, tmp_path, damage):
    work = copy_run(full_run, tmp_path)
    config = write_config(work, tiny_assets["config"])
    shard = work / "results/weights/beta/seed1/shard-00000.parquet"
    damage(shard, 0.3) if damage is _flip_byte else damage(shard)
    tsne = work / "results/figures/tsne_dataset.png"
    before = tsne.read_bytes()
    done = snakemake(work, config, "--forcerun", "gram_part")
    assert done.returncode != 0
    out = done.stdout + done.stderr
    assert "corrupt file results/weights/beta/seed1/shard-00000.parquet (model beta-s1)" in out, out[-3000:]
    assert tsne.read_bytes() == before  # never flowed into a figure


@pytest.mark.parametrize(
    "override,expected",
    [({"max_loss": 1e-3}, "past the bound"), ({"lr": 1e30, "grad_clip": None}, "not finite")],
    ids=["past_max_loss", "nan"],
)
def test_a_diverging_finetune_fails_naming_dataset_seed_and_step_and_is_never_flattened(tiny_assets, tmp_path, override, expected):
    config = copy.deepcopy(tiny_assets["config"])
    config["datasets"]["beta"]["finetune"] = override
    done = snakemake(tmp_path, write_config(tmp_path, config), "results/weights/beta/seed0")
    assert done.returncode != 0
    out = done.stdout + done.stderr
    assert "dataset 'beta' seed 0: training loss " in out and " at step " in out, out[-3000:]
    if override.get("lr"):
        assert "training loss nan at step" in out or "training loss inf at step" in out
    assert not (tmp_path / "results/models/beta/seed0").exists()
    assert not (tmp_path / "results/weights/beta/seed0").exists()


def _gamma(tmp_path: Path, rows: list[dict] | None, raw: bytes | None = None, name: str = "gamma", **entry) -> dict:
    path = tmp_path / f"{name}.csv"
    if raw is not None:
        path.write_bytes(raw)
    else:
        pd.DataFrame(rows, columns=["id", "text", "label"]).to_csv(path, index=False)
    return {
        "families": ["weather"],
        "source": {"files": {"all": str(path)}, "format": "csv"},
        "text": "text",
        "label": "label",
        "labels": ["no", "yes"],
        **entry,
    }


def _rows(n: int = 40, labels=("no", "yes"), words: int = 6) -> list[dict]:
    return [{"id": i, "text": " ".join(f"w{i}x{j}" for j in range(words)), "label": labels[i % len(labels)]} for i in range(n)]


BAD_DATA = {
    "bad_empty": (lambda p: _gamma(p, [], name="bad_empty"), "has no usable examples"),
    "bad_one_label": (lambda p: _gamma(p, _rows(labels=("yes",)), name="bad_one_label"), "has only 1 label(s)"),
    "bad_labels": (lambda p: _gamma(p, _rows(labels=("no", "yes", "maybe")), name="bad_labels"), "labels outside the declared set"),
    "bad_field": (lambda p: _gamma(p, _rows(), name="bad_field", text="review"), "text field(s) ['review'] not in the data"),
    "bad_bytes": (
        lambda p: _gamma(
            p, None, name="bad_bytes", raw=b"id,text,label\n" + b"".join(b"%d,caf\xe9 %d,%s\n" % (i, i, [b"no", b"yes"][i % 2]) for i in range(40))
        ),
        "is not valid utf-8",
    ),
}


def test_bad_data_stops_before_finetuning_naming_dataset_and_problem(tiny_assets, tmp_path):
    """Five bad datasets in one run (--keep-going): each prepare_data stops with its own message."""
    config = copy.deepcopy(tiny_assets["config"])
    for name, (make, _) in BAD_DATA.items():
        config["datasets"][name] = make(tmp_path)
    config["zoo"]["datasets"] = ["alpha", "beta", *BAD_DATA]
    done = snakemake(tmp_path, write_config(tmp_path, config), "--keep-going", *[f"results/models/{n}/seed0" for n in BAD_DATA])
    assert done.returncode != 0
    for name, (_, message) in BAD_DATA.items():
        log = (tmp_path / f"results/logs/prepare_data/{name}.log").read_text()
        assert f"dataset '{name}': " in log and message in log, log[-2000:]
        assert not (tmp_path / f"results/models/{name}").exists()
        assert not (tmp_path / f"results/logs/finetune/{name}").exists()
    assert "dataset 'bad_bytes': " in done.stdout + done.stderr  # failed logs are shown


def test_long_texts_are_truncated_and_duplicate_ids_and_rows_handled(tiny_assets, tmp_path):
    rows = _rows(words=3000)  # far longer than finetune.max_length (16)
    rows += [dict(r, id=0) for r in rows[:5]]  # duplicate ids, duplicate rows
    rows += [{"id": 0, "text": "sunny clear", "label": "no"}]  # a duplicate id with a new text
    config = copy.deepcopy(tiny_assets["config"])
    config["datasets"]["gamma"] = _gamma(tmp_path, rows)
    config["zoo"]["datasets"] = ["alpha", "beta", "gamma"]
    check_run(snakemake(tmp_path, write_config(tmp_path, config), "results/models/gamma/seed0"), "long texts")
    import json

    info = json.loads((tmp_path / "results/data/gamma/info.json").read_text())
    assert info["cleaning"]["all"]["dropped_duplicates"] == 5  # the repeated rows, whatever their ids
    assert info["cleaning"]["all"]["kept"] == 41  # ids are not keys: the new text with id 0 stays
    metrics = json.loads((tmp_path / "results/models/gamma/seed0/metrics.json").read_text())
    assert metrics["steps"] > 0


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


def test_no_code_from_data_no_pickle_and_no_unsafe_torch_load():
    """Deserialisation never runs code: no pickle, torch.load only with weights_only=True,
    numpy loads without pickles, no remote code."""
    files = sorted((REPO / "src").rglob("*.py")) + sorted((REPO / "workflow").rglob("*.py")) + sorted((REPO / "bench").rglob("*.py"))
    files += [REPO / "Snakefile", *sorted((REPO / "workflow/rules").glob("*.smk"))]
    problems = []
    for path in files:
        text = path.read_text()
        for banned in ("import pickle", "from pickle", "import dill", "cloudpickle", "import joblib", "read_pickle", "import marshal", "import shelve"):
            if banned in text:
                problems.append(f"{path}: {banned}")
        if path.suffix != ".py":
            continue
        for call, name in _calls(ast.parse(text)):
            keywords = {k.arg: ast.unparse(k.value) for k in call.keywords}
            if name.endswith("torch.load") and keywords.get("weights_only") != "True":
                problems.append(f"{path}:{call.lineno}: torch.load without weights_only=True")
            if name in ("np.load", "numpy.load") and keywords.get("allow_pickle") != "False":
                problems.append(f"{path}:{call.lineno}: np.load without allow_pickle=False")
            if keywords.get("trust_remote_code") not in (None, "False"):
                problems.append(f"{path}:{call.lineno}: trust_remote_code")
            if keywords.get("allow_pickle") == "True":
                problems.append(f"{path}:{call.lineno}: allow_pickle=True")
    assert not problems, "\n".join(problems)
    # and the scan sees what it is meant to catch
    bad = ast.parse("import torch\ntorch.load('x')\nnp.load('y')\n")
    assert [n for _, n in _calls(bad)] == ["torch.load", "np.load"]
