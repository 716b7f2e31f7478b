"""Incremental reruns: a change reruns what it invalidates and nothing else."""

from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path

import pytest

from conftest import check_run, snakemake, write_config

pytestmark = pytest.mark.slow

GROUPINGS = ("dataset", "family", "size_dataset", "size")
FIGURES = (
    {("plot_finetune_accuracy", ""), ("plot_paths", ""), ("plot_hull", ""), ("plot_edges", "")}
    | {("plot_bitfit_gain", f"regime={r}") for r in ("full", "few_shot")}
    | {("plot_tsne", f"grouping={g}") for g in GROUPINGS}
)
HULL_GROUPS = (("dataset", "alpha"), ("family", "things"), ("general", "general"))


def hull_jobs(*sets: str) -> set[tuple[str, str]]:
    """hull_set jobs (one piece each here) and the tables gathering them, by 'level/group/set'."""
    return {("hull_set", "level={}, group={}, set={}, piece=0".format(*s.split("/"))) for s in sets} | {
        ("hull_set_table", "level={}, group={}, set={}".format(*s.split("/"))) for s in sets
    }


def centroid_starts(*datasets: str) -> set[tuple[str, str]]:
    """The centroid of each dataset and the BitFit runs that start from it."""
    jobs = {("centroid", f"dataset={d}") for d in datasets}
    return jobs | {("bitfit", f"regime={r}, start=centroid, dataset={d}, seed=0") for d in datasets for r in ("full", "few_shot")}


ALL_HULL = hull_jobs(*(f"{lv}/{g}/{s}" for lv, g in HULL_GROUPS for s in ("in", "in_prime", "ex")))
AGGREGATES = (
    {
        ("zoo", ""),
        ("finetune_summary", ""),
        ("gram", ""),
        ("summary", ""),
        ("all", ""),
        ("path_stats", ""),
        ("hull_stats", ""),
        ("edges", ""),
        ("calibration", ""),
        ("bitfit_table", "regime=full"),
        ("bitfit_table", "regime=few_shot"),
        ("gram_part", "part=0"),
        ("gram_part", "part=1"),
        ("gram_part", "part=2"),
    }
    | {("cluster", f"grouping={g}") for g in GROUPINGS}
    | FIGURES
)


@pytest.fixture
def run_copy(full_run, tiny_assets, tmp_path) -> tuple[Path, dict]:
    """A private copy of the finished tiny run (outputs and Snakemake's metadata, mtimes kept)."""
    work = tmp_path / "run"
    shutil.copytree(full_run, work, symlinks=True)
    return work, copy.deepcopy(tiny_assets["config"])


def planned(work: Path, config: dict) -> set[tuple[str, str]]:
    """(rule, wildcards) of every job a dry run plans."""
    done = snakemake(work, write_config(work, config), "-n")
    check_run(done, "dry run")
    out = done.stdout
    if "Nothing to be done" in out + done.stderr:
        return set()
    jobs = set()
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", out):
        m = re.match(r"(?:local)?rule (\w+):", block)
        if m:
            w = re.search(r"^\s+wildcards: (.*)$", block, flags=re.M)
            jobs.add((m.group(1), w.group(1) if w else ""))
    return jobs


def test_nothing_changed_plans_nothing(run_copy):
    work, config = run_copy
    assert planned(work, config) == set()


def test_adding_a_seed_runs_only_its_models_and_the_aggregates(run_copy):
    work, config = run_copy
    config["zoo"]["seeds"] = [0, 1, 2]
    expected = {(rule, f"dataset={d}, seed=2") for rule in ("finetune", "flatten") for d in ("alpha", "beta")}
    # each target's calibration gains a model, so its L2 strength may change: every loss job
    # scored on alpha or beta reruns (alpha's seed pairs also grow from (0, 1) to three)
    expected |= {("calibrate", f"dataset={d}") for d in ("alpha", "beta")}
    expected |= {("path", f"pairset=same_dataset, pair={i}") for i in range(3)} | {("path", "pairset=same_family, pair=0")}
    expected |= ALL_HULL  # every hull set gains a model (In, or Ex, or In's norms for the random directions)
    expected |= centroid_starts("alpha", "beta")  # each centroid averages one more model; BitFit from the pretrained model stays
    assert planned(work, config) == expected | AGGREGATES


def test_a_plot_only_setting_reruns_only_that_figure(run_copy):
    work, config = run_copy
    config["figures"] = {"dpi": 90}
    assert planned(work, config) == FIGURES | {("all", "")}


def test_one_datasets_hyperparameter_reruns_its_models_and_downstream(run_copy):
    work, config = run_copy
    config["datasets"]["beta"]["finetune"] = {"lr": 2e-3}
    # beta's models, including its size-experiment variants (same dataset, less data)
    beta = [("beta", 0), ("beta", 1), ("beta_n12", 0), ("beta_n24", 0)]
    expected = {(rule, f"dataset={d}, seed={s}") for rule in ("finetune", "flatten") for d, s in beta}
    expected |= {("path", "pairset=same_family, pair=0")}  # alpha-s0 x beta-s0; the alpha pair stays
    expected |= {("calibrate", "dataset=beta")}  # beta's L2 strength is chosen on beta's models
    # hull sets holding a beta model (or, for the random directions, the norms of In) or scored
    # on beta (the family level's Ex: alpha's models, scored on beta); alpha's In and In' stay
    expected |= centroid_starts("alpha")  # alpha's centroid averages beta's models; beta's averages alpha's
    expected |= hull_jobs(
        "dataset/alpha/ex",
        "family/things/in",
        "family/things/in_prime",
        "family/things/ex",
        "general/general/in",
        "general/general/in_prime",
        "general/general/ex",
    )
    assert planned(work, config) == expected | AGGREGATES

    # And for real, up to the zoo: alpha's models stay untouched, beta's are retrained with the
    # new lr, and what is left to run is exactly the downstream part of the plan above.
    before = {p: p.stat().st_mtime_ns for p in work.glob("results/models/*/seed*/model.safetensors")}
    check_run(snakemake(work, write_config(work, config), "results/zoo.parquet"), "rerun")
    after = {p: p.stat().st_mtime_ns for p in work.glob("results/models/*/seed*/model.safetensors")}
    changed = sorted(p.parts[-3] + "/" + p.parts[-2] for p in before if before[p] != after[p])
    assert changed == ["beta/seed0", "beta/seed1", "beta_n12/seed0", "beta_n24/seed0"]
    assert '"lr": 0.002' in (work / "results/models/beta/seed0/metrics.json").read_text()
    assert planned(work, config) == {j for j in expected | AGGREGATES if j[0] not in ("finetune", "flatten", "zoo")}
