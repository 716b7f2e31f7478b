"""Config validation: every mistake stops with the key named."""

from __future__ import annotations

import copy

import pytest
import yaml

from conftest import REPO
from weightspace.config import ConfigError, finetune_settings, load_schema, validate_config
from weightspace.plan import zoo_members

SCHEMA = load_schema(REPO / "workflow/schemas/config.schema.yaml")


def check(config: dict) -> dict:
    return validate_config(copy.deepcopy(config), SCHEMA)


def test_tiny_config_is_valid_and_gets_defaults(tiny_config_dict):
    out = check(tiny_config_dict)
    assert out["finetune"]["weight_decay"] == 0.01  # a schema default
    assert out["finetune"]["lr"] == 1e-3  # the given value wins
    assert out["data"]["min_examples_per_label"] == 2
    assert zoo_members(out) == [("alpha", 0), ("alpha", 1), ("beta", 0), ("beta", 1), ("alpha_n12", 0), ("alpha_n24", 0), ("beta_n12", 0), ("beta_n24", 0)]
    variant = out["datasets"]["beta_n24"]
    assert variant["max_train"] == 24 and variant["size_of"] == "beta" and variant["text_pair"] == "hypothesis"


@pytest.mark.parametrize("path", ["config.yaml", "presets/paper.yaml"])
def test_shipped_configs_are_valid(path):
    config = yaml.safe_load((REPO / path).read_text())
    if "local" in config["base_model"]:
        pytest.skip("local model")
    check(config)


def test_dataset_override_of_finetune_keeps_other_globals(tiny_config_dict):
    tiny_config_dict["datasets"]["beta"]["finetune"] = {"lr": 0.5}
    out = check(tiny_config_dict)
    assert finetune_settings(out, "beta")["lr"] == 0.5
    assert finetune_settings(out, "beta")["batch_size"] == 8
    assert finetune_settings(out, "alpha")["lr"] == 1e-3


def _set(config: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    node = config
    for p in parents:
        node = node[p]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value


_DELETE = object()

BAD = [
    # (where to change, new value, key the message must name, words it must contain)
    ("finetune.lrr", 1e-4, "finetune.lrr", "unknown key"),
    ("finetune.lr", "fast", "finetune.lr", "not of type"),
    ("finetune.lr", -1.0, "finetune.lr", "less than or equal to the minimum"),
    ("finetune.batch_size", 2.5, "finetune.batch_size", "not of type 'integer'"),
    ("zoo.seeds", [0, "one"], "zoo.seeds.1", "not of type 'integer'"),
    ("zoo.seeds", [], "zoo.seeds", "should be non-empty"),
    ("zoo.seeds", [1, 1], "zoo.seeds", "non-unique"),
    ("zoo.datasets", ["alpha", "gamma"], "zoo.datasets.1", "not in the dataset registry"),
    ("data.max_train", -5, "data.max_train", "minimum"),
    ("data.test_fraction", 1.5, "data.test_fraction", "maximum"),
    ("datasets.alpha.labels", ["bad"], "datasets.alpha.labels", "too short"),
    ("datasets.alpha.source.format", "xlsx", "datasets.alpha.source.format", "is not one of"),
    ("datasets.alpha.families", [], "datasets.alpha.families", "should be non-empty"),
    ("datasets.alpha.text", _DELETE, "datasets.alpha", "'text' is a required key"),
    ("datasets.alpha.derived_from", "nope", "datasets.alpha.derived_from", "not a dataset of the registry"),
    ("datasets.alpha.label_map", {"good": "great"}, "datasets.alpha.label_map", "not declared"),
    ("base_model.local", "/nonexistent/model", "base_model.local", "no config.json"),
    ("base_model.hub", "roberta-base", "base_model", "exactly one of"),
    ("flatten.shard_size", 1500, "flatten.shard_size", "multiple of"),
    ("finetune.precision", "fp8", "finetune.precision", "is not one of"),
    ("geometry.groupings.family.groups", ["things", "planets"], "geometry.groupings.family.groups", "no finetuned dataset belongs to ['planets']"),
    ("geometry.groupings.size.models", "zoo", "geometry.groupings.size.models", "set models: size"),
    ("size_experiment", None, "geometry.groupings.size_dataset.models", "size_experiment is not configured"),
    ("size_experiment.datasets", ["alpha", "gamma"], "size_experiment.datasets.1", "not in the dataset registry"),
    ("size_experiment.sizes", [12, 0], "size_experiment.sizes.1", "minimum"),
    ("geometry.table1", {"with_domain": "dataset", "without_domain": "family"}, "geometry.table1.with_domain", "not a family grouping"),
]


@pytest.mark.parametrize("where,value,key,words", BAD, ids=[b[0] + ":" + str(b[1])[:12] for b in BAD])
def test_bad_config_names_the_key(tiny_config_dict, where, value, key, words):
    _set(tiny_config_dict, where, value)
    with pytest.raises(ConfigError) as err:
        check(tiny_config_dict)
    assert err.value.key == key
    assert words in str(err.value)
    assert f"'{key}'" in str(err.value)


def test_dataset_names_must_be_path_safe(tiny_config_dict):
    tiny_config_dict["datasets"]["Bad-Name"] = tiny_config_dict["datasets"]["alpha"]
    with pytest.raises(ConfigError, match="datasets.Bad-Name"):
        check(tiny_config_dict)


def test_package_dataset_needs_files(tiny_config_dict):
    tiny_config_dict["datasets"]["alpha"]["source"] = {"package": "x==1", "format": "csv"}
    with pytest.raises(ConfigError, match="datasets.alpha.source.files"):
        check(tiny_config_dict)


def test_one_key_is_overridden_by_a_second_configfile_without_copying_the_config(tmp_path):
    """README: `--configfile config.yaml mine.yaml` merges mine.yaml (one key) over the embedded
    default; a single complete --configfile (a preset) replaces config.yaml instead."""
    import re
    import subprocess
    import sys

    from conftest import REPO

    mine = tmp_path / "mine.yaml"
    mine.write_text("zoo:\n  seeds: [0, 1]\n")

    def finetunes(*configfiles):
        cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "-n", "--configfile", *map(str, configfiles)]
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        return int(re.search(r"^finetune\s+(\d+)$", done.stdout, flags=re.M).group(1))

    default = finetunes(REPO / "config.yaml")
    two_seeds = finetunes(REPO / "config.yaml", mine)
    assert two_seeds * 3 == default * 2  # the default has 3 seeds; everything else of config.yaml stays


def test_a_key_given_twice_stops_naming_the_key_the_file_and_the_lines(tmp_path):
    """YAML keeps the last of two equal keys in silence (`lr` twice trained every model at the
    second value): every config file is read again strictly."""
    from weightspace.config import layered_config, read_config_file

    mine = tmp_path / "mine.yaml"
    mine.write_text("finetune:\n  lr: 1.0e-4\n  batch_size: 16\n  lr: 5.0\n")
    with pytest.raises(ConfigError, match=r"config key 'lr': given twice in one mapping in .*mine.yaml, lines 2 and 4"):
        read_config_file(mine)
    twice = tmp_path / "twice.yaml"
    twice.write_text("datasets:\n  a: {text: x}\n  a: {text: y}\n")
    with pytest.raises(ConfigError, match=r"'a': given twice .*twice.yaml, lines 2 and 3"):
        layered_config([REPO / "config.yaml", twice])
    broken = tmp_path / "broken.yaml"
    broken.write_text("zoo:\n  seeds: [0, 1\n")
    with pytest.raises(ConfigError, match=r"broken.yaml is not valid YAML at line \d+, column \d+"):
        read_config_file(broken)


def test_a_duplicate_key_stops_snakemake_before_any_job(tmp_path):
    import subprocess
    import sys

    mine = tmp_path / "mine.yaml"
    mine.write_text("zoo:\n  seeds: [0]\n  seeds: [0, 1]\n")
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "-n", "--configfile", str(REPO / "config.yaml"), str(mine)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert done.returncode != 0
    assert f"invalid config: config key 'seeds': given twice in one mapping in {mine}, lines 2 and 3" in done.stdout + done.stderr


def test_layered_configs_replace_a_base_model_and_a_redefined_dataset_whole(tmp_path):
    """`--configfile config.yaml presets/paper.yaml` is the paper preset exactly: base_model
    (package vs hub) and rotten_tomatoes (a package file vs the hub) are not mixed; an entry
    without a source overrides keys of the earlier one."""
    from weightspace.config import layered_config, read_config_file

    layered = layered_config([REPO / "config.yaml", REPO / "presets/paper.yaml"])
    paper = read_config_file(REPO / "presets/paper.yaml")
    assert layered["base_model"] == paper["base_model"]
    assert layered["datasets"]["rotten_tomatoes"] == paper["datasets"]["rotten_tomatoes"]
    assert check(layered)["zoo"] == check(paper)["zoo"]
    mine = tmp_path / "mine.yaml"
    mine.write_text("datasets:\n  drugs: {max_train: 50}\nzoo:\n  seeds: [0]\n")
    over = layered_config([REPO / "config.yaml", mine], {"finetune": {"lr": 0.5}})
    default = read_config_file(REPO / "config.yaml")
    assert over["datasets"]["drugs"] == {**default["datasets"]["drugs"], "max_train": 50}
    assert over["zoo"] == {**default["zoo"], "seeds": [0]} and over["finetune"] == {**default["finetune"], "lr": 0.5}


@pytest.mark.slow
def test_both_forms_of_the_paper_preset_plan_the_same_jobs(tmp_path):
    import re
    import subprocess
    import sys

    def jobs(*configfiles):
        cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "-n", "--configfile", *map(str, configfiles)]
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        return sorted(re.findall(r"^\s+output: (.*)$", done.stdout, flags=re.M))

    alone = jobs(REPO / "presets/paper.yaml")
    assert len(alone) > 1000 and jobs(REPO / "config.yaml", REPO / "presets/paper.yaml") == alone


def test_a_datasets_own_max_steps_before_the_last_snapshot_stops(tiny_config_dict):
    tiny_config_dict["finetune"]["snapshots"] = [4, 12]
    tiny_config_dict["datasets"]["beta"]["finetune"] = {"max_steps": 8}
    with pytest.raises(ConfigError, match=r"datasets.beta.finetune.max_steps': 8 stops before the last snapshot, step 12"):
        check(tiny_config_dict)
