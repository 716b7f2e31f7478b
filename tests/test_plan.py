"""weightspace.plan: the one answer to "which models go where", checked against the DAG that
Snakemake builds from the same config (the rules ask the plan too, so a disagreement would
mean a rule or a job derives members on its own)."""

from __future__ import annotations

import copy
import re

import pytest
import yaml

from conftest import REPO, snakemake, write_config
from weightspace import plan
from weightspace.config import load_schema, validate_config


def _validated(path):
    config = yaml.safe_load(path.read_text())
    return validate_config(copy.deepcopy(config), load_schema(REPO / "workflow/schemas/config.schema.yaml"))


def _expected_jobs(config) -> dict[str, int]:
    """Jobs per rule, from the plan alone."""
    members = plan.zoo_members(config)
    hull = plan.hull_groups(config)
    centroid = config.get("centroid")
    regimes = [r for r in plan.REGIMES if r == "full" or centroid["few_shot"] is not None] if centroid else []
    targets = plan.centroid_targets(config) if centroid else []
    steps = config["finetune"].get("snapshots", [])
    return {
        "finetune": len(members),
        "flatten": len(members),
        "calibrate": len(plan.main_datasets(config)),
        "path": sum(len(p) for p in plan.pair_sets(config).values()),
        "hull_set": sum(
            plan.set_pieces(plan.set_size(g, w, config["hull"]["max_points"]), len(g["targets"]), config["hull"]["max_evaluations"])
            for g in hull.values()
            for w in plan.SETS
        ),
        "hull_set_table": len(hull) * len(plan.SETS),
        "edges": int(bool((config.get("hull") or {}).get("edges"))),
        "centroid": len(targets),
        "bitfit": len(regimes) * len(targets) * len(plan.STARTS) * (len(centroid["seeds"]) if centroid else 0),
        "flatten_snapshot": len(members) * len(steps),
        "formation_gram": len(steps),
        "formation_settling": len(members) if steps else 0,
        "formation_loss": len(plan.main_datasets(config)) if steps else 0,
    }


@pytest.mark.parametrize("configfile", ["config.yaml", "presets/paper.yaml", "presets/formation.yaml"])
def test_the_plan_counts_the_jobs_the_dry_run_schedules(configfile, tmp_path):
    config = _validated(REPO / configfile)
    done = snakemake(tmp_path, REPO / configfile, "-n")
    assert done.returncode == 0, done.stderr[-3000:]
    counts = {k: int(v) for k, v in re.findall(r"^(\w+)\s+(\d+)$", done.stdout, flags=re.M)}
    for rule, n in _expected_jobs(config).items():
        assert counts.get(rule, 0) == n, (configfile, rule, counts.get(rule, 0), n)
    assert _expected_jobs(config)["finetune"] > 0


def test_hull_set_jobs_take_their_members_from_the_plan(tiny_assets, tmp_path):
    """The models a hull_set job reads are exactly plan.hull_set's members (the job builds its
    points from them and never chooses again)."""
    config = validate_config(copy.deepcopy(tiny_assets["config"]), load_schema(REPO / "workflow/schemas/config.schema.yaml"))
    config["hull"]["max_points"] = 2  # a cap, so In and Ex are seeded subsamples
    done = snakemake(tmp_path, write_config(tmp_path, {**tiny_assets["config"], "hull": {**tiny_assets["config"]["hull"], "max_points": 2}}), "-n")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    blocks = re.findall(r"^rule hull_set:\n(.*?)(?=^\[|\Z)", done.stdout, flags=re.M | re.S)
    assert blocks
    spec = config["hull"]
    for block in blocks:
        w = dict(re.findall(r"(\w+)=([\w]+)", re.search(r"wildcards: (.*)", block).group(1)))
        job = plan.hull_set(plan.hull_groups(config)[(w["level"], w["group"])], w["set"], f"{w['level']}/{w['group']}", spec["seed"], spec["max_points"])
        models = re.findall(r"results/models/(\w+)/seed(\d+)", re.search(r"input: (.*)", block).group(1))
        assert [(d, int(s)) for d, s in models] == [tuple(m) for m in job["members"]], block


def test_a_set_is_scored_in_pieces_of_at_most_max_evaluations():
    assert plan.set_pieces(10, 3, None) == 1 and plan.set_pieces(10, 3, 30) == 1
    assert plan.set_pieces(10, 3, 29) == 2  # 9 points a piece
    assert plan.set_pieces(305, 12, 2000) == 2  # 166 points x 12 targets a piece
    for count, pieces in ((10, 3), (7, 7), (305, 2), (1, 1)):
        ranges = [plan.piece_points(count, pieces, k) for k in range(pieces)]
        assert ranges[0][0] == 0 and ranges[-1][1] == count and all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
        assert max(hi - lo for lo, hi in ranges) - min(hi - lo for lo, hi in ranges) <= 1
    with pytest.raises(ValueError):
        plan.piece_points(10, 3, 3)


def test_plan_answers_without_the_workflow():
    """Pure: the plan needs a config and nothing else (no files, no Snakemake)."""
    config = {
        "datasets": {"a": {"families": ["f"]}, "b": {"families": ["f"], "seeds": [0]}, "a_n10": {"families": ["f"], "size_of": "a"}},
        "zoo": {"datasets": ["a", "b", "a_n10"], "seeds": [0, 1]},
        "paths": {"same_dataset": {"dataset": "a"}, "cross_family": {"datasets": ["a", "b"], "max_pairs": 1}},
        "centroid": {"region": "general"},
    }
    assert plan.zoo_members(config) == [("a", 0), ("a", 1), ("b", 0), ("a_n10", 0), ("a_n10", 1)]
    assert plan.main_datasets(config) == ["a", "b"]
    assert plan.pair_sets(config) == {"same_dataset": [(("a", 0), ("a", 1))], "cross_family": [(("a", 0), ("b", 0))]}
    assert plan.centroid_members(config, "a") == [("b", 0)]  # its own models and their size variants left out
    assert plan.model_id("a", 1) == "a-s1" and plan.size_variant("a", 10) == "a_n10"
