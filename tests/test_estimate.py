"""weightspace.estimate: the cost of a config before it runs. Its jobs are the dry run's, every
number cites a rate of bench/results/rates.json, totals are the rows' sums, and the CLI runs
with one or several config files (no workflow run; one dry run per config, seconds each)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import REPO, SRC, snakemake
from weightspace import estimate
from weightspace.data import make_splits

DRY_RUN_CONFIGS = ["config.yaml", "presets/paper.yaml"]
CONFIGS = [*DRY_RUN_CONFIGS, "presets/formation.yaml"]
RATE_FIELDS = ("value", "unit", "measures", "device", "commit", "date", "source", "assumed")


@pytest.fixture(scope="module")
def table() -> dict:
    return estimate.load_rates()


@pytest.fixture(scope="module", params=[["config.yaml"], ["presets/paper.yaml"], ["config.yaml", "presets/paper.yaml"]], ids=lambda f: "+".join(f))
def result(request) -> dict:
    return estimate.estimate(request.param, gpus=8)


def _planned(configfile: str, table: dict) -> dict[str, int]:
    config = estimate.load_config([configfile])
    return estimate.jobs_per_rule(estimate.planned_jobs(config, estimate.Rates(table, estimate.profile_for(config, table))))


@pytest.mark.parametrize("configfile", DRY_RUN_CONFIGS)
def test_jobs_per_rule_are_the_dry_runs(configfile, tmp_path, table):
    planned = _planned(configfile, table)
    done = snakemake(tmp_path, REPO / configfile, "-n")
    assert done.returncode == 0, done.stderr[-3000:]
    counts = {k: int(v) for k, v in re.findall(r"^(\w+)\s+(\d+)$", done.stdout, flags=re.M) if k != "total"}
    assert planned == counts


@pytest.mark.parametrize("configfile", CONFIGS)
def test_jobs_per_rule_are_test_plans_counts(configfile, table):
    """The formation stage's rules too: the counts tests/test_plan.py checks against its dry runs."""
    from test_plan import _expected_jobs

    planned = _planned(configfile, table)
    for rule, n in _expected_jobs(estimate.load_config([configfile])).items():
        assert planned.get(rule, 0) == n, (configfile, rule)


def test_the_rates_table_says_what_each_figure_is(table):
    for key, entry in table["rates"].items():
        missing = [f for f in RATE_FIELDS if f not in entry]
        assert not missing, (key, missing)
        assert isinstance(entry["value"], (int, float)) and entry["value"] > 0, key
        if entry["assumed"]:
            assert entry.get("reasoning"), f"{key}: an assumption says why this value"
        elif entry["source"] not in ("definition",) and not entry["source"].startswith("definition"):
            assert entry["commit"] and re.fullmatch(r"[0-9a-f]{40}", entry["commit"]), key
    for name, entry in table["datasets"].items():
        assert entry.get("source") and "assumed" in entry, name
        assert entry.get("train") or entry.get("all"), name
        if entry["assumed"]:
            assert entry.get("reasoning"), name
    for name, spec in table["profiles"].items():
        assert spec["base_model"] and spec["device"], name


def test_the_h200_rates_are_the_gpu_checks(table):
    """The H200 figures are copied from the committed device check, not retyped."""
    check = json.loads((REPO / "bench/results/gpu_check_h200.json").read_text())
    rows = {(r["precision"], r["batch"], r["mode"]): r for r in check["throughput"]}
    rates = table["rates"]
    assert rates["h200.finetune_examples_per_s"]["value"] == rows[("bf16", 256, "full")]["examples_per_s"] == 1966.8
    assert rates["h200.bitfit_examples_per_s"]["value"] == rows[("bf16", 256, "bitfit")]["examples_per_s"] == 2317.4
    assert rates["h200.finetune_peak_gib"]["value"] == 26.4
    assert rates["h200.features_examples_per_s_batch32"]["value"] == check["points"]["features_per_s_batch32"]
    assert rates["h200.features_examples_per_s_batch256"]["value"] == check["points"]["features_per_s_batch256"]
    assert rates["h200.loss_eval_s"]["value"] == pytest.approx(check["points"]["loss_eval_s_per_point"], abs=1e-3)
    assert rates["h200.loss_eval_examples"]["value"] == sum(check["points"]["loss_eval_examples"])
    assert rates["h200.accumulate_s_per_term"]["value"] == pytest.approx(check["points"]["accumulate_gpu_s_per_term"], rel=1e-3)
    assert rates["h200.accumulate_reference_parameters"]["value"] == check["points"]["body_parameters"]
    assert rates["h200.model_body_parameters"]["value"] == check["points"]["body_parameters"] + (514 - 260) * 768
    done = subprocess.run(["git", "log", "--format=%H", "--", "bench/results/gpu_check_h200.json"], cwd=REPO, capture_output=True, text=True)
    if done.returncode == 0 and done.stdout.strip():  # a checkout with history
        assert rates["h200.finetune_examples_per_s"]["commit"] in done.stdout.split()


def test_every_number_cites_rates_that_exist(result, table):
    for row in result["rules"]:
        numbers = [row["gpu_hours"], row["cpu_hours"], row["written_gb"], row["kept_gb"]]
        if any(numbers):
            assert row["rates"], row["rule"]
        for key in row["rates"]:
            section, _, name = key.partition(".")
            assert key in table["rates"] or (section == "datasets" and name in table["datasets"]), (row["rule"], key)
            assert key in result["rates"], key
        assert row["assumed"] == any(result["rates"][k].get("assumed") for k in row["rates"]), row["rule"]
    assert result["rates"]["h200.finetune_examples_per_s" if result["profile"] == "h200" else "cpu2.finetune_examples_per_s"]["source"]


def test_totals_are_the_rows_sums(result):
    rows, t = result["rules"], result["totals"]
    assert t["jobs"] == sum(r["jobs"] for r in rows)
    for total, column in [("gpu_hours", "gpu_hours"), ("cpu_hours", "cpu_hours"), ("written_gb", "written_gb"), ("persistent_disk_gb", "kept_gb")]:
        assert t[total] == pytest.approx(sum(r[column] for r in rows)), total
    assert t["longest_job_hours"] == pytest.approx(max(r["longest_hours"] for r in rows))
    assert t["persistent_disk_gb"] <= t["peak_disk_gb"] <= t["written_gb"] + 1e-9


@pytest.mark.parametrize("gpus", [1, 3, 8, 1000])
def test_wall_clock_lies_between_total_over_n_and_total(gpus):
    t = estimate.estimate(["presets/paper.yaml"], gpus=gpus)["totals"]
    assert t["gpu_hours"] / gpus - 1e-9 <= t["wall_clock_hours"] <= t["wall_clock_greedy_hours"] + 1e-9 <= t["gpu_hours"] + 1e-9
    if gpus == 1:
        assert t["wall_clock_hours"] == pytest.approx(t["gpu_hours"])


def test_the_paper_preset_estimate_is_the_plan_at_h200_rates():
    result = estimate.estimate(["presets/paper.yaml"], gpus=8)
    rows = {r["rule"]: r for r in result["rules"]}
    assert result["profile"] == "h200"
    assert rows["finetune"]["jobs"] == 365 and rows["bitfit"]["jobs"] == 240 and rows["path"]["jobs"] == 60
    # MNLI: (392,702 - 1,000 dev - 1,000 probe) x 10 epochs at 1,966.8 examples/s; then startup
    # (30 s) and 10 dev evaluations of 1,000 examples and the test split (9,815) at 1,387 examples/s
    config = estimate.load_config(["presets/paper.yaml"])
    jobs = {(j.rule, j.name): j for j in estimate.planned_jobs(config, estimate.Rates(estimate.load_rates(), "h200"))}
    mnli = jobs[("finetune", "mnli/seed0")]
    assert mnli.seconds == pytest.approx(390702 * 10 / 1966.8 + 30 + (10 * 1000 + 9815) / 1387.2, rel=1e-3)
    # each checkpoint kept once (0.5 GB), the 2 GB resume state written and deleted
    assert mnli.kept == pytest.approx(124647170 * 4) and mnli.written == pytest.approx(5 * 124647170 * 4)
    assert rows["finetune"]["kept_gb"] == pytest.approx(365 * 124647170 * 4 / 1e9)
    # centroid.keep_weights: false keeps no BitFit weights
    assert not config["centroid"]["keep_weights"] and rows["bitfit"]["kept_gb"] < 1


def test_per_point_cross_validation_is_the_assumption_that_moves_the_loss_stages(tmp_path):
    """Under loss.choose: per_point every evaluation pays an (assumed) L2 cross-validation: it
    leads the sensitivity list and makes the loss jobs longer than under per_target."""
    override = tmp_path / "per_point.yaml"
    override.write_text("loss:\n  choose: per_point\n")
    per_point = estimate.estimate(["presets/paper.yaml", override], gpus=8)
    override_target = tmp_path / "per_target.yaml"
    override_target.write_text("loss:\n  choose: per_target\n")
    per_target = estimate.estimate(["presets/paper.yaml", override_target], gpus=8)
    assert per_point["sensitivity"][0]["rate"] == "h200.probe_cv_s"
    hours = lambda r, rule: next(x["gpu_hours"] for x in r["rules"] if x["rule"] == rule)
    assert hours(per_point, "hull_set") > hours(per_target, "hull_set") and hours(per_point, "path") > hours(per_target, "path")
    assert hours(per_point, "finetune") == pytest.approx(hours(per_target, "finetune"))


def test_layered_config_files_replace_base_model_and_sources_whole():
    default = estimate.yaml.safe_load((REPO / "config.yaml").read_text())
    paper = estimate.yaml.safe_load((REPO / "presets/paper.yaml").read_text())
    merged = estimate.merged_config(default, paper)
    assert merged["base_model"] == paper["base_model"]
    assert merged["datasets"]["rotten_tomatoes"]["source"] == paper["datasets"]["rotten_tomatoes"]["source"]
    assert merged["datasets"]["rotten_tomatoes"]["other_labels"] == "drop"  # other keys merge, as in Snakemake
    assert merged["datasets"]["drugs"] == default["datasets"]["drugs"]
    assert merged["zoo"] == paper["zoo"] and merged["loss"]["max_train"] == 1000
    # the layered form plans what the preset alone plans
    a, b = (estimate.estimate(f, gpus=8) for f in (["config.yaml", "presets/paper.yaml"], ["presets/paper.yaml"]))
    assert [(r["rule"], r["jobs"]) for r in a["rules"]] == [(r["rule"], r["jobs"]) for r in b["rules"]]
    assert a["totals"]["gpu_hours"] == pytest.approx(b["totals"]["gpu_hours"])


def test_split_sizes_follow_prepare_datas_carving(table):
    """The estimate's carving (test, then dev capped by max_dev, probe capped by max_probe, then
    max_train) gives the sizes make_splits gives, up to stratified rounding."""
    rng = np.random.default_rng(0)
    n = 5000
    raw = pd.DataFrame({"text": [f"example {i} " + " ".join(rng.choice(list("abcdefgh"), 5)) for i in range(n)], "label": rng.choice(["x", "y", "z"], n)})
    entry = {
        "text": "text",
        "label": "label",
        "labels": ["x", "y", "z"],
        "families": ["f"],
        "source": {"package": "toy==1", "files": {"all": "t.csv"}, "format": "csv"},
    }
    settings = {
        "split_seed": 0,
        "test_fraction": 0.2,
        "dev_fraction": 0.1,
        "max_dev": 300,
        "max_train": 2000,
        "max_test": 700,
        "probe_fraction": 0.2,
        "max_probe": 500,
    }
    settings |= {"min_probe": 20, "min_examples_per_label": 2}
    splits = make_splits("toy", {"all": raw}, entry, settings)
    config = {"datasets": {"toy": entry}, "data": settings}
    rates = estimate.Rates({**table, "datasets": {"toy@toy==1": {"all": n, "assumed": False, "source": "test"}}}, "cpu2")
    sizes = estimate.split_sizes(config, "toy", rates, estimate.Job("prepare_data", "toy", False))
    measured = {"train": len(splits.train), "dev": len(splits.dev), "probe": len(splits.probe), "test": len(splits.test)}
    for split, expected in measured.items():
        assert abs(getattr(sizes, split) - expected) <= 3, (split, sizes, measured)


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "weightspace.estimate", *args], cwd=REPO, capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize(
    "args",
    [[], ["--configfile", "presets/paper.yaml"], ["--configfile", "config.yaml", "presets/paper.yaml", "--gpus", "8"]],
    ids=["default", "paper", "layered"],
)
def test_the_cli_prints_rules_totals_and_rates(args):
    done = _cli(*args)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    for text in [
        "finetune",
        "GPU-hours",
        "CPU-hours",
        "persistent disk",
        "peak disk",
        "longest job",
        "wall-clock",
        "Rates (bench/results/rates.json)",
        "ASSUMED",
    ]:
        assert text in out, text
    if args:
        assert "h200.finetune_examples_per_s = 1966.8" in out and "8eeb314" in out


def test_the_cli_prints_one_json_object():
    done = _cli("--configfile", "presets/paper.yaml", "--gpus", "8", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["totals"]["gpus"] == 8 and result["profile"] == "h200"
    assert {r["rule"] for r in result["rules"]} >= {"finetune", "flatten", "calibrate", "path", "hull_set", "edges", "centroid", "bitfit"}
    assert result["long_jobs"]["hours"] == 4.0
